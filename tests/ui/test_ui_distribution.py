"""The sampling lab's window, driven like a user: click a token, move a slider, type a word.

What it shades is checked against the brute-force reference (tests/sampling_reference.py) on the
row the window re-decoded, and that row against the tiny model's own logits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import store_writer as sw
from PySide6.QtCore import QPoint, Qt
from sampling_reference import brute_force

from playground.sampling import SAMPLER_ORDERS, SamplingParams
from playground.sampling_lab import probe
from playground.ui.demos_tab import DemosTab
from playground.ui.distribution_view import DistributionView
from playground.ui.engine_thread import EngineThread
from playground.ui.main_window import MainWindow
from playground.ui.token_view import TokenView

TIMEOUT = 60_000
PARAMS = SamplingParams(seed=2, temperature=1.0, top_k=40, top_p=0.95, min_p=0.0,
                        max_tokens=8)


def _generate(qtbot, window: MainWindow, n: int = 1) -> None:
    window.prompt_panel.set_values("once upon a time", chat=False, system="")
    window.sampling_panel.set_params(PARAMS)
    window.sampling_panel.seed_lock.setChecked(True)
    window.sampling_panel.n.setValue(n)
    window.generate()
    qtbot.waitUntil(lambda: window.run is not None and window.run.finished
                    and window.prompt_panel.generate_button.isEnabled(), timeout=TIMEOUT)


def _click_token(qtbot, view: TokenView, index: int) -> None:
    view.ensureCursorVisible()
    rect = view._range_rects(*view.token_range(index))[0]
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(round(rect.center().x()), round(rect.center().y())))


def _textual(tokens) -> int:
    """A token with text of its own, so that it can be clicked."""
    return next(i for i, t in enumerate(tokens) if i > 0 and t.text.strip())


def _opened(qtbot, window: MainWindow) -> DistributionView:
    qtbot.waitUntil(lambda: window.distribution_view is not None
                    and window.distribution_view.distribution is not None, timeout=TIMEOUT)
    return window.distribution_view


def test_clicking_a_token_shows_its_distribution_and_sliders_reshape_it(
        qtbot, window: MainWindow, tiny_engine):
    _generate(qtbot, window)
    tokens = window.run.samples[0].tokens
    i = _textual(tokens)
    _click_token(qtbot, window.single_view.text, i)
    lab = _opened(qtbot, window)
    assert lab.isVisible() and lab.moment.drawn == tokens[i]
    context = window.run.prompt_token_ids + [t.id for t in tokens[:i]]
    assert list(lab.moment.context) == context
    row = lab.distribution.logits
    np.testing.assert_allclose(row, tiny_engine.next_logits(context), atol=1e-4)

    def agrees_with_brute_force() -> dict[str, dict[int, str]]:
        shaded = {}
        for order in SAMPLER_ORDERS:
            probs, cut = brute_force(row, replace(lab.params(), sampler_order=order),
                                     list(lab.moment.history))
            np.testing.assert_allclose(lab.reshaped[order].probs, probs, atol=1e-6)
            expected = {t: cut[t] for t in lab.distribution.shown if cut[t] is not None}
            assert lab.shaded(order) == expected
            assert f"kept <b>{sum(c is None for c in cut):,}</b>" in lab.summaries[order].text()
            shaded[order] = expected
        return shaded

    # At the run's settings the lab agrees with what was drawn.
    before = agrees_with_brute_force()
    assert lab.reshaped[PARAMS.sampler_order].kept == tokens[i].kept
    lab.sliders["top_p"].setValue(40)
    lab.sliders["temperature"].setValue(250)
    after = agrees_with_brute_force()
    assert after != before
    # Hot and cut at 0.4: temperature first lets the flattened row keep more tokens.
    assert lab.reshaped["temperature-first"].kept > lab.reshaped["temperature-last"].kept
    lab.sliders["top_k"].setValue(3)
    assert set(agrees_with_brute_force()["temperature-last"].values()) >= {"top-k"}


def test_a_typed_candidate_gets_its_probability_and_rank(qtbot, window: MainWindow,
                                                         tiny_engine):
    _generate(qtbot, window)
    tokens = window.run.samples[0].tokens
    _click_token(qtbot, window.single_view.text, _textual(tokens))
    lab = _opened(qtbot, window)
    lab.candidate.setText(" the")
    lab.score_candidate()
    qtbot.waitUntil(lambda: "rank" in lab.candidate_result.text(), timeout=TIMEOUT)
    expected = probe(tiny_engine, list(lab.moment.context), [" the"])[0]
    assert f"rank <b>{expected.rank:,}</b>" in lab.candidate_result.text()


def test_a_best_of_n_panel_opens_its_own_sample(qtbot, window: MainWindow):
    _generate(qtbot, window, n=3)
    run = window.run
    panel = window.best_of_n_view.panels()[0]
    sample = run.samples[panel.sample_index]
    i = _textual(sample.tokens)
    _click_token(qtbot, panel.text_view, i)
    lab = _opened(qtbot, window)
    assert lab.moment.drawn == sample.tokens[i]
    assert list(lab.moment.context) == run.prompt_token_ids + [t.id for t in sample.tokens[:i]]
    assert lab.reshaped[PARAMS.sampler_order].kept == sample.tokens[i].kept


def test_a_demonstration_token_reaches_the_lab_through_the_demos_tab(qtbot):
    """The hallucination demonstration's branch view shows a run's sample: a click on one of its
    tokens comes out of the Demos tab as that token's moment."""
    engine = EngineThread()
    tab = DemosTab(engine)
    qtbot.addWidget(tab)
    tab.resize(1280, 720)
    tab.show()
    run = sw.synthetic_run(1, 12, seed=4)
    sample = run.samples[0]
    tab.choose(next(s.name for s in tab.scenarios if s.demo == "hallucination"))
    tab.views["hallucination"].branch_from(run, sample)
    view = tab.views["hallucination"].branch_view
    i = _textual(sample.tokens)
    with qtbot.waitSignal(tab.moment_clicked) as clicked:
        _click_token(qtbot, view, i)
    moment = clicked.args[0]
    assert moment.drawn == sample.tokens[i]
    assert list(moment.context) == run.prompt_token_ids + [t.id for t in sample.tokens[:i]]
    assert moment.params == run.params and moment.model_path == run.model.path
    engine.shut_down()


def test_a_token_of_another_model_says_to_load_that_model(qtbot, window: MainWindow):
    _generate(qtbot, window)
    moment = window.single_view.text.moment(_textual(window.run.samples[0].tokens))
    window.show_distribution(replace(moment, model_path="/elsewhere/other-model.gguf"))
    lab = window.distribution_view
    qtbot.waitUntil(lambda: lab.status.isVisible(), timeout=TIMEOUT)
    assert lab.status.text() == ("That token came from other-model.gguf; load that model to "
                                 "see its distribution.")
    assert lab.distribution is None and "decoding" not in lab.heading.text()

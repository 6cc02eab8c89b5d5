"""The best-of-N view, its sample panels and the logprob charts, against real tiny-model runs."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF
from qt_events import EventCounter

from playground.engine_api import Engine
from playground.records import Run, RunStats, TokenRecord
from playground.sampling import SamplingParams
from playground.ui.best_of_n_view import BestOfNView
from playground.ui.colors import WINNER
from playground.ui.logprob_chart import LOGPROB, PROBABILITY, LogprobChart, OverlayChart
from playground.ui.sample_panel import SamplePanel, fitted_tokens, ordinal

# A stop string makes the samples end at different lengths, so mean and sum rank them apart.
PARAMS = SamplingParams(
    seed=4, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=12, stop=("e",)
)


def _token(sample: int, position: int, id: int, logprob: float = -0.5, text: str = "x",
           entropy: float = 1.0) -> TokenRecord:
    return TokenRecord(sample=sample, position=position, id=id, bytes=text.encode(), text=text,
                       logprob=logprob, sampling_logprob=logprob, rank=1, entropy=entropy,
                       top=())


def _finished(run: Run) -> Run:
    run.stats = RunStats(len(run.prompt_token_ids), 0, 1.0)
    return run


@pytest.fixture
def view(qtbot) -> BestOfNView:
    widget = BestOfNView()
    qtbot.addWidget(widget)
    widget.resize(1100, 800)
    return widget


@pytest.fixture(scope="module")
def finished_run(tiny_engine: Engine) -> Run:
    return tiny_engine.run("hello", PARAMS, n=6)


@pytest.fixture
def run(finished_run: Run) -> Run:
    """A copy of one generated run, which a test may change (scores, rankings)."""
    return copy.deepcopy(finished_run)


def test_selector_reorders_panels_by_ranking(view: BestOfNView, run: Run, qtbot):
    mean, total = run.rank("mean-logprob").order, run.rank("sum-logprob").order
    assert mean != total  # otherwise switching could not show anything
    view.set_run(run)
    assert view.current_method() == "mean-logprob"
    assert view.panel_order() == list(mean)
    with qtbot.waitSignal(view.ranking_changed) as changed:
        view.set_method("sum-logprob")
    assert changed.args == ["sum-logprob"]
    assert view.panel_order() == list(total)
    view.set_method("mean-logprob")
    assert view.panel_order() == list(mean)
    assert f"winner <b>#{mean[0]}</b>" in view.summary_text()


def test_the_winner_is_marked_and_every_panel_has_its_place(view: BestOfNView, run: Run):
    view.set_run(run)
    order = run.rank("mean-logprob").order
    panels = view.panels()
    assert [p.is_winner() for p in panels] == [i == order[0] for i in range(len(panels))]
    assert [panels[i].place() for i in order] == list(range(1, len(order) + 1))
    scores = run.samples[order[0]].all_scores()
    badges = panels[order[0]].badges()
    assert float(badges["mean"].replace("−", "-")) == pytest.approx(
        scores["mean_logprob"], abs=1e-3
    )
    assert set(badges) == {"mean", "sum", "norm"}
    assert [_frame(p) for p in panels] == [WINNER.name() if p.is_winner() else "#d3d7dd"
                                           for p in panels]


def _frame(panel: SamplePanel) -> str:
    """The colour the panel's frame is painted in (at the middle of its left edge)."""
    image = panel.grab().toImage()
    return image.pixelColor(0, image.height() // 2).name()


def test_vote_groups_panels_by_answer(view: BestOfNView, tiny_engine: Engine):
    run = tiny_engine.run("hello", replace(PARAMS, stop=()), n=5)
    texts = ["The answer is 36", "36", "I think 35", "36.", "no idea"]
    for sample, text in zip(run.samples, texts, strict=True):
        sample.text = text
    view.set_run(run)
    view.set_method("vote")
    assert view.groups() == [
        ("'36' — 3 votes (60%)", [0, 1, 3]),
        ("'35' — 1 vote (20%)", [2]),
        ("no answer found", [4]),
    ]
    assert view.panel_order() == list(run.rank("vote").order)
    panels = view.panels()
    assert [p.is_winner() for p in panels] == [True, True, False, True, False]
    assert panels[2].badges()["answer"] == "'35'"
    assert panels[4].badges()["answer"] == "none"
    assert "answer <b>'36'</b> · 60% (3/5)" in view.summary_text()
    view.set_method("mean-logprob")  # back to one group, without headers
    assert view.group_titles() == []
    assert "answer" not in panels[0].badges()


def test_divergence_marker(view: BestOfNView, tiny_engine: Engine):
    run = tiny_engine.start_run("hello", PARAMS, n=4)
    forks = [(10, " Paris", 0.62), (10, " Paris", 0.62), (20, " Lyon", 0.21), (30, " Nice", 0.1)]
    for sample, (fork_id, text, prob) in zip(run.samples, forks, strict=True):
        prefix = [_token(sample.index, p, id, -0.2, "ab"[p % 2]) for p, id in enumerate((1, 2, 3))]
        sample.tokens = [*prefix, _token(sample.index, 3, fork_id, math.log(prob), text),
                         _token(sample.index, 4, 99)]
        sample.text = "".join(t.text for t in sample.tokens)
        sample.finish_reason = "length"
    view.set_run(_finished(run))
    divergence = view.divergence()
    assert divergence is not None and divergence.position == 3
    assert [(b.text, len(b.samples)) for b in divergence.branches] == [
        (" Paris", 2), (" Lyon", 1), (" Nice", 1)
    ]
    assert [b.prob for b in divergence.branches] == pytest.approx([0.62, 0.21, 0.1])
    assert view.divergence_text() == (
        "fork at token 3: ' Paris' 62% (2) / ' Lyon' 21% (1) / ' Nice' 10% (1)"
    )

    for sample in run.samples:  # all alike now
        sample.tokens = sample.tokens[:3]
        sample.text = sample.text[:3]
    view.set_run(run)
    assert view.divergence() is None
    assert view.divergence_text() == "all samples identical"


def test_streaming_then_ranking(view: BestOfNView, tiny_engine: Engine):
    run = tiny_engine.start_run("hello", PARAMS, n=6)
    view.set_run(run)
    assert "ranking when done" in view.summary_text()
    for count, event in enumerate(tiny_engine.generate(run), 1):
        run.add(event)
        if count % 4 == 0:
            view.refresh()
            if not run.finished:
                assert view.panel_order() == list(range(6))
                assert not any(p.is_winner() for p in view.panels())
    view.refresh()
    for panel, sample in zip(view.panels(), run.samples, strict=True):
        assert panel.text() == sample.text
        assert panel.text_view.toPlainText() == sample.text
        assert len(panel.text_view.tokens) == len(sample.tokens)
    # Some stop strings ended inside a kept token, so the panels had to re-render those.
    assert any("".join(t.text for t in s.tokens) != s.text for s in run.samples)
    assert view.panel_order() == list(run.rank("mean-logprob").order)
    assert sum(p.is_winner() for p in view.panels()) == 1


def test_a_new_run_reuses_the_panels_for_its_samples(view: BestOfNView, run: Run,
                                                     tiny_engine: Engine):
    view.set_run(run)
    old = view.panels()
    again = tiny_engine.run("hello", replace(PARAMS, seed=9), n=4)
    view.set_run(again)
    assert view.panels() == old[:4]  # reused: building panels would stall the window
    assert [p.text() for p in view.panels()] == [s.text for s in again.samples]
    assert view.panel_order() == list(again.rank("mean-logprob").order)


def test_a_new_run_starts_blank_with_the_last_runs_badges_and_no_curves(view: BestOfNView,
                                                                         run: Run):
    view.set_run(run)
    labels = [dict(p._badge_labels) for p in view.panels()]
    streaming = copy.deepcopy(run)
    streaming.stats = None
    for sample in streaming.samples:
        sample.tokens.clear()
        sample.text, sample.finish_reason = "", None
    view.set_run(streaming)
    panels = view.panels()
    assert [p.badges() for p in panels] == [dict.fromkeys(("mean", "sum", "norm"), "—")] * 6
    assert [p._badge_labels for p in panels] == labels  # the same labels, not new ones
    assert not any(p.is_winner() for p in panels)
    assert {_frame(p) for p in panels} == {"#d3d7dd"}  # the last winner's frame is gone
    # The chart is emptied at once, not left showing the last run until its first redraw.
    for curve in view.overlay.curves():
        x, _ = curve.getData()
        assert x is None or len(x) == 0


def test_rewards_added_after_the_run_can_rank(view: BestOfNView, run: Run):
    view.set_run(run)
    view.add_ranking("reward model", "reward")
    rewards = [0.1, 0.9, 0.3, 0.5, 0.2, 0.4]
    for sample, reward in zip(run.samples, rewards, strict=True):
        sample.scores["reward"] = reward
    view.refresh()
    assert view.panels()[1].badges()["reward"] == "0.900"
    view.set_method("reward")
    assert view.panel_order() == [1, 3, 5, 2, 4, 0]
    assert "winner <b>#1</b> · reward model 0.900" in view.summary_text()


def test_refresh_without_changes_does_nothing(view: BestOfNView, run: Run, monkeypatch):
    view.set_run(run)
    calls = []
    monkeypatch.setattr(SamplePanel, "refresh", lambda self, sample: calls.append(sample))
    view.refresh()
    assert calls == []


def test_fitted_tokens_cut_the_last_token_to_the_text():
    tokens = [_token(0, 0, 1, text="ab"), _token(0, 1, 2, text="cde")]
    assert [t.text for t in fitted_tokens(tokens, "abcde")] == ["ab", "cde"]
    assert [t.text for t in fitted_tokens(tokens, "abc")] == ["ab", "c"]


def test_ordinal():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"
    ]


def test_sample_panel_shows_the_finish_reason_and_rank(qtbot, run: Run):
    panel = SamplePanel(2)
    qtbot.addWidget(panel)
    panel.refresh(run.samples[2])
    assert panel.text() == run.samples[2].text
    panel.set_rank(1, winner=True)
    assert panel.is_winner() and panel.place() == 1
    panel.set_rank(None, winner=False)
    assert not panel.is_winner() and panel.place() is None
    panel.set_badges({"mean": "−0.5", "reward": "0.9"})
    assert panel.badges() == {"mean": "−0.5", "reward": "0.9"}


# -- charts ---------------------------------------------------------------------------------

LOGPROBS = [-0.1, -1.0, -2.5, -0.02]


@pytest.fixture
def chart(qtbot) -> LogprobChart:
    widget = LogprobChart()
    qtbot.addWidget(widget)
    widget.resize(600, 300)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_tokens([_token(0, i, i, lp, f"t{i}", entropy=0.5 * i)
                       for i, lp in enumerate(LOGPROBS)])
    return widget


def test_chart_shows_probabilities_or_logprobs(chart: LogprobChart):
    x, heights = chart.bars.getData()
    assert list(x) == [0, 1, 2, 3]
    assert heights == pytest.approx(np.exp(LOGPROBS))
    chart.set_mode(LOGPROB)
    assert chart.bars.getData()[1] == pytest.approx(LOGPROBS)
    assert chart.entropy_curve.getData()[1] == pytest.approx([0, 0.5, 1.0, 1.5])
    chart.set_mode(PROBABILITY)
    assert chart.bars.getData()[1] == pytest.approx(np.exp(LOGPROBS))
    chart.set_tokens([_token(0, 0, 0, -math.inf)])  # an impossible token stays drawable
    chart.set_mode(LOGPROB)
    assert chart.bars.getData()[1] == pytest.approx([-20.0])


def test_chart_follows_a_growing_sample(chart: LogprobChart):
    def shows_all(n: int) -> bool:
        x_low, x_high = chart._values_plot.vb.viewRange()[0]
        return x_low <= 0 and x_high >= n - 1

    chart.set_tokens([])
    for n in (5, 30):
        chart.set_tokens([_token(0, i, i) for i in range(n)])
        assert shows_all(n)


def test_each_streamed_update_of_a_chart_is_painted_once(chart: LogprobChart, run: Run, qtbot):
    """pyqtgraph moves a view to its new range at the start of a paint, and the moved curves
    then asked for a second paint: each update of a streaming run was painted twice."""
    overlay = OverlayChart()
    qtbot.addWidget(overlay)
    overlay.resize(600, 200)
    overlay.show()
    qtbot.waitExposed(overlay)

    def update(n: int) -> list[int]:
        """How often each chart is painted after an update to n tokens."""
        for counter in counters:
            counter.count = 0
        chart.set_tokens([_token(0, i, i, -0.3 * i) for i in range(n)])
        overlay.set_samples([replace(s, tokens=s.tokens[:n]) for s in run.samples],
                            streaming=True)
        qtbot.wait(60)
        return [counter.count for counter in counters]

    counters = [EventCounter(chart._graphics.viewport(), QEvent.Type.Paint),
                EventCounter(overlay._plot.viewport(), QEvent.Type.Paint)]
    update(2)  # the first update after the fixture's lays the axes out
    for n in (6, 9, 3, 12):  # growing, and a new sample that starts again
        assert update(n) == [1, 1]


def test_a_streaming_chart_lays_its_axes_out_only_when_its_ranges_grow(chart: LogprobChart,
                                                                        monkeypatch):
    """Laying out and painting the axes' tick text was most of an update's time; while a
    sample streams, its ranges grow in steps (the token axis to powers of two)."""
    plots = (chart._values_plot, chart._entropy_plot, chart._kept_plot)
    axes = [plot.getAxis(name) for plot in plots for name in ("left", "bottom")]
    layouts = dict.fromkeys(range(len(axes)), 0)
    for i, axis in enumerate(axes):
        def counted(*args, _i=i, _layout=axis.generateDrawSpecs):
            layouts[_i] += 1
            return _layout(*args)
        monkeypatch.setattr(axis, "generateDrawSpecs", counted)
    tokens = [_token(0, i, i, -0.9 * (i % 7), entropy=0.6 * (i % 5)) for i in range(100)]
    for n in range(1, len(tokens) + 1):
        chart.set_tokens(tokens[:n], streaming=True)
        chart.grab()
    assert max(layouts.values()) <= 6  # not once per update (100)
    assert chart._values_plot.vb.viewRange()[0][1] == 128
    chart.set_tokens(tokens)  # the end of the stream: the token axis fits the sample again
    chart.grab()
    x_low, x_high = chart._values_plot.vb.viewRange()[0]
    assert x_low <= 0 and 99 <= x_high < 110


def test_chart_hover_snaps_to_the_nearest_token(chart: LogprobChart, qtbot):
    plot = chart._values_plot
    scene_point = plot.vb.mapViewToScene(QPointF(2.3, 0.5))
    with qtbot.waitSignal(chart.token_hovered) as hovered:
        chart._graphics.scene().sigMouseMoved.emit(scene_point)
    assert hovered.args == [2]
    assert chart.hovered() == 2
    with qtbot.waitSignal(chart.token_hovered) as hovered:
        chart._graphics.scene().sigMouseMoved.emit(QPointF(-50, -50))  # outside the plots
    assert hovered.args == [-1]
    chart.highlight(1)
    assert chart._value_line.isVisible() and chart._value_line.value() == 1
    chart.highlight(-1)
    assert not chart._value_line.isVisible()


def test_overlay_has_one_curve_per_sample(qtbot, run: Run):
    overlay = OverlayChart()
    qtbot.addWidget(overlay)
    overlay.set_samples(run.samples)
    curves = overlay.curves()
    assert len(curves) == len(run.samples)
    for curve, sample in zip(curves, run.samples, strict=True):
        assert curve.getData()[1] == pytest.approx(np.cumsum(sample.logprobs))
    overlay.set_emphasis(2)
    assert curves[2].opts["pen"].widthF() > curves[0].opts["pen"].widthF()
    overlay.set_samples(run.samples[:3])
    assert len(overlay.curves()) == 3


def test_streaming_refreshes_the_panels_in_view_and_the_rest_when_scrolled_to(
        view: BestOfNView, tiny_engine: Engine, qtbot):
    view.resize(700, 500)  # room for the first row of panels only
    view.show()
    qtbot.waitExposed(view)
    run = tiny_engine.start_run("hello", replace(PARAMS, max_tokens=12), n=8)
    view.set_run(run)
    events = list(tiny_engine.generate(run))
    for event in events[:-10]:  # still streaming
        run.add(event)
    assert not run.finished
    view.refresh()
    qtbot.waitUntil(lambda: not view._trickle.isActive())
    seen = [not p.visibleRegion().isEmpty() for p in view.panels()]
    assert any(seen) and not all(seen)
    for panel, sample, shown in zip(view.panels(), run.samples, seen, strict=True):
        assert (panel.text() == sample.text) == shown or not sample.text
    view.scroll.verticalScrollBar().setValue(view.scroll.verticalScrollBar().maximum())
    qtbot.waitUntil(lambda: not view._trickle.isActive())
    for panel, sample in zip(view.panels(), run.samples, strict=True):
        if not panel.visibleRegion().isEmpty():
            assert panel.text() == sample.text

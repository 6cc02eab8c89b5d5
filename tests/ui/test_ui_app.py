"""The whole window against the tiny model: load, generate, stop, best-of-N, errors, settings.

pytest-qt fails a test when an exception escapes into a Qt callback, so every test here also
checks that none does.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import tiny_models
from PySide6.QtWidgets import QLabel

from playground.sampling import SamplingParams
from playground.ui.main_window import MainWindow

TIMEOUT = 60_000


def wait_idle(qtbot, window: MainWindow) -> None:
    """Until the run on screen is finished and drawn."""
    qtbot.waitUntil(lambda: window.run is not None and window.run.finished
                    and window.prompt_panel.generate_button.isEnabled(), timeout=TIMEOUT)


def generate(qtbot, window: MainWindow, params: SamplingParams, n: int = 1,
             prompt: str = "once upon a time") -> None:
    window.prompt_panel.set_values(prompt, chat=False, system="")
    window.sampling_panel.set_params(params)
    window.sampling_panel.seed_lock.setChecked(params.seed is not None)
    window.sampling_panel.n.setValue(n)
    window.generate()
    wait_idle(qtbot, window)


def test_load_and_generate(qtbot, window: MainWindow):
    assert window.model.info.architecture == "llama"
    assert "llama" in window.model_panel.card.text()
    generate(qtbot, window, SamplingParams(seed=3, max_tokens=12))
    sample = window.run.samples[0]
    assert window.views.currentWidget() is window.single_view
    assert window.single_view.text.toPlainText() == "".join(t.text for t in sample.tokens)
    assert window.sampling_panel.seed.value() == 3
    assert "tok/s" in window.speed_label.text()


def test_the_status_bar_shows_the_decode_threads(qtbot, window: MainWindow):
    generate(qtbot, window, SamplingParams(seed=3, max_tokens=12), n=2)
    engine = window.engine._engine  # idle now: nothing runs on the engine's thread
    count = engine.decode_threads
    assert count in engine.threads.counts
    assert window.threads_label.text() == f"{count} thread{'s' if count > 1 else ''}"


def test_a_load_leaves_what_is_alive_out_of_later_collections_and_frees_older_cycles(
        qtbot, window: MainWindow, tmp_path: Path):
    # A full collection during a run blocks the window for as long as it walks: after a load,
    # it walks only what came after (everything alive then is frozen).
    assert len(gc.get_objects()) * 5 < gc.get_freeze_count()

    class Node:
        pass

    cycle = Node()
    cycle.itself = cycle
    freed = weakref.ref(cycle)
    other = tiny_models.write_tiny_llama(tmp_path / "other.gguf")
    window.load_model(other, 0)
    qtbot.waitUntil(lambda: Path(window.model.info.path) == other.resolve(), timeout=TIMEOUT)
    del cycle  # frozen by that load: garbage now, which a collection would not look at
    gc.collect()
    assert freed() is not None
    window.load_model(tiny_models.write_tiny_llama(tmp_path / "third.gguf"), 0)
    qtbot.waitUntil(lambda: Path(window.model.info.path).name == "third.gguf", timeout=TIMEOUT)
    assert freed() is None  # the next load thawed it, and collected it


def test_unlocked_seed_is_drawn_and_shown(qtbot, window: MainWindow):
    generate(qtbot, window, SamplingParams(seed=None, max_tokens=4))
    assert window.sampling_panel.seed.value() == window.run.params.seed


def test_stop_cancels_before_the_next_token(qtbot, window: MainWindow, tmp_path: Path):
    long_context = tiny_models.write_tiny_llama(tmp_path / "long.gguf", n_ctx=8192)
    window.load_model(long_context, 0)
    qtbot.waitUntil(lambda: window.model.info.context_length == 8192, timeout=TIMEOUT)
    window.prompt_panel.set_values("the", chat=False, system="")
    window.sampling_panel.set_params(SamplingParams(seed=1, max_tokens=4000, temperature=1.0))
    window.sampling_panel.n.setValue(1)
    window.generate()
    qtbot.waitUntil(lambda: window.run is not None and len(window.run.samples[0].tokens) >= 5,
                    timeout=TIMEOUT)
    window.prompt_panel.stop_button.click()
    wait_idle(qtbot, window)
    sample = window.run.samples[0]
    assert sample.finish_reason == "cancelled"
    assert len(sample.tokens) < 4000
    assert "Stopped" in window.statusBar().currentMessage()


def test_best_of_n_ranking_reorders_panels(qtbot, window: MainWindow):
    params = SamplingParams(seed=4, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                            max_tokens=12, stop=("e",))
    generate(qtbot, window, params, n=6, prompt="hello")
    view = window.best_of_n_view
    assert window.views.currentWidget() is view
    run = window.run
    orders = {}
    for method in ("mean-logprob", "sum-logprob"):
        view.set_method(method)
        orders[method] = view.panel_order()
        assert orders[method] == list(run.rank(method).order)
    assert orders["mean-logprob"] != orders["sum-logprob"]


def test_hover_popup_shows_the_token(qtbot, window: MainWindow):
    generate(qtbot, window, SamplingParams(seed=5, max_tokens=10))
    token = window.run.samples[0].tokens[2]
    window.single_view.text.show_popup_for(2)
    popup = window.single_view.text.popup
    assert popup.isVisible() and popup.window() is window  # inside the window, not a new one
    shown = " ".join(label.text() for label in popup.findChildren(QLabel))
    assert f"{token.prob:.1%}".rstrip("0").rstrip(".") in shown or f"{token.prob:.1%}" in shown
    assert str(token.rank) in shown


def test_bad_model_file_shows_a_message_and_the_app_keeps_working(qtbot, window: MainWindow,
                                                                  tmp_path: Path,
                                                                  tiny_model_path: Path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"definitely not a model")
    window.load_model(bad, 0)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=TIMEOUT)
    message = window.banner.label.text()
    assert "broken.gguf" in message and "not a GGUF" in message and "\n" not in message
    assert window.model is not None  # the previous model is still loaded and usable
    generate(qtbot, window, SamplingParams(seed=2, max_tokens=6))
    assert window.run.samples[0].tokens


def test_a_prompt_too_long_is_a_message(qtbot, window: MainWindow):
    window.prompt_panel.set_values("the " * 600, chat=False, system="")
    window.sampling_panel.set_params(SamplingParams(seed=1, max_tokens=8))
    window.generate()
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=TIMEOUT)
    assert "context holds" in window.banner.label.text()
    assert window.prompt_panel.generate_button.isEnabled()


def test_settings_are_kept_between_sessions(qtbot, window: MainWindow, tiny_model_path: Path):
    window.prompt_panel.set_values("remember me", chat=False, system="")
    window.sampling_panel.set_params(SamplingParams(temperature=0.3, top_k=7, seed=11))
    window.sampling_panel.seed_lock.setChecked(True)
    window.sampling_panel.n.setValue(3)
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.prompt_panel.prompt() == "remember me"
    assert not again.prompt_panel.chat()
    params = again.sampling_panel.params()
    assert (params.temperature, params.top_k, params.seed) == (0.3, 7, 11)
    assert again.sampling_panel.n.value() == 3
    assert again.model_panel.chosen_path() == tiny_model_path
    again.shut_down()


def test_every_run_is_in_the_history_with_its_ranking(qtbot, window: MainWindow):
    generate(qtbot, window, SamplingParams(seed=8, max_tokens=6), n=3, prompt="hello")
    window.best_of_n_view.set_method("sum-logprob")
    stored = window.store.load(window.run_id)
    assert [s.text for s in stored.samples] == [s.text for s in window.run.samples]
    assert [[t.id for t in s.tokens] for s in stored.samples] == \
        [[t.id for t in s.tokens] for s in window.run.samples]
    assert {"mean-logprob", "sum-logprob"} <= set(stored.rankings)
    assert window.store.summary(window.run_id).status == "finished"


def test_reopen_and_rerun_from_the_history(qtbot, window: MainWindow):
    generate(qtbot, window, SamplingParams(seed=12, max_tokens=8), n=1, prompt="the sea")
    run_id, text = window.run_id, window.run.samples[0].text
    generate(qtbot, window, SamplingParams(seed=13, max_tokens=8), n=2, prompt="other")
    window.show_stored_run(window.store.load(run_id), run_id)
    assert window.views.currentWidget() is window.single_view
    assert window.single_view.text.toPlainText().startswith(text)
    window.prepare_rerun(window.store.duplicate(run_id))
    assert window.prompt_panel.prompt() == "the sea"
    assert window.sampling_panel.params().seed == 12
    window.generate()
    wait_idle(qtbot, window)
    assert window.run.samples[0].text == text  # the same seed and settings: the same text


def test_reward_scores_rerank_and_compare(qtbot, window: MainWindow):
    generate(qtbot, window, SamplingParams(seed=21, max_tokens=8, temperature=1.0), n=4,
             prompt="hello")
    window.reward_panel.score_button.click()  # the judge: the loaded tiny model
    qtbot.waitUntil(lambda: all("reward" in s.scores for s in window.run.samples),
                    timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.ranking_strip.isVisible(), timeout=TIMEOUT)
    view = window.best_of_n_view
    view.set_method("reward")
    assert view.panel_order() == list(window.run.rank("reward").order)
    assert "Kendall" in window.ranking_strip.label.text()
    assert "judge" in window.reward_panel.info.text().lower()
    stored = window.store.load(window.run_id)
    assert [s.scores["reward"] for s in stored.samples] == \
        pytest.approx([s.scores["reward"] for s in window.run.samples])
    # The scores are stored with the model that gave them: the judge, on the loaded model.
    judge = stored.reward_models["reward"]
    assert judge.kind == "judge"
    assert Path(judge.file).resolve() == Path(window.model.info.path)
    assert judge.rubric and len(judge.sha256) == 64

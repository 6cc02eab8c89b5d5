"""The Demos tab inside the real window, against the tiny model: scenarios, running through the
worker thread, errors, stopping, and presentation mode."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt

from playground.demos import DEMOS
from playground.demos.tokens import load_parallel
from playground.sampling import SamplingParams
from playground.ui.engine_thread import Job
from playground.ui.main_window import MainWindow

TIMEOUT = 60_000


@pytest.fixture
def window(window: MainWindow):
    """The window of conftest.py, on the Demos tab."""
    window.tabs.setCurrentWidget(window.demos_tab)
    return window


def run_and_wait(qtbot, tab) -> None:
    tab.run_current()
    assert tab.running
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT)


def test_every_demonstration_has_a_view_and_a_scenario(window: MainWindow):
    tab = window.demos_tab
    assert set(tab.views) == set(DEMOS)
    for demo in DEMOS:
        tab.demo_list.setCurrentRow(list(DEMOS).index(demo))
        assert tab.view.demo == demo and tab.scenario.demo == demo
        assert tab.title.text() == tab.scenario.title
        assert tab.explanation.text() == tab.scenario.explanation
        assert len(tab.view.sections()) == len(tab.scenario.steps)


def test_a_run_goes_through_the_worker_and_shows_its_result(qtbot, window: MainWindow):
    tab = window.demos_tab
    tab.choose("tokens-weather")
    tab.view.sentence.setCurrentIndex(3)
    run_and_wait(qtbot, tab)
    assert not tab.message.isVisible()
    result = tab.view.result
    assert [c.text for c in result.counts] == [s[3] for s in load_parallel().values()]
    assert result.model == window.model.info.name


def test_a_failing_job_is_one_line_and_the_app_goes_on(qtbot, window: MainWindow, tmp_path):
    tab = window.demos_tab
    tab.choose("base-vs-instruct-capital")
    missing = tmp_path / "missing.gguf"
    tab.view.base_model.set_path(missing)
    tab.run_current()
    qtbot.waitUntil(lambda: not tab.running and tab.message.isVisible(), timeout=TIMEOUT)
    assert "\n" not in tab.message.text() and "missing.gguf" in tab.message.text()
    tab.choose("tokens-weather")
    run_and_wait(qtbot, tab)
    assert not tab.message.isVisible() and tab.view.result is not None


def test_stop_cancels_a_running_demonstration(qtbot, window: MainWindow):
    tab = window.demos_tab
    tab.choose("inconsistency-scientist")
    view = tab.view
    view.inputs.max_tokens.setValue(400)  # the tiny model's context is 512
    tab.run_current()
    qtbot.waitUntil(lambda: tab.progress.maximum() > 0, timeout=TIMEOUT)  # it has started
    tab.stop_button.click()
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT)
    assert tab.message.text() == "Cancelled."


def test_presentation_mode_reveals_one_step_at_a_time(qtbot, window: MainWindow):
    tab = window.demos_tab
    window.tabs.setCurrentWidget(tab)
    tab.choose("tokens-weather")
    tab.set_presenting(True)
    assert not window.sidebar.isVisible() and not window.tabs.tabBar().isVisible()
    assert not tab.demo_list.isVisible() and tab.next_button.isVisible()
    sections = tab.view.sections()
    assert [s.isVisible() for s in sections] == [True] + [False] * (len(sections) - 1)
    qtbot.keyClick(tab, Qt.Key.Key_Right)  # leaving the inputs runs the demonstration
    assert tab.running
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT)
    assert [s.isVisible() for s in sections][:2] == [True, True]
    assert tab.step_label.text().startswith(f"2/{len(sections)}")
    for _ in sections:
        qtbot.keyClick(tab, Qt.Key.Key_Right)
    assert all(s.isVisible() for s in sections) and not tab.next_button.isEnabled()
    qtbot.keyClick(tab, Qt.Key.Key_Left)
    assert not sections[-1].isVisible()
    qtbot.keyClick(tab, Qt.Key.Key_Escape)
    assert not tab.presenting
    assert all(s.isVisible() for s in sections)
    assert not window.sidebar.isVisible()  # it belongs to the Generate tab
    window.tabs.setCurrentWidget(window.generate_tab)
    assert window.sidebar.isVisible()


def test_an_alternative_clicked_after_a_run_branches_it(qtbot, window: MainWindow):
    window.tabs.setCurrentWidget(window.generate_tab)
    window.prompt_panel.set_values("once upon a time", chat=False, system="")
    window.sampling_panel.set_params(SamplingParams(seed=4, max_tokens=8))
    window.sampling_panel.seed_lock.setChecked(True)
    window.sampling_panel.n.setValue(1)
    window.generate()
    qtbot.waitUntil(lambda: window.run is not None and window.run.finished, timeout=TIMEOUT)
    original = window.run.samples[0].tokens
    alternative = next(a.id for a in original[3].top if a.id != original[3].id)
    window.single_view.text.alternative_clicked.emit(3, alternative)
    tab = window.demos_tab
    assert window.tabs.currentWidget() is tab and tab.view.demo == "hallucination"
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT)
    root, branch = tab.view.branches
    assert root.sample is window.run.samples[0] and (branch.parent, branch.position) == (0, 3)
    assert [t.id for t in branch.sample.tokens[:4]] == [t.id for t in original[:3]] + [
        alternative]
    assert tab.view.current_branch == 1


def test_stop_reaches_a_job_still_queued_and_no_other(qtbot, window: MainWindow):
    """Stop pressed while the demonstration waits behind other work stops it, not the work."""
    release, outcome = threading.Event(), []

    def busy(_engine, _progress, cancel) -> None:
        while not release.wait(0.01):
            if cancel():
                outcome.append("busy work cancelled")
                return
        outcome.append("busy work done")

    window.engine.job(Job("busy", busy)).start()
    tab = window.demos_tab
    tab.choose("tokens-weather")
    tab.run_current()
    tab.stop_button.click()
    release.set()
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT)
    assert outcome == ["busy work done"]
    assert tab.message.text() == "Cancelled." and tab.view.result is None

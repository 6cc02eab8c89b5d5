"""`playground screenshot OUT_DIR`: the real app, short real runs, saved as PNGs.

Settings go to a temporary data dir so that the images never depend on (or change) the user's
own settings. The Generate runs use fixed seeds, so those images repeat on one machine; the
demonstrations run their scenarios as a user would, with fresh seeds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSize, Qt, QTimer
from PySide6.QtWidgets import QWidget

from playground import paths
from playground.demos import DEMOS
from playground.errors import PlaygroundError
from playground.sampling import SamplingParams
from playground.ui.app import application
from playground.ui.main_window import MainWindow
from playground.ui.tasks import Task

TIMEOUT_MS = 600_000
"""Long enough for the slowest step (the hallucination demonstration, with its judge) on a busy
2-core CPU."""
MULTILINGUAL_PROMPT = "आज मौसम अच्छा है। 今天天气很好。 الطقس جميل اليوم. Say it in English."


def wait_for(task: Task | None, timeout_ms: int = TIMEOUT_MS) -> None:
    """Run the event loop until the window's `task` has finished (and the window's own slots,
    connected first, have run); raise if it failed, was cancelled or took too long."""
    if task is None:
        raise PlaygroundError("the app started no task")
    loop, failure = QEventLoop(), []
    task.finished.connect(lambda _result: loop.quit())
    task.errored.connect(lambda message: (failure.append(message), loop.quit()))
    task.cancelled.connect(lambda: (failure.append("cancelled"), loop.quit()))
    QTimer.singleShot(timeout_ms, loop.quit)
    if not task.ended:
        loop.exec()
    if not task.ended:
        raise PlaygroundError("timed out waiting for the app")
    if failure:
        raise PlaygroundError(failure[0])


def run_and_wait(window: MainWindow, prompt: str, params: SamplingParams, n: int) -> None:
    window.prompt_panel.set_values(prompt, chat=True, system="")
    window.sampling_panel.set_params(params)
    window.sampling_panel.seed_lock.setChecked(True)
    window.sampling_panel.n.setValue(n)
    window.generate()
    wait_for(window.generate_task)
    window._redraw()


def save_screenshots(out_dir: Path, size: tuple[int, int]) -> list[Path]:
    """The PNGs of a window that fills a screen of `size` (as far as its frame lets it): the
    demonstrations are as tall as their content, so that each image shows all of it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory() as data:
        previous = os.environ.get(paths.DATA_DIR_ENV)
        os.environ[paths.DATA_DIR_ENV] = data
        window: MainWindow | None = None
        try:
            app = application()
            window = MainWindow()
            window.resize(*size)
            window.show()
            window.start()
            wait_for(window.load_task)

            base = SamplingParams(temperature=0.8, seed=7, max_tokens=60)
            run_and_wait(window, "Why is the sky blue? Answer in two sentences.", base, 1)
            tokens = window.run.samples[0].tokens
            # Open the popup on the least likely token: the interesting one.
            unsure = min(range(len(tokens)), key=lambda i: tokens[i].logprob)
            window.single_view.text.show_popup_for(unsure)
            app.processEvents()
            saved.append(_save(window, out_dir / "single_run.png"))
            window.single_view.text.hide_popup()
            saved.append(_lab_screenshot(app, window, unsure, out_dir))

            run_and_wait(window, "What is 17 + 25? Answer with a number.",
                         replace(base, seed=1, temperature=0.9, max_tokens=40), 4)
            window.best_of_n_view.set_method("mean-logprob")
            app.processEvents()
            saved.append(_save(window, out_dir / "best_of_n.png"))

            window.reward_panel.score_button.click()  # the LLM judge: the loaded model
            wait_for(window.score_task)
            app.processEvents()
            window.best_of_n_view.set_method("reward")
            app.processEvents()
            saved.append(_save(window, out_dir / "reward.png"))

            # A person's label (they prefer the judge's last choice), and how each ranking
            # agrees with it.
            last = window.run.rank("reward").order[-1]
            window.prefer_sample(last)
            window.tabs.setCurrentWidget(window.agreement_view)
            wait_for(window.agreement_view.task)
            app.processEvents()
            saved.append(_save(window, out_dir / "agreement.png"))
            window.tabs.setCurrentWidget(window.reward_tab)
            app.processEvents()
            saved.append(_save(window, out_dir / "reward_training.png"))

            # The History lists every run so far; this one's prompt is in three more scripts.
            run_and_wait(window, MULTILINGUAL_PROMPT, replace(base, max_tokens=16), 1)
            window.tabs.setCurrentWidget(window.history_panel)
            app.processEvents()
            saved.append(_save(window, out_dir / "history.png"))

            saved += _demo_screenshots(app, window, out_dir, window.size())
        finally:
            if window is not None:
                window.close()  # stops the worker thread, also after an error
            if previous is None:
                os.environ.pop(paths.DATA_DIR_ENV, None)
            else:
                os.environ[paths.DATA_DIR_ENV] = previous
    return saved


def _lab_screenshot(app, window: MainWindow, index: int, out_dir: Path) -> Path:
    """The sampling lab on token `index`, hotter than the run, so that the orders differ, and
    with a word typed in its box."""
    window.show_distribution(window.single_view.text.moment(index))
    lab = window.distribution_view
    wait_for(lab.task)
    lab.sliders["temperature"].setValue(160)
    lab.candidate.setText(" light")
    lab.score_candidate()
    wait_for(lab.probe_task)
    app.processEvents()
    path = _save(lab, out_dir / "sampling_lab.png")
    lab.close()
    return path


def _demo_screenshots(app, window: MainWindow, out_dir: Path, size: QSize) -> list[Path]:
    """Each demonstration's first scenario, run in the Demos tab; then presentation mode."""
    tab = window.demos_tab
    window.tabs.setCurrentWidget(tab)
    saved = []
    for demo in DEMOS:
        _run_demo(tab, demo)
        # As tall as the demonstration, so that the image shows all of it.
        chrome = window.height() - tab.stack.height()
        window.resize(size.width(), max(size.height(), chrome + tab.view.sizeHint().height() + 8))
        app.processEvents()
        saved.append(_save(tab, out_dir / f"demo_{demo.replace('-', '_')}.png"))
    _run_demo(tab, "tokens")
    tab.set_presenting(True)
    window.setWindowState(Qt.WindowState.WindowNoState)  # not the offscreen "screen" size
    window.resize(size)
    tab.set_step(2)
    app.processEvents()  # lays out the revealed section
    app.processEvents()  # then scrolls to it
    saved.append(_save(window, out_dir / "presentation.png"))
    tab.set_presenting(False)
    return saved


def _run_demo(tab, demo: str) -> None:
    """Run the demonstration's first scenario in the Demos tab and wait for its result."""
    tab.choose(next(s.name for s in tab.scenarios if s.demo == demo))
    tab.run_current()
    _wait_until(lambda: not tab.running)
    if tab.message.isVisible():
        raise PlaygroundError(f"{demo}: {tab.message.text()}")


def _wait_until(done: Callable[[], bool], timeout_ms: int = TIMEOUT_MS) -> None:
    """Run the event loop until `done()` holds; raise after the timeout."""
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: done() and loop.quit())
    timer.start(50)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    timer.stop()
    if not done():
        raise PlaygroundError("timed out waiting for the app")


def _save(window: QWidget, path: Path) -> Path:
    if not window.grab().save(str(path)):
        raise PlaygroundError(f"could not write {path}")
    return path

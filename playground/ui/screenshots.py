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

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, SignalInstance, Slot
from PySide6.QtWidgets import QWidget

from playground import paths
from playground.demos import DEMOS
from playground.errors import PlaygroundError
from playground.sampling import SamplingParams
from playground.ui.app import application
from playground.ui.main_window import MainWindow

SIZE = (1440, 900)
TIMEOUT_MS = 180_000


class _Waiter(QObject):
    """Receives the worker's signals on the GUI thread, after the window's own slots."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = QEventLoop()
        self.outcome: list[str] = []

    @Slot(object)
    def succeeded(self, _result: object) -> None:
        self.outcome.append("")
        self.loop.quit()

    @Slot(str)
    def failed(self, message: str) -> None:
        self.outcome.append(message)
        self.loop.quit()


def wait_for(done: SignalInstance, failed: SignalInstance, timeout_ms: int = TIMEOUT_MS) -> None:
    """Run the event loop until `done` fires; raise on `failed` or after the timeout."""
    waiter = _Waiter()
    done.connect(waiter.succeeded)
    failed.connect(waiter.failed)
    QTimer.singleShot(timeout_ms, waiter.loop.quit)
    waiter.loop.exec()
    done.disconnect(waiter.succeeded)
    failed.disconnect(waiter.failed)
    if not waiter.outcome:
        raise PlaygroundError("timed out waiting for the app")
    if waiter.outcome[0]:
        raise PlaygroundError(waiter.outcome[0])


def run_and_wait(window: MainWindow, prompt: str, params: SamplingParams, n: int) -> None:
    window.prompt_panel.set_values(prompt, chat=True, system="")
    window.sampling_panel.set_params(params)
    window.sampling_panel.seed_lock.setChecked(True)
    window.sampling_panel.n.setValue(n)
    window.generate()
    wait_for(window.worker.run_finished, window.worker.errored)
    window._redraw()


def save_screenshots(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory() as data:
        previous = os.environ.get(paths.DATA_DIR_ENV)
        os.environ[paths.DATA_DIR_ENV] = data
        try:
            app = application()
            window = MainWindow()
            window.resize(*SIZE)
            window.show()
            window.start()
            wait_for(window.worker.loaded, window.worker.errored)

            base = SamplingParams(temperature=0.8, seed=7, max_tokens=60)
            run_and_wait(window, "Why is the sky blue? Answer in two sentences.", base, 1)
            tokens = window.run.samples[0].tokens
            # Open the popup on the least likely token: the interesting one.
            unsure = min(range(len(tokens)), key=lambda i: tokens[i].logprob)
            window.single_view.text.show_popup_for(unsure)
            app.processEvents()
            saved.append(_save(window, out_dir / "single_run.png"))
            window.single_view.text.hide_popup()

            run_and_wait(window, "What is 17 + 25? Answer with a number.",
                         replace(base, seed=1, temperature=0.9, max_tokens=40), 4)
            window.best_of_n_view.set_method("mean-logprob")
            app.processEvents()
            saved.append(_save(window, out_dir / "best_of_n.png"))

            window.reward_panel.score_button.click()  # the LLM judge: the loaded model
            wait_for(window.worker.scored, window.worker.errored)
            app.processEvents()
            window.best_of_n_view.set_method("reward")
            app.processEvents()
            saved.append(_save(window, out_dir / "reward.png"))

            saved += _demo_screenshots(app, window, out_dir)
            window.close()
        finally:
            if previous is None:
                os.environ.pop(paths.DATA_DIR_ENV, None)
            else:
                os.environ[paths.DATA_DIR_ENV] = previous
    return saved


def _demo_screenshots(app, window: MainWindow, out_dir: Path) -> list[Path]:
    """Each demonstration's first scenario, run in the Demos tab; then presentation mode."""
    tab = window.demos_tab
    window.tabs.setCurrentWidget(tab)
    saved = []
    for demo in DEMOS:
        _run_demo(tab, demo)
        # As tall as the demonstration, so that the image shows all of it.
        chrome = window.height() - tab.stack.height()
        window.resize(SIZE[0], max(SIZE[1], chrome + tab.view.sizeHint().height() + 8))
        app.processEvents()
        saved.append(_save(tab, out_dir / f"demo_{demo.replace('-', '_')}.png"))
    _run_demo(tab, "tokens")
    tab.set_presenting(True)
    window.setWindowState(Qt.WindowState.WindowNoState)  # not the offscreen "screen" size
    window.resize(*SIZE)
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

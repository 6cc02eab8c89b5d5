"""The GUI while streaming best-of-8: the longest event-loop stall (a QTimer probe) and the
generation speed inside the app against the same run headless, in one process; and the same
speed ratio for one stream of 256 tokens, whose view has a chart of its own.

Target: no stall over 50 ms, so the window never feels frozen, and the app at 0.9x or more of
headless. The first round builds the N sample panels; `BENCH_ROUNDS` more (default 3) follow,
headless and in the app in turn, and the median ratios are printed. Each round runs best-of-N
in the app twice: once for its speed, once with the stall probe.
"""

from __future__ import annotations

import os
import statistics
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PLAYGROUND_DATA_DIR", tempfile.mkdtemp())

from PySide6.QtCore import QElapsedTimer, QTimer

from playground.engine import load
from playground.sampling import SamplingParams
from playground.ui.app import application
from playground.ui.main_window import MainWindow
from playground.ui.screenshots import run_and_wait, wait_for

N, LENGTH = int(os.environ.get("BENCH_N", "8")), 96
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PROMPT = "Write a short poem about the sea."
PARAMS = SamplingParams(temperature=0.9, seed=5, max_tokens=LENGTH)
SINGLE = SamplingParams(temperature=0.9, seed=5, max_tokens=256, stop=())


class StallProbe:
    """A 5 ms timer; the longest gap between its ticks is how long the event loop was blocked."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.longest = 0.0
        self.last = 0

    def start(self) -> None:
        self.longest, self.last = 0.0, 0
        self.clock.start()
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        if self.last:
            self.longest = max(self.longest, (now - self.last) / 1e6 - 5)
        self.last = now


def main() -> None:
    _app = application()  # keep the QApplication alive
    window = MainWindow()
    window.resize(1440, 900)
    window.show()
    window.start()
    wait_for(window.load_task)
    probe = StallProbe()
    headless = load()
    ratios, stalls, single_ratios = [], [], []
    for round_ in range(1 + ROUNDS):
        headless_rate = headless.run(PROMPT, PARAMS, n=N).stats.tokens_per_second
        # The speed is measured without the probe, whose ticks 200 times a second wake the
        # GUI thread (a cost of the measurement, not of the app); the stall with it.
        run_and_wait(window, PROMPT, PARAMS, N)
        app_rate = window.run.stats.tokens_per_second
        probe.start()
        run_and_wait(window, PROMPT, PARAMS, N)
        probe.timer.stop()
        single_headless = headless.run(PROMPT, SINGLE, n=1).stats.tokens_per_second
        run_and_wait(window, PROMPT, SINGLE, 1)
        single_app = window.run.stats.tokens_per_second
        print(f"round {round_ + 1}: longest event-loop stall {probe.longest:.1f} ms; "
              f"in the app {app_rate:.1f} tok/s, headless {headless_rate:.1f} "
              f"tok/s (ratio {app_rate / headless_rate:.2f}); one stream {single_app:.1f} "
              f"vs {single_headless:.1f} tok/s ({single_app / single_headless:.2f})", flush=True)
        if round_:
            ratios.append(app_rate / headless_rate)
            stalls.append(probe.longest)
            single_ratios.append(single_app / single_headless)
    print(f"after the first round: longest stall {max(stalls):.1f} ms (target < 50), "
          f"in the app {statistics.median(ratios):.2f}x headless, median of {ROUNDS} "
          f"(target >= 0.9); one stream in the app {statistics.median(single_ratios):.2f}x "
          f"headless")
    window.close()


if __name__ == "__main__":
    main()

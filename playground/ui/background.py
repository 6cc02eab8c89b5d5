"""Run a Python callable off the GUI thread, with progress, cooperative cancel and one-line errors.

    task = BackgroundTask(lambda progress, cancel: export_stored(..., progress=progress,
                                                                 cancel=cancel))
    task.progressed.connect(bar.set_progress)
    task.finished.connect(show_result)
    task.errored.connect(show_error)
    task.start()
    ...
    task.cancel()  # sets a flag that the callable polls through `cancel()`

The callable runs on a QThreadPool thread and gets two arguments: `progress(done, total)` to
report, and `cancel()` which returns True once `BackgroundTask.cancel` was called. It must not
touch widgets. Every signal is emitted on the GUI thread (the task's own thread), so slots may
touch widgets: the pool thread only emits on a private relay, queued to the task.

Exactly one of `finished(result)`, `errored(message)` or `cancelled()` ends every task. A
`PlaygroundError` becomes its own message (or `cancelled` when the task was cancelled: that is
how cooperative cancellation surfaces, e.g. ExportCancelled); anything else is a bug, reported as
"Unexpected error: Type: message" with the traceback on stderr.

Running tasks are kept referenced here until they end, so a caller may drop its reference.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

from playground.errors import PlaygroundError

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]
Work = Callable[[Progress, Cancelled], Any]

PROGRESS_INTERVAL = 0.05
"""Seconds between two progress signals: a callable may report thousands of steps a second."""
MAX_THREADS = 4

_pool: QThreadPool | None = None
_active: set[BackgroundTask] = set()


def thread_pool() -> QThreadPool:
    """The pool the tasks run on: a private one, so they never wait behind Qt's own work."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(MAX_THREADS)
    return _pool


def active_tasks() -> list[BackgroundTask]:
    return list(_active)


def stop_all(timeout_ms: int = 10_000) -> bool:
    """Ask every running task to stop and wait for them (connect to `aboutToQuit`).

    Returns False when some task was still running after `timeout_ms`."""
    for task in list(_active):
        task.cancel()
    return _pool is None or _pool.waitForDone(timeout_ms)


class _Relay(QObject):
    """Created on the GUI thread, emitted on from the pool thread: its signals arrive queued."""

    progressed = Signal(int, int)
    ended = Signal(str, object)  # "finished" | "errored" | "cancelled", result or message


class _Runnable(QRunnable):
    def __init__(self, work: Work, relay: _Relay, cancel: threading.Event) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._work = work
        self._relay = relay  # keeps it alive until the last emit
        self._cancel = cancel
        self._last_progress = 0.0

    def run(self) -> None:
        try:
            result = self._work(self._progress, self._cancel.is_set)
        except PlaygroundError as error:
            if self._cancel.is_set():
                self._relay.ended.emit("cancelled", str(error))
            else:
                self._relay.ended.emit("errored", str(error))
        except Exception as error:
            traceback.print_exc()  # for developers; the user gets one line
            self._relay.ended.emit("errored", f"Unexpected error: {type(error).__name__}: {error}")
        else:
            self._relay.ended.emit("finished", result)

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            self._relay.progressed.emit(int(done), int(total))


class BackgroundTask(QObject):
    """One call of `work(progress, cancel)` on a pool thread. See the module docstring."""

    progressed = Signal(int, int)  # done, total
    finished = Signal(object)  # what the callable returned
    errored = Signal(str)  # a one-line message for the user
    cancelled = Signal()

    def __init__(self, work: Work, name: str = "") -> None:
        # No parent: a task outlives the widget that started it if need be (the widget's own
        # connections go away with it), and a parent's deletion must never delete a task whose
        # thread is still running.
        super().__init__()
        self.setObjectName(name or getattr(work, "__name__", "task"))
        self._work = work
        self._cancel = threading.Event()
        self._running = False
        self._done = False
        self._relay = _Relay()
        self._relay.progressed.connect(self._relay_progress, Qt.ConnectionType.QueuedConnection)
        self._relay.ended.connect(self._relay_end, Qt.ConnectionType.QueuedConnection)

    def start(self) -> BackgroundTask:
        if self._running or self._done:
            raise RuntimeError("a BackgroundTask runs once")
        self._running = True
        _active.add(self)
        thread_pool().start(_Runnable(self._work, self._relay, self._cancel))
        return self

    def cancel(self) -> None:
        """Ask the callable to stop at its next `cancel()` check; safe from any thread."""
        self._cancel.set()

    def is_running(self) -> bool:
        return self._running

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot(int, int)
    def _relay_progress(self, done: int, total: int) -> None:
        if self._running:
            self.progressed.emit(done, total)

    @Slot(str, object)
    def _relay_end(self, outcome: str, payload: object) -> None:
        self._running = False
        self._done = True
        _active.discard(self)
        if outcome == "finished":
            self.finished.emit(payload)
        elif outcome == "cancelled":
            self.cancelled.emit()
        else:
            self.errored.emit(str(payload))

"""The one way the GUI runs work off its thread: a `Task` with its own signals, on an `Executor`.

    task = Task(work, "export")              # or EngineThread.load(...) etc. for llama.cpp
    task.progressed.connect(bar.set_progress)
    task.finished.connect(show_result)
    task.errored.connect(show_error)
    task.cancelled.connect(show_cancelled)
    task.start()
    ...
    task.cancel()                            # this task, running or queued, and no other

`work(progress, cancelled)` runs on one of the executor's threads and must not touch widgets.
`progress(done, total)` reports; `cancelled()` turns True once `Task.cancel` was called. A
cancel is cooperative: the work polls `cancelled()` and decides how to end (a generation ends
its samples as "cancelled" and returns them; an export raises errors.Cancelled). When `work` is a
generator function, what it yields reaches `yielded` and what it returns reaches `finished`
(superqt's GeneratorWorker is the model).

Every signal is emitted on the GUI thread, so slots may touch widgets: the work's thread only
emits on a private relay, queued to the task, which lives on the GUI thread.

    started()             the work began (not for a task cancelled while it was queued)
    yielded(list)         what the work yielded since the last batch
    progressed(int, int)  done, total
    finished(object)      what the work returned
    errored(str)          a one-line message for the user
    cancelled()           the task was cancelled before it began, or its work stopped by
                          raising a PlaygroundError after `cancel` (e.g. errors.Cancelled)

Exactly one of finished, errored and cancelled ends every task, after its other signals.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

from playground.errors import PlaygroundError

Progress = Callable[[int, int], None]
IsCancelled = Callable[[], bool]
"""Polled by the work: True once its task was cancelled."""
Work = Callable[[Progress, IsCancelled], Any]

REPORT_INTERVAL = 0.03
"""Seconds between two `yielded` (or two `progressed`) signals of a task. A generation yields a
few hundred events a second with N samples, and a signal per event would flood the GUI's queue;
30 ms batches keep it responsive and still look continuous."""
BACKGROUND_THREADS = 4
"""Threads for work that is not llama.cpp's (reading or writing the history, files): a long
export must not hold up opening a run."""


def message_for(error: Exception) -> str:
    """The one line the user sees for a task's error. A PlaygroundError is caused by input and
    says what to do; anything else is a bug: its traceback goes to stderr, for developers."""
    if isinstance(error, PlaygroundError):
        return str(error)
    traceback.print_exception(error)
    return f"Unexpected error: {type(error).__name__}: {error}"


class _Relay(QObject):
    """Created on the GUI thread, emitted on from the work's thread: its signals arrive queued."""

    started = Signal()
    yielded = Signal(object)
    progressed = Signal(int, int)
    ended = Signal(str, object)  # "finished" | "errored" | "cancelled", result or message


class _Reporter:
    """Passes what the work reports on to the relay, each kind at most once per interval (the
    one place that throttles), and the last of it before the task ends."""

    def __init__(self, relay: _Relay) -> None:
        self._relay = relay
        self._batch: list[Any] = []
        self._last_batch = time.monotonic()
        self._last_progress = 0.0

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last_progress >= REPORT_INTERVAL:
            self._last_progress = now
            self._relay.progressed.emit(int(done), int(total))

    def drain(self, generator: Generator[Any, None, Any]) -> Any:
        """Run the generator to its end, batching what it yields; return what it returns."""
        while True:
            try:
                item = next(generator)
            except StopIteration as stop:
                return stop.value
            self._batch.append(item)
            now = time.monotonic()
            if now - self._last_batch >= REPORT_INTERVAL:
                self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self._batch:
            self._relay.yielded.emit(self._batch)
            self._batch = []
        self._last_batch = time.monotonic() if now is None else now


class Task(QObject):
    """One run of `work` on an executor's thread; see the module docstring."""

    started = Signal()
    yielded = Signal(object)  # a list
    progressed = Signal(int, int)  # done, total
    finished = Signal(object)  # what the work returned
    errored = Signal(str)  # a one-line message for the user
    cancelled = Signal()

    def __init__(self, work: Work, name: str = "", executor: Executor | None = None) -> None:
        # No parent: a task outlives the widget that started it if need be (the widget's own
        # connections go away with it), and a parent's deletion must never delete a task whose
        # work is still running. Its executor keeps it referenced until it ends.
        super().__init__()
        self.setObjectName(name or getattr(work, "__name__", "task"))
        self._work = work
        self._executor = executor
        """Where it runs; None until started means the shared background executor."""
        self._cancel = threading.Event()
        self._started = False
        self._ended = False
        self._relay = _Relay()
        queued = Qt.ConnectionType.QueuedConnection
        self._relay.started.connect(self.started, queued)
        self._relay.yielded.connect(self.yielded, queued)
        self._relay.progressed.connect(self.progressed, queued)
        self._relay.ended.connect(self._relay_ended, queued)

    def start(self) -> Task:
        """Queue the task on its executor (call it once, on the GUI thread)."""
        if self._started:
            raise RuntimeError("a Task runs once")
        self._started = True
        self._executor = self._executor or background()
        self._executor.submit(self)
        return self

    def cancel(self) -> None:
        """Ask this task's work to stop at its next `cancelled()` check, or not to begin if it
        is still queued. Safe from any thread, and harmless once the task has ended."""
        self._cancel.set()

    @property
    def ended(self) -> bool:
        """Whether finished, errored or cancelled was emitted."""
        return self._ended

    def run(self) -> None:
        """Run the work here and now, reporting through the relay: an executor's thread calls
        it, and nothing else should."""
        if self._cancel.is_set():
            self._relay.ended.emit("cancelled", None)
            return
        self._relay.started.emit()
        reporter = _Reporter(self._relay)
        try:
            result = self._work(reporter.progress, self._cancel.is_set)
            if inspect.isgenerator(result):
                result = reporter.drain(result)
        except Exception as error:
            reporter.flush()
            if isinstance(error, PlaygroundError) and self._cancel.is_set():
                self._relay.ended.emit("cancelled", None)
            else:
                self._relay.ended.emit("errored", message_for(error))
        else:
            reporter.flush()
            self._relay.ended.emit("finished", result)

    @Slot(str, object)
    def _relay_ended(self, outcome: str, payload: object) -> None:
        self._ended = True
        assert self._executor is not None  # it was started
        self._executor.forget(self)
        if outcome == "finished":
            self.finished.emit(payload)
        elif outcome == "cancelled":
            self.cancelled.emit()
        else:
            self.errored.emit(str(payload))


class Executor:
    """Long-lived threads that run tasks one at a time each, in the order they were started.

    The threads start with the executor and wait for work; `shut_down` cancels every task not
    ended yet and waits for the threads to end. `on_exit` runs last on an executor of one thread,
    on that thread (the engine's frees llama.cpp there). The threads are daemons, so an executor
    that was never shut down does not keep the process alive.
    """

    def __init__(self, name: str, threads: int = 1,
                 on_exit: Callable[[], None] | None = None) -> None:
        if on_exit is not None and threads != 1:
            raise ValueError("on_exit needs an executor of one thread")
        self.name = name
        self._on_exit = on_exit
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._tasks: set[Task] = set()
        """Started and not ended yet (used on the GUI thread only): kept alive, and cancelled
        by `shut_down`."""
        self._threads = [
            threading.Thread(target=self._serve, daemon=True,
                             name=name if threads == 1 else f"{name} {i + 1}")
            for i in range(threads)
        ]
        self._open = True
        for thread in self._threads:
            thread.start()

    def submit(self, task: Task) -> None:
        if not self._open:
            raise RuntimeError(f"the {self.name} executor is shut down")
        self._tasks.add(task)
        self._queue.put(task)

    def forget(self, task: Task) -> None:
        self._tasks.discard(task)

    def shut_down(self, timeout_s: float | None = None) -> bool:
        """Cancel every task that has not ended, let the threads finish what they run, and wait
        for them (at most `timeout_s`). Returns False when a thread was still running."""
        if self._open:
            self._open = False
            for task in list(self._tasks):
                task.cancel()
            for _ in self._threads:
                self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout_s)
        return not any(thread.is_alive() for thread in self._threads)

    def _serve(self) -> None:
        try:
            while (task := self._queue.get()) is not None:
                task.run()
        finally:
            if self._on_exit is not None:
                self._on_exit()


_background: Executor | None = None


def background() -> Executor:
    """The executor for work that is not llama.cpp's, made when first needed."""
    global _background
    if _background is None:
        _background = Executor("background", BACKGROUND_THREADS)
    return _background


def shut_down_background(timeout_s: float | None = None) -> bool:
    """Cancel the background tasks and wait for them (the app does it on quit); the next
    background task starts a new executor."""
    global _background
    executor, _background = _background, None
    return executor is None or executor.shut_down(timeout_s)

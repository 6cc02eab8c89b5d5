"""The one thread that owns llama.cpp.

llama.cpp contexts are not thread-safe, so every engine call happens on a single long-lived
QThread; the GUI talks to it only through queued signals, and results come back the same way.
Long calls are cooperative: every request carries its own `stop` event, which the engine polls
between tokens (and the load progress callback). Setting it stops that request, running or still
queued, and no other: a Stop pressed while the request waits behind other work is not lost.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from playground.engine import BackendInfo, backend_info, load
from playground.engine_api import Engine
from playground.errors import PlaygroundError
from playground.gguf_file import ModelInfo
from playground.records import Run, RunEnd, SampleEnd
from playground.reward import RewardModel, open_reward_model
from playground.sampling import SamplingParams
from playground.store import RunWriter, Store

# Events cross to the GUI thread in small batches: one signal per token would flood its queue
# at a few hundred tokens a second with N samples.
EMIT_INTERVAL = 0.03


@dataclass(frozen=True)
class LoadRequest:
    path: Path | None
    """None loads the embedded default model."""
    n_gpu_layers: int = 0
    n_ctx: int | None = None
    stop: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set it (from any thread) to stop this request."""


@dataclass(frozen=True)
class LoadedModel:
    info: ModelInfo
    backend: BackendInfo
    layers_offloaded: int
    memory_bytes: int
    n_ctx: int


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    params: SamplingParams
    n: int
    chat: bool
    system: str | None
    stop: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set it (from any thread) to stop this request."""


@dataclass(frozen=True)
class ScoreRequest:
    reward_model: str
    """'judge' (the loaded generator answers the rubric) or the path of a reward GGUF."""
    rubric: str | None
    prompt: str
    responses: tuple[str, ...]
    stop: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set it (from any thread) to stop this request."""


@dataclass(frozen=True)
class Job:
    """Any other work on the engine's thread: `work(engine, progress, cancel)` returns the
    result (the demonstrations, see `playground.scenarios`). `engine` is the loaded model, or
    None when `needs_engine` is False."""

    name: str
    work: Callable[[Engine | None, Callable[[int, int], None], Callable[[], bool]], Any]
    needs_engine: bool = True
    stop: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set it (from any thread) to stop this request."""


class EngineWorker(QObject):
    """Lives on its own thread; see the module docstring."""

    load_progressed = Signal(float)
    loaded = Signal(object)  # LoadedModel
    run_started = Signal(object, object)  # Run (for the GUI to fill), its id in the history
    yielded = Signal(object)  # list of Events
    run_finished = Signal(object)  # RunStats
    errored = Signal(str)  # a one-line message for the user
    reward_loaded = Signal(str, int)  # the reward model's description, its memory in bytes
    reward_progressed = Signal(int, int)
    # One score per response (NaN where cancelled), and the RewardModelIdentity that gave them
    # (hashing its file happens here, off the GUI thread).
    scored = Signal(object, object)
    job_progressed = Signal(object, int, int)  # the Job, done, total
    job_ended = Signal(object, object, str)  # the Job, its result (None if it failed), and
    # the one-line reason it failed ("" if it did not)

    def __init__(self, store: Store | None = None) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self.store = store
        """Where runs are recorded as they stream; None records nothing."""
        self.reward: RewardModel | None = None
        self._reward_key: tuple[str, str | None] | None = None

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        def progress(fraction: float) -> bool:
            self.load_progressed.emit(fraction)
            return not request.stop.is_set()

        with self._reporting_errors(request.stop):
            engine = load(request.path, n_gpu_layers=request.n_gpu_layers, n_ctx=request.n_ctx,
                          progress=progress)
            self._close_reward()  # a judge borrows the old engine
            if self.engine is not None:
                self.engine.close()
            self.engine = engine
            self.loaded.emit(LoadedModel(engine.info, backend_info(), engine.layers_offloaded,
                                         engine.memory_bytes, engine.n_ctx))

    @Slot(object)
    def generate(self, request: GenerateRequest) -> None:
        if self.engine is None:
            self.errored.emit("Load a model first.")
            return
        with self._reporting_errors(request.stop):
            run = self.engine.start_run(request.prompt, request.params, request.n,
                                        chat=request.chat, system=request.system)
            writer = self._record(run)
            self.run_started.emit(run, writer.run_id if writer else None)
            batch: list = []
            last = time.monotonic()
            for event in self.engine.generate(run, cancel=request.stop.is_set):
                if writer:
                    writer.add(event)
                batch.append(event)
                now = time.monotonic()
                if now - last >= EMIT_INTERVAL or isinstance(event, SampleEnd | RunEnd):
                    self.yielded.emit(batch)
                    batch, last = [], now
                if isinstance(event, RunEnd):
                    self.run_finished.emit(event.stats)

    @Slot(object)
    def score(self, request: ScoreRequest) -> None:
        """Score responses with the reward model asked for, opening it (once) if needed."""
        with self._reporting_errors(request.stop):
            key = (request.reward_model, request.rubric)
            if self.reward is None or self._reward_key != key:
                self._close_reward()
                if request.reward_model == "judge" and self.engine is None:
                    raise PlaygroundError("Load a model first: the judge is the loaded model.")
                self.reward = open_reward_model(request.reward_model, judge_engine=self.engine,
                                                rubric=request.rubric)
                self._reward_key = key
                owned = 0 if request.reward_model == "judge" else self.reward.memory_bytes
                self.reward_loaded.emit(self.reward.describe(), owned)
            scores = self.reward.score(
                request.prompt, request.responses, cancel=request.stop.is_set,
                progress=lambda done, total: self.reward_progressed.emit(done, total))
            self.scored.emit(scores, self.reward.identity())

    @Slot(object)
    def run_job(self, job: Job) -> None:
        """Run `job` and end it with `job_ended`: its result, or the one-line reason it failed
        ("Cancelled." when it was stopped). Failures are not sent to `errored`: the view that
        asked for the job shows them."""
        result, message = None, ""
        try:
            if job.stop.is_set():
                raise PlaygroundError("stopped before it started")
            if job.needs_engine and self.engine is None:
                raise PlaygroundError("Load a model first.")
            result = job.work(self.engine,
                              lambda done, total: self.job_progressed.emit(job, done, total),
                              job.stop.is_set)
        except Exception as error:
            message = self._message(error, job.stop)
        self.job_ended.emit(job, result, message)

    def _close_reward(self) -> None:
        if self.reward is not None:
            self.reward.close()
        self.reward, self._reward_key = None, None

    def _record(self, run: Run) -> RunWriter | None:
        """Start recording the run; a history that fails is reported, and generation goes on."""
        if self.store is None:
            return None
        try:
            return self.store.begin(run)
        except PlaygroundError as error:
            self.errored.emit(f"This run is not saved: {error}")
            return None

    @Slot()
    def shut_down(self) -> None:
        """Free llama.cpp on the thread that owns it, then end the thread."""
        self._close_reward()
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        QThread.currentThread().quit()

    @contextmanager
    def _reporting_errors(self, stop: threading.Event) -> Iterator[None]:
        """Every error of a worker call ends as one `errored` message; the thread lives on."""
        try:
            yield
        except Exception as error:
            self.errored.emit(self._message(error, stop))

    @staticmethod
    def _message(error: Exception, stop: threading.Event) -> str:
        if isinstance(error, PlaygroundError):
            return "Cancelled." if stop.is_set() else str(error)
        traceback.print_exc()  # a bug: for developers; the user gets one line
        return f"Unexpected error: {type(error).__name__}: {error}"


def start_worker(parent: QObject, store: Store | None) -> tuple[EngineWorker, QThread]:
    """A worker on its own thread, stopped cleanly when `parent` goes away."""
    thread = QThread(parent)
    thread.setObjectName("llama.cpp")
    worker = EngineWorker(store)
    worker.moveToThread(thread)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return worker, thread

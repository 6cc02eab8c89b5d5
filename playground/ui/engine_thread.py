"""The one thread that owns llama.cpp, and the tasks that run on it.

llama.cpp is not thread-safe: a model, its contexts, batches and samplers must never be used by
two threads at once, and neither llama.cpp nor llama-cpp-python locks them. So every call into
it (loading, generating, scoring, and the demonstrations, which may load models of their own)
runs as a `Task` on one long-lived thread, one task at a time, in the order they were started.
A long task only delays the next; nothing can touch the engine between two steps of a run; and
the engine is freed on the thread that used it. The state below is only touched there.

Each method returns a Task not started yet: connect its signals, then `start()` it. Stop cancels
exactly that task, running or still queued.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from playground.engine import BackendInfo, backend_info, load
from playground.engine_api import Capabilities, Engine
from playground.errors import PlaygroundError
from playground.gguf_file import ModelInfo
from playground.records import Event, RewardModelIdentity, Run, RunEnd, RunStats
from playground.remote import RemoteEngine
from playground.reward import Scorer, open_reward_model
from playground.sampling import SamplingParams, top_indices
from playground.sampling_lab import CandidateScore, Moment, entropy, probe, raw_logprobs
from playground.store import RunWriter, Store
from playground.ui.tasks import Executor, IsCancelled, Progress, Task


@dataclass(frozen=True)
class LoadedModel:
    """What a load task returns."""

    info: ModelInfo
    backend: BackendInfo
    layers_offloaded: int
    memory_bytes: int
    n_ctx: int
    capabilities: Capabilities
    notices: tuple[str, ...] = ()
    """What the user should know about a server (an ignored seed, a buffering proxy)."""


@dataclass(frozen=True)
class StartedRun:
    """What a generation yields first; its events follow, for the GUI to fill `run` with."""

    run: Run
    run_id: int | None
    """Its id in the history; None when it is not saved."""
    notice: str = ""
    """Why it is not saved, when recording it failed (generation goes on)."""


@dataclass(frozen=True)
class Notice:
    """What a server's run showed that the user should know (a proxy buffering its stream)."""

    text: str


@dataclass(frozen=True)
class DecodeThreads:
    """What a generation yields when the engine's decode thread count changes (engines that
    choose none, such as a server, yield none)."""

    count: int


@dataclass(frozen=True)
class Scored:
    """What a scoring returns: one score per response (NaN where cancelled), and the model."""

    scores: list[float]
    identity: RewardModelIdentity


@dataclass(frozen=True)
class RewardOpened:
    """What a scoring yields when it opens a reward model (once per model and rubric)."""

    description: str
    memory_bytes: int
    """Memory the reward model holds itself: 0 for the judge, which is the loaded model."""


@dataclass(frozen=True)
class Distribution:
    """What a distribution task returns: the row, and the tokens to draw as bars."""

    logits: np.ndarray
    """The raw logits over the whole vocabulary."""
    shown: tuple[int, ...]
    """The most likely tokens, most likely first, then the drawn token if it is not among them."""
    texts: dict[int, str]
    """The text of each shown token."""
    logprobs: np.ndarray
    """The raw distribution, float64 (`sampling_lab.raw_logprobs`)."""
    entropy: float
    """Its entropy, in nats."""


@dataclass(frozen=True)
class Job:
    """A demonstration's work: `work(engine, progress, cancelled)` returns its result (see
    `playground.demos`). `engine` is the loaded model, or None when `needs_engine` is
    False (the job loads its own)."""

    name: str
    work: Callable[[Engine | None, Progress, IsCancelled], Any]
    needs_engine: bool = True


class EngineThread:
    """The loaded engine, the open reward model and the thread they live on."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        """Where runs are recorded as they stream; None records nothing."""
        self._engine: Engine | None = None
        self._reward: Scorer | None = None
        self._reward_key: tuple[str, str | None] | None = None
        self._executor = Executor("llama.cpp", on_exit=self._close)

    def shut_down(self) -> None:
        """Cancel every task, let the running one stop, free llama.cpp on its thread, and wait."""
        self._executor.shut_down()

    def _task(self, name: str, work: Callable[[Progress, IsCancelled], Any]) -> Task:
        return Task(work, name, self._executor)

    # -- tasks -----------------------------------------------------------------------------

    def load(self, path: Path | None, n_gpu_layers: int = 0, n_ctx: int | None = None) -> Task:
        """Load a model (None: the embedded one) in place of the loaded one; returns a
        LoadedModel. Progress is in thousandths."""

        def work(progress: Progress, cancelled: IsCancelled) -> LoadedModel:
            def step(fraction: float) -> bool:
                progress(round(fraction * 1000), 1000)
                return not cancelled()

            return self._replace(load(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx,
                                      progress=step))

        return self._task("load a model", work)

    def connect(self, url: str, api_key: str | None) -> Task:
        """Use the model a server serves in place of the loaded one; returns a LoadedModel.
        Connecting probes what the server can give (a few short requests)."""

        def work(_progress: Progress, _cancelled: IsCancelled) -> LoadedModel:
            return self._replace(RemoteEngine(url, api_key))

        return self._task("connect to a server", work)

    def _replace(self, engine: Engine) -> LoadedModel:
        self._close_reward()  # a judge borrows the old engine
        if self._engine is not None:
            self._engine.close()
        self._engine = engine
        return LoadedModel(engine.info, backend_info(), engine.layers_offloaded,
                           engine.memory_bytes, engine.n_ctx, engine.capabilities,
                           tuple(engine.notices))

    def generate(self, prompt: str, params: SamplingParams, n: int, *, chat: bool,
                 system: str | None) -> Task:
        """Generate a run with the loaded model, recording it: yields a StartedRun, then the
        run's events; returns its RunStats. Cancelled, the samples end as 'cancelled'."""

        def work(_progress: Progress, cancelled: IsCancelled) -> Iterator[StartedRun | Event]:
            engine = self._loaded()
            run = engine.start_run(prompt, params, n, chat=chat, system=system)
            writer, notice = self._record(run)
            stats: RunStats | None = None
            said = len(engine.notices)
            # The writer flushes what it holds even when generation fails half-way.
            shown = None
            with writer or contextlib.nullcontext():
                yield StartedRun(run, writer.run_id if writer else None, notice)
                for event in engine.generate(run, cancel=cancelled):
                    if writer:
                        writer.add(event)
                    if isinstance(event, RunEnd):
                        stats = event.stats
                    yield event
                    # Read here, on the engine's thread, and sent with the events.
                    threads = engine.decode_threads
                    if threads is not None and threads != shown:
                        shown = threads
                        yield DecodeThreads(threads)
            for found in engine.notices[said:]:
                yield Notice(found)
            return stats

        return self._task("generate", work)

    def score(self, reward_model: str, rubric: str | None, prompt: str,
              responses: tuple[str, ...]) -> Task:
        """Score responses with a reward model ('judge': the loaded model answers `rubric`; else
        the path of a reward GGUF), opening it once; returns one score per response (NaN where
        cancelled) and the model's identity. Yields a RewardOpened when it opens one."""

        def work(progress: Progress, cancelled: IsCancelled) -> Iterator[RewardOpened]:
            key = (reward_model, rubric)
            if self._reward is None or self._reward_key != key:
                self._close_reward()
                if reward_model == "judge" and self._engine is None:
                    raise PlaygroundError("Load a model first: the judge is the loaded model.")
                self._reward = open_reward_model(reward_model, judge_engine=self._engine,
                                                 rubric=rubric)
                self._reward_key = key
                owned = 0 if reward_model == "judge" else self._reward.memory_bytes
                yield RewardOpened(self._reward.describe(), owned)
            scores = self._reward.score(prompt, responses, cancel=cancelled, progress=progress)
            # The identity hashes the model file the first time: here, off the GUI thread.
            return Scored(scores, self._reward.identity())

        return self._task("score", work)

    def distribution(self, moment: Moment, top: int) -> Task:
        """The full logits row at `moment`, by re-decoding its context with the loaded model
        (which must be the model that drew it); returns a Distribution."""

        def work(_progress: Progress, _cancelled: IsCancelled) -> Distribution:
            engine = self._model_of(moment)
            logits = engine.next_logits(list(moment.context))
            ids = [int(i) for i in top_indices(logits, top)]
            if moment.drawn.id not in ids:
                ids.append(moment.drawn.id)
            texts = {i: engine.token_bytes(i).decode("utf-8", errors="replace") for i in ids}
            logprobs = raw_logprobs(logits)
            return Distribution(logits, tuple(ids), texts, logprobs, entropy(np.exp(logprobs)))

        return self._task("decode the prefix", work)

    def probe(self, moment: Moment, candidates: list[str]) -> Task:
        """Score continuations of `moment`'s context (see `sampling_lab.probe`); returns a
        list of CandidateScore."""

        def work(_progress: Progress, _cancelled: IsCancelled) -> list[CandidateScore]:
            return probe(self._model_of(moment), list(moment.context), candidates)

        return self._task("score a candidate", work)

    def job(self, job: Job) -> Task:
        """Run a demonstration's job; returns its result."""

        def work(progress: Progress, cancelled: IsCancelled) -> Any:
            return job.work(self._loaded() if job.needs_engine else None, progress, cancelled)

        return self._task(job.name, work)

    # -- on the thread ---------------------------------------------------------------------

    def _loaded(self) -> Engine:
        if self._engine is None:
            raise PlaygroundError("Load a model first.")
        return self._engine

    def _model_of(self, moment: Moment) -> Engine:
        engine = self._loaded()
        if Path(engine.path).resolve() != Path(moment.model_path).resolve():
            raise PlaygroundError(f"That token came from {Path(moment.model_path).name}; load "
                                  "that model to see its distribution.")
        return engine

    def _record(self, run: Run) -> tuple[RunWriter | None, str]:
        """Start recording the run; a history that fails is reported, and generation goes on."""
        if self.store is None:
            return None, ""
        try:
            return self.store.begin(run), ""
        except PlaygroundError as error:
            return None, f"This run is not saved: {error}"

    def _close_reward(self) -> None:
        if self._reward is not None:
            self._reward.close()
        self._reward, self._reward_key = None, None

    def _close(self) -> None:
        self._close_reward()
        if self._engine is not None:
            self._engine.close()
            self._engine = None

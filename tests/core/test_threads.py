"""The decode thread count: it never changes a token or a logprob, and the chooser that picks it
finds the fastest count, follows the load, and keeps its probing cheap.

The chooser is driven here by a made-up step timer (seconds per token by thread count, which the
test changes to play a change of load), the way the engine drives it: a probe step over its
limit is aborted and done again with the current count."""

from __future__ import annotations

import llama_cpp
import pytest

from playground.engine_api import Engine
from playground.records import TokenRecord
from playground.sampling import SamplingParams
from playground.threads import PROBE_FEWER_EVERY, ThreadChooser, candidate_counts

# Seconds per token by thread count, as measured on the 2-core machine (bench/threads.py and
# the figures): idle, two threads are faster; beside a busy process, much slower.
IDLE = {1: 0.011, 2: 0.0065}
LOADED = {1: 0.012, 2: 0.2}


class Simulation:
    """The engine's step loop against a made-up timer: `cost(threads)` is a step's seconds per
    token; a probe step that would pass its limit is aborted there and done again."""

    def __init__(self, chooser: ThreadChooser, tokens: int = 1, kind: str | None = None) -> None:
        self.chooser = chooser
        self.tokens = tokens
        self.kind = kind
        self.seconds = 0.0
        self.steps_by_count: dict[int, int] = {}

    def run(self, steps: int, cost: dict[int, float]) -> float:
        """Decode `steps` steps; returns the seconds they took."""
        before = self.seconds
        for _ in range(steps):
            while True:
                threads, limit = self.chooser.plan(self.tokens, self.kind)
                seconds = cost[threads] * self.tokens
                self.steps_by_count[threads] = self.steps_by_count.get(threads, 0) + 1
                aborted = limit is not None and seconds > limit
                if aborted:
                    seconds = limit
                self.seconds += seconds
                self.chooser.measured(self.tokens, threads, seconds, self.kind, aborted=aborted)
                if not aborted:
                    break
        return self.seconds - before


def test_pinned_never_changes() -> None:
    sim = Simulation(ThreadChooser((2,)))
    sim.run(500, LOADED)
    assert sim.steps_by_count == {2: 500}


@pytest.mark.parametrize("tokens", [1, 8])
def test_it_picks_the_fastest_count(tokens: int) -> None:
    chooser = ThreadChooser((1, 2), start=1)
    sim = Simulation(chooser, tokens)
    sim.run(50, IDLE)
    assert chooser.current("batched" if tokens > 1 else "single") == 2
    # Once found, probing the slower count costs a few per cent (BUDGET is 2%), and fewer
    # threads are probed only every PROBE_FEWER_EVERY seconds: load that comes is a surprise.
    probes = sim.steps_by_count[1]
    spent = sim.run(2000, IDLE)
    best = 2000 * tokens * IDLE[2]
    assert best < spent < best * 1.05
    assert sim.steps_by_count[1] - probes <= spent / PROBE_FEWER_EVERY + 1


def test_it_picks_the_fastest_of_many_counts_by_climbing() -> None:
    cost = {1: 0.020, 2: 0.012, 4: 0.008, 8: 0.007, 16: 0.010}
    chooser = ThreadChooser(candidate_counts(16), start=8)
    assert chooser.counts == (1, 2, 4, 8, 16)
    Simulation(chooser).run(300, cost)
    assert chooser.current("single") == 8
    chooser = ThreadChooser(candidate_counts(16), start=1)
    Simulation(chooser).run(300, cost)
    assert chooser.current("single") == 8


@pytest.mark.parametrize("idle_steps", [100, 137, 174])
def test_it_follows_the_load_as_it_comes_and_goes(idle_steps: int) -> None:
    chooser = ThreadChooser((1, 2), start=1)
    sim = Simulation(chooser)
    sim.run(idle_steps, IDLE)
    assert chooser.current("single") == 2
    # A busy process starts: within half a second of decoding, one thread again (a step far
    # slower than expected makes a probe due; the regular probes alone take up to a second).
    sim.run(1, LOADED)
    spent = 0.0
    while chooser.current("single") != 1:
        spent += sim.run(1, LOADED)
        assert spent < 0.5
    # While it lasts, the cost stays near the one-thread figure.
    spent = sim.run(2000, LOADED)
    assert spent < 2000 * LOADED[1] * 1.05
    # It ends: two threads again within a second of decoding.
    spent = 0.0
    while chooser.current("single") != 2:
        spent += sim.run(1, IDLE)
        assert spent < 1.0


def test_probing_never_falls_far_below_one_thread() -> None:
    """Under heavy load (two threads 40x slower), no stretch of steps is much slower than one
    thread alone: each probe step is cut off at ABORT times the current count's time."""
    heavy = {1: 0.012, 2: 0.5}
    chooser = ThreadChooser((1, 2), start=1)
    sim = Simulation(chooser)
    worst = 0.0
    for _ in range(3000):
        worst = max(worst, sim.run(1, heavy))
    assert worst <= 3 * heavy[1]  # a probe step cut off, then the step again
    assert sim.seconds < 3000 * heavy[1] * 1.05


def test_single_and_batched_steps_are_chosen_apart() -> None:
    """Batching makes the second thread pay on a 2-core machine even when single steps do not:
    the chooser keeps one count for each."""
    chooser = ThreadChooser((1, 2), start=1)
    single, batched = Simulation(chooser, 1), Simulation(chooser, 8)
    for _ in range(200):
        single.run(1, {1: 0.011, 2: 0.014})
        batched.run(1, {1: 0.010, 2: 0.006})
    assert (chooser.current("single"), chooser.current("batched")) == (1, 2)


def test_prompts_are_chosen_apart() -> None:
    chooser = ThreadChooser((1, 2), start=1)
    prompt = Simulation(chooser, 30, kind="prompt")
    prompt.run(20, {1: 0.002, 2: 0.001})  # reading a prompt pays for the second thread
    assert (chooser.current("prompt"), chooser.current("single")) == (2, 1)


def test_at_the_fewest_threads_a_slow_step_probes_nothing_more() -> None:
    """Load that slows one thread slows two more: a surprise at one thread is no reason to
    probe (each probe would cost its limit), so the budget alone paces the probes."""
    chooser = ThreadChooser((1, 2), start=1)
    sim = Simulation(chooser)
    sim.run(100, LOADED)
    before = sim.steps_by_count[2]
    for i in range(3000):  # every tenth step is slowed 3x by the load
        sim.run(1, {1: LOADED[1] * (3 if i % 10 == 0 else 1), 2: LOADED[2]})
    # The budget's pace: one cut-off probe step (18 ms) per 0.9 s of decoding, about 1 step in
    # 75; probing at every slow step would be 1 in 10.
    assert sim.steps_by_count[2] - before < 60


def test_candidate_counts() -> None:
    assert candidate_counts(1) == (1,)
    assert candidate_counts(2) == (1, 2)
    assert candidate_counts(6) == (1, 2, 3, 4, 6)
    assert candidate_counts(32) == (1, 2, 4, 8, 16, 32)


# -- the real model: the thread count changes no token and no logprob ---------------------------


class Restless(ThreadChooser):
    """Changes the thread count every step, and aborts every third step right away (a probe cut
    off), so that a run goes through every path the adaptive choice can take."""

    def __init__(self) -> None:
        super().__init__((1, 2))
        self.plans = 0
        self.aborted = 0
        self.used: set[int] = set()

    def plan(self, tokens: int, kind: str | None = None) -> tuple[int, float | None]:
        self.plans += 1
        threads = 1 + self.plans % 2
        self.used.add(threads)
        return threads, 0.0 if self.plans % 3 == 0 else None

    def measured(self, tokens: int, threads: int, seconds: float, kind: str | None = None, *,
                 aborted: bool = False) -> None:
        self.aborted += aborted


def _records(engine: Engine, n: int) -> list[tuple[TokenRecord, ...]]:
    params = SamplingParams(temperature=0.9, seed=11, max_tokens=16, top_logprobs=5)
    run = engine.run("Tell me about the moon.", params, n=n)
    return [tuple(sample.tokens) for sample in run.samples]


@pytest.mark.parametrize("n", [1, 4])
def test_the_thread_count_changes_no_token_and_no_logprob(embedded_engine: Engine,
                                                          n: int) -> None:
    restless = Restless()
    choosers = {"1 thread": ThreadChooser((1,)), "2 threads": ThreadChooser((2,)),
                "adaptive": ThreadChooser((1, 2)), "restless": restless}
    kept = embedded_engine.threads
    results = {}
    try:
        for name, chooser in choosers.items():
            embedded_engine.threads = chooser
            results[name] = _records(embedded_engine, n)
    finally:
        embedded_engine.threads = kept
    assert restless.used == {1, 2} and restless.aborted > 3
    expected = results["1 thread"]
    assert all(len(tokens) == 16 for tokens in expected)
    for name, got in results.items():
        # TokenRecord equality covers the ids, bytes, logprobs, ranks, entropies and
        # alternatives, compared exactly (floats with ==).
        assert got == expected, name


def test_an_aborted_decode_of_several_micro_batches_can_be_decoded_again(
        tiny_model_path, monkeypatch) -> None:
    """llama.cpp drops the cells of the micro-batch it aborts, not of those before it: a prompt
    chunk of three micro-batches aborted in its second left 32 cells behind, and decoding the
    same entries again failed ("inconsistent sequence positions"). The abort check reads a
    clock that here ticks once per graph node, so the abort falls inside a later micro-batch."""
    import playground.handles as handles
    from playground.engine import load

    engine = load(tiny_model_path, n_threads=1)
    ctx = handles.LlamaContext(engine.model, n_ctx=256, n_batch=256, n_ubatch=handles.MICRO_BATCH,
                               n_seq_max=2, n_threads=1, n_threads_batch=1)
    batch = handles.LlamaBatch(256)
    entries = [(5 + i % 50, i, 0, i == 79) for i in range(80)]  # three micro-batches

    class Ticks:
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 1.0
            return self.now

    ticks = Ticks()
    monkeypatch.setattr(handles, "time", ticks)
    nodes = 0
    while True:  # the fewest ticks that still abort, i.e. in the last micro-batch
        nodes += 10
        ticks.now = 0.0
        if batch.decode(ctx, entries, within=nodes):
            break
        aborted_at = nodes
        assert llama_cpp.llama_memory_seq_pos_max(ctx.memory, 0) == -1
    monkeypatch.undo()
    ctx.clear()
    ticks.now = 0.0
    monkeypatch.setattr(handles, "time", ticks)
    assert not batch.decode(ctx, entries, within=aborted_at)
    monkeypatch.undo()
    assert llama_cpp.llama_memory_seq_pos_max(ctx.memory, 0) == -1
    assert ctx.cells_decoded == 0  # no cell is in use: the bound is where it was
    assert batch.decode(ctx, entries)  # the same entries again, now whole
    assert llama_cpp.llama_memory_seq_pos_max(ctx.memory, 0) == 79
    assert ctx.cells_decoded == 80

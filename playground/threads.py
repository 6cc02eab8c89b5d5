"""How many threads a decode step gets: the count that is fastest now, measured as it runs.

On an idle 2-core machine two decode threads are almost twice as fast as one, but beside one
busy process the same two threads fall to half the speed of one, and under heavier load to a
twentieth: ggml's workers spin at every barrier, and a spinning thread that shares a core with
the thread it waits for wastes that core's time. No fixed rule is right on both, so the engine
measures its own steps and keeps the count whose steps are fastest now.

`ThreadChooser` keeps, for each kind of step (one token, a batch of one token per sample, or a
chunk of the prompt), an estimate of the seconds per token of each count it has tried. It runs
the best count, and now and then probes a neighbouring count for a few steps:
- a probe step may take at most `ABORT` times what the current count would take: the engine
  aborts a step that runs longer (llama.cpp's abort callback) and decodes it again with the
  current count, so a probe costs at most about `ABORT` - 1 steps, however slow its count is;
- the next probe waits until the time lost in probing is at most `BUDGET` of the decode time
  since, so that under load, where every probe of more threads is slow, probing stays cheap;
- a step of the current count far slower than its estimate (load came) makes a probe of fewer
  threads due now, back-off or not: spinning threads are what load slows most. At the fewest
  threads a slow step is just the load, and probing more would only cost more;
- a count with more threads than the current one is probed again `PROBE_EVERY` after it was
  last measured (load may have gone), one with fewer only `PROBE_FEWER_EVERY` after: load that
  comes shows itself as a surprise, and on an idle machine those probes are pure loss.

Time is the decode time that the chooser was told about, not the wall clock: it is what a probe
costs, and tests can drive the chooser with made-up step times.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field

ABORT = 1.5
"""A probe step may take this many times the current count's estimate; the engine aborts it
there (and decodes it again), and a probe step slower than that ends the probe."""
BUDGET = 0.02
"""The most of the decode time that probing may lose (after each probe, the next one waits)."""
PROBE_STEPS = 3
"""Steps a probe runs when none of them is too slow."""
PROBE_EVERY = 1.0
"""Seconds of decoding after a count with more threads than the current one was last measured
before it is probed again (when probes cost nothing: see BUDGET)."""
PROBE_FEWER_EVERY = 5.0
"""The same for a count with fewer threads, which a surprise (see SURPRISE) probes at once."""
SURPRISE = 2.0
"""A step of the current count this many times slower than its estimate makes a probe of fewer
threads due."""
SMOOTHING = 0.2
"""Weight of the newest step in the current count's running estimate."""
SWITCH = 0.97
"""A probed count replaces the current one when its steps take less than this times as long."""


def candidate_counts(cores: int | None = None) -> tuple[int, ...]:
    """The thread counts worth trying: 1, 2, 4, ... and half and all of the logical cores."""
    cores = max(1, cores or os.cpu_count() or 1)
    counts = {cores, max(1, cores // 2)}
    power = 1
    while power < cores:
        counts.add(power)
        power *= 2
    return tuple(sorted(counts))


def kind_of(tokens: int) -> str:
    """The kind of a generation step of that many samples' tokens."""
    return "single" if tokens == 1 else "batched"


@dataclass
class _Kind:
    """What is known about one kind of step."""

    current: int
    estimates: dict[int, float] = field(default_factory=dict)
    """Seconds per token, by thread count: a running mean for the current count, the probe's
    median for the others."""
    probed_at: dict[int, float] = field(default_factory=dict)
    """When (in decode time) each count was last measured."""
    probing: int | None = None
    probe_times: list[float] = field(default_factory=list)
    """Seconds per token of the running probe's steps."""
    lost: float = 0.0
    """Seconds the running probe's steps took beyond what the current count would have."""
    not_before: float = 0.0
    """Decode time before which no probe may start (the budget's back-off)."""
    steps: int = 0
    """Steps of the current count since it became current."""
    surprised: bool = False
    """Whether a step of the current count was far slower than expected (see SURPRISE)."""


class ThreadChooser:
    """Picks the thread count of each decode step from the measured times of earlier steps.

    `counts` are the counts it may use (one count: pinned, nothing is probed); every kind
    starts at `start`. Prompts too: a first prompt read with every thread beside a busy process
    took seconds, and probing finds the faster count from the third chunk or prompt on. Call
    `plan(tokens, kind)` before a step and `measured(tokens, threads, seconds, kind)` after it;
    the kind is "single" or "batched" (the default, by the tokens) or "prompt".
    """

    def __init__(self, counts: tuple[int, ...], start: int | None = None) -> None:
        if not counts:
            raise ValueError("no thread counts to choose from")
        self.counts = tuple(sorted(set(counts)))
        start = self.counts[0] if start is None else start
        if start not in self.counts:
            raise ValueError(f"the start count {start} is not among {self.counts}")
        self._kinds = {name: _Kind(start) for name in ("single", "batched", "prompt")}
        self._elapsed = 0.0
        self.last = start
        """The count held fastest for the kind of the latest step (what the GUI shows; a
        probe's count is not shown)."""

    @property
    def pinned(self) -> bool:
        return len(self.counts) == 1

    def current(self, kind: str) -> int:
        """The count held fastest now for steps of that kind."""
        return self._kinds[kind].current

    def plan(self, tokens: int, kind: str | None = None) -> tuple[int, float | None]:
        """The thread count for the next step of `tokens` tokens, and the seconds that step may
        take before it is aborted (None: no limit; only probe steps have one)."""
        name = kind or kind_of(tokens)
        kind = self._kinds[name]
        if kind.probing is None and not self.pinned and kind.steps >= 2 \
                and self._elapsed >= kind.not_before:
            kind.probing = self._next_probe(kind)
        if name != "prompt":
            self.last = kind.current
        if kind.probing is None:
            return kind.current, None
        return kind.probing, ABORT * kind.estimates[kind.current] * max(tokens, 1)

    def measured(self, tokens: int, threads: int, seconds: float, kind: str | None = None, *,
                 aborted: bool = False) -> None:
        """Record that a step of `tokens` tokens with `threads` threads took `seconds`, or
        was `aborted` after that long (over its limit)."""
        self._elapsed += seconds
        kind = self._kinds[kind or kind_of(tokens)]
        tokens = max(tokens, 1)
        if threads == kind.probing:
            self._probe_step(kind, seconds, tokens, aborted)
        elif threads == kind.current:
            self._current_step(kind, seconds / tokens)

    # -- internals -------------------------------------------------------------------------

    def _next_probe(self, kind: _Kind) -> int | None:
        """The neighbour of the current count (one step down or up the list) that is due, the
        one measured longest ago first (never measured counts are due at once); after a
        surprise, the one below."""
        i = self.counts.index(kind.current)
        if kind.surprised:
            kind.surprised = False
            return self.counts[i - 1]
        neighbours = [self.counts[j] for j in (i - 1, i + 1) if 0 <= j < len(self.counts)]
        for n in sorted(neighbours, key=lambda n: kind.probed_at.get(n, -math.inf)):
            wait = PROBE_EVERY if n > kind.current else PROBE_FEWER_EVERY
            if self._elapsed >= kind.probed_at.get(n, -math.inf) + wait:
                return n
        return None

    def _current_step(self, kind: _Kind, per_token: float) -> None:
        estimate = kind.estimates.get(kind.current)
        kind.steps += 1
        if estimate is None:
            kind.estimates[kind.current] = per_token
        else:
            if per_token > SURPRISE * estimate and kind.current > self.counts[0]:
                # Load came: fewer threads now, whatever probes cost before.
                kind.not_before = self._elapsed
                kind.surprised = True
            kind.estimates[kind.current] = estimate + SMOOTHING * (per_token - estimate)
        kind.probed_at[kind.current] = self._elapsed

    def _probe_step(self, kind: _Kind, seconds: float, tokens: int, aborted: bool) -> None:
        baseline = kind.estimates[kind.current]
        kind.probe_times.append(seconds / tokens)
        # An aborted step is done again with the current count: all its time is lost.
        kind.lost += seconds if aborted else seconds - baseline * tokens
        if not aborted and seconds / tokens <= ABORT * baseline \
                and len(kind.probe_times) < PROBE_STEPS:
            return
        probed, found = kind.probing, statistics.median(kind.probe_times)
        kind.estimates[probed] = found
        kind.probed_at[probed] = self._elapsed
        kind.not_before = self._elapsed + max(kind.lost, 0.0) / BUDGET
        kind.probing, kind.probe_times, kind.lost = None, [], 0.0
        if found < SWITCH * baseline:
            kind.current, kind.steps = probed, 0

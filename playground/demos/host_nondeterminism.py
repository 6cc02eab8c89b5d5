"""Same seed, different machine: one prompt with one seed, decoded alone and again inside a
batch of N other requests, with flash attention off and then on.

A fixed seed fixes the random draws, not the numbers they are drawn from. Without flash
attention, llama.cpp's CPU path computes a token's logits differently when other tokens share
its decode (another kernel, another summation order), so the same request gets slightly
different probabilities in a busy server than alone, and once a draw lands on the other side of
a boundary the answers part. With flash attention on, as the app always runs, the two are
identical on the embedded model, to the last bit.

The batch here is the engine's own: the request is sample 0 of a run of N + 1 samples of the
same prompt (the others with seeds seed + 1 .. seed + N), so every step decodes N + 1 tokens
where alone it decodes one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from playground.demos.scenario import (
    Cancel,
    Demo,
    DemoRequest,
    Progress,
    counter,
    engine_of,
    never,
    quiet,
    quoted,
    samples_json,
    start,
)
from playground.errors import Cancelled, InvalidRequestError, UnsupportedModelError
from playground.records import Run, Sample, TokenRecord, json_float
from playground.sampling import SamplingParams

if TYPE_CHECKING:
    from playground.engine import LocalEngine

SAFEGUARDS = (
    "Flash attention is on in every context the app makes. Its CPU kernel computes each "
    "token's attention the same way whatever else shares the decode: with it, a sample of the "
    "embedded model gets the same numbers, to the last bit, whatever runs beside it (the "
    "second comparison above).",
    "All samples of a run share one KV cache: the prompt is read once, on one sequence, and its "
    "cells are copied to the others, so every sample starts from the very same numbers.",
    "Every sample has its own seed (sample i draws with seed + i) and its own random "
    "generator, so its draws do not depend on the other samples, their number or their order.",
    "One sampler draws every token, in numpy, from a copy of the model's logits: the same code "
    "for single runs, best-of-N and every demonstration.",
    "Every decode goes in micro-batches of at most 32 tokens, below the size where llama.cpp's "
    "attention switches to another kernel, and never holds one token alone where the kernel "
    "would split it across threads: so a text scores as it was generated (before this, the "
    "judge's P(yes) and the same prompt's first token differed by 0.1 nats on the embedded "
    "model).",
    "The number of threads does not change a result: 1 and 2 threads gave identical tokens "
    "and probabilities.",
    "What no app can promise: another machine, GPU or llama.cpp build may compute slightly "
    "different numbers. A fixed seed repeats a run exactly on the same machine and build.",
)
"""What the app does to keep its own runs deterministic, in plain words, for the screen."""


# ================================================================ the comparison


@dataclass(frozen=True)
class Parting:
    """The first position where the two runs drew different tokens (or one of them ended)."""

    position: int
    alone: TokenRecord | None
    """What the request drew alone; None where it ended instead (end of generation)."""
    batched: TokenRecord | None
    """What it drew inside the batch; None where it ended instead."""

    @property
    def alone_token_in_batch(self) -> float | None:
        """The logprob the batched run gave the token drawn alone (None: not among its
        recorded alternatives, or one of the two ended there)."""
        return logprob_of(self.batched, self.alone)

    @property
    def batched_token_alone(self) -> float | None:
        """The logprob the lone run gave the token drawn in the batch."""
        return logprob_of(self.alone, self.batched)


def logprob_of(record: TokenRecord | None, drawn: TokenRecord | None) -> float | None:
    """The raw logprob of the token `drawn` at `record`'s position, from the record or its
    alternatives; None where it is not there, or where either is an end (None)."""
    if record is None or drawn is None:
        return None
    token = drawn.id
    if record.id == token:
        return record.logprob
    return next((a.logprob for a in record.top if a.id == token), None)


@dataclass(frozen=True)
class Comparison:
    """The request alone and inside the batch, with flash attention on or off."""

    flash_attention: bool
    alone: Run
    """One sample: the request by itself."""
    batched: Run
    """N + 1 samples: the request is sample 0, the others are the N other requests."""

    @property
    def ours_alone(self) -> Sample:
        return self.alone.samples[0]

    @property
    def ours_batched(self) -> Sample:
        return self.batched.samples[0]

    @property
    def parting(self) -> Parting | None:
        """Where the two part; None when they draw the same tokens to the end."""
        pairs = itertools.zip_longest(self.ours_alone.tokens, self.ours_batched.tokens)
        for position, (alone, batched) in enumerate(pairs):
            if alone is None or batched is None or alone.id != batched.id:
                return Parting(position, alone, batched)
        return None

    @property
    def differences(self) -> list[float]:
        """Batched minus alone logprob of the same token, at every position before they part."""
        differences = []
        for alone, batched in zip(self.ours_alone.tokens, self.ours_batched.tokens,
                                  strict=False):
            if alone.id != batched.id:
                break
            differences.append(batched.logprob - alone.logprob)
        return differences

    @property
    def largest_difference(self) -> float:
        return max((abs(d) for d in self.differences), default=0.0)

    @property
    def identical(self) -> bool:
        """The same tokens and, bit for bit, the same logprobs."""
        alone, batched = self.ours_alone.tokens, self.ours_batched.tokens
        return [(t.id, t.logprob) for t in alone] == [(t.id, t.logprob) for t in batched]

    def to_json(self) -> dict[str, Any]:
        parting = self.parting
        return {
            "flash_attention": self.flash_attention,
            "identical": self.identical,
            "largest_difference": self.largest_difference,
            "differences": self.differences,
            "parting": None if parting is None else {
                "position": parting.position,
                "alone": _token_json(parting.alone, logprob_of(parting.alone, parting.alone),
                                     parting.alone_token_in_batch),
                "batched": _token_json(parting.batched, parting.batched_token_alone,
                                       logprob_of(parting.batched, parting.batched)),
            },
            "alone": samples_json(self.alone)[0],
            "batched": samples_json(self.batched),
        }


def token_text(record: TokenRecord | None) -> str | None:
    """A drawn token as shown: its text, or its bytes where it is part of a character; None for
    an end."""
    return None if record is None else record.text or record.bytes.decode("utf-8", "replace")


def _token_json(record: TokenRecord | None, alone: float | None, batched: float | None) -> dict:
    return {"text": token_text(record),
            "logprob": {"alone": None if alone is None else json_float(alone),
                        "batched": None if batched is None else json_float(batched)}}


@dataclass(frozen=True)
class HostResult:
    prompt: str
    params: SamplingParams
    others: int
    """N: how many other requests shared the batch."""
    without: Comparison
    """Flash attention off."""
    with_flash: Comparison
    """Flash attention on, as the app always runs."""

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "params": self.params.to_json(),
            "others": self.others,
            "comparisons": [self.without.to_json(), self.with_flash.to_json()],
            "safeguards": list(SAFEGUARDS),
        }


# ================================================================ the run


def run_host_nondeterminism(
    engine: LocalEngine,
    prompt: str,
    params: SamplingParams,
    others: int,
    *,
    chat: bool = True,
    progress: Progress = quiet,
    cancel: Cancel = never,
) -> HostResult:
    """The prompt with one seed alone and among `others` other requests, flash attention off
    and on."""
    if engine.info.server is not None:
        raise UnsupportedModelError("this demonstration needs a local model: a server's flash "
                                    "attention cannot be turned off from here")
    most = engine.capabilities.max_samples - 1  # the request itself is one more
    if not 1 <= others <= most:
        raise InvalidRequestError(f"the other requests must be from 1 to {most}, not {others}")
    params = params.resolved()
    step = counter(progress, 4)

    def decode(n: int, flash_attention: bool) -> Run:
        run = start(engine, prompt, params, n, chat)
        # Both runs read the prompt whole: a prompt cached by the other run would be read in a
        # decode of another shape, which without flash attention changes the logits too.
        engine.forget_prompt()
        for event in engine.generate(run, cancel, flash_attention=flash_attention):
            run.add(event)
        if cancel():
            raise Cancelled()
        step()
        return run

    # The batch first: the lone run then reuses its (larger) context, so that the two differ
    # only by what shares their decodes.
    without = [decode(n, False) for n in (others + 1, 1)]
    with_flash = [decode(n, True) for n in (others + 1, 1)]
    return HostResult(prompt, params, others,
                      Comparison(False, alone=without[1], batched=without[0]),
                      Comparison(True, alone=with_flash[1], batched=with_flash[0]))


def run(request: DemoRequest) -> dict[str, Any]:
    return run_host_nondeterminism(engine_of(request), request.prompt, request.params, request.n,
                                   chat=request.scenario.chat, progress=request.progress,
                                   cancel=request.cancel).to_json()


def parting_line(comparison: dict[str, Any], batch: int) -> str:
    """One plain sentence on how the request fared alone and in the batch of `batch`."""
    if comparison["identical"]:
        return f"alone and in a batch of {batch}: identical, token for token and bit for bit."
    parting = comparison["parting"]
    largest = comparison["largest_difference"]
    before = f"same tokens, logprobs up to {largest:.3g} nats apart"
    if parting is None:
        return f"alone and in a batch of {batch}: {before}."
    alone, batched = parting["alone"], parting["batched"]
    return (f"alone and in a batch of {batch}: {before}, then they part at token "
            f"{parting['position'] + 1}: alone {_drawn(alone, 'alone')}, in the batch "
            f"{_drawn(batched, 'batched')}.")


def _drawn(fork: dict[str, Any], run: str) -> str:
    if fork["text"] is None:
        return "the answer ended"
    logprob = fork["logprob"][run]
    return f"{fork['text']!r} ({math.exp(logprob):.1%})"


def summary(d: dict[str, Any]) -> Iterator[str]:
    batch = d["others"] + 1
    for comparison in d["comparisons"]:
        state = "on" if comparison["flash_attention"] else "off"
        yield f"Flash attention {state}, seed {d['params']['seed']}, " + parting_line(
            comparison, batch)
        yield quoted("alone:    " + comparison["alone"]["text"])
        yield quoted("in batch: " + comparison["batched"][0]["text"])
    yield "What the app does to keep its runs deterministic:"
    yield from (quoted("- " + line) for line in SAFEGUARDS)


DEMO = Demo("host-nondeterminism", "Same seed, different machine", run, summary)

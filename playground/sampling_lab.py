"""The sampling lab: one moment of a generation, reshaped by the sampling settings.

`reshape` takes the full logits row at one position and a `SamplingParams` and says, for every
token of the vocabulary, its probability under the distribution a draw would use and, for a cut
token, which filter cut it. It reads the same chain the sampler draws from
(`sampling.filter_steps`), so what the lab shows is what generation does.

`probe` scores any continuation under the raw model distribution: the sum of its tokens'
logprobs by teacher forcing, and the rank of its first token.

The full row comes from re-decoding the moment's prefix (`Engine.next_logits`), not from the
history: a row is n_vocab float32s (49,152 for SmolLM2, 192 KB) per token, 25 MB for a 128-token
sample, while re-decoding a prefix the KV cache mostly holds costs one short decode.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.records import TokenRecord, json_float
from playground.sampling import SAMPLER_ORDERS, SamplingParams, filter_steps, penalized

CUTS = ("greedy", "top-k", "top-p", "min-p")
"""What can cut a token, in `Reshaped.cut` codes 1, 2, 3, 4 (0 is kept)."""


@dataclass(frozen=True)
class Moment:
    """One position of a sample: what it takes to see its distribution again."""

    context: tuple[int, ...]
    """The tokens before it: the prompt, then the sample's tokens up to it."""
    drawn: TokenRecord
    params: SamplingParams
    """The run's settings (the lab starts from them)."""
    model_path: str
    """The model that drew it: only that model's logits are its distribution."""

    @property
    def history(self) -> tuple[int, ...]:
        """The recent tokens the repetition penalty saw, as the sampler kept them."""
        n = self.params.repeat_last_n
        return self.context[-n:] if n else ()


@dataclass(frozen=True)
class Reshaped:
    """One position's distribution under one set of sampling settings."""

    probs: np.ndarray
    """Per token of the vocabulary (float64): its probability under the distribution a draw
    uses, 0 where a filter cut it."""
    cut: np.ndarray
    """Per token (int8): 0 kept, else 1 + the index in `CUTS` of the step that cut it."""
    kept: int
    """How many tokens the filters left (`TokenRecord.kept`)."""
    entropy_after: float
    """Of the distribution a draw uses, in nats (see `raw_logprobs` for the model's own)."""

    def cut_by(self, token: int) -> str | None:
        """The filter that cut `token`, or None when it was kept."""
        code = int(self.cut[token])
        return CUTS[code - 1] if code else None


def reshape(logits: np.ndarray, params: SamplingParams,
            history: Iterable[int] = ()) -> Reshaped:
    """`logits`' distribution after the repetition penalty over `history` (the recent tokens,
    prompt included), temperature, top-k, top-p and min-p in `params.sampler_order`."""
    n = logits.shape[0]
    cut = np.zeros(n, dtype=np.int8)
    before: np.ndarray | None = None
    steps = list(filter_steps(penalized(logits, params, history), params))
    for step, ids, _ in steps:
        if step == "temperature":
            continue  # it reshapes, it cuts nothing
        now = np.zeros(n, dtype=bool)
        now[ids] = True
        gone = ~now if before is None else before & ~now
        cut[gone] = CUTS.index(step) + 1
        before = now
    _, ids, values = steps[-1]
    probs = np.zeros(n, dtype=np.float64)
    scale = values.astype(np.float64)
    weights = np.exp(scale - scale.max())
    probs[np.arange(n) if ids is None else ids] = weights / weights.sum()
    return Reshaped(probs, cut, int(np.count_nonzero(cut == 0)), entropy(probs))


def raw_logprobs(logits: np.ndarray) -> np.ndarray:
    """The raw model distribution (temperature 1, nothing filtered) as float64 logprobs: what
    the sliders reshape, computed once per moment."""
    x = logits.astype(np.float64)
    return x - (x.max() + math.log(np.exp(x - x.max()).sum()))


def entropy(probs: np.ndarray) -> float:
    """Of a distribution over the vocabulary (0 for a token cut), in nats."""
    p = probs[probs > 0]
    return max(float(-(p * np.log(p)).sum()), 0.0)


def both_orders(logits: np.ndarray, params: SamplingParams,
                history: Iterable[int] = ()) -> dict[str, Reshaped]:
    """`reshape` in every sampler order, by order name, for showing them side by side."""
    recent = list(history)
    return {order: reshape(logits, replace(params, sampler_order=order), recent)
            for order in SAMPLER_ORDERS}


# ---------------------------------------------------------------------------------------------
# Any candidate's probability


@dataclass(frozen=True)
class CandidateScore:
    """A continuation under the raw model distribution."""

    text: str
    logprob: float
    """Sum of its tokens' logprobs, each given the ones before it (teacher forcing)."""
    rank: int
    """Of its first token among the whole vocabulary at that position; 1 is the most likely."""
    tokens: tuple[tuple[int, str, float], ...]
    """(id, text, logprob) of each of its tokens."""

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "logprob": json_float(self.logprob),
            "rank": self.rank,
            "tokens": [{"id": i, "text": t, "logprob": json_float(lp)}
                       for i, t, lp in self.tokens],
        }


def split_candidates(text: str) -> list[str]:
    """The candidates of `--candidates`: split on commas, each kept verbatim (a leading space
    is part of the word, " Paris" is not "Paris"); empty ones are an error."""
    candidates = text.split(",")
    if not all(candidates):
        raise InvalidRequestError("a candidate is empty: separate candidates with single commas")
    return candidates


def probe_context(engine: Engine, prompt: str, *, chat: bool, system: str | None = None,
                  prefix: str = "") -> list[int]:
    """The tokens a candidate follows: the prompt as the model sees it, then `prefix`'s tokens
    (the start of an answer, tokenized on its own, as candidates are)."""
    tokens = engine.prompt_tokens(prompt, chat=chat, system=system)
    if prefix:
        tokens += engine.tokenize(prefix, add_special=False)
    return tokens


def probe(engine: Engine, context: list[int], candidates: list[str]) -> list[CandidateScore]:
    """Each candidate, tokenized on its own, scored after `context` by teacher forcing."""
    engine.capabilities.require("teacher_forcing", "scoring a candidate")
    scores = []
    for text in candidates:
        ids = engine.tokenize(text, add_special=False)
        if not ids:
            raise InvalidRequestError(f"the candidate {text!r} has no tokens")
        records = engine.teacher_force(context, ids)
        scores.append(CandidateScore(
            text=text,
            logprob=math.fsum(r.logprob for r in records),
            rank=records[0].rank,
            tokens=tuple((r.id, r.text, r.logprob) for r in records),
        ))
    return scores

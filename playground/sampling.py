"""Sampling parameters and the numpy sampler that turns one row of logits into a token.

Two distributions matter for every token, and they are different things:
- the raw model distribution: log-softmax of the logits at temperature 1, nothing filtered.
  Its numbers (`logprob`, rank, entropy, alternatives) are what llama-cpp-python reports.
- the sampling distribution: what the token was actually drawn from, after the repetition
  penalty, temperature, top-k, top-p and min-p. `sampling_logprob` is the chosen token's log
  probability under it.

The order of the steps is a setting (`SamplingParams.sampler_order`). The default is the one most
APIs document (Hugging Face, OpenAI): penalty, then temperature, then top-k, top-p and min-p on
the tempered distribution. llama.cpp's chain puts temperature last: top-k, top-p and min-p cut at
temperature 1, and temperature only reshapes what they kept. `filter_steps` is the one chain: the
sampler draws from its last step, and the sampling lab (`playground.sampling_lab`) reads every
step to tell which filter cut which token. Sampling happens here in numpy rather than in
llama.cpp's sampler chain because the kept candidates and their renormalised probabilities are
needed anyway to report `sampling_logprob` and `kept`.
"""

from __future__ import annotations

import ctypes
import math
import secrets
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import llama_cpp
import numpy as np

from playground.errors import InvalidRequestError

if TYPE_CHECKING:
    from playground.handles import LlamaModel

MIN_TEMPERATURE = 1e-6
"""Below this a temperature is greedy (see `SamplingParams.validate`)."""
MAX_SEED = 2**31 - 1
"""Seeds are 0..2**31-1: what a fresh seed is drawn from, what the GUI's seed box holds, and,
with seed + i per sample, far inside SQLite's 64-bit integers."""
MAX_SCALE = 1e6
"""The largest temperature and repetition penalty: logits are float32, and dividing or multiplying
them by more could overflow to inf. At 1e6 every distribution is already uniform, or the penalty
total, to within float rounding."""
MAX_ALTERNATIVES = 100
"""The most alternatives a token may record (top-logprobs)."""
MAX_COUNT = 2**31 - 1
"""The largest top-k, repeat-last-n and max tokens accepted (llama.cpp counts in int32)."""
SAMPLER_ORDERS: dict[str, tuple[str, ...]] = {
    "temperature-first": ("temperature", "top-k", "top-p", "min-p"),
    "temperature-last": ("top-k", "top-p", "min-p", "temperature"),
}
"""The steps after the repetition penalty, by `SamplingParams.sampler_order`: temperature first
as Hugging Face and OpenAI-style APIs (and this app by default), or last as llama.cpp's chain."""


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token. Defaults are llama.cpp's."""

    temperature: float = 0.8
    """0 means greedy: always the most likely token."""
    top_k: int = 40
    """Keep only the k most likely tokens; 0 keeps all."""
    top_p: float = 0.95
    """Keep the smallest set of tokens whose probabilities add up to p; 1 keeps all."""
    min_p: float = 0.05
    """Drop tokens less likely than min_p times the most likely one; 0 keeps all."""
    repeat_penalty: float = 1.0
    """Divide the logits of recently seen tokens by this (multiply when negative); 1 is off."""
    repeat_last_n: int = 64
    """How many recent tokens (prompt included) the repetition penalty looks at."""
    seed: int | None = None
    """Seed of the random generator; None draws a fresh one (see `resolved`)."""
    max_tokens: int = 128
    """Stop after this many new tokens."""
    stop: tuple[str, ...] = ()
    """Stop when the text contains any of these; the stop string itself is not kept."""
    top_logprobs: int = 10
    """How many alternatives to record for every token."""
    sampler_order: str = "temperature-first"
    """When temperature applies: a key of `SAMPLER_ORDERS`. "temperature-last" is llama.cpp's."""

    def validate(self) -> SamplingParams:
        """These parameters as they will be used, or InvalidRequestError naming what is wrong.

        The one check of a request, made before anything runs or is saved (the CLI, the engine,
        the GUI and stored preferences all come through here). A temperature below
        `MIN_TEMPERATURE` comes back as 0 (greedy): that is the limit the distribution tends to,
        and dividing float32 logits by a subnormal such as 1e-320 overflows to inf and NaN.
        """
        _number(self.temperature, "temperature", 0, MAX_SCALE,
                f"a number from 0 to {MAX_SCALE:g} (0 is greedy)")
        _whole(self.top_k, "top-k", 0, MAX_COUNT, " (0 is off)")
        _number(self.top_p, "top-p", 0, 1, "a number in (0, 1]", above=True)
        _number(self.min_p, "min-p", 0, 1, "a number in [0, 1]")
        _number(self.repeat_penalty, "repetition penalty", 0, MAX_SCALE,
                f"a number above 0, at most {MAX_SCALE:g} (1 is off)", above=True)
        _whole(self.repeat_last_n, "repeat-last-n", 0, MAX_COUNT)
        if self.seed is not None:
            _whole(self.seed, "seed", 0, MAX_SEED, " (leave it out for a fresh one)")
        _whole(self.max_tokens, "max tokens", 1, MAX_COUNT)
        _whole(self.top_logprobs, "top-logprobs", 0, MAX_ALTERNATIVES)
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) for s in self.stop):
            raise InvalidRequestError("stop strings must be texts")
        if not all(self.stop):
            raise InvalidRequestError("stop strings must not be empty")
        if not isinstance(self.sampler_order, str) or self.sampler_order not in SAMPLER_ORDERS:
            raise InvalidRequestError(f"sampler order must be {' or '.join(SAMPLER_ORDERS)}, "
                                      f"not {_shown(self.sampler_order)}")
        if 0 < self.temperature < MIN_TEMPERATURE:
            return replace(self, temperature=0.0)
        return self

    def resolved(self) -> SamplingParams:
        """The same parameters with a concrete seed, so that the run can be repeated exactly."""
        if self.seed is not None:
            return self
        return replace(self, seed=secrets.randbits(31))

    @property
    def top_needed(self) -> int:
        """How many of the most likely tokens a draw can pick from: 1 when greedy, top_k with
        top-k on, 0 for "any". A repetition penalty can reorder tokens, so it needs any too.
        (A constraint checks only that many candidates; see `Constraint.apply`.)"""
        if self.repeat_penalty != 1.0 and self.repeat_last_n:
            return 0
        return 1 if self.temperature == 0 else max(self.top_k, 0)

    def to_json(self) -> dict:
        return {**self.__dict__, "stop": list(self.stop)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SamplingParams:
        """The parameters `to_json` wrote; keys of other versions are ignored (unchecked: call
        `validate` on what came from outside)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["stop"] = tuple(values.get("stop", ()))
        return cls(**values)


def _number(value: object, name: str, low: float, high: float, rule: str,
            *, above: bool = False) -> None:
    """A finite real number in [low, high] (in (low, high] when `above`)."""
    try:
        number = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:  # an int beyond float's range
        number = math.inf
    ok = not isinstance(value, bool) and (number > low if above else number >= low)
    if not ok or not number <= high:
        raise InvalidRequestError(f"{name} must be {rule}, not {_shown(value)}")


def _whole(value: object, name: str, low: int, high: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(f"{name} must be a whole number from {low} to {high}{hint}, "
                                  f"not {_shown(value)}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


PRESETS: dict[str, SamplingParams] = {
    "Greedy": SamplingParams(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0),
    "Balanced": SamplingParams(),
    "Creative": SamplingParams(temperature=1.2, top_k=0, top_p=0.98, min_p=0.02),
}


@dataclass(frozen=True)
class RawStats:
    """The chosen token under the raw model distribution (temperature 1, nothing filtered)."""

    logprob: float
    rank: int
    """1 for the most likely token."""
    entropy: float
    """In nats."""
    top_ids: np.ndarray
    top_logprobs: np.ndarray


def raw_stats(logits: np.ndarray, chosen: int, k: int) -> RawStats:
    """Log-softmax facts about `chosen`, computed without materialising the whole distribution."""
    peak = float(logits.max())
    weights = logits - peak
    np.exp(weights, out=weights)
    # Pairwise float32 summation: log(total) within 5e-7 of float64's on SmolLM2's rows, in
    # less than half the time.
    total = float(weights.sum())
    log_norm = peak + math.log(total)
    entropy = log_norm - float(np.dot(weights, logits)) / total
    top = top_indices(logits, max(k, 1))
    value = logits[chosen]
    top_values = logits[top]
    # Every token above one of the top ones is among them.
    rank = int(np.count_nonzero(top_values > value)) if value >= top_values[-1] \
        else int(np.count_nonzero(logits > value))
    return RawStats(
        logprob=float(value) - log_norm,
        rank=rank + 1,
        entropy=max(entropy, 0.0),
        top_ids=top[:k],
        top_logprobs=top_values[:k].astype(np.float64) - log_norm,
    )


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first, ties in index order: exactly
    `np.argsort(-scores, kind="stable")[:k]`.

    A full-vocabulary sort or argpartition costs 100-400 us per token. Here the k-th highest
    of an evenly spaced sample of about 4 sqrt(n k) scores is a threshold that at least k
    scores pass (the sample's own top k do); one pass finds them, about sqrt(n k) / 4, and the
    k-th highest of those bounds the few that are sorted. (Collecting the scores that pass
    costs more the more they are: a sample half or twice as big is slower.)
    """
    n = scores.shape[0]
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k >= n:
        return np.argsort(-scores, kind="stable")
    sample = scores[:: max(1, math.isqrt(n // (16 * k)))]
    threshold = np.partition(sample, sample.shape[0] - k)[sample.shape[0] - k]
    pool = np.flatnonzero(scores >= threshold)
    if pool.shape[0] < k:  # NaN scores, which no threshold admits
        return np.argsort(-scores, kind="stable")[:k]
    values = scores[pool]
    if pool.shape[0] > k:
        inside = values >= np.partition(values, pool.shape[0] - k)[pool.shape[0] - k]
        pool, values = pool[inside], values[inside]
    return pool[np.argsort(-values, kind="stable")[:k]]


class Constraint(Protocol):
    """Limits what one sequence may draw next (e.g. a grammar); the engine keeps one per
    sample: `apply` before every draw, `accept` with the token drawn."""

    def apply(self, logits: np.ndarray, enough: int) -> np.ndarray:
        """The logits with -inf for every token not allowed next; with `enough` > 0, it may
        also set -inf for allowed tokens that cannot be among the `enough` most likely ones."""
        ...

    def accept(self, token: int) -> None:
        ...


class GrammarConstraint:
    """llama.cpp's grammar sampler as a mask over one row of logits, for the numpy sampler.

    The project samples in numpy (see `Sampler`), so rather than adding the grammar to a
    llama.cpp sampler chain, the grammar sampler is applied to an array of candidate tokens
    with every logit 0, and the candidates it leaves finite are the allowed ones. Call `apply`
    before sampling each token and `accept` with the chosen one. Once the grammar is complete
    only end-of-generation tokens are allowed. Not thread-safe, like the engine it belongs to.
    """

    CANDIDATES = 256
    """How many of the most likely tokens `apply` checks first when sampling needs only the
    top few; checking the whole vocabulary costs about a millisecond per token."""

    def __init__(self, model: LlamaModel, gbnf: str, root: str = "root") -> None:
        # Built against the vocabulary that produces the logits: the engine's own model.
        self._sampler = llama_cpp.llama_sampler_init_grammar(
            model.vocab, gbnf.encode(), root.encode()
        )
        if not self._sampler:
            raise ValueError("llama.cpp could not parse the grammar (see its log)")
        self._finalizer = weakref.finalize(self, llama_cpp.llama_sampler_free, self._sampler)
        self.n_vocab = model.n_vocab
        # Laid out like llama_token_data {int32 id; float logit; float p}.
        self._data = np.zeros(
            self.n_vocab,
            dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]),
        )
        self._mask: np.ndarray | None = None

    def close(self) -> None:
        self._finalizer()

    def allows(self, ids: np.ndarray) -> np.ndarray:
        """A boolean per token of `ids`: whether the grammar allows it next. The grammar
        decides by the text so far only, so no logits are needed."""
        n = ids.shape[0]
        data = self._data[:n]
        data["id"] = ids
        data["logit"] = 0.0
        data["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=n,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))
        # Read back by id: the sampler may reorder or shorten the array.
        kept = data[: array.size]
        allowed = np.zeros(self.n_vocab, dtype=bool)
        allowed[kept["id"][np.isfinite(kept["logit"])]] = True
        return allowed[ids]

    def allowed_mask(self) -> np.ndarray:
        """A boolean array over the whole vocabulary: True where the grammar allows the token."""
        if self._mask is None:
            self._mask = self.allows(np.arange(self.n_vocab, dtype=np.int32))
        return self._mask

    def apply(self, logits: np.ndarray, enough: int = 0) -> np.ndarray:
        """A copy of `logits` with -inf for every token the grammar forbids.

        `enough` > 0 says that sampling draws only from the `enough` most likely tokens
        (`SamplingParams.top_needed`). The most likely candidates are then checked first: when
        `enough` of them are allowed, no allowed token outside them could rank among the top
        `enough`, so they are left out (-inf) and the draw is the same as with the whole mask.
        """
        if enough > 0 and self._mask is None:
            candidates = top_indices(logits, max(self.CANDIDATES, 8 * enough))
            allowed = candidates[self.allows(candidates.astype(np.int32))]
            if allowed.shape[0] >= enough:
                masked = np.full_like(logits, -np.inf)
                masked[allowed] = logits[allowed]
                return masked
        return np.where(self.allowed_mask(), logits, -np.inf).astype(logits.dtype, copy=False)

    def accept(self, token: int) -> None:
        """Advance the grammar past `token`. A forbidden token raises ValueError here, because
        llama.cpp would throw a C++ exception that would end the process."""
        if not self.allows(np.array([token], dtype=np.int32))[0]:
            raise ValueError(f"token {token} is not allowed by the grammar here")
        llama_cpp.llama_sampler_accept(self._sampler, token)
        self._mask = None


def penalized(logits: np.ndarray, params: SamplingParams, history: Iterable[int]) -> np.ndarray:
    """The logits after the repetition penalty on the tokens of `history` (the row itself when
    the penalty is off): divided when positive, multiplied when negative, as llama.cpp does."""
    seen = set(history) if params.repeat_penalty != 1.0 and params.repeat_last_n else set()
    if not seen:
        return logits
    ids = np.fromiter(seen, dtype=np.intp)
    scores = logits.copy()
    values = scores[ids]
    penalty = params.repeat_penalty
    scores[ids] = np.where(values > 0, values / penalty, values * penalty)
    return scores


def filter_steps(
    scores: np.ndarray, params: SamplingParams
) -> Iterator[tuple[str, np.ndarray | None, np.ndarray]]:
    """The candidates after each step of the chain that changes them, in `params.sampler_order`.

    Yields (step, ids, values): `ids` the tokens still in (None: the whole vocabulary, in id
    order), `values` their scores at that point, divided by the temperature once it has run. A
    temperature of 0 is one step, "greedy", that keeps the most likely token. The last step
    yielded is what is drawn from: `softmax(values)` over `ids`. Filters that are off are not
    yielded, and the set only shrinks from one step to the next.
    """
    p = params
    if p.temperature == 0:
        best = int(np.argmax(scores))
        yield "greedy", np.array([best]), scores[best : best + 1]
        return
    ids: np.ndarray | None = None
    values = scores
    ordered = False  # whether `values` run from the most likely down
    for step in SAMPLER_ORDERS[p.sampler_order]:
        if step == "temperature":
            values = values / np.float32(p.temperature)
            yield step, ids, values
            continue
        chosen: np.ndarray | slice
        if step == "top-k" and 0 < p.top_k < values.shape[0]:
            chosen, ordered = top_indices(values, p.top_k), True
        elif step == "top-p" and p.top_p < 1.0:
            if ids is None:
                chosen = _nucleus(values, p.top_p)
            else:  # only top-k runs before top-p (SAMPLER_ORDERS): most likely first
                cumulative = np.cumsum(np.exp(values - values[0]), dtype=np.float64)
                chosen = slice(0, int(np.searchsorted(cumulative, p.top_p * cumulative[-1])) + 1)
        elif step == "min-p" and p.min_p > 0:
            # Weights are relative to the most likely token, so min-p is a plain threshold.
            kept = np.exp(values - (values[0] if ordered else values.max())) >= p.min_p
            chosen = slice(0, int(np.count_nonzero(kept))) if ordered else np.flatnonzero(kept)
        else:
            continue
        ids = chosen if ids is None else ids[chosen]
        values = values[chosen]
        yield step, ids, values


class Draw(NamedTuple):
    token: int
    logprob: float
    """Under the sampling distribution."""
    kept: int
    """How many tokens the filters left to draw from."""


@dataclass
class Sampler:
    """The sampling state of one sequence: its random generator and its recent tokens."""

    params: SamplingParams
    history: deque[int] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.params.seed is None:
            raise ValueError("resolve the seed before sampling (SamplingParams.resolved)")
        self.rng = np.random.default_rng(self.params.seed)
        self.history = deque(self.history, maxlen=self.params.repeat_last_n or 1)

    def accept(self, token: int) -> None:
        self.history.append(token)

    def candidates(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sampling distribution: kept token ids, most likely first, and their logprobs."""
        ids, weights, _ = self._kept(logits)
        if ids is None:
            ids = np.arange(weights.shape[0])
        order = np.argsort(-weights, kind="stable")
        return ids[order], np.log(weights[order] / weights.sum(dtype=np.float64))

    def sample(self, logits: np.ndarray) -> Draw:
        """Draw the next token, with its logprob under the sampling distribution."""
        ids, weights, kept = self._kept(logits)
        if weights.shape[0] == 1:
            return Draw(int(ids[0]), 0.0, 1)
        index = _draw(weights, self.rng.random())
        total = float(weights.sum(dtype=np.float64))
        token = index if ids is None else int(ids[index])
        return Draw(token, math.log(float(weights[index]) / total), kept)

    def _kept(self, logits: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, int]:
        """Kept ids (None: the whole vocabulary, in id order), their unnormalised weights, and
        how many they are (not counting the -inf tokens of a constraint, never candidates)."""
        *_, (_, ids, values) = filter_steps(penalized(logits, self.params, self.history),
                                            self.params)
        return ids, np.exp(values - float(values.max())), int(np.count_nonzero(values > -np.inf))


def _nucleus(tempered: np.ndarray, top_p: float) -> np.ndarray:
    """The top-p set of the whole vocabulary, unsorted: the fewest most likely tokens holding
    top_p of the mass.

    Sorting the whole vocabulary costs milliseconds, so a margin below the peak is bracketed
    (everything within `inside` is kept, the set ends before `outside`) and only the tokens
    between the two are sorted.
    """
    peak = float(tempered.max())
    weights = np.exp(tempered - peak)
    target = top_p * float(weights.sum(dtype=np.float64))

    def mass(margin: float) -> float:
        return float(weights[tempered >= peak - margin].sum(dtype=np.float64))

    if mass(0.0) >= target:
        return np.array([int(np.argmax(tempered))])
    inside, outside = 0.0, 1.0
    while mass(outside) < target:
        inside, outside = outside, outside * 2
        if outside > 1e4:
            outside = math.inf
            break
    for _ in range(6):
        if outside - inside < 0.05 or not math.isfinite(outside):
            break
        middle = (inside + outside) / 2
        if mass(middle) >= target:
            outside = middle
        else:
            inside = middle
    kept = np.flatnonzero(tempered >= peak - inside)
    edge = np.flatnonzero((tempered < peak - inside) & (tempered >= peak - outside))
    edge = edge[np.argsort(-tempered[edge], kind="stable")]
    inside_mass = float(weights[kept].sum(dtype=np.float64))
    cumulative = inside_mass + np.cumsum(weights[edge], dtype=np.float64)
    keep = int(np.searchsorted(cumulative, target)) + 1
    return np.concatenate([kept, edge[:keep]])


def _draw(weights: np.ndarray, u: float) -> int:
    """Index i with probability weights[i] / sum(weights), by inverting the CDF at u.

    A cumulative sum over a 150k vocabulary costs ~0.5 ms, so the search goes through block sums
    first and then runs inside one block.
    """
    block = 1024
    if weights.shape[0] <= block:
        cumulative = np.cumsum(weights, dtype=np.float64)
        return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")),
                   weights.shape[0] - 1)
    sums = np.add.reduceat(weights, np.arange(0, weights.shape[0], block), dtype=np.float64)
    cumulative = np.cumsum(sums)
    target = u * cumulative[-1]
    b = min(int(np.searchsorted(cumulative, target, side="right")), sums.shape[0] - 1)
    before = cumulative[b - 1] if b else 0.0
    inner = np.cumsum(weights[b * block : (b + 1) * block], dtype=np.float64)
    i = min(int(np.searchsorted(inner, target - before, side="right")), inner.shape[0] - 1)
    return b * block + i

"""The plain records a generation produces: tokens, samples and whole runs.

The engine streams `TokenRecord`, `SampleEnd` and `RunEnd` events; `Run.add` is the one place
where a stream becomes a run, for the CLI, the GUI and the store alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from playground.gguf_file import ModelInfo
from playground.sampling import SamplingParams
from playground.scoring import (
    LOGPROB_SCORES,
    Ranking,
    Vote,
    majority_vote,
    rank_by_scores,
    rank_by_vote,
)


@dataclass(frozen=True)
class Alternative:
    """A token the model weighed at one position."""

    id: int
    text: str
    logprob: float
    """Under the raw model distribution."""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "logprob": self.logprob}


@dataclass(frozen=True)
class TokenRecord:
    """One generated token and what the model thought of it."""

    sample: int
    """Which of the N samples it belongs to."""
    position: int
    """Its index among the sample's new tokens."""
    id: int
    bytes: bytes
    """The token's own bytes; may be part of a UTF-8 character."""
    text: str
    """The characters this token completes: joined, the texts give the sample's text exactly."""
    logprob: float
    """Log probability under the raw model distribution (temperature 1, nothing filtered)."""
    sampling_logprob: float
    """Log probability under the distribution it was actually drawn from."""
    rank: int
    """1 when it was the model's most likely token."""
    entropy: float
    """Entropy of the raw distribution at this position, in nats."""
    top: tuple[Alternative, ...]
    """The most likely tokens at this position, most likely first."""
    kept: int = 0
    """How many tokens the sampling filters left to draw from at this position (the whole
    vocabulary when they are off, 1 when greedy); 0 where nothing was drawn (teacher forcing)
    or it was not recorded (runs and imports of older versions)."""

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "bytes_hex": self.bytes.hex(),
            "logprob": json_float(self.logprob),
            "sampling_logprob": json_float(self.sampling_logprob),
            "rank": self.rank,
            "entropy": json_float(self.entropy),
            "kept": self.kept,
            "top": [alt.to_json() for alt in self.top],
        }


@dataclass(frozen=True)
class SampleEnd:
    """A sample stopped: `finish_reason` is 'stop', 'length' or 'cancelled'."""

    sample: int
    finish_reason: str
    text: str
    """The final text, without any stop string."""
    n_tokens: int
    """How many of the streamed tokens the sample keeps (a stop string's tokens are dropped)."""


@dataclass(frozen=True)
class RunStats:
    prompt_tokens: int
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "seconds": self.seconds,
            "tokens_per_second": self.tokens_per_second,
        }


@dataclass(frozen=True)
class RunEnd:
    stats: RunStats


Event = TokenRecord | SampleEnd | RunEnd


@dataclass
class Sample:
    index: int
    seed: int
    tokens: list[TokenRecord] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    """'stop', 'length' or 'cancelled'; 'interrupted' when the store found it cut off by a
    crash; None while it is still being generated."""
    scores: dict[str, float] = field(default_factory=dict)
    """Scores that cannot be recomputed from the tokens, e.g. 'reward'. A sample imported
    without its tokens keeps the logprob scores its file carried here too ('mean-logprob'...)."""
    prefix: int = field(default=0, repr=False)
    """Tokens the sample held before the engine's stream began (a forced branch continues after
    its prefix); the stream's positions and text are its own and go after them."""

    def add(self, event: TokenRecord | SampleEnd) -> None:
        """Fold one of the engine's events for this sample."""
        if isinstance(event, TokenRecord):
            self.tokens.append(replace(event, position=self.prefix + event.position)
                               if self.prefix else event)
            self.text += event.text
        else:
            kept = self.tokens[: self.prefix + event.n_tokens]
            # The end's text is the stream's final text (a stop string cut off, say).
            self.text = "".join(t.text for t in kept[: self.prefix]) + event.text
            self.tokens[:] = kept
            self.finish_reason = event.finish_reason

    @property
    def logprobs(self) -> list[float]:
        return [t.logprob for t in self.tokens]

    def logprob_scores(self) -> dict[str, float]:
        """Each of LOGPROB_SCORES: computed from the tokens, or, for a sample that has no tokens
        but was stored with that score (an import without token data), the stored value."""
        return {
            method: self.scores[method] if not self.tokens and method in self.scores
            else fn(self.logprobs)
            for method, fn in LOGPROB_SCORES.items()
        }

    def all_scores(self) -> dict[str, float]:
        """The logprob scores and the stored ones, by JSON name."""
        computed = self.logprob_scores()
        stored = {k: v for k, v in self.scores.items() if k not in computed}
        return {_json_name(k): v for k, v in {**computed, **stored}.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "text": self.text,
            "tokens": [t.to_json() for t in self.tokens],
            "finish_reason": self.finish_reason,
            "scores": {k: json_float(v) for k, v in self.all_scores().items()},
        }


def _json_name(method: str) -> str:
    return method.replace("-", "_")


def json_float(value: float) -> float | None:
    """The one policy for numbers in JSON, which has no NaN or infinity: a float, or null where
    it is not finite. Every `to_json` and export writes numbers through it."""
    value = float(value)
    return value if math.isfinite(value) else None


def float_from_json(value: float | None, missing: float = math.nan) -> float:
    """A number `json_float` wrote: null reads as `missing` (NaN unless the reader knows
    better, e.g. -inf for an empty sample's logprob score)."""
    return missing if value is None else float(value)


@dataclass(frozen=True)
class RewardModelIdentity:
    """Which reward model gave a stored score: enough to find the model again and to tell
    whether a file is still the same one."""

    kind: str
    """'score-head', 'reranker' or 'judge'."""
    file: str
    """The GGUF's path (for the judge, the instruct model it ran on)."""
    sha256: str
    """Of the file; "" when it could not be read."""
    name: str
    """The model's name, from its header."""
    rubric: str = ""
    """The judge's question, or a reranker's instruction; "" when it takes none."""

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, str]) -> RewardModelIdentity:
        return cls(**data)


@dataclass
class Run:
    """One prompt, its parameters, and the N samples generated from it."""

    model: ModelInfo
    params: SamplingParams
    """With the base seed resolved: sample i used seed + i (see `Sample.seed`)."""
    prompt: str
    prompt_token_ids: list[int]
    chat: bool
    system: str | None
    samples: list[Sample]
    stats: RunStats | None = None
    rankings: dict[str, Ranking] = field(default_factory=dict)
    """Every ranking computed so far, by method."""
    vote: Vote | None = None
    reward_models: dict[str, RewardModelIdentity] = field(default_factory=dict)
    """Who gave each reward score, by its name in `Sample.scores` (e.g. 'reward')."""

    @classmethod
    def start(
        cls,
        model: ModelInfo,
        params: SamplingParams,
        prompt: str,
        prompt_token_ids: list[int],
        n: int,
        *,
        chat: bool,
        system: str | None = None,
        same_seed: bool = False,
    ) -> Run:
        assert params.seed is not None, "resolve the seed first"
        samples = [Sample(i, params.seed + (0 if same_seed else i)) for i in range(n)]
        return cls(model, params, prompt, prompt_token_ids, chat, system, samples)

    def add(self, event: Event) -> None:
        if isinstance(event, RunEnd):
            self.stats = event.stats
        else:
            self.samples[event.sample].add(event)

    @property
    def finished(self) -> bool:
        return self.stats is not None

    def rank(self, method: str) -> Ranking:
        """Order the samples by `method`: a logprob score ('mean-logprob', ...), 'vote', or a
        score stored in every sample's `scores` (e.g. 'reward'). Remembered in `rankings`."""
        if method == "vote":
            self.vote = majority_vote([s.text for s in self.samples])
            ranking = rank_by_vote(self.vote)
        elif method in LOGPROB_SCORES:
            ranking = rank_by_scores([s.logprob_scores()[method] for s in self.samples], method)
        else:
            ranking = rank_by_scores(
                [s.scores.get(method, math.nan) for s in self.samples], method
            )
        self.rankings[method] = ranking
        return ranking

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.to_json(),
            "params": self.params.to_json(),
            "prompt": self.prompt,
            "chat": self.chat,
            "system": self.system,
            "prompt_token_ids": self.prompt_token_ids,
            "samples": [s.to_json() for s in self.samples],
            "stats": self.stats.to_json() if self.stats else None,
            "rankings": {m: r.to_json() for m, r in self.rankings.items()},
            "vote": self.vote.to_json() if self.vote else None,
            "reward_models": {k: v.to_json() for k, v in self.reward_models.items()},
        }

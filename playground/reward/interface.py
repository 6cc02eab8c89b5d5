"""The reward-model interface: `Scorer.score(prompt, responses)`, its results, and the
names of the kinds and of the score-head file format's keys."""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from playground.errors import PlaygroundError, ResourceError
from playground.records import RewardModelIdentity, Run
from playground.scoring import Ranking, kendall_tau, top_agrees
from playground.units import human_count

if TYPE_CHECKING:
    from playground.engine import LocalEngine
    from playground.reward.decoder import Decoder

KIND_SCORE_HEAD = "score-head"
KIND_RERANKER = "reranker"
KIND_JUDGE = "judge"
KINDS = (KIND_SCORE_HEAD, KIND_RERANKER, KIND_JUDGE)

# The score-head format: keys added to a causal-LM GGUF (docs/reward-models.md).
HEAD_KEY = "playground.reward.score_head"
"""float32 array of n_embd values: the score head's single row."""
BIAS_KEY = "playground.reward.bias"
"""float32, optional (0): added to head . h."""
POOLING_KEY = "playground.reward.pooling"
"""string, optional ("last"): which hidden state the head reads."""
SOURCE_KEY = "playground.reward.source"
"""string, optional: where the head came from (a Hugging Face repo id or a file name)."""
VERSION_KEY = "playground.reward.format_version"
"""uint32, required: FORMAT_VERSION."""
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ScoredResponse:
    """One response's score and exactly what the model read to give it."""

    response: str
    score: float
    """Higher is better; NaN when scoring was cancelled before this response."""
    input_token_ids: tuple[int, ...]
    """The tokens the model scored: feed them to llama.cpp to check the score."""
    raw: tuple[float, ...] = ()
    """What the score was derived from: a reranker's outputs (one per label), the judge's
    (log P(yes), log P(no)); empty for a score head (h is n_embd long)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "score": self.score if math.isfinite(self.score) else None,
            "input_token_ids": list(self.input_token_ids),
            "raw": [float(x) if math.isfinite(x) else None for x in self.raw],
        }


def rank_agreement(a: Ranking, b: Ranking) -> dict[str, float | bool]:
    """How far two rankings of the same samples agree: Kendall tau and whether they share a best
    sample (e.g. the reward model against mean logprob)."""
    return {"kendall_tau": kendall_tau(a.order, b.order), "top_agrees": top_agrees(a, b)}



class Scorer(ABC):
    """What scores responses to a prompt, here or on a server: what `score_run`, the CLI and the
    exports take. Use `open_reward_model` to get one."""

    kind: str = ""
    """'score-head', 'reranker' or 'judge'."""
    rubric: str = ""
    """The judge's question or a reranker's instruction; "" when the model takes none."""

    def score(
        self,
        prompt: str,
        responses: Sequence[str],
        *,
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[float]:
        """A score for each response, higher is better. See `score_detailed`."""
        scored = self.score_detailed(prompt, responses, cancel=cancel, progress=progress)
        return [s.score for s in scored]

    @abstractmethod
    def score_detailed(
        self,
        prompt: str,
        responses: Sequence[str],
        *,
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ScoredResponse]:
        """Each response's score and what the model read to give it; NaN for the responses
        not scored before `cancel` returned True."""

    @abstractmethod
    def identity(self) -> RewardModelIdentity:
        """What a stored score records about the model that gave it."""

    @abstractmethod
    def close(self) -> None:
        """Free what the model holds."""

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RewardModel(Scorer):
    """A reward model run here, by llama.cpp."""

    def __init__(self, engine: LocalEngine, decoder: Decoder, *, owns_engine: bool) -> None:
        self.engine = engine
        """The loaded model (for the judge, possibly the app's generator)."""
        self._decoder = decoder
        self._owns_engine = owns_engine
        self._identity: RewardModelIdentity | None = None

    def identity(self) -> RewardModelIdentity:
        """What a stored score records about the model that gave it. Hashes the file the first
        time (seconds for a large model), then reuses that."""
        if self._identity is None:
            try:
                with open(self.path, "rb") as f:
                    sha256 = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                sha256 = ""
            self._identity = RewardModelIdentity(self.kind, str(self.path), sha256, self.name,
                                                 self.rubric)
        return self._identity

    @property
    def path(self) -> Path:
        return self.engine.path

    @property
    def name(self) -> str:
        return self.engine.info.name

    @property
    def memory_bytes(self) -> int:
        """Size of the weights (llama_model_size); the scoring context comes on top."""
        return self.engine.memory_bytes

    @property
    def n_ctx(self) -> int:
        """Tokens one input may have: template, prompt and response together."""
        return self._decoder.n_ctx

    def score_detailed(
        self,
        prompt: str,
        responses: Sequence[str],
        *,
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ScoredResponse]:
        """Score every response to `prompt` in as few decodes as the context allows.

        `cancel` is polled before each decode: once it returns True no more is computed and the
        responses not yet scored get NaN. `progress(done, total)` follows each group of
        responses decoded together. Raises ResourceError, before anything is computed, when an
        input does not fit the context.
        """
        responses = list(responses)
        inputs = [self.input_tokens(prompt, r) for r in responses]
        for i, tokens in enumerate(inputs):
            if len(tokens) > self.n_ctx:
                raise ResourceError(
                    f"response {i + 1} is {len(tokens):,} tokens with the prompt and "
                    f"{self._wrapping}, but the reward model's context holds {self.n_ctx:,} "
                    "(shorten it, or open the reward model with a larger n_ctx)"
                )
        outputs = self._decoder.run(inputs, cancel, progress)
        scored = []
        for response, tokens, output in zip(responses, inputs, outputs, strict=True):
            score, raw = (math.nan, ()) if output is None else self._score(output)
            scored.append(ScoredResponse(response, score, tuple(tokens), raw))
        return scored

    def input_tokens(self, prompt: str, response: str) -> list[int]:
        """The tokens this model reads to score `response` to `prompt`."""
        if not self._decoder.open:
            # The vocabulary may be freed with the model: never touch it after close().
            raise PlaygroundError("this reward model is closed")
        return self._input_tokens(prompt, response)

    @abstractmethod
    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        """See input_tokens."""

    @abstractmethod
    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        """(score, raw) from what the decoder read for one input."""

    @property
    @abstractmethod
    def _wrapping(self) -> str:
        """What surrounds the prompt and response in an input, for messages."""

    @abstractmethod
    def describe(self) -> str:
        """One line: what the model is and how it turns an input into a score."""

    def close(self) -> None:
        """Free the scoring context (and the model, unless it is a borrowed engine)."""
        self._decoder.close()
        if self._owns_engine:
            self.engine.close()

    def _model_line(self) -> str:
        info = self.engine.info
        return (f"{info.name} ({info.architecture}, {human_count(info.parameters)} parameters, "
                f"{info.quantization})")


def score_run(
    model: Scorer,
    run: Run,
    *,
    method: str = "reward",
    cancel: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Ranking:
    """Score every sample of `run` against its prompt, store the scores as `sample.scores[method]`
    and the model's identity as `run.reward_models[method]`, and return the run's ranking by
    them."""
    scores = model.score(run.prompt, [s.text for s in run.samples], cancel=cancel,
                         progress=progress)
    for sample, score in zip(run.samples, scores, strict=True):
        sample.scores[method] = score
    run.reward_models[method] = model.identity()
    return run.rank(method)


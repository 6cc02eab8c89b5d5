"""Reward scoring on a server: the same `score` / `score_detailed` / `identity` as the local
reward models (`playground.reward`), so `score_run`, the CLI and the exports take either.

- `ServerRewardModel`: a reranker or reward model a server runs itself. The endpoint is probed
  in this order: llama-server's `/rerank` (also TEI's and Jina's shape) and `/v1/rerank`, vLLM's
  `/score` (cross-encoders) and vLLM's `/pooling` (reward models, whose last value is the score).
- `ServerJudge`: the LLM judge through a `RemoteEngine`'s logprobs. The score is log P(yes) -
  log P(no) over the alternatives the server gives for the first answer token. A word missing
  from those top k has a probability below the least likely of them, so the score is then a
  bound, and said so in `raw`; with neither word in the top k it is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from playground.errors import ServerError
from playground.records import RewardModelIdentity
from playground.remote import RemoteEngine, Server
from playground.reward.backends import (
    JUDGE_PROMPT,
    JUDGE_RAW_SUFFIX,
    NO_WORDS,
    YES_WORDS,
)
from playground.reward.interface import (
    KIND_JUDGE,
    KIND_RERANKER,
    KIND_SCORE_HEAD,
    ScoredResponse,
    Scorer,
)
from playground.sampling import SamplingParams

ENDPOINTS = ("/rerank", "/v1/rerank", "/score", "/pooling")


class _ServerScorer(Scorer):
    """What the two share: a server's URL and model id, and nothing held between requests."""

    url = ""
    name = ""
    """The model id the server reports."""

    def identity(self) -> RewardModelIdentity:
        # No file to hash: the server's URL and its model id say which model scored.
        return RewardModelIdentity(self.kind, self.url, "", self.name, self.rubric)

    def close(self) -> None:
        """Nothing is held between requests."""


class ServerRewardModel(_ServerScorer):
    """A reranker or reward model served at `url`; see the module docstring."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 60.0) -> None:
        self.server = Server(url, api_key, timeout)
        self.url = self.server.url
        self.name = str(self.server.first_model()["id"])
        for endpoint in ENDPOINTS:
            if self.server.has("POST", endpoint, self._body(endpoint, "a", ["b"])) is not None:
                self.endpoint = endpoint
                break
        else:
            raise ServerError(f"{self.url} offers no reward or rerank endpoint (tried "
                              f"{', '.join(ENDPOINTS)}; llama-server needs --reranking)")
        self.kind = KIND_SCORE_HEAD if self.endpoint == "/pooling" else KIND_RERANKER

    def _body(self, endpoint: str, prompt: str, responses: list[str]) -> dict[str, Any]:
        if endpoint in ("/rerank", "/v1/rerank"):
            return {"model": self.name, "query": prompt, "documents": responses,
                    "top_n": len(responses)}
        if endpoint == "/score":
            return {"model": self.name, "text_1": prompt, "text_2": responses}
        return {"model": self.name, "input": [f"{prompt}\n{r}" for r in responses]}

    def score_detailed(self, prompt: str, responses: Sequence[str], *,
                       cancel: Callable[[], bool] | None = None,
                       progress: Callable[[int, int], None] | None = None
                       ) -> list[ScoredResponse]:
        responses = list(responses)
        if cancel is not None and cancel():
            return [ScoredResponse(r, math.nan, ()) for r in responses]
        reply = self.server.json("POST", self.endpoint, self._body(self.endpoint, prompt,
                                                                     responses))
        scores = _scores(reply, len(responses), f"{self.url}{self.endpoint}")
        if progress is not None:
            progress(len(responses), len(responses))
        return [ScoredResponse(r, s, (), (s,)) for r, s in zip(responses, scores, strict=True)]

    def describe(self) -> str:
        what = {"/pooling": "its reward model's last pooled value",
                "/score": "its cross-encoder's score"}.get(self.endpoint, "its reranker's "
                                                                          "relevance score")
        return (f"{self.name} on {self.url}: score = {what} ({self.endpoint}), the prompt as "
                "the query and each response as the document")


def _scores(reply: Any, n: int, what: str) -> list[float]:
    """Scores in the responses' order from a rerank ({results: [{index, relevance_score}]}),
    score ({data: [{index, score}]}) or pooling ({data: [{index, data: [..]}]}) answer."""
    try:
        rows = reply["results"] if "results" in reply else reply["data"]
        found: dict[int, float] = {}
        for row in rows:
            value = row.get("relevance_score", row.get("score", row.get("data")))
            while isinstance(value, list):  # a reward model pools to [..[score]]; take the last
                value = value[-1]
            found[int(row["index"])] = float(value)
    except (KeyError, TypeError, ValueError, IndexError):
        raise ServerError(f"{what} answered in an unknown format") from None
    if sorted(found) != list(range(n)):
        raise ServerError(f"{what} scored {len(found)} of the {n} responses")
    return [found[i] for i in range(n)]


class ServerJudge(_ServerScorer):
    """The LLM judge on a remote engine, through its logprobs; see the module docstring."""

    kind = KIND_JUDGE

    def __init__(self, engine: RemoteEngine, rubric: str) -> None:
        """`rubric` as `reward.detection.open_judge` checked it."""
        self.engine = engine
        self.rubric = rubric
        self.url = engine.server.url
        self.name = engine.model_id
        self._chat = engine.info.has_chat_template

    def score_detailed(self, prompt: str, responses: Sequence[str], *,
                       cancel: Callable[[], bool] | None = None,
                       progress: Callable[[int, int], None] | None = None
                       ) -> list[ScoredResponse]:
        k = self.engine.capabilities.max_alternatives
        params = SamplingParams(temperature=0.0, seed=0, max_tokens=1, top_logprobs=k)
        scored = []
        for i, response in enumerate(responses):
            if cancel is not None and cancel():
                scored.append(ScoredResponse(response, math.nan, ()))
                continue
            content = JUDGE_PROMPT.format(prompt=prompt, response=response, rubric=self.rubric)
            run = self.engine.run(content if self._chat else content + JUDGE_RAW_SUFFIX,
                                  params, chat=self._chat)
            tokens = run.samples[0].tokens
            score, raw = _judge_score(tokens[0].top if tokens else ())
            scored.append(ScoredResponse(response, score, tuple(run.prompt_token_ids), raw))
            if progress is not None:
                progress(i + 1, len(responses))
        return scored

    def describe(self) -> str:
        return (f"LLM judge {self.name} on {self.url}: score = log P(yes) - log P(no) over the "
                f"top {self.engine.capabilities.max_alternatives} alternatives of its first "
                f"answer token after the rubric {self.rubric!r}")


def _judge_score(top: Sequence[Any]) -> tuple[float, tuple[float, ...]]:
    """(log P(yes) - log P(no), (log P(yes), log P(no))) from the alternatives; a word absent
    from them counts as likely as the least likely alternative at most (a bound)."""
    def log_mass(words: tuple[str, ...]) -> float:
        # The spellings the local judge counts: each word bare and after one space.
        spellings = {*words, *(" " + w for w in words)}
        found = [a.logprob for a in top if a.text in spellings]
        if not found:
            return -math.inf
        peak = max(found)
        return peak + math.log(sum(math.exp(lp - peak) for lp in found))

    log_yes, log_no = log_mass(YES_WORDS), log_mass(NO_WORDS)
    if math.isinf(log_yes) and math.isinf(log_no):
        return math.nan, (log_yes, log_no)
    # Every word found is in `top`, so a finite mass is at least the floor already.
    floor = min(a.logprob for a in top)
    return max(log_yes, floor) - max(log_no, floor), (log_yes, log_no)


def is_server_spec(spec: str | None) -> bool:
    """Whether a --reward-model names a server ('server' or a URL) rather than a file."""
    return spec == "server" or (spec or "").startswith(("http://", "https://"))

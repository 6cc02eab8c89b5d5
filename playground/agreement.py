"""Does the likelihood know what people prefer? Each ranking measured against human labels.

For every labelled run, each ranking the app offers is compared with each of the run's labels
(`playground.labels.Label`): the mean, sum and normalised log-probability, the majority vote,
and every reward model whose scores the run holds.

- Pair accuracy: over every pair of replies that a label orders strictly (`Label.pairs`), the
  share that the method orders the same way. A pair the method ties (two samples of one answer
  group in a vote, two identical scores) counts one half, what a coin toss would score; a pair
  that the method cannot score (a NaN, e.g. a sample without a reward) is left out, so each
  method counts its own pairs.
- Kendall tau-b, for every label that ranks three replies or more, between the label's ranks
  and the method's scores of those samples: ties on either side are handled by tau-b (a
  "prefer" label ties all the samples it did not choose); a label where one side ties all
  replies has no tau and is left out. The figure is the mean over labels.
Both are also pooled over all the runs asked for: pairs summed, taus averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from playground.errors import Cancelled
from playground.labels import Label
from playground.records import RewardModelIdentity, Run, json_float
from playground.scoring import LOGPROB_SCORES, kendall_tau_b

if TYPE_CHECKING:
    from playground.store import Store

LOGPROB_TITLES = {
    "mean-logprob": "mean logprob",
    "sum-logprob": "sum logprob",
    "normalized-logprob": "normalised logprob",
}


@dataclass(frozen=True)
class Method:
    """A ranking of the samples: `key` names it in the figures."""

    key: str
    """A logprob score's name, "vote", or "reward-model-K" (the K-th reward model met)."""
    title: str
    reward_model: RewardModelIdentity | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title,
                "reward_model": self.reward_model.to_json() if self.reward_model else None}


@dataclass
class Tally:
    """How far one method agrees with the labels of some runs."""

    pairs: int = 0
    agreed: float = 0.0
    """Pairs ordered as the labels order them; a tie counts one half."""
    taus: list[float] = field(default_factory=list)
    """Kendall tau-b of each label of three replies or more that has one."""

    @property
    def pair_accuracy(self) -> float | None:
        return self.agreed / self.pairs if self.pairs else None

    @property
    def kendall_tau(self) -> float | None:
        return math.fsum(self.taus) / len(self.taus) if self.taus else None

    def add(self, other: Tally) -> None:
        self.pairs += other.pairs
        self.agreed += other.agreed
        self.taus.extend(other.taus)

    def to_json(self) -> dict[str, Any]:
        accuracy, tau = self.pair_accuracy, self.kendall_tau
        return {"pairs": self.pairs, "agreed": self.agreed,
                "pair_accuracy": None if accuracy is None else json_float(accuracy),
                "rankings": len(self.taus),
                "kendall_tau": None if tau is None else json_float(tau)}


@dataclass(frozen=True)
class RunAgreement:
    run_id: int
    prompt: str
    labels: int
    tallies: dict[str, Tally]
    """By method key; only the methods this run can be ranked by."""

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "prompt": self.prompt, "labels": self.labels,
                "methods": {key: tally.to_json() for key, tally in self.tallies.items()}}


@dataclass(frozen=True)
class Agreement:
    methods: list[Method]
    runs: list[RunAgreement]
    overall: dict[str, Tally]

    def to_json(self) -> dict[str, Any]:
        return {"methods": [m.to_json() for m in self.methods],
                "runs": [r.to_json() for r in self.runs],
                "overall": {key: tally.to_json() for key, tally in self.overall.items()}}


def label_tally(label: Label, scores: Sequence[float]) -> Tally:
    """One label against one method's scores of the run's samples (by sample index)."""
    assert label.samples is not None, "only a label linked to a run's samples can be measured"
    of = [scores[i] for i in label.samples]
    tally = Tally()
    for better, worse in label.pairs():
        a, b = of[better], of[worse]
        if math.isnan(a) or math.isnan(b):
            continue
        tally.pairs += 1
        tally.agreed += 1.0 if a > b else 0.5 if a == b else 0.0
    if len(label.responses) >= 3:
        kept = [i for i, score in enumerate(of) if not math.isnan(score)]
        tau = kendall_tau_b([-label.ranks[i] for i in kept], [of[i] for i in kept])
        if tau is not None:
            tally.taus.append(tau)
    return tally


class _Methods:
    """The methods met so far, each reward model (by identity) under one key."""

    def __init__(self) -> None:
        self.found: dict[str, Method] = {
            key: Method(key, title) for key, title in
            [*LOGPROB_TITLES.items(), ("vote", "majority vote")]}
        self._rewards: dict[RewardModelIdentity, str] = {}

    def scores(self, run: Run) -> dict[str, list[float]]:
        """Each method's score of every sample of the run, by method key."""
        by_key = {key: [s.logprob_scores()[key] for s in run.samples] for key in LOGPROB_SCORES}
        vote = run.rank("vote")
        place = dict(zip(vote.order, vote.scores, strict=True))
        by_key["vote"] = [place[s.index] for s in run.samples]
        for name, identity in run.reward_models.items():
            key = self._rewards.get(identity)
            if key is None:
                key = f"reward-model-{len(self._rewards) + 1}"
                self._rewards[identity] = key
                self.found[key] = Method(key, f"{identity.name} ({identity.kind})", identity)
            by_key[key] = [s.scores.get(name, math.nan) for s in run.samples]
        return by_key


def agreement(store: Store, run_ids: Sequence[int] | None = None, *,
              progress: Callable[[int, int], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> Agreement:
    """The agreement of every method with the labels of these runs (default: every labelled
    run). Labels not linked to a run's samples cannot be measured and are not counted."""
    ids = list(store.labelled_runs() if run_ids is None else run_ids)
    methods = _Methods()
    runs = []
    overall: dict[str, Tally] = {}
    for done, run_id in enumerate(ids):
        if cancel is not None and cancel():
            raise Cancelled()
        labels = [label for label in store.labels([run_id]) if label.samples is not None]
        run = store.load(run_id)
        tallies: dict[str, Tally] = {}
        for key, scores in methods.scores(run).items():
            tally = Tally()
            for label in labels:
                tally.add(label_tally(label, scores))
            tallies[key] = tally
            overall.setdefault(key, Tally()).add(tally)
        runs.append(RunAgreement(run_id, run.prompt, len(labels), tallies))
        if progress is not None:
            progress(done + 1, len(ids))
    return Agreement([methods.found[key] for key in methods.found if key in overall]
                     if runs else list(methods.found.values()), runs, overall)

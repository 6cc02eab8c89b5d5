"""Reward training: a Bradley-Terry score head fitted, in numpy, on a backbone's hidden states.

The model is P(chosen preferred to rejected) = sigmoid(r(chosen) - r(rejected)) with
r = head . h + bias, h the backbone's final hidden state at the conversation's last token (see
`features`). The bias cancels in every difference, so it is set to centre the training replies'
scores on 0. The head is fitted on standardised features (each dimension divided by its spread
over the training replies, so that one L2 weight treats the dimensions alike) by Newton's method
on the L2-regularised mean log loss, and mapped back to raw h for the file.

`train_reward_model` holds out a random share of the prompts, chooses the L2 weight by
cross-validation on the rest (folds by prompt, so that no prompt's replies are on both sides),
reports the held-out pairwise accuracy and a learning curve, fits the final head on every pair
and packs it with `pack_score_head`: the output is a score-head GGUF that `--reward-model` and
`score` open directly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from playground.errors import Cancelled, InvalidRequestError
from playground.labels import Preference
from playground.reward.features import FeatureExtractor
from playground.reward.packing import pack_score_head

MIN_PAIRS = 4
L2_GRID = tuple(10.0 ** k for k in range(-4, 3))
"""L2 weights tried by cross-validation (on the mean log loss of standardised features)."""
FOLDS = 5
HELD_OUT_SHARE = 0.2
MIN_PROMPT_GROUPS = 5
"""With fewer distinct prompts than this, splits and folds go by pair instead of by prompt."""
CURVE_SHARES = (0.125, 0.25, 0.5, 1.0)
"""Shares of the training prompts the learning curve trains on."""
NEWTON_STEPS = 50


@dataclass(frozen=True)
class Head:
    """A score head over raw hidden states: score = vector . h + bias."""

    vector: np.ndarray
    bias: float

    def scores(self, h: np.ndarray) -> np.ndarray:
        return h.astype(np.float64) @ self.vector + self.bias


@dataclass(frozen=True)
class CrossValidation:
    l2: float
    log_loss: float
    accuracy: float


@dataclass(frozen=True)
class CurvePoint:
    pairs: int
    groups: int
    """Prompts (or pairs, see `TrainingReport.split_by`) trained on."""
    held_out_accuracy: float


@dataclass(frozen=True)
class TrainingReport:
    """What `train_reward_model` measured and wrote."""

    output: str
    backbone: str
    backbone_sha256: str
    pairs: int
    prompts: int
    split_by: str
    """'prompt' (no prompt on both sides of a split) or 'pair' (too few prompts for that)."""
    l2: float
    """The L2 weight cross-validation chose."""
    cross_validation: tuple[CrossValidation, ...]
    held_out_pairs: int
    held_out_accuracy: float
    """Pairwise accuracy on the held-out pairs of a head trained on the others."""
    learning_curve: tuple[CurvePoint, ...]
    train_accuracy: float
    """Of the final head, on every pair it was fitted on."""
    features_cached: int
    features_computed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_preferences(preferences: Sequence[Preference]) -> None:
    if len(preferences) < MIN_PAIRS:
        raise InvalidRequestError(f"reward training needs at least {MIN_PAIRS} preference pairs, "
                                  f"and got {len(preferences)}")
    for number, p in enumerate(preferences, 1):
        if p.chosen == p.rejected:
            raise InvalidRequestError(f"pair {number}: the chosen reply equals the rejected one, "
                                      "so it says nothing about which is better")


def fit_head(chosen: np.ndarray, rejected: np.ndarray, l2: float) -> Head:
    """The Bradley-Terry head for pairs (chosen[i] preferred to rejected[i]), raw features."""
    both = np.concatenate([chosen, rejected]).astype(np.float64)
    mean = both.mean(axis=0)
    spread = both.std(axis=0)
    spread[spread == 0] = 1.0
    weights = _newton((chosen - rejected) / spread, l2)
    vector = weights / spread
    return Head(vector, float(-mean @ vector))


def _newton(differences: np.ndarray, l2: float) -> np.ndarray:
    """argmin_w mean(log(1 + exp(-d . w))) + l2 / 2 |w|^2, by Newton's method with
    backtracking: the objective is strictly convex, so this converges from w = 0."""
    d = differences.astype(np.float64)
    n, width = d.shape
    w = np.zeros(width)

    def objective(w: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -(d @ w)).mean() + 0.5 * l2 * (w @ w))

    value = objective(w)
    for _ in range(NEWTON_STEPS):
        margin = d @ w
        p = 0.5 * (1.0 + np.tanh(0.5 * margin))  # sigmoid, without overflow
        gradient = -(d.T @ (1.0 - p)) / n + l2 * w
        hessian = (d.T * (p * (1.0 - p))) @ d / n + l2 * np.eye(width)
        step = np.linalg.solve(hessian, -gradient)
        decrease = float(-gradient @ step)
        if decrease < 1e-20:
            break
        t = 1.0
        while t > 1e-8:
            candidate = w + t * step
            new_value = objective(candidate)
            if new_value <= value - 0.25 * t * decrease:
                break
            t *= 0.5
        w, value = candidate, new_value
    return w


def pairwise_accuracy(head: Head, chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Share of pairs whose chosen reply scores higher; a tie counts half."""
    margin = head.scores(chosen) - head.scores(rejected)
    return float(((margin > 0) + 0.5 * (margin == 0)).mean())


def log_loss(head: Head, chosen: np.ndarray, rejected: np.ndarray) -> float:
    return float(np.logaddexp(0.0, -(head.scores(chosen) - head.scores(rejected))).mean())


def groups_of(preferences: Sequence[Preference]) -> tuple[list[int], str]:
    """A group per pair for splitting: its prompt's index, or its own index when there are too
    few distinct prompts to split by prompt."""
    prompts: dict[str, int] = {}
    by_prompt = [prompts.setdefault(p.prompt, len(prompts)) for p in preferences]
    if len(prompts) >= MIN_PROMPT_GROUPS:
        return by_prompt, "prompt"
    return list(range(len(preferences))), "pair"


def choose_l2(chosen: np.ndarray, rejected: np.ndarray, groups: Sequence[int], seed: int,
              cancel: Callable[[], bool] | None = None) -> list[CrossValidation]:
    """Each L2 weight's mean held-out log loss and accuracy over the folds (by group)."""
    folds = _fold_of(groups, min(FOLDS, len(set(groups))), seed)
    results = []
    for l2 in L2_GRID:
        losses, accuracies = [], []
        for fold in sorted(set(folds)):
            if cancel is not None and cancel():
                raise Cancelled()
            test = np.array([f == fold for f in folds])
            head = fit_head(chosen[~test], rejected[~test], l2)
            losses.append(log_loss(head, chosen[test], rejected[test]))
            accuracies.append(pairwise_accuracy(head, chosen[test], rejected[test]))
        results.append(CrossValidation(l2, float(np.mean(losses)), float(np.mean(accuracies))))
    return results


def _fold_of(groups: Sequence[int], k: int, seed: int) -> list[int]:
    distinct = sorted(set(groups))
    random.Random(seed).shuffle(distinct)
    fold = {g: i % k for i, g in enumerate(distinct)}
    return [fold[g] for g in groups]


def train_reward_model(
    preferences: Sequence[Preference],
    backbone: Path | str,
    out: Path | str,
    *,
    seed: int = 0,
    n_gpu_layers: int = 0,
    n_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> TrainingReport:
    """Fit a score head on `preferences` over `backbone`'s hidden states and write it, packed,
    to `out`. `progress(done, total)` follows the replies decoded (cached ones cost nothing);
    `cancel` is polled between decodes and fits (Cancelled is raised and nothing is written)."""
    check_preferences(preferences)
    backbone = Path(backbone)
    texts = [(p.prompt, p.chosen) for p in preferences] + [(p.prompt, p.rejected)
                                                           for p in preferences]
    with FeatureExtractor(backbone, n_gpu_layers=n_gpu_layers, n_threads=n_threads) as extractor:
        features = extractor.features(texts, progress=progress, cancel=cancel)
        sha256, cached, computed = extractor.sha256, extractor.cached, extractor.computed
    n = len(preferences)
    chosen, rejected = features[:n], features[n:]
    groups, split_by = groups_of(preferences)

    distinct = sorted(set(groups))
    random.Random(seed).shuffle(distinct)
    held_out_groups = set(distinct[:max(1, round(len(distinct) * HELD_OUT_SHARE))])
    test = np.array([g in held_out_groups for g in groups])
    train_groups = [g for g in groups if g not in held_out_groups]
    cv = choose_l2(chosen[~test], rejected[~test], train_groups, seed, cancel)
    best = min(cv, key=lambda r: (r.log_loss, -r.l2))  # ties: the stronger regularisation
    held_out_accuracy = pairwise_accuracy(fit_head(chosen[~test], rejected[~test], best.l2),
                                          chosen[test], rejected[test])
    curve = _learning_curve(chosen, rejected, groups, test, best.l2, seed)

    head = fit_head(chosen, rejected, best.l2)
    if not np.all(np.isfinite(head.vector)):
        raise InvalidRequestError("training diverged: the head is not finite")
    source = (f"playground reward-train: {n} pairs, {len(set(groups))} {split_by}s, "
              f"L2 {best.l2:g}, held-out accuracy {held_out_accuracy:.3f}")
    if cancel is not None and cancel():
        raise Cancelled()
    written = pack_score_head(backbone, head.vector, out, bias=head.bias, source=source)
    return TrainingReport(
        str(written), str(backbone), sha256, n, len({p.prompt for p in preferences}), split_by,
        best.l2, tuple(cv), int(test.sum()), held_out_accuracy, tuple(curve),
        pairwise_accuracy(head, chosen, rejected), cached, computed)


def _learning_curve(chosen: np.ndarray, rejected: np.ndarray, groups: list[int],
                    test: np.ndarray, l2: float, seed: int) -> list[CurvePoint]:
    """Held-out accuracy of heads trained on growing shares of the training groups (nested:
    each share contains the smaller ones)."""
    train_groups = sorted({g for g, t in zip(groups, test, strict=True) if not t})
    random.Random(seed + 1).shuffle(train_groups)
    points = []
    for share in CURVE_SHARES:
        keep = set(train_groups[:max(1, math.ceil(len(train_groups) * share))])
        rows = np.array([g in keep for g in groups]) & ~test
        head = fit_head(chosen[rows], rejected[rows], l2)
        points.append(CurvePoint(int(rows.sum()), len(keep),
                                 pairwise_accuracy(head, chosen[test], rejected[test])))
    return points

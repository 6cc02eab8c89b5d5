"""The sampler against a brute-force reference: full sort, float64, the documented filter order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from playground.sampling import Sampler, SamplingParams, raw_stats, top_indices


def reference_candidates(logits: np.ndarray, p: SamplingParams, history: list[int]):
    """Penalty, temperature, top-k, top-p, min-p, written the slow obvious way."""
    x = logits.astype(np.float64).copy()
    for t in set(history):
        x[t] = x[t] / p.repeat_penalty if x[t] > 0 else x[t] * p.repeat_penalty
    if p.temperature == 0:
        return [int(np.argmax(x))], np.zeros(1)
    x = x / p.temperature
    order = np.argsort(-x, kind="stable")
    if 0 < p.top_k < len(x):
        order = order[: p.top_k]
    probs = np.exp(x[order] - x[order].max())
    probs /= probs.sum()
    if p.top_p < 1:
        keep = int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1
        order, probs = order[:keep], probs[:keep]
    if p.min_p > 0:
        keep = probs >= p.min_p * probs[0]
        order, probs = order[keep], probs[keep]
    return list(order), np.log(probs / probs.sum())


PARAMS = [
    SamplingParams(seed=1),
    SamplingParams(seed=1, temperature=0),
    SamplingParams(seed=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0),
    SamplingParams(seed=1, temperature=0.7, top_k=0, top_p=0.9, min_p=0.0),
    SamplingParams(seed=1, temperature=1.5, top_k=0, top_p=0.5, min_p=0.0),
    SamplingParams(seed=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0.1),
    SamplingParams(seed=1, temperature=1.2, top_k=5, top_p=0.8, min_p=0.2),
    SamplingParams(seed=1, temperature=0.8, top_k=50, top_p=1.0, min_p=0.0, repeat_penalty=1.5),
]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"T{p.temperature}-k{p.top_k}"
                         f"-p{p.top_p}-m{p.min_p}-r{p.repeat_penalty}")
@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])  # flat to very peaked distributions
def test_candidates_match_the_reference(params: SamplingParams, scale: float):
    rng = np.random.default_rng(int(scale * 10))
    logits = (rng.standard_normal(5000) * scale).astype(np.float32)
    history = list(rng.integers(0, 5000, size=40))
    ids, logprobs = Sampler(params, history=history).candidates(logits)
    ref_ids, ref_logprobs = reference_candidates(logits, params, history)
    assert sorted(ids.tolist()) == sorted(ref_ids)
    by_id = dict(zip(ids.tolist(), logprobs, strict=True))
    for i, lp in zip(ref_ids, ref_logprobs, strict=True):
        assert by_id[i] == pytest.approx(lp, abs=1e-5)
    assert math.fsum(np.exp(logprobs)) == pytest.approx(1.0, abs=1e-9)


def test_sample_returns_the_candidate_logprob():
    logits = np.random.default_rng(0).standard_normal(3000).astype(np.float32) * 2
    sampler = Sampler(SamplingParams(seed=4, temperature=0.9, top_k=0, top_p=0.95, min_p=0))
    ids, logprobs = sampler.candidates(logits)
    table = dict(zip(ids.tolist(), logprobs, strict=True))
    for _ in range(50):
        token, lp, kept = sampler.sample(logits)
        assert lp == pytest.approx(table[token], abs=1e-9)
        assert kept == len(ids)


@pytest.mark.parametrize("vocab", [7, 5000])  # the direct search and the block search
def test_draws_follow_the_sampling_distribution(vocab: int):
    rng = np.random.default_rng(vocab)
    logits = (rng.standard_normal(vocab) * 1.5).astype(np.float32)
    params = SamplingParams(seed=9, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    sampler = Sampler(params)
    ids, logprobs = sampler.candidates(logits)
    top = ids[:3]
    draws = 20000
    counts = np.bincount([sampler.sample(logits)[0] for _ in range(draws)], minlength=vocab)
    for token, lp in zip(top, logprobs[:3], strict=True):
        p = math.exp(lp)
        sigma = math.sqrt(p * (1 - p) / draws)
        assert counts[token] / draws == pytest.approx(p, abs=5 * sigma)


def test_seeds_reproduce_and_differ():
    logits = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    params = SamplingParams(seed=5, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)

    def draws(seed: int) -> list[int]:
        s = Sampler(SamplingParams(**{**params.__dict__, "seed": seed}))
        return [s.sample(logits)[0] for _ in range(30)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_top_indices_equals_a_stable_argsort():
    rng = np.random.default_rng(3)
    masked = (rng.standard_normal(5000) * 3).astype(np.float32)
    masked[rng.permutation(5000)[:4990]] = -np.inf  # a constraint left 10 tokens
    rows = [(rng.standard_normal(20000) * scale).astype(np.float32) for scale in (0.01, 1, 50)]
    rows += [
        np.round(rng.standard_normal(49152) * 4) / 4,  # many ties, as quantized logits have
        np.zeros(3000, dtype=np.float32),
        masked,
    ]
    for x in rows:
        for k in (1, 10, 40, 1000, x.shape[0]):
            assert top_indices(x, k).tolist() == np.argsort(-x, kind="stable")[:k].tolist()


def test_raw_stats_against_log_softmax():
    x = (np.random.default_rng(2).standard_normal(4000) * 3).astype(np.float32)
    x[[5, 9, 17]] = x.max()  # a tie at the top
    full = x.astype(np.float64) - np.log(np.exp(x.astype(np.float64)).sum())
    order = np.argsort(-full, kind="stable")
    # The top token, tied ones, one inside the top 10, one just outside and the least likely.
    for chosen in (5, 9, 17, int(order[7]), int(order[10]), int(order[-1])):
        stats = raw_stats(x, chosen, 10)
        assert stats.logprob == pytest.approx(full[chosen], abs=1e-5)
        assert stats.rank == 1 + int(np.sum(full > full[chosen]))
        assert stats.entropy == pytest.approx(-np.sum(np.exp(full) * full), abs=1e-4)
        assert stats.top_ids.tolist() == order[:10].tolist()
        np.testing.assert_allclose(stats.top_logprobs, full[order[:10]], atol=1e-5)
    assert raw_stats(x, 17, 0).top_ids.tolist() == []


def test_unresolved_seed_is_refused():
    with pytest.raises(ValueError, match="resolve the seed"):
        Sampler(SamplingParams())
    assert SamplingParams().resolved().seed is not None


def test_top_needed_says_how_many_candidates_a_draw_can_reach():
    assert SamplingParams(temperature=0.0, top_k=40).top_needed == 1
    assert SamplingParams(temperature=0.8, top_k=40).top_needed == 40
    assert SamplingParams(temperature=0.8, top_k=0).top_needed == 0
    # A penalty reorders the tokens it lowers, so any token may end up drawn.
    assert SamplingParams(temperature=0.0, repeat_penalty=1.2).top_needed == 0
    assert SamplingParams(temperature=0.0, repeat_penalty=1.2, repeat_last_n=0).top_needed == 1

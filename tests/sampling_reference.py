"""A brute-force reference for the sampling filters, shared by the core and the UI tests: full
sorts in float64, each step of the sampler order one by one, written the slow obvious way."""

from __future__ import annotations

import numpy as np

from playground.sampling import SAMPLER_ORDERS, SamplingParams


def brute_force(logits: np.ndarray, p: SamplingParams, history: list[int]):
    """(probabilities over the vocabulary, what cut each token or None) written the slow
    obvious way: penalty, then the steps of p.sampler_order one by one over sorted arrays."""
    x = logits.astype(np.float64).copy()
    if p.repeat_last_n:
        for t in set(history):
            x[t] = x[t] / p.repeat_penalty if x[t] > 0 else x[t] * p.repeat_penalty
    cut: list[str | None] = [None] * len(x)
    probs = np.zeros(len(x))
    if p.temperature == 0:
        best = int(np.argmax(x))
        cut = ["greedy"] * len(x)
        cut[best] = None
        probs[best] = 1.0
        return probs, cut
    alive = list(np.argsort(-x, kind="stable"))  # most likely first, at any temperature
    scale = 1.0
    for step in SAMPLER_ORDERS[p.sampler_order]:
        if step == "temperature":
            scale = p.temperature
            continue
        values = x[alive] / scale
        q = np.exp(values - values.max())
        q /= q.sum()
        if step == "top-k" and 0 < p.top_k < len(alive):
            keep = p.top_k
        elif step == "top-p" and p.top_p < 1:
            keep = int(np.searchsorted(np.cumsum(q), p.top_p)) + 1
        elif step == "min-p" and p.min_p > 0:
            keep = int(np.sum(q >= p.min_p * q[0]))
        else:
            continue
        for t in alive[keep:]:
            cut[t] = step
        alive = alive[:keep]
    values = x[alive] / p.temperature
    q = np.exp(values - values.max())
    probs[alive] = q / q.sum()
    return probs, cut

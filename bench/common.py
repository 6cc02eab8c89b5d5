"""Shared by the benchmarks: alternate contenders in one run and report their ratio.

Each benchmark measures the product against a named baseline side by side in one process,
alternating the two round by round so that drift (thermal, other load) hits both alike, and
prints the ratio of medians. Run them with the project's venv: `.venv/bin/python bench/X.py`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import llama_cpp

from playground.engine import default_model_path, default_threads


def baseline_llama(n_ctx: int = 4096, **kwargs) -> llama_cpp.Llama:
    """Plain llama-cpp-python on the embedded model, with the engine's thread counts."""
    threads, batch_threads = default_threads()
    return llama_cpp.Llama(
        model_path=str(default_model_path()),
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=batch_threads,
        verbose=False,
        **kwargs,
    )


def alternate(
    rounds: int, contenders: dict[str, Callable[[], int]], warmup: int = 1
) -> dict[str, list[float]]:
    """Run each contender once per round, in turn; each returns how many tokens it made.
    Returns tokens per second for every round, by contender."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(warmup + rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            tokens = fn()
            seconds = time.perf_counter() - start
            if round_ >= warmup:
                rates[name].append(tokens / seconds)
    return rates


def report(title: str, rates: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Print the median rate of each contender and its ratio to the baseline."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\n{title}")
    for name, median in medians.items():
        spread = f"{min(rates[name]):.1f}-{max(rates[name]):.1f}"
        ratio = medians[name] / medians[baseline]
        print(f"  {name:<44} {median:8.1f} tok/s  (rounds {spread})  ratio {ratio:.3f}")
    return {name: medians[name] / medians[baseline] for name in medians}

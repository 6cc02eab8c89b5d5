"""Decode speed by thread count, to choose the engine's default (`default_threads`).

Generation of one sequence is memory-bound; on small machines extra threads can cost more in
synchronisation than they add. Alternates 1, 2, ... up to the core count in one run.
"""

from __future__ import annotations

import os

from common import alternate, report

from playground.engine import load
from playground.sampling import SamplingParams

PARAMS = SamplingParams(temperature=0.8, seed=3, max_tokens=96, top_logprobs=10)
PROMPT = "Explain how tides work."


def main() -> None:
    cores = os.cpu_count() or 1
    counts = sorted({1, 2, max(1, cores // 2), cores})
    engines = {n: load(n_threads=n) for n in counts}
    for engine in engines.values():
        engine.is_end_of_generation = lambda token: False

    def contender(n: int):
        return lambda: engines[n].run(PROMPT, PARAMS).stats.new_tokens

    rates = alternate(5, {f"{n} decode thread{'s' if n > 1 else ''}": contender(n)
                          for n in counts})
    report(f"decode speed by threads ({cores} logical cores), SmolLM2-135M Q4_1", rates,
           baseline="1 decode thread")


if __name__ == "__main__":
    main()

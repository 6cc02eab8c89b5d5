"""Decode speed by thread count, idle and beside one CPU-bound process: pinned counts against
the engine's adaptive choice (`playground.threads`), best-of-8 and a single stream.

Generation is memory-bound, and ggml's workers spin at barriers: on small machines extra
threads can cost more in synchronisation than they add, the more so when another process wants
a core. Alternates 1, 2, ... up to the core count and the adaptive engine in one run; the
adaptive one should be about the best pinned count in both conditions.
"""

from __future__ import annotations

import os
import subprocess
import sys

from common import alternate, report

from playground.engine import load
from playground.sampling import SamplingParams

PARAMS = SamplingParams(temperature=0.8, seed=3, max_tokens=96, top_logprobs=10)
PROMPT = "Explain how tides work."


def main() -> None:
    cores = os.cpu_count() or 1
    counts = sorted({1, 2, max(1, cores // 2), cores})
    engines = {f"{n} decode thread{'s' if n > 1 else ''}": load(n_threads=n) for n in counts}
    engines["adaptive"] = load()
    for engine in engines.values():
        engine.is_end_of_generation = lambda token: False

    def contender(name: str, n: int):
        return lambda: engines[name].run(PROMPT, PARAMS, n=n).stats.new_tokens

    for condition in ("idle", "beside one busy process"):
        busy = None
        if condition != "idle":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for n in (8, 1):
                rates = alternate(3, {name: contender(name, n) for name in engines})
                report(f"N={n}, {condition}, {cores} logical cores, SmolLM2-135M Q4_1", rates,
                       baseline="1 decode thread")
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()


if __name__ == "__main__":
    main()

"""The playground against llama-server, its peer, on the same machine and model, in one run.

llama-server is built from the llama.cpp sources that the installed llama-cpp-python vendors
(`dev.llama_server()`, cached in the user's cache folder) and started on 127.0.0.1 with `-np 8`
and its default threads. Both sides get the same prompt tokens, sampling settings (temperature
0.8, top-k 40, top-p 0.95, min-p 0.05, no repetition penalty), 10 alternatives per token, and
ignore end of generation. Each case alternates the two contenders round by round:
- best-of-8 x 128 tokens: one playground run of N=8 against 8 parallel requests;
- a single stream of 256 tokens: a playground run of N=1 against one request.
Every case runs on the idle machine, then beside one CPU-bound process that the bench starts
and stops itself. Prompts are read cold on both sides (no prompt cache). It prints the rates
and the four ratios (playground / llama-server). `BENCH_ROUNDS` sets the rounds (default 3).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import alternate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for dev.py

import dev
from playground.engine import default_model_path, load
from playground.sampling import SamplingParams

N, BEST_OF_LENGTH, SINGLE_LENGTH = 8, 128, 256
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PROMPT = "Give me a name for a new coffee shop."
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
ALTERNATIVES = 10
TARGETS = {"best-of-8, idle": 1.0, "single stream, idle": 1.0,
           "best-of-8, one busy process": 1.5, "single stream, one busy process": 1.5}


def completion(url: str, tokens: list[int], length: int, seed: int) -> int:
    """One /completion request; returns the tokens it generated."""
    body = {
        "prompt": tokens, "n_predict": length, "seed": seed, "ignore_eos": True,
        "n_probs": ALTERNATIVES, "cache_prompt": False, "repeat_penalty": 1.0,
        # The playground's order: temperature, then top-k, top-p and min-p.
        "samplers": ["temperature", "top_k", "top_p", "min_p"], **SAMPLING,
    }
    request = urllib.request.Request(f"{url}/completion", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        answer = json.load(reply)
    made = len(answer["completion_probabilities"])
    if made != length or len(answer["completion_probabilities"][0]["top_logprobs"]) \
            != ALTERNATIVES:
        raise RuntimeError(f"llama-server made {made} tokens, not {length}, or too few "
                           "alternatives")
    return made


def main() -> None:
    model = default_model_path()
    engine = load(model)
    engine.is_end_of_generation = lambda token: False
    tokens = engine.prompt_tokens(PROMPT, chat=True)
    pool = ThreadPoolExecutor(N)

    def playground(n: int, length: int):
        params = SamplingParams(**SAMPLING, repeat_penalty=1.0, seed=7, max_tokens=length,
                                top_logprobs=ALTERNATIVES)

        def run() -> int:
            engine.forget_prompt()
            made = engine.run(PROMPT, params, n=n).stats.new_tokens
            assert made == n * length
            return made

        return run

    def server(url: str, n: int, length: int):
        def run() -> int:
            return sum(pool.map(lambda i: completion(url, tokens, length, 7 + i), range(n)))

        return run

    medians: dict[str, dict[str, float]] = {}
    with dev.running_llama_server(model, "-np", str(N), "-c", "4096") as url:
        for load_label in ("idle", "one busy process"):
            busy = None
            if load_label != "idle":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for case, n, length in (("best-of-8", N, BEST_OF_LENGTH),
                                        ("single stream", 1, SINGLE_LENGTH)):
                    label = f"{case}, {load_label}"
                    rates = alternate(ROUNDS, {"playground": playground(n, length),
                                               "llama-server": server(url, n, length)})
                    medians[label] = {k: statistics.median(v) for k, v in rates.items()}
                    spreads = "  ".join(f"{k} {min(v):.1f}-{max(v):.1f}"
                                        for k, v in rates.items())
                    threads = engine.threads.current("batched" if n > 1 else "single")
                    print(f"{label:<34} playground {medians[label]['playground']:6.1f} tok/s"
                          f"   llama-server {medians[label]['llama-server']:6.1f} tok/s"
                          f"   (rounds: {spreads}; decode threads now "
                          f"{threads})", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    pool.shutdown()
    print(f"\nplayground / llama-server, SmolLM2-135M Q4_1, {os.cpu_count()} logical cores, "
          f"median of {ROUNDS} rounds:")
    for label, target in TARGETS.items():
        ratio = medians[label]["playground"] / medians[label]["llama-server"]
        verdict = "met" if ratio >= target else "NOT met"
        print(f"  {label:<34} {ratio:5.2f}x   (target >= {target:.1f}x: {verdict})")


if __name__ == "__main__":
    main()

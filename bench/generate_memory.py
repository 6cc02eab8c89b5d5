"""Peak memory for 2048 new tokens with top-10 logprobs: the engine (last logits row only)
against llama-cpp-python's logits_all path, which keeps an n_ctx x n_vocab float32 array.

Each side runs in its own fresh process; the peak resident set size (ru_maxrss) is read after
it exits. End of generation is ignored on both sides so that both make all 2048 tokens.
"""

from __future__ import annotations

import resource
import subprocess
import sys

NEW_TOKENS = 2048
PROMPT = "Write a very long story about a lighthouse keeper."


def child(mode: str) -> None:
    from playground.engine import load
    from playground.sampling import SamplingParams

    engine = load(n_ctx=NEW_TOKENS + 64)
    banned = {t: -1e9 for t in range(engine.n_vocab) if engine.is_end_of_generation(t)}
    prompt = engine.prompt_tokens(PROMPT, chat=True)
    if mode == "playground":
        engine.is_end_of_generation = lambda token: False
        run = engine.run(PROMPT, SamplingParams(seed=1, max_tokens=NEW_TOKENS, top_logprobs=10))
        made = run.stats.new_tokens
    else:
        engine.close()
        from common import baseline_llama

        llm = baseline_llama(n_ctx=NEW_TOKENS + 64, logits_all=True)
        out = llm.create_completion(prompt, max_tokens=NEW_TOKENS, logprobs=10, seed=1,
                                    logit_bias=banned)
        made = out["usage"]["completion_tokens"]
    print(made)


def main() -> None:
    peaks = {}
    for mode in ("playground", "logits_all"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run([sys.executable, __file__, mode], capture_output=True, text=True,
                             check=True)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        # ru_maxrss of children is the largest of any child so far: run the smaller one first.
        assert peak_kib >= before
        peaks[mode] = peak_kib / 1024
        print(f"  {mode:<12} {int(out.stdout.split()[-1]):>5} new tokens, "
              f"peak RSS {peaks[mode]:7.1f} MiB")
    print(f"\npeak memory, {NEW_TOKENS} new tokens with top-10 logprobs, SmolLM2-135M Q4_1:")
    print(f"  playground {peaks['playground']:.0f} MiB vs logits_all {peaks['logits_all']:.0f} MiB"
          f" (ratio {peaks['playground'] / peaks['logits_all']:.2f})")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        child(sys.argv[1])
    else:
        main()

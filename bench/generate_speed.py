"""Speed of `generate` recording the top-10 alternatives of every token, against plain
llama-cpp-python `create_completion` without logprobs: same model, prompt tokens, sampling
parameters, seed and length, alternated in one run.

Both keep the prompt's KV cache between calls (llama-cpp-python's prefix match, the engine's
`_reuse_prefix`), so both measure generation rather than prompt reading. End of generation is
ignored on both sides so that every call makes exactly LENGTH tokens.
"""

from __future__ import annotations

from common import alternate, baseline_llama, report

from playground.engine import load
from playground.sampling import SamplingParams

LENGTH = 128
ROUNDS = 7
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def main() -> None:
    params = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=42,
                            max_tokens=LENGTH, top_logprobs=10)
    engine = load()
    banned = {t: -1e9 for t in range(engine.n_vocab) if engine.is_end_of_generation(t)}
    engine.is_end_of_generation = lambda token: False  # exactly LENGTH tokens every call
    prompt_tokens = engine.prompt_tokens(PROMPT, chat=True)
    llm = baseline_llama()

    def ours() -> int:
        run = engine.run(PROMPT, params)
        return run.stats.new_tokens

    def theirs() -> int:
        out = llm.create_completion(
            prompt_tokens, max_tokens=LENGTH, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
            repeat_penalty=1.0, seed=42, logit_bias=banned,
        )
        return out["usage"]["completion_tokens"]

    rates = alternate(ROUNDS, {"playground generate (top-10 logprobs)": ours,
                               "llama-cpp-python create_completion": theirs})
    ratio = report(f"generate, {LENGTH} new tokens, SmolLM2-135M Q4_1, {ROUNDS} rounds",
                   rates, baseline="llama-cpp-python create_completion")
    print(f"\nspeed ratio (target >= 0.95): {ratio['playground generate (top-10 logprobs)']:.3f}")


if __name__ == "__main__":
    main()

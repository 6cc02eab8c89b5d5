"""Best-of-8 with 128 new tokens: the engine's batched decoding against eight sequential plain
llama-cpp-python `create_completion` calls, with a short prompt and with a 512-token prompt.

Each round starts both sides cold (no prompt in the KV cache). Within its eight calls the
baseline keeps llama-cpp-python's own prefix cache, so it reads the prompt once, like the
engine; a third contender resets between calls, the naive loop that reads the prompt N times.
End of generation is ignored so that every sample has exactly 128 tokens.
"""

from __future__ import annotations

from common import alternate, baseline_llama, report

from playground.engine import load
from playground.sampling import SamplingParams

N, LENGTH, ROUNDS = 8, 128, 3
SHORT = "Give me a name for a new coffee shop."
FILLER = ("The history of lighthouses begins with fires lit on hilltops to guide ships. "
          "Later, towers were built and lamps were fuelled with oil, then gas, then electricity. ")


def main() -> None:
    engine = load()
    banned = {t: -1e9 for t in range(engine.n_vocab) if engine.is_end_of_generation(t)}
    engine.is_end_of_generation = lambda token: False
    llm = baseline_llama()
    long_prompt = FILLER * 40
    while len(engine.prompt_tokens(long_prompt + SHORT, chat=True)) > 512:
        long_prompt = long_prompt[:-40]
    params = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7,
                            max_tokens=LENGTH, top_logprobs=10)
    for label, prompt in (("short prompt", SHORT), ("512-token prompt", long_prompt + SHORT)):
        tokens = engine.prompt_tokens(prompt, chat=True)

        def batched(prompt=prompt) -> int:
            engine.forget_prompt()
            return engine.run(prompt, params, n=N).stats.new_tokens

        def sequential(tokens=tokens, reset_each=False) -> int:
            made = 0
            llm.reset()
            for i in range(N):
                if reset_each:
                    llm.reset()
                out = llm.create_completion(
                    tokens, max_tokens=LENGTH, temperature=0.8, top_k=40, top_p=0.95,
                    min_p=0.05, repeat_penalty=1.0, seed=7 + i, logit_bias=banned)
                made += out["usage"]["completion_tokens"]
            return made

        rates = alternate(ROUNDS, {
            f"playground batched best-of-{N}": batched,
            f"{N} x create_completion (prefix cache)": sequential,
            f"{N} x create_completion (reset each call)": lambda s=sequential: s(reset_each=True),
        })
        report(f"best-of-{N}, {LENGTH} new tokens, {label} ({len(tokens)} tokens), "
               f"SmolLM2-135M Q4_1, {ROUNDS} rounds", rates,
               baseline=f"{N} x create_completion (prefix cache)")


if __name__ == "__main__":
    main()

"""Reward scoring of 8 best-of-N samples: all in one batched call against one call per response,
on the embedded SmolLM2 in score-head form (a random head packed into a temporary GGUF).

The 8 responses are real samples of the engine (128 new tokens at most). Both sides score the same
inputs with the same scoring context and get the same numbers (checked here): the batched call
decodes the shared chat-template-and-prompt tokens once and every response's own tokens together,
the other decodes each whole input alone. A third contender batches without sharing the prefix,
to show what the batching alone gives. Rates are input tokens scored per second.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from common import alternate, report

from playground.engine import default_model_path, load
from playground.reward import decoder, open_reward_model, pack_reward_model
from playground.sampling import SamplingParams

N, LENGTH, ROUNDS = 8, 128, 3
SHORT = "Give me a name for a new coffee shop, and explain why it works."
FILLER = ("The history of lighthouses begins with fires lit on hilltops to guide ships. "
          "Later, towers were built and lamps were fuelled with oil, then gas, then electricity. ")


@contextmanager
def no_shared_prefix():
    shared = decoder._shared_prefix
    decoder._shared_prefix = lambda inputs: 0
    try:
        yield
    finally:
        decoder._shared_prefix = shared


def main() -> None:
    engine = load()
    params = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7,
                            max_tokens=LENGTH)
    prompts = {"short prompt": SHORT, "400-token prompt": FILLER * 12 + SHORT}
    samples = {label: [s.text for s in engine.run(p, params, n=N).samples]
               for label, p in prompts.items()}
    engine.close()
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.npy"
        np.save(head, np.random.default_rng(0).standard_normal(576).astype(np.float32))
        path = pack_reward_model(default_model_path(), head, Path(tmp) / "smollm2-rm.gguf")
        with open_reward_model(path) as model:
            for label, prompt in prompts.items():
                responses = samples[label]
                tokens = sum(len(model.input_tokens(prompt, r)) for r in responses)
                batched = model.score(prompt, responses)
                alone = [model.score(prompt, [r])[0] for r in responses]
                assert batched == alone, "batched and one-at-a-time scores differ"

                def together(prompt=prompt, responses=responses, tokens=tokens) -> int:
                    model.score(prompt, responses)
                    return tokens

                def one_by_one(prompt=prompt, responses=responses, tokens=tokens) -> int:
                    for response in responses:
                        model.score(prompt, [response])
                    return tokens

                def unshared(prompt=prompt, responses=responses, tokens=tokens) -> int:
                    with no_shared_prefix():
                        model.score(prompt, responses)
                    return tokens

                rates = alternate(ROUNDS, {
                    f"batched score of {N} (shared prefix)": together,
                    f"batched score of {N}, no shared prefix": unshared,
                    f"{N} x score of one": one_by_one,
                })
                ratio = report(f"reward scoring, {N} samples of <= {LENGTH} tokens, {label} "
                               f"({tokens} input tokens in all), SmolLM2-135M Q4_1 score-head, "
                               f"{ROUNDS} rounds", rates, baseline=f"{N} x score of one")
                print(f"\nbatched / one at a time (target >= 1.3): "
                      f"{ratio[f'batched score of {N} (shared prefix)']:.2f}x")


if __name__ == "__main__":
    main()

"""Grammar-constrained structured output (the structured-output demonstration): best-of-8 JSON
constrained by the schema's grammar, against 8 plain llama-cpp-python calls with the same
grammar (`create_completion(grammar=...)`), and against the engine unconstrained to show what
the grammar costs. Rates are new tokens per second; every constrained output is checked valid.
"""

from __future__ import annotations

import json

from common import alternate, baseline_llama, report
from llama_cpp import LlamaGrammar

from playground.demos.structured import json_schema_grammar, validate_json
from playground.engine import load
from playground.sampling import SamplingParams

N, LENGTH, ROUNDS = 8, 64, 3
PROMPT = ("Describe a fictional person as JSON with the fields name (a string), age (an "
          "integer) and city (a string). Reply with the JSON only.")
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
          "city": {"type": "string"}}, "required": ["name", "age", "city"],
          "additionalProperties": False}


def main() -> None:
    engine = load()
    gbnf = json_schema_grammar(SCHEMA)
    params = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7,
                            max_tokens=LENGTH)
    llama = baseline_llama(flash_attn=True)
    grammar = LlamaGrammar.from_string(gbnf, verbose=False)
    prompt_text = engine.detokenize(engine.prompt_tokens(PROMPT, chat=True))

    def engine_run(constrained: bool) -> int:
        run = engine.start_run(PROMPT, params, N)
        for event in engine.generate(
                run, constraint=engine.grammar_constraint(gbnf) if constrained
                else None):
            run.add(event)
        if constrained:
            assert all(validate_json(s.text, SCHEMA)[0] for s in run.samples), "invalid JSON"
        return sum(len(s.tokens) for s in run.samples)

    def plain_llama() -> int:
        tokens = 0
        for i in range(N):
            out = llama.create_completion(prompt_text, max_tokens=LENGTH, temperature=0.8,
                                          top_k=40, top_p=0.95, min_p=0.05, seed=7 + i,
                                          grammar=grammar)
            json.loads(out["choices"][0]["text"])
            tokens += out["usage"]["completion_tokens"]
        return tokens

    rates = alternate(ROUNDS, {
        "engine, best-of-8 with the grammar": lambda: engine_run(True),
        "llama-cpp-python, 8 calls with the grammar": plain_llama,
        "engine, best-of-8 without a grammar": lambda: engine_run(False),
    })
    report(f"JSON from a schema, {N} samples x {LENGTH} tokens at most",
           rates, "llama-cpp-python, 8 calls with the grammar")


if __name__ == "__main__":
    main()

"""Synthetic runs for the store and export tests, and a script that records one until killed.

`synthetic_events` makes the event stream the engine would yield (round-robin over the samples,
as one batched decode per step), from random numbers and a made-up vocabulary that has what real
tokenizers have: whole words, Hindi split into bytes, emoji split across tokens (so a token's text
can be "" or U+FFFD while its bytes are part of a character), and a NUL byte. No model is needed.

Run as a script (`python tests/store_writer.py DB`) it records a run through a `RunWriter`: samples
0 and 1 complete, then sample 2 streams one token every 20 ms and never ends. It prints the run id
and keeps going until it is killed (tests/test_store.py kills it with SIGKILL).
"""

from __future__ import annotations

import codecs
import sys
import time
from pathlib import Path

import numpy as np

from playground.gguf_file import ModelInfo
from playground.records import Alternative, Event, Run, RunEnd, RunStats, SampleEnd, TokenRecord
from playground.sampling import SamplingParams

WORDS = ["the", " cat", " sat", " on", " a", " mat", ".", "\n", " 42", " answer", " is", " B"]
PIECES = [w.encode() for w in WORDS] + [
    "नमस्ते".encode(),  # Hindi, whole
    "दुनिया".encode()[:4],  # Hindi, cut inside a character...
    "दुनिया".encode()[4:],  # ...and the rest of it
    "🙂".encode()[:2],  # an emoji in two tokens
    "🙂".encode()[2:],
    b"\x00",  # a NUL byte
    "é".encode(),
    b" \xf0\x9f\x8e\x89 party",  # emoji then text in one token
]
VOCAB_SIZE = 32000


def piece(token: int) -> bytes:
    """The bytes of a synthetic token: the interesting pieces first, then byte-ish filler."""
    if token < len(PIECES):
        return PIECES[token]
    return f"<{token}>".encode()


def model_info(path: str = "/nonexistent/models/synthetic-7b.Q4_K_M.gguf") -> ModelInfo:
    return ModelInfo(
        path=path, name="Synthetic 7B", architecture="llama", parameters=7_241_732_096,
        quantization="Q4_K_M", file_size=4_368_439_584, context_length=4096,
        vocab_size=VOCAB_SIZE, layers=32, embedding_length=4096, has_chat_template=True,
        license=None, kind="model",
    )


def start_run(
    n_samples: int,
    *,
    prompt: str = "What is 6 x 7? नमस्ते 🙂",
    system: str | None = "You are terse.",
    top_logprobs: int = 10,
    max_tokens: int = 2048,
    seed: int = 1234,
    model: ModelInfo | None = None,
) -> Run:
    params = SamplingParams(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, seed=seed,
                            max_tokens=max_tokens, stop=("\n\n",), top_logprobs=top_logprobs)
    prompt_ids = [1, *range(100, 100 + len(prompt))]
    return Run.start(model or model_info(), params, prompt, prompt_ids, n_samples, chat=True,
                     system=system)


def synthetic_events(
    run: Run, n_tokens: int | list[int], *, seed: int = 0, end: bool = True
) -> list[Event]:
    """The events of `run`'s samples, `n_tokens` each (or per sample), ending each sample with a
    SampleEnd (and the run with a RunEnd) when `end`."""
    counts = [n_tokens] * len(run.samples) if isinstance(n_tokens, int) else list(n_tokens)
    k = run.params.top_logprobs
    rng = np.random.default_rng(seed)
    streams = []
    for index, count in enumerate(counts):
        # Zipf-like ids, as real text reuses a small part of the vocabulary.
        ids = np.minimum(rng.zipf(1.3, size=count) - 1, VOCAB_SIZE - 1)
        logprobs = -rng.exponential(1.0, size=count)
        sampling = logprobs * 0.8 + rng.normal(0, 0.01, size=count)
        entropies = rng.exponential(2.0, size=count)
        ranks = rng.integers(1, 5, size=count)
        alt_ids = np.minimum(rng.zipf(1.3, size=(count, k)) - 1, VOCAB_SIZE - 1)
        alt_lps = np.sort(-rng.exponential(2.0, size=(count, k)), axis=1)[:, ::-1]
        kept = rng.integers(1, 50, size=count)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        records = []
        for i in range(count):
            token = int(ids[i])
            data = piece(token)
            records.append(TokenRecord(
                sample=index, position=i, id=token, bytes=data, text=decoder.decode(data),
                logprob=float(logprobs[i]), sampling_logprob=float(sampling[i]),
                rank=int(ranks[i]), entropy=float(entropies[i]), kept=int(kept[i]),
                top=tuple(
                    Alternative(int(a), piece(int(a)).decode("utf-8", "replace"), float(lp))
                    for a, lp in zip(alt_ids[i], alt_lps[i], strict=True)
                ),
            ))
        streams.append(records)
    events: list[Event] = []
    for step in range(max(counts, default=0)):
        for index, records in enumerate(streams):
            if step < len(records):
                events.append(records[step])
            if end and step == len(records) - 1:
                events.append(_end(index, records))
    if end:
        events += [_end(i, r) for i, r in enumerate(streams) if not r]
        events.append(RunEnd(RunStats(len(run.prompt_token_ids), sum(counts), 12.5)))
    return events


def _end(index: int, records: list[TokenRecord]) -> SampleEnd:
    text = b"".join(r.bytes for r in records).decode("utf-8", "replace")
    return SampleEnd(index, "length" if index % 2 else "stop", text, len(records))


def synthetic_run(n_samples: int = 4, n_tokens: int | list[int] = 50, *, seed: int = 0,
                  **options: object) -> Run:
    """A finished run built through `Run.add`, as the engine's consumers build one."""
    run = start_run(n_samples, **options)  # type: ignore[arg-type]
    for event in synthetic_events(run, n_tokens, seed=seed):
        run.add(event)
    return run


# ---------------------------------------------------------------------------------------------
# The script

KILLED_RUN_TOKENS = 40
"""Tokens of each complete sample of the script's run; sample 2 has 100 times as many."""


def killed_run_events() -> tuple[Run, list[Event]]:
    """The run the script records, and its events (sample 2 never ends)."""
    run = start_run(3, seed=99)
    done = synthetic_events(run, [KILLED_RUN_TOKENS, KILLED_RUN_TOKENS, 0], seed=5)
    done = [e for e in done if not isinstance(e, RunEnd) and getattr(e, "sample", 0) != 2]
    streaming = synthetic_events(run, [0, 0, KILLED_RUN_TOKENS * 100], seed=6, end=False)
    return run, done + streaming


def main(db: str) -> None:
    from playground.store import Store

    run, events = killed_run_events()
    store = Store(Path(db))
    writer = store.begin(run)
    print(writer.run_id, flush=True)
    for event in events:
        writer.add(event)
        if isinstance(event, TokenRecord) and event.sample == 2:
            time.sleep(0.02)
    while True:  # pragma: no cover - waits to be killed
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1])

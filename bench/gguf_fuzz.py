"""Fuzz the GGUF reader: random mutations of real headers, and what each one got.

Runs tests/gguf_fuzz.py's mutations on the tiny test model's header (17 KB) and, unless
`--tiny-only`, on the embedded SmolLM2's (1.8 MB, slower per mutant), and prints the counts of
each outcome, the first example of every failure and the commonest rejection messages. Exits
non-zero when a mutant crashed the reader, hung it, made it allocate much, or got a message of
more than one line.

    .venv/bin/python bench/gguf_fuzz.py [-n 20000] [--seed 1] [--embedded-n 500] [--tiny-only]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import gguf_fuzz  # from tests/, put on the path just above
import tiny_models

from playground.paths import embedded_model_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="mutants of the tiny model")
    parser.add_argument("--embedded-n", type=int, default=500,
                        help="mutants of the embedded model's header")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tiny-only", action="store_true")
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        models = [("tiny model", tiny_models.write_tiny_llama(work / "tiny.gguf"), args.n)]
        embedded = embedded_model_path()
        if not args.tiny_only and embedded is not None:
            models.append(("embedded SmolLM2", embedded, args.embedded_n))
        for label, model, n in models:
            start = time.perf_counter()
            report = gguf_fuzz.fuzz(model, n, args.seed, work)
            seconds = time.perf_counter() - start
            print(f"{label} ({model.name}), seed {args.seed}, {seconds:.1f} s "
                  f"({seconds / n * 1000:.1f} ms a mutant)")
            for line in gguf_fuzz.describe(report, n):
                print("  " + line)
            print("  commonest rejections:")
            for message, count in report.messages.most_common(12):
                print(f"    {count:6}  {message[:110]}")
            failures += report.failures
    print(f"failures: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

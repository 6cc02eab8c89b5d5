"""Random mutations of a real GGUF header, read the way the app reads a model file.

`fuzz(model, n, seed, folder)` takes the header of `model` (every byte before its tensor data),
mutates it `n` times and gives each mutant to `read_header` and `model_info`, as the engine,
the model list and the reward models do. The reader never reads tensor data, only checks that
it lies inside the file, so each mutant file is the mutated header followed by a hole up to the
original file's size, or for half of them up to 4 GiB, the size of a real model (sparse: nothing
is written there, and the hole reads as zeros).

A fifth of the mutants have one metadata value replaced by a well-formed value of another type
(text where a number belongs, NaN, a negative count, an empty array, arrays nested 10,000 deep);
a tenth get such a value under a key the reader reads (general.alignment, a context
length...), added when the header lacks it. In the rest, half of the mutations hit the header's
structure: the version and counts, every key and string length, value type, array element type
and count, tensor dimension count, shape, type and offset (found by walking the original header,
independently of the reader). The others hit any byte. A mutation flips bits, writes an
"interesting" integer (0, 1, -1, powers of two, the file size...) of 1, 4 or 8 bytes, cuts the
header short, deletes or duplicates a run of bytes; 1 to 8 of them at once.

Each outcome is one of: "accepted" (model_info returned), "rejected" (a one-line
ModelFileError), or a failure: "crash: <exception type>", "multi-line message", "slow" (over
`SLOW_SECONDS`: a hang), "large allocation" (the process's peak memory grew by over
`MAX_ALLOCATION` while reading it; meaningful in a fresh process, which is why the test runs this
module as a script). The test suite runs a seeded few hundred; `bench/gguf_fuzz.py` runs tens of
thousands.

As a script: `python tests/gguf_fuzz.py MODEL N SEED` prints the report as one JSON document.
"""

from __future__ import annotations

import json
import random
import resource
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from playground.errors import ModelFileError
from playground.gguf_file import model_info, read_header

SLOW_SECONDS = 5.0
MAX_ALLOCATION = 64 * 2**20
BIG_FILE = 4 * 2**30
FAILURES = ("crash", "multi-line message", "slow", "large allocation")
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # scalar types
_STRING, _ARRAY = 8, 9


@dataclass
class FuzzReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, tuple[int, str]] = field(default_factory=dict)
    """For each failure kind: the first mutant's number and what happened."""
    messages: Counter[str] = field(default_factory=Counter)
    """Rejection messages, with the file name and numbers taken out."""

    @property
    def failures(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if kind.startswith(FAILURES))


@dataclass(frozen=True)
class Structure:
    fields: list[tuple[int, int]]
    """(offset, width) of every structural integer: counts, lengths, types, shapes, offsets."""
    values: list[tuple[int, int]]
    """(start, end) of every metadata value with its type id in front."""
    keys: dict[str, tuple[int, int]]
    """The same, by key."""


def walk(header: bytes) -> Structure:
    """Where the structure of a valid GGUF header lies."""
    fields = [(4, 4), (8, 8), (16, 8)]
    values = []
    n_tensors, n_kv = struct.unpack_from("<QQ", header, 8)
    pos = 24

    def string() -> str:
        nonlocal pos
        fields.append((pos, 8))
        (length,) = struct.unpack_from("<Q", header, pos)
        pos += 8 + length
        return header[pos - length : pos].decode()

    def value(kind: int) -> None:
        nonlocal pos
        if kind in _SIZES:
            pos += _SIZES[kind]
        elif kind == _STRING:
            string()
        else:
            fields.extend([(pos, 4), (pos + 4, 8)])
            elem, count = struct.unpack_from("<IQ", header, pos)
            pos += 12
            for _ in range(count):
                value(elem)

    keys = {}
    for _ in range(n_kv):
        key = string()
        fields.append((pos, 4))
        start = pos
        (kind,) = struct.unpack_from("<I", header, pos)
        pos += 4
        value(kind)
        values.append((start, pos))
        keys[key] = (start, pos)
    for _ in range(n_tensors):
        string()
        (n_dims,) = struct.unpack_from("<I", header, pos)
        fields.append((pos, 4))
        fields.extend((pos + 4 + 8 * i, 8) for i in range(n_dims))
        fields.extend([(pos + 4 + 8 * n_dims, 4), (pos + 8 + 8 * n_dims, 8)])
        pos += 4 + 8 * n_dims + 12
    return Structure(fields, values, keys)


def interesting_integers(file_size: int) -> list[int]:
    values = {0, 1, 2, 3, 7, 8, 9, 12, 13, 31, 32, 63, 64, 65, 0x7F, 0x80, 0xFF, 0x100,
              0x7FFF, 0x8000, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
              2**64 - 1, file_size, file_size - 1, file_size + 1, file_size // 2}
    return sorted(values)


READ_KEYS = ("general.alignment", "general.architecture", "general.name", "general.file_type",
             "general.license", "general.type", "llama.context_length", "llama.vocab_size",
             "llama.block_count", "llama.embedding_length", "tokenizer.chat_template")


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def other_values(rng: random.Random) -> bytes:
    """A well-formed metadata value (type id first) of any type: what a file that puts the
    wrong type under a key holds."""
    choices = [
        struct.pack("<II", 4, rng.choice((0, 1, 2**32 - 1))),  # uint32
        struct.pack("<Ii", 5, rng.choice((-1, -(2**31), 0))),  # int32
        struct.pack("<IQ", 10, rng.choice((0, 2**63, 2**64 - 1))),  # uint64
        struct.pack("<If", 6, rng.choice((float("nan"), float("inf"), -0.0, 1e30))),
        struct.pack("<Id", 12, rng.choice((float("nan"), float("-inf"), 1e300))),
        struct.pack("<I?", 7, True),
        struct.pack("<I", 8) + _string(rng.choice((b"", b"x", b"32", "é".encode()))),
        struct.pack("<IIQ", 9, 0, 0),  # an empty array of uint8
        struct.pack("<IIQ", 9, 8, 1) + _string(b"a"),  # an array of one string
        struct.pack("<IIQ", 9, 5, 3) + struct.pack("<3i", -1, 0, 1),
        struct.pack("<II", 4, rng.choice((3, 8, 16, 24, 64, 2**31))),  # e.g. an alignment
    ]
    depth = rng.choice((2, 5, 50, 10_000))  # arrays of arrays of ... of one uint8
    nested = struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * (depth - 1) + \
        struct.pack("<IQB", 0, 1, 7)
    return rng.choice([*choices, nested])


def mutate(header: bytes, structure: Structure, file_size: int, rng: random.Random) -> bytes:
    data = bytearray(header)
    numbers = interesting_integers(file_size)
    choice = rng.random()
    if choice < 0.2:  # a key's value replaced by one of another type, well formed
        start, end = rng.choice(structure.values)
        data[start:end] = other_values(rng)
        return bytes(data)
    if choice < 0.3:  # a key the reader reads given such a value, or added with it
        key = rng.choice(READ_KEYS)
        if key in structure.keys:
            start, end = structure.keys[key]
            data[start:end] = other_values(rng)
        else:
            end = structure.values[-1][1]
            data[end:end] = _string(key.encode()) + other_values(rng)
            (n_kv,) = struct.unpack_from("<Q", data, 16)
            struct.pack_into("<Q", data, 16, n_kv + 1)
        return bytes(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        if not data:
            break
        if rng.random() < 0.5:
            pos, width = rng.choice(structure.fields)
        else:
            pos, width = rng.randrange(len(data)), rng.choice((1, 4, 8))
        pos = min(pos, len(data) - 1)
        kind = rng.randrange(6)
        if kind == 0:  # flip one to three bits
            for _ in range(rng.randint(1, 3)):
                bit = rng.randrange(8 * width)
                if pos + bit // 8 < len(data):
                    data[pos + bit // 8] ^= 1 << (bit % 8)
        elif kind == 1:  # an interesting integer, of the field's width, maybe negative
            value = rng.choice(numbers) * rng.choice((1, 1, 1, -1))
            data[pos : pos + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
        elif kind == 2:  # a random integer
            data[pos : pos + width] = rng.randbytes(width)
        elif kind == 3:  # cut short
            del data[rng.randrange(len(data)) :]
        elif kind == 4:  # delete a run
            del data[pos : pos + rng.choice((1, 4, 8, rng.randrange(1, 256)))]
        else:  # duplicate a run in place
            start = rng.randrange(len(data))
            data[pos:pos] = data[start : start + rng.choice((1, 4, 8, 12, 64))]
    return bytes(data)


def _peak_memory() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def read_mutant(path: Path, report: FuzzReport, number: int) -> None:
    before = _peak_memory()
    start = time.perf_counter()
    try:
        model_info(path, read_header(path))
        outcome = "accepted"
    except ModelFileError as error:
        message = str(error)
        outcome = "rejected" if message and "\n" not in message else "multi-line message"
        report.messages[_shape(message, path.name)] += 1
        detail = message
    except Exception as error:  # what the fuzz is looking for
        outcome, detail = f"crash: {type(error).__name__}", f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - start
    grown = _peak_memory() - before
    if seconds > SLOW_SECONDS:
        outcome, detail = "slow", f"{seconds:.1f} s"
    elif grown > MAX_ALLOCATION:
        outcome, detail = "large allocation", f"{grown / 2**20:.0f} MiB"
    report.outcomes[outcome] += 1
    if outcome.startswith(FAILURES) and outcome not in report.examples:
        report.examples[outcome] = (number, detail[:300])


def _shape(message: str, name: str) -> str:
    text = message.replace(name, "FILE")
    return "".join("N" if c.isdigit() else c for c in text).replace("N,N", "N")


def fuzz(model: Path, n: int, seed: int, folder: Path) -> FuzzReport:
    """Read `n` mutants of `model`'s header (see the module doc); the mutants are repeatable
    from `seed`."""
    original = read_header(model)
    with model.open("rb") as f:
        header = f.read(original.data_offset)
    structure = walk(header)
    rng = random.Random(seed)
    path = folder / "mutant.gguf"
    path.touch()
    report = FuzzReport()
    try:
        for number in range(n):
            mutant = mutate(header, structure, original.file_size, rng)
            # Not "wb": truncating a file to 0 makes ext4 flush it on close (auto_da_alloc),
            # 3 ms a mutant. Cutting it to the mutant's length, then extending, leaves a hole.
            with path.open("r+b") as f:
                f.write(mutant)
                f.truncate(len(mutant))
                f.truncate(max(rng.choice((original.file_size, BIG_FILE)), len(mutant)))
            read_mutant(path, report, number)
    finally:
        path.unlink(missing_ok=True)
    return report


def describe(report: FuzzReport, total: int) -> list[str]:
    lines = [f"{total} mutants: " + ", ".join(f"{kind} {n}"
                                              for kind, n in report.outcomes.most_common())]
    lines += [f"  first {kind}: mutant {number}: {detail}"
              for kind, (number, detail) in report.examples.items()]
    return lines



if __name__ == "__main__":
    model, n, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with tempfile.TemporaryDirectory() as folder:
        found = fuzz(model, n, seed, Path(folder))
    print(json.dumps({"outcomes": found.outcomes, "examples": found.examples,
                      "messages": found.messages}))

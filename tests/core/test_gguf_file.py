"""Model files: every bad input gives a typed error with a one-line message."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import gguf_fuzz
import numpy as np
import pytest
import tiny_models

from playground import gguf_file
from playground.engine import load
from playground.errors import (
    ModelFileError,
    ResourceError,
    UnsupportedModelError,
)
from playground.gguf_file import model_info, read_header


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_model_info_of_the_embedded_model(embedded_model_path: Path) -> None:
    info = model_info(embedded_model_path)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.vocab_size == 49152
    assert info.context_length == 8192
    assert info.layers == 30
    assert info.has_chat_template
    assert info.file_size == embedded_model_path.stat().st_size
    # SmolLM2-135M: the name says 135M, and the count is summed independently from the shapes.
    reader = gguf.GGUFReader(embedded_model_path)
    assert info.parameters == sum(int(np.prod(t.shape)) for t in reader.tensors)
    assert 130e6 < info.parameters < 140e6
    assert info.chinchilla_tokens == 20 * info.parameters
    assert info.training_flops == 6 * info.parameters * info.chinchilla_tokens


def test_header_tensor_table_matches_gguf_reader(tiny_model_path: Path) -> None:
    header = read_header(tiny_model_path)
    reader = gguf.GGUFReader(tiny_model_path)
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    assert [t.nbytes for t in header.tensors] == [int(t.n_bytes) for t in reader.tensors]
    assert header.data_offset == reader.data_offset


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as error:
        load(tmp_path / "nope.gguf")
    assert "no such file" in _one_line(error)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\x8f\x02" * 5000, "not a GGUF"),
        (b"This is a text file pretending to be a model.\n" * 20, "not a GGUF"),
        (b"GGUF" + b"\xff" * 64, "version"),
        (b"GGUF\x03\x00\x00\x00" + b"\xff" * 16, "impossible"),
    ],
)
def test_not_a_gguf(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as error:
        load(path)
    assert expected in _one_line(error)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.99])
def test_truncated(tmp_path: Path, tiny_model_path: Path, keep: float) -> None:
    cut = tmp_path / "cut.gguf"
    data = tiny_model_path.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError) as error:
        load(cut)
    assert "truncated" in _one_line(error)


def _rewrite_arch(source: Path, target: Path, arch: str) -> Path:
    """The same tiny model with another architecture name (its keys renamed to match)."""
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(target, arch)
    for field in reader.fields.values():
        name = field.name
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = field.contents()
        name = name.replace("llama.", f"{arch}.", 1) if name.startswith("llama.") else name
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, vtype, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, value, vtype)
    for t in reader.tensors:
        writer.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def test_unsupported_architecture(tmp_path: Path, tiny_model_path: Path) -> None:
    path = _rewrite_arch(tiny_model_path, tmp_path / "alien.gguf", "alienformer")
    assert model_info(path).architecture == "alienformer"  # a well-formed GGUF...
    with pytest.raises(UnsupportedModelError) as error:  # ...that llama.cpp cannot run
        load(path)
    assert "alienformer" in _one_line(error)


def test_adapter_is_the_wrong_kind(tmp_path: Path) -> None:
    path = tmp_path / "lora.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type("adapter")
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((4, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelFileError) as error:
        load(path)
    assert "LoRA adapter" in _one_line(error)


def test_context_beyond_training(tiny_model_path: Path) -> None:
    with pytest.raises(ResourceError) as error:
        load(tiny_model_path, n_ctx=100_000)
    assert "trained for" in _one_line(error)


def test_context_too_large_for_memory(tmp_path: Path) -> None:
    # A model trained for a billion-token context: 256 bytes of KV per token is 256 GiB.
    path = tiny_models.write_tiny_llama(tmp_path / "long.gguf", n_ctx=1 << 30)
    with pytest.raises(ResourceError) as error:
        load(path, n_ctx=1 << 30)
    assert "GiB" in _one_line(error)


# ---------------------------------------------------------------------------------------------
# Damaged headers: every one a one-line ModelFileError (tests/gguf_fuzz.py makes them at random)


def _header_with(tiny_model_path: Path, key: str, value: bytes) -> bytes:
    """The tiny model's header with `key` holding `value` (type id first), replaced or added."""
    header = tiny_model_path.read_bytes()[: read_header(tiny_model_path).data_offset]
    structure = gguf_fuzz.walk(header)
    encoded_key = gguf_fuzz._string(key.encode())
    for start, end in structure.values:
        if header[start - len(encoded_key) : start] == encoded_key:
            return header[:start] + value + header[end:]
    end = structure.values[-1][1]
    (n_kv,) = struct.unpack_from("<Q", header, 16)
    header = header[:16] + struct.pack("<Q", n_kv + 1) + header[24:]
    return header[:end] + encoded_key + value + header[end:]


def _write_sparse(path: Path, header: bytes, size: int) -> Path:
    with path.open("wb") as f:
        f.write(header)
        f.truncate(size)  # a hole: reads as zeros, costs no disk
    return path


UINT32, INT32, FLOAT32, STRING, ARRAY = 4, 5, 6, 8, 9


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("general.name", struct.pack("<I", ARRAY) + struct.pack("<IQ", ARRAY, 1) * 10_000
         + struct.pack("<IQB", 0, 1, 7), "arrays nested over 4 deep"),
        ("general.alignment", struct.pack("<II", UINT32, 0), "general.alignment is 0, not a power"),
        ("general.alignment", struct.pack("<II", UINT32, 24), "is 24, not a power of two"),
        ("general.alignment", struct.pack("<IQ", STRING, 2) + b"32", "is '32', not a power"),
        ("llama.context_length", struct.pack("<IQ", STRING, 4) + b"4096",
         "llama.context_length should be a count (an integer of 0 or more), not text"),
        ("llama.block_count", struct.pack("<Ii", INT32, -1), "block_count should be a count"),
        ("llama.embedding_length", struct.pack("<If", FLOAT32, float("nan")), "not a real number"),
        ("tokenizer.ggml.tokens", struct.pack("<II", UINT32, 5), "tokens should be an array"),
        ("general.name", struct.pack("<II", UINT32, 7), "general.name should be text, not 7"),
        ("general.file_type", struct.pack("<IQ", STRING, 1) + b"x", "file_type should be a count"),
    ],
)
def test_wrong_values_in_the_header(tmp_path: Path, tiny_model_path: Path, key: str,
                                    value: bytes, expected: str) -> None:
    size = tiny_model_path.stat().st_size
    path = _write_sparse(tmp_path / "bad.gguf", _header_with(tiny_model_path, key, value), size)
    with pytest.raises(ModelFileError) as error:
        model_info(path)
    assert expected in _one_line(error)
    with pytest.raises(ModelFileError):  # nothing reaches llama.cpp
        load(path)


def test_a_huge_string_length_is_refused_before_it_is_read(tmp_path: Path,
                                                            tiny_model_path: Path) -> None:
    # In a 4 GiB file, a key's string "length" of 3 GiB lies inside the file: reading it would
    # allocate 3 GiB.
    value = struct.pack("<IQ", STRING, 3 * 2**30)
    header = _header_with(tiny_model_path, "general.name", value)
    path = _write_sparse(tmp_path / "big.gguf", header, 4 * 2**30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelFileError) as error:
        read_header(path)
    assert "a string of 3,221,225,472 bytes" in _one_line(error)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


def test_a_count_over_zeroed_bytes_stops(tmp_path: Path, tiny_model_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # An array of 2**31 strings over a hole of zeros: each "string" is 8 bytes of length 0, so
    # without a bound the reader would go on for minutes.
    monkeypatch.setattr(gguf_file, "_MAX_VALUES", 20_000)  # the real bound, 2**21, takes ~2 s
    value = struct.pack("<IIQ", ARRAY, STRING, 2**31)
    header = _header_with(tiny_model_path, "general.name", value)
    header = header[: header.index(value) + len(value)]  # zeros from here on
    path = _write_sparse(tmp_path / "zeros.gguf", header, 4 * 2**30)
    with pytest.raises(ModelFileError) as error:
        read_header(path)
    assert "its header holds over 20,000 values" in _one_line(error)


def test_random_mutations_of_a_real_header(tiny_model_path: Path) -> None:
    # A seeded share of bench/gguf_fuzz.py's run, in a fresh process so that its peak memory
    # tells whether one mutant made the reader allocate much.
    n = 300
    result = subprocess.run(
        [sys.executable, str(Path(gguf_fuzz.__file__)), str(tiny_model_path), str(n), "12"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == n
    assert set(outcomes) == {"accepted", "rejected"}, report["examples"]
    assert outcomes["rejected"] > n / 2 and outcomes["accepted"] > 0  # it did damage, not only


@pytest.mark.parametrize("count_at", [8, 16])  # the tensor count, the key count
def test_a_count_that_runs_into_zeros_stops_at_once(tmp_path: Path, tiny_model_path: Path,
                                                    count_at: int) -> None:
    # Found by the fuzz: a tensor count of 16,777,237 over a 4 GiB file whose header is followed
    # by zeros read 16 million empty tensors, for 270 s.
    header = bytearray(tiny_model_path.read_bytes()[: read_header(tiny_model_path).data_offset])
    if count_at == 16:  # zeros right after the keys, where the tensor table was
        del header[gguf_fuzz.walk(bytes(header)).values[-1][1] :]
    struct.pack_into("<Q", header, count_at, 16_777_237)
    path = _write_sparse(tmp_path / "zeros.gguf", bytes(header), 4 * 2**30)
    with pytest.raises(ModelFileError) as error:
        read_header(path)
    assert "appears twice" in _one_line(error)

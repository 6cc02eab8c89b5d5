"""Model files: every bad input gives a typed error with a one-line message."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import tiny_models

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

"""The score-head file format: reading a head from .npy or safetensors, and packing it into a
causal-LM backbone GGUF (see docs/reward-models.md)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from playground.errors import InvalidRequestError, ModelFileError, UnsupportedModelError
from playground.files import require_regular
from playground.gguf_file import model_info, read_header
from playground.reward.detection import ENCODER_ARCHS, file_kind, what_file_is
from playground.reward.interface import (
    BIAS_KEY,
    FORMAT_VERSION,
    HEAD_KEY,
    KIND_SCORE_HEAD,
    POOLING_KEY,
    SOURCE_KEY,
    VERSION_KEY,
)
from playground.reward.safetensors import load_safetensors_tensor, read_safetensors_header


def pack_reward_model(
    backbone: Path | str,
    head: Path | str,
    out: Path | str,
    *,
    bias: float | None = None,
    source: str | None = None,
) -> Path:
    """Write `out`: a copy of the causal-LM GGUF `backbone` with a score head in its metadata.

    `head` is a .npy (n_embd values, shape (n_embd,) or (1, n_embd)) or a .safetensors file
    (`score.weight`, or its single (1, n_embd) tensor; `score.bias` if present). Tensors are copied
    byte for byte, so quantization is unchanged. `bias` overrides the file's; `source` is recorded
    (default: the head file's name). Returns `out`.
    """
    head = Path(head)
    vector, file_bias, tensor_name = load_score_head(head)
    return pack_score_head(backbone, vector, out, bias=file_bias if bias is None else bias,
                           source=source or f"{head.name} ({tensor_name})", head_name=head.name)


def pack_score_head(
    backbone: Path | str,
    vector: np.ndarray,
    out: Path | str,
    *,
    bias: float,
    source: str,
    head_name: str = "the score head",
) -> Path:
    """Write `out`: `backbone` with the score head `vector` (n_embd values) and `bias` in its
    metadata, the format `open_reward_model` reads. Returns `out`."""
    import gguf

    backbone, out = Path(backbone), Path(out)
    header = read_header(backbone)
    info = model_info(backbone, header)
    found = file_kind(header)
    if found not in ("chat", "base", KIND_SCORE_HEAD):
        raise ModelFileError(f"{backbone.name} is {what_file_is(header, found)}: a score head "
                             "goes into the backbone of a causal language model")
    if info.architecture in ENCODER_ARCHS:
        raise UnsupportedModelError(f"{backbone.name}: a score head needs a causal language "
                                    f"model, not an encoder ({info.architecture})")
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.size != info.embedding_length:
        raise InvalidRequestError(
            f"{head_name} has {vector.size:,} values but {backbone.name} has a hidden size "
            f"(n_embd) of {info.embedding_length:,}: the head belongs to another model"
        )
    if not np.all(np.isfinite(vector)):
        raise InvalidRequestError(f"{head_name}: the score head contains NaN or infinite values")
    if out.resolve() == backbone.resolve():
        raise InvalidRequestError("the output must be a new file, not the backbone itself")
    # The file is written beside the output and renamed over it: never over a device or a FIFO,
    # and through a symlink to the file it names.
    require_regular(out, "the output")
    out = out.resolve()

    reader = gguf.GGUFReader(str(backbone))
    writer_arch = str(reader.get_field("general.architecture").contents())
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(temporary, writer_arch, endianess=reader.endianess)
        for field in reader.fields.values():
            if (field.name == "general.architecture" or field.name.startswith("GGUF.")
                    or field.name.startswith("playground.reward.")):
                continue
            if field.name == "general.alignment":
                writer.add_custom_alignment(int(field.contents()))
                continue
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
        writer.add_uint32(VERSION_KEY, FORMAT_VERSION)
        writer.add_key_value(HEAD_KEY, [float(x) for x in vector], gguf.GGUFValueType.ARRAY,
                             sub_type=gguf.GGUFValueType.FLOAT32)
        writer.add_float32(BIAS_KEY, float(bias))
        writer.add_string(POOLING_KEY, "last")
        writer.add_string(SOURCE_KEY, source)
        for tensor in reader.tensors:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype,
                                   tensor.data.nbytes, tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
        writer.close()
        del reader
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out


def load_score_head(path: Path | str) -> tuple[np.ndarray, float, str]:
    """(head as float32 vector, bias, where it was found) from a .npy or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRequestError(f"{path.name}: no such file")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise InvalidRequestError(f"{path.name}: not a readable .npy file ({error})") from None
        if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[0] != 1):
            raise InvalidRequestError(
                f"{path.name} has shape {array.shape}: a score head is one row of n_embd values, "
                "shape (n_embd,) or (1, n_embd)"
            )
        return np.asarray(array, dtype=np.float32).reshape(-1), 0.0, "the array"
    if path.suffix == ".safetensors":
        header, _ = read_safetensors_header(path)
        name = find_score_tensor(header, path.name)
        vector = load_safetensors_tensor(path, name).reshape(-1)
        bias_name = name.removesuffix("weight") + "bias"
        bias = 0.0
        if bias_name != name and bias_name in header:
            bias = float(load_safetensors_tensor(path, bias_name).reshape(-1)[0])
        return vector, bias, name
    raise InvalidRequestError(f"{path.name}: a score head is read from a .npy or .safetensors file")


def find_score_tensor(header: dict[str, Any], where: str, hidden: int | None = None) -> str:
    """The score head's name among a safetensors header's tensors: `score.weight` (or a name
    ending in it), else the only 2-D tensor of shape (1, n) (with n == hidden when given)."""
    names = [n for n in header if n != "__metadata__"]
    for name in names:
        if name == "score.weight" or name.endswith(".score.weight"):
            return name
    rows = [n for n in names if len(header[n]["shape"]) == 2 and header[n]["shape"][0] == 1
            and (hidden is None or header[n]["shape"][1] == hidden)]
    if len(rows) == 1:
        return rows[0]
    if len(names) == 1 and len(header[names[0]]["shape"]) == 1:
        return names[0]
    found = ", ".join(f"{n} {tuple(header[n]['shape'])}" for n in names[:8])
    raise InvalidRequestError(
        f"{where}: no score head found (no `score.weight` and not exactly one (1, n) tensor; "
        f"it holds {found}{' ...' if len(names) > 8 else ''})"
    )


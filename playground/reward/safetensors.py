"""safetensors, read without the safetensors package: an 8-byte little-endian header length, a
JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
raw little-endian data (offsets relative to the end of the header)."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np

from playground.errors import InvalidRequestError

SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
                      "F64": np.dtype("<f8")}


def read_safetensors_header(path: Path | str) -> tuple[dict[str, Any], int]:
    """(the JSON header, the byte offset where tensor data starts)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _safetensors_header(path, f, os.fstat(f.fileno()).st_size)
    except OSError as error:
        raise InvalidRequestError(f"{path.name}: cannot be read ({error.strerror})") from None


def _safetensors_header(path: Path, f: IO[bytes], size: int) -> tuple[dict[str, Any], int]:
    raw = f.read(8)
    if len(raw) < 8:
        raise InvalidRequestError(f"{path.name}: not a safetensors file (too short)")
    (length,) = struct.unpack("<Q", raw)
    if length > min(size - 8, 100_000_000):
        raise InvalidRequestError(f"{path.name}: not a safetensors file (bad header length)")
    try:
        header = json.loads(f.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequestError(f"{path.name}: not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise InvalidRequestError(f"{path.name}: not a safetensors file (bad header)")
    return header, 8 + length


def load_safetensors_tensor(path: Path | str, name: str) -> np.ndarray:
    """One tensor as float32 (F32, F16, BF16 or F64 in the file)."""
    path = Path(path)
    header, start = read_safetensors_header(path)
    entry = header.get(name)
    if not isinstance(entry, dict):
        raise InvalidRequestError(f"{path.name}: no tensor {name!r}")
    dtype = SAFETENSORS_DTYPES.get(entry.get("dtype"))
    if dtype is None:
        raise InvalidRequestError(f"{path.name}: tensor {name!r} is {entry.get('dtype')}; "
                                  "expected F32, F16 or BF16")
    try:
        shape = tuple(int(n) for n in entry["shape"])
        begin, end = (int(n) for n in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRequestError(f"{path.name}: tensor {name!r} has no valid shape and offsets")\
            from None
    count = math.prod(shape)
    if end - begin != count * dtype.itemsize or start + end > path.stat().st_size:
        raise InvalidRequestError(f"{path.name}: tensor {name!r} has inconsistent offsets")
    with path.open("rb") as f:
        f.seek(start + begin)
        array = np.frombuffer(f.read(end - begin), dtype=dtype)
    if entry["dtype"] == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32).reshape(shape)


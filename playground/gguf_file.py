"""Read and check a GGUF file's header before llama.cpp opens it, and describe the model in it.

llama.cpp aborts or prints only to its log on many malformed files; reading the header here first
turns every such case into a one-line `ModelFileError`. The parser reads the key-value metadata and
the tensor table (memory-mapped, so a multi-gigabyte file costs nothing to open) and checks that
every tensor's data lies inside the file.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from playground.errors import ModelFileError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Chinchilla (Hoffmann et al., 2022): compute-optimal training uses about 20 tokens per parameter,
# and training costs about 6 FLOPs per parameter per token.
CHINCHILLA_TOKENS_PER_PARAMETER = 20
TRAINING_FLOPS_PER_PARAMETER_TOKEN = 6

# value type id -> struct format of a scalar
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (token lists, merges, scores) are summarised by their length.
_KEEP_ARRAY_MAX = 64
# Arrays of arrays are legal, but real files nest at most one deep; a deeper nest is damage
# (and would exhaust Python's recursion limit).
_MAX_NESTING = 4
# The longest string a real file holds is a chat template of some kilobytes; a length beyond
# this is damage, and reading it would allocate up to the file's size (gigabytes).
_MAX_STRING = 16 * 2**20
# Values read from one header at most. Real files hold a few hundred thousand (vocabularies of
# 262k tokens, their merges); a damaged count over zeroed bytes would read on for minutes.
_MAX_VALUES = 2**21


@dataclass(frozen=True)
class ArraySummary:
    """A long metadata array, kept only as its length (e.g. `tokenizer.ggml.tokens`)."""

    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_size: int


def _fail(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path.name}: {why}")


def read_header(path: Path | str, *, arrays: frozenset[str] = frozenset()) -> GGUFHeader:
    """Parse and check a GGUF file's header and tensor table; raise ModelFileError if unusable.

    Long metadata arrays are kept only as an `ArraySummary`, except those named in `arrays`,
    which are read whole (numbers as a numpy array)."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a file")
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "the file is empty, not a GGUF model")
    try:
        with path.open("rb") as f:
            if f.read(4) != MAGIC:
                raise _fail(path, "not a GGUF model file (it does not start with 'GGUF')")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                try:
                    return _parse(buf, size, arrays)
                except (struct.error, UnicodeDecodeError, IndexError, OverflowError):
                    raise _fail(path, "the file is truncated or damaged (its header is cut "
                                      "short)") from None
                except _Damaged as damaged:
                    raise _fail(path, str(damaged)) from None
    except OSError as error:
        raise _fail(path, f"cannot be read ({error.strerror or error})") from None


class _Damaged(Exception):
    pass


class _Reader:
    """Reads GGUF values in order from a buffer, raising struct.error past its end."""

    def __init__(self, buf: mmap.mmap, size: int, pos: int) -> None:
        self.buf, self.size, self.pos = buf, size, pos
        self.values_read = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return values

    def string(self) -> str:
        (length,) = self.unpack("<Q")
        if length > self.size - self.pos:
            raise struct.error("string runs past the end of the file")
        if length > _MAX_STRING:
            raise _Damaged(f"the file is damaged: a string of {length:,} bytes")
        text = bytes(self.buf[self.pos : self.pos + length]).decode("utf-8")
        self.pos += length
        return text

    def value(self, kind: int, depth: int = 0, *, whole: bool = False) -> Any:
        """One metadata value; arrays longer than _KEEP_ARRAY_MAX only as an ArraySummary
        unless `whole` (numbers then as a numpy array)."""
        self.values_read += 1
        if self.values_read > _MAX_VALUES:
            raise _Damaged(f"the file is damaged: its header holds over {_MAX_VALUES:,} values")
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])[0]
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise _Damaged(f"the file is damaged: unknown metadata value type {kind}")
        elem, count = self.unpack("<IQ")
        if count > self.size:
            raise struct.error("array longer than the file")
        if elem in _SCALARS and (whole or count > _KEEP_ARRAY_MAX):
            return self.numbers(_SCALARS[elem], count, whole)
        if elem == _ARRAY and depth >= _MAX_NESTING:
            raise _Damaged(f"the file is damaged: arrays nested over {_MAX_NESTING} deep")
        if count > _KEEP_ARRAY_MAX and not whole:
            for _ in range(count):  # read for its extent (and checked), not kept
                self.value(elem, depth + 1)
            return ArraySummary(count)
        return [self.value(elem, depth + 1) for _ in range(count)]

    def numbers(self, fmt: str, count: int, whole: bool) -> np.ndarray | ArraySummary:
        start = self.pos
        self.pos += count * struct.calcsize(fmt)
        if self.pos > self.size:
            raise struct.error("array runs past the end of the file")
        if not whole:
            return ArraySummary(count)  # skipped without decoding
        return np.frombuffer(self.buf, dtype=np.dtype(fmt), count=count, offset=start).copy()

    def tensor(self) -> TensorInfo:
        name = self.string()
        (n_dims,) = self.unpack("<I")
        if n_dims > 8:
            raise _Damaged(f"the file is damaged: tensor {name!r} has {n_dims} dimensions")
        shape = self.unpack(f"<{n_dims}Q")
        ggml_type, offset = self.unpack("<IQ")
        return TensorInfo(name, shape, ggml_type, offset, _nbytes(name, shape, ggml_type))


def _parse(buf: mmap.mmap, size: int, arrays: frozenset[str]) -> GGUFHeader:
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version not in SUPPORTED_VERSIONS:
        raise _Damaged(f"GGUF version {version} is not supported (expected 2 or 3)")
    # Each entry needs at least ~16 bytes: counts beyond that mean random bytes after the magic.
    if n_kv > size // 16 or n_tensors > size // 16:
        raise _Damaged("the file is damaged: its header counts are impossible")
    # Keys and tensor names are unique, as llama.cpp's gguf.cpp requires: this also stops a
    # count that runs on over zeroed bytes (each entry an empty name) at its second entry.
    reader = _Reader(buf, size, 24)
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = reader.string()
        if key in metadata:
            raise _Damaged(f"the file is damaged: the key {key!r} appears twice")
        (kind,) = reader.unpack("<I")
        metadata[key] = reader.value(kind, whole=key in arrays)
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        tensor = reader.tensor()
        if tensor.name in names:
            raise _Damaged(f"the file is damaged: the tensor {tensor.name!r} appears twice")
        names.add(tensor.name)
        tensors.append(tensor)

    alignment = metadata.get("general.alignment", 32)
    # As llama.cpp's gguf.cpp requires: a power of two.
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise _Damaged(f"the file is damaged: general.alignment is {alignment!r}, not a power "
                       "of two")
    data_offset = -(-reader.pos // alignment) * alignment
    end = max((data_offset + t.offset + t.nbytes for t in tensors), default=data_offset)
    if end > size:
        raise _Damaged(
            f"the file is truncated: its tensors need {end:,} bytes but it has {size:,}"
        )
    return GGUFHeader(version, metadata, tuple(tensors), data_offset, size)


def read_array(path: Path | str, key: str) -> np.ndarray:
    """One numeric metadata array of a GGUF file, whole (e.g. a score head of n_embd floats)."""
    path = Path(path)
    found = read_header(path, arrays=frozenset({key})).metadata.get(key)
    if not isinstance(found, np.ndarray):
        raise _fail(path, f"`{key}` is missing or is not an array of numbers")
    return found


def _nbytes(name: str, shape: tuple[int, ...], ggml_type: int) -> int:
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise _Damaged(f"tensor {name!r} has an unknown data type {ggml_type}") from None
    return math.prod(shape) // block * type_size


@dataclass(frozen=True)
class ModelInfo:
    """What a user wants to know about a model file, read from its GGUF header."""

    path: str
    name: str
    architecture: str
    parameters: int
    """Summed from the tensor shapes."""
    quantization: str
    file_size: int
    context_length: int
    """The context the model was trained for."""
    vocab_size: int
    layers: int
    embedding_length: int
    has_chat_template: bool
    license: str | None
    kind: str
    """'model', or what else the file is (e.g. 'adapter')."""
    server: str | None = None
    """For a model served remotely, the server's URL without credentials (then `path` is that
    URL too and `name` the model id the server reports); None for a local file."""

    @property
    def chinchilla_tokens(self) -> int:
        """Compute-optimal training tokens for this size (Chinchilla: ~20 per parameter)."""
        return CHINCHILLA_TOKENS_PER_PARAMETER * self.parameters

    @property
    def training_flops(self) -> float:
        """About 6 x parameters x tokens FLOPs to train it on `chinchilla_tokens`."""
        return float(TRAINING_FLOPS_PER_PARAMETER_TOKEN * self.parameters * self.chinchilla_tokens)

    @property
    def exact_entropy(self) -> bool:
        """Whether the entropies recorded with this model are exact: a server gives only its
        top alternatives, so a run on one records a lower bound (see remote.py)."""
        return self.server is None

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "chinchilla_tokens": self.chinchilla_tokens,
            "training_flops": self.training_flops,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        """What `to_json` wrote; a field added since (in an older history or file) reads None."""
        values = {f.name: data.get(f.name) for f in fields(cls)}
        values["license"] = values["license"] or None
        values["server"] = values["server"] or None  # exports write "" for a local file
        return cls(**values)


def model_info(path: Path | str, header: GGUFHeader | None = None) -> ModelInfo:
    path = Path(path)
    header = header or read_header(path)
    meta = _Metadata(path, header.metadata)
    arch = meta.text("general.architecture", "unknown")
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is not None and not isinstance(tokens, ArraySummary | list):
        raise meta.wrong_type("tokenizer.ggml.tokens", "an array")
    vocab = tokens.length if isinstance(tokens, ArraySummary) else len(tokens or [])
    return ModelInfo(
        path=str(path.resolve()),
        name=meta.text("general.name", "") or path.stem,
        architecture=arch,
        parameters=sum(math.prod(t.shape) for t in header.tensors),
        quantization=_quantization(header, meta.integer("general.file_type", None)),
        file_size=header.file_size,
        context_length=meta.integer(f"{arch}.context_length", 0),
        vocab_size=meta.integer(f"{arch}.vocab_size", vocab),
        layers=meta.integer(f"{arch}.block_count", 0),
        embedding_length=meta.integer(f"{arch}.embedding_length", 0),
        has_chat_template=bool(meta.text("tokenizer.chat_template", "")),
        license=meta.text("general.license", None),
        kind=meta.text("general.type", "model"),
    )


class _Metadata:
    """Typed reads of header values: a key holding the wrong type is a damaged file (as
    llama.cpp's gguf_get_* would refuse it), not a crash."""

    def __init__(self, path: Path, metadata: dict[str, Any]) -> None:
        self._path = path
        self._metadata = metadata

    def get(self, key: str) -> Any:
        return self._metadata.get(key)

    def integer(self, key: str, default: Any) -> Any:
        """A count: an integer of 0 or more."""
        value = self._metadata.get(key, default)
        if value is not default and (type(value) is not int or value < 0):  # nor is a bool
            raise self.wrong_type(key, "a count (an integer of 0 or more)")
        return value

    def text(self, key: str, default: Any) -> Any:
        value = self._metadata.get(key, default)
        if value is not default and not isinstance(value, str):
            raise self.wrong_type(key, "text")
        return value

    def wrong_type(self, key: str, expected: str) -> ModelFileError:
        value = self._metadata[key]
        found = repr(value) if type(value) is int else _TYPE_NAMES.get(type(value), "other")
        return _fail(self._path, f"the file is damaged: {key} should be {expected}, not {found}")


_TYPE_NAMES = {str: "text", int: "an integer", float: "a real number", bool: "true or false",
               list: "an array", ArraySummary: "an array"}


def _quantization(header: GGUFHeader, file_type: int | None) -> str:
    if file_type is not None:
        try:
            return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    # No file type recorded: name the type that holds most of the weights.
    counts = Counter()
    for t in header.tensors:
        counts[t.type] += math.prod(t.shape)
    if not counts:
        return "none"
    return GGMLQuantizationType(counts.most_common(1)[0][0]).name

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


def read_header(path: Path | str) -> GGUFHeader:
    """Parse and check a GGUF file's header and tensor table; raise ModelFileError if unusable."""
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
                    return _parse(buf, size)
                except (struct.error, UnicodeDecodeError, IndexError, OverflowError):
                    raise _fail(path, "the file is truncated or damaged (its header is cut "
                                      "short)") from None
                except _Damaged as damaged:
                    raise _fail(path, str(damaged)) from None
    except OSError as error:
        raise _fail(path, f"cannot be read ({error.strerror or error})") from None


class _Damaged(Exception):
    pass


def _parse(buf: mmap.mmap, size: int) -> GGUFHeader:
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version not in SUPPORTED_VERSIONS:
        raise _Damaged(f"GGUF version {version} is not supported (expected 2 or 3)")
    # Each entry needs at least ~16 bytes: counts beyond that mean random bytes after the magic.
    if n_kv > size // 16 or n_tensors > size // 16:
        raise _Damaged("the file is damaged: its header counts are impossible")
    pos = 24

    def string() -> str:
        nonlocal pos
        (length,) = struct.unpack_from("<Q", buf, pos)
        if length > size - pos:
            raise struct.error("string runs past the end of the file")
        text = bytes(buf[pos + 8 : pos + 8 + length]).decode("utf-8")
        pos += 8 + length
        return text

    def value(kind: int) -> Any:
        nonlocal pos
        if kind in _SCALARS:
            fmt = _SCALARS[kind]
            (v,) = struct.unpack_from(fmt, buf, pos)
            pos += struct.calcsize(fmt)
            return v
        if kind == _STRING:
            return string()
        if kind == _ARRAY:
            elem, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if count > size:
                raise struct.error("array longer than the file")
            if elem in _SCALARS and count > _KEEP_ARRAY_MAX:
                pos += count * struct.calcsize(_SCALARS[elem])  # skip without decoding
                return ArraySummary(count)
            items = [value(elem) for _ in range(count)]
            return ArraySummary(count) if count > _KEEP_ARRAY_MAX else items
        raise _Damaged(f"the file is damaged: unknown metadata value type {kind}")

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = string()
        (kind,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        metadata[key] = value(kind)

    tensors = []
    for _ in range(n_tensors):
        name = string()
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        if n_dims > 8:
            raise _Damaged(f"the file is damaged: tensor {name!r} has {n_dims} dimensions")
        shape = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        tensors.append(TensorInfo(name, shape, ggml_type, offset, _nbytes(name, shape, ggml_type)))

    alignment = int(metadata.get("general.alignment", 32))
    data_offset = -(-pos // alignment) * alignment
    end = max((data_offset + t.offset + t.nbytes for t in tensors), default=data_offset)
    if end > size:
        raise _Damaged(
            f"the file is truncated: its tensors need {end:,} bytes but it has {size:,}"
        )
    return GGUFHeader(version, metadata, tuple(tensors), data_offset, size)


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

    @property
    def chinchilla_tokens(self) -> int:
        """Compute-optimal training tokens for this size (Chinchilla: ~20 per parameter)."""
        return CHINCHILLA_TOKENS_PER_PARAMETER * self.parameters

    @property
    def training_flops(self) -> float:
        """About 6 x parameters x tokens FLOPs to train it on `chinchilla_tokens`."""
        return float(TRAINING_FLOPS_PER_PARAMETER_TOKEN * self.parameters * self.chinchilla_tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "chinchilla_tokens": self.chinchilla_tokens,
            "training_flops": self.training_flops,
        }


def model_info(path: Path | str, header: GGUFHeader | None = None) -> ModelInfo:
    path = Path(path)
    header = header or read_header(path)
    meta = header.metadata
    arch = str(meta.get("general.architecture", "unknown"))
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = tokens.length if isinstance(tokens, ArraySummary) else len(tokens or [])
    return ModelInfo(
        path=str(path.resolve()),
        name=str(meta.get("general.name") or path.stem),
        architecture=arch,
        parameters=sum(math.prod(t.shape) for t in header.tensors),
        quantization=_quantization(header),
        file_size=header.file_size,
        context_length=int(meta.get(f"{arch}.context_length", 0)),
        vocab_size=int(meta.get(f"{arch}.vocab_size", vocab)),
        layers=int(meta.get(f"{arch}.block_count", 0)),
        embedding_length=int(meta.get(f"{arch}.embedding_length", 0)),
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
        license=meta.get("general.license"),
        kind=str(meta.get("general.type", "model")),
    )


def _quantization(header: GGUFHeader) -> str:
    file_type = header.metadata.get("general.file_type")
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

"""Extract a sequence-classification reward model's score head from a Hugging Face checkpoint.

    python scripts/extract_score_head.py CHECKPOINT_DIR -o head.npy [--backbone-dir DIR]

Reads `model.safetensors`, or the shards that `model.safetensors.index.json` lists, without torch
or the safetensors package, finds the score head (`score.weight`, shape (1, hidden_size)) and
writes it as a float32 .npy of hidden_size values, ready for `playground reward-pack`. With
`-o head.safetensors` it writes `score.weight` and, if the head has one, `score.bias` (a .npy
holds the row only).

llama.cpp's convert_hf_to_gguf.py refuses `*ForSequenceClassification` architectures, and once
the architecture is renamed to `*ForCausalLM` it stops at the head ("Can not map tensor
'score.weight'"). `--backbone-dir DIR` writes the checkpoint that it converts: a copy with the
head's tensors left out of the shards (and the index) and config.json's architecture renamed.
See docs/reward-models.md for the whole route.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from playground.errors import PlaygroundError
from playground.reward import find_score_tensor, load_safetensors_tensor, read_safetensors_header

INDEX = "model.safetensors.index.json"
COPY_CHUNK = 64 << 20


def checkpoint_shards(directory: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it."""
    index = directory / INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        if not isinstance(weight_map, dict):
            raise PlaygroundError(f"{INDEX} has no weight_map")
        return {name: directory / shard for name, shard in weight_map.items()}
    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        raise PlaygroundError(f"{directory}: no model.safetensors and no {INDEX}")
    where: dict[str, Path] = {}
    for file in files:
        header, _ = read_safetensors_header(file)
        where.update({name: file for name in header if name != "__metadata__"})
    return where


def find_head(directory: Path, tensor: str | None) -> tuple[str, Path, dict[str, Any]]:
    """(tensor name, its file, config.json) of the score head."""
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    where = checkpoint_shards(directory)
    if tensor is None:
        # Every shard's header, merged: enough to pick the head by name or shape.
        headers: dict[str, Any] = {}
        for file in sorted(set(where.values())):
            header, _ = read_safetensors_header(file)
            headers.update({k: v for k, v in header.items() if k != "__metadata__"})
        tensor = find_score_tensor(headers, directory.name, config.get("hidden_size"))
    if tensor not in where:
        raise PlaygroundError(f"{directory}: no tensor {tensor!r}")
    return tensor, where[tensor], config


def write_backbone_dir(source: Path, target: Path, drop: set[str]) -> None:
    """Copy the checkpoint to `target` without the tensors in `drop`, renaming the architecture
    from *ForSequenceClassification to *ForCausalLM."""
    if target.exists() and any(target.iterdir()):
        raise PlaygroundError(f"{target} exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    where = checkpoint_shards(source)
    shards = {path.name for path in where.values()}
    for item in source.iterdir():
        if item.name in shards or item.name == INDEX:
            continue
        if item.name == "config.json":
            config = json.loads(item.read_text(encoding="utf-8"))
            config["architectures"] = [
                a.replace("ForSequenceClassification", "ForCausalLM")
                for a in config.get("architectures", [])
            ]
            (target / item.name).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        elif item.is_file():
            shutil.copy2(item, target / item.name)
    for shard in sorted(shards):
        _copy_shard(source / shard, target / shard, drop)
    index = source / INDEX
    if index.is_file():
        document = json.loads(index.read_text(encoding="utf-8"))
        document["weight_map"] = {k: v for k, v in document["weight_map"].items() if k not in drop}
        document.setdefault("metadata", {})["total_size"] = sum(
            _data_size(target / shard) for shard in sorted(shards))
        (target / INDEX).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _copy_shard(source: Path, target: Path, drop: set[str]) -> None:
    header, start = read_safetensors_header(source)
    kept = sorted(((k, v) for k, v in header.items() if k != "__metadata__" and k not in drop),
                  key=lambda item: item[1]["data_offsets"][0])
    new_header: dict[str, Any] = {}
    if "__metadata__" in header:
        new_header["__metadata__"] = header["__metadata__"]
    offset = 0
    for name, entry in kept:
        begin, end = entry["data_offsets"]
        new_header[name] = {**entry, "data_offsets": [offset, offset + end - begin]}
        offset += end - begin
    encoded = json.dumps(new_header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format's recommended alignment
    with source.open("rb") as src, target.open("wb") as dst:
        dst.write(struct.pack("<Q", len(encoded)) + encoded)
        for _name, entry in kept:
            begin, end = entry["data_offsets"]
            src.seek(start + begin)
            remaining = end - begin
            while remaining:
                block = src.read(min(COPY_CHUNK, remaining))
                if not block:
                    raise PlaygroundError(f"{source.name} is truncated")
                dst.write(block)
                remaining -= len(block)


def write_head_safetensors(path: Path, vector: np.ndarray, bias: float | None) -> None:
    """`score.weight` (1, n) and, when given, `score.bias` (1,), both F32."""
    blobs = {"score.weight": vector.astype("<f4").reshape(1, -1)}
    if bias is not None:
        blobs["score.bias"] = np.array([bias], dtype="<f4")
    header, offset = {}, 0
    for name, array in blobs.items():
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded
                     + b"".join(a.tobytes() for a in blobs.values()))


def _data_size(shard: Path) -> int:
    header, _ = read_safetensors_header(shard)
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
               if k != "__metadata__")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a Hugging Face checkpoint directory")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="the .npy (or .safetensors, to keep a bias) to write")
    parser.add_argument("--tensor", help="the head's tensor name (default: score.weight, or the "
                                         "only (1, hidden_size) tensor)")
    parser.add_argument("--backbone-dir", type=Path, metavar="DIR",
                        help="also write a copy without the head, for convert_hf_to_gguf.py")
    args = parser.parse_args(argv)
    try:
        name, file, config = find_head(args.checkpoint, args.tensor)
        head = load_safetensors_tensor(file, name)
        if head.ndim not in (1, 2) or (head.ndim == 2 and head.shape[0] != 1):
            raise PlaygroundError(
                f"{name} has shape {tuple(head.shape)}: a reward model's score head is one row "
                "(a model with several labels is a classifier, not a reward model)")
        vector = head.reshape(-1).astype(np.float32)
        hidden = config.get("hidden_size")
        if hidden is not None and vector.size != hidden:
            raise PlaygroundError(f"{name} has {vector.size} values but config.json's hidden_size "
                                  f"is {hidden}")
        bias_name = name.removesuffix("weight") + "bias"
        where = checkpoint_shards(args.checkpoint)
        bias = None
        if bias_name != name and bias_name in where:
            bias = float(load_safetensors_tensor(where[bias_name], bias_name).reshape(-1)[0])
        if args.output.suffix == ".safetensors":
            write_head_safetensors(args.output, vector, bias)
        else:
            np.save(args.output, vector)
        print(f"wrote {args.output}: {name} from {file.name}, {vector.size} values, "
              f"norm {float(np.linalg.norm(vector)):.4g}")
        if bias is not None and args.output.suffix != ".safetensors":
            print(f"the head has a bias {bias!r}, which a .npy does not hold: write "
                  "-o head.safetensors instead, or pass bias= to pack_reward_model")
        if args.backbone_dir:
            drop = {name} | ({bias_name} if bias_name in where else set())
            write_backbone_dir(args.checkpoint, args.backbone_dir, drop)
            print(f"wrote {args.backbone_dir}: the checkpoint without {', '.join(sorted(drop))}, "
                  "architecture renamed for convert_hf_to_gguf.py")
        if config.get("tie_word_embeddings") is False and "lm_head.weight" not in where:
            print("note: tie_word_embeddings is false and the checkpoint has no lm_head: the "
                  "converted backbone scores correctly but must not generate text "
                  "(docs/reward-models.md)")
    except PlaygroundError as error:
        print(f"extract_score_head: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

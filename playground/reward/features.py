"""What reward training learns from: a causal LM's final hidden state h at the last token of each
(prompt, response) conversation, exactly the h a score head reads (`conversation_tokens`, LAST
pooling, the scoring `Decoder`), cached on disk.

The cache is one SQLite file per backbone in the data folder, named by the backbone's sha256 and
keyed by the sha256 of the (prompt, response) text: a second training on the same labels, or on
more labels, decodes only the replies it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from playground.engine import LocalEngine, load
from playground.errors import Cancelled, UnsupportedModelError
from playground.gguf_file import model_info, read_header
from playground.paths import data_dir
from playground.reward.backends import conversation_tokens
from playground.reward.decoder import Decoder
from playground.reward.detection import ENCODER_ARCHS, file_kind, what_file_is
from playground.reward.interface import KIND_SCORE_HEAD

CACHE_FOLDER = "reward-features"


def check_backbone(path: Path) -> None:
    """Refuse, in one line, a file whose hidden states a score head cannot be trained on."""
    header = read_header(path)
    found = file_kind(header)
    info = model_info(path, header)
    if found not in ("chat", "base", KIND_SCORE_HEAD) or info.architecture in ENCODER_ARCHS:
        raise UnsupportedModelError(f"{path.name} is {what_file_is(header, found)}: the backbone "
                                    "of a reward model must be a causal language model")
    if not header.metadata.get("tokenizer.chat_template"):
        raise UnsupportedModelError(f"{path.name} has no chat template: a score head reads the "
                                    "conversation in the backbone's chat template")


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def text_key(prompt: str, response: str) -> str:
    return hashlib.sha256(json.dumps([prompt, response]).encode()).hexdigest()


class FeatureExtractor:
    """The backbone, loaded with a scoring context in embedding mode, and its feature cache.
    Not thread-safe (llama.cpp): use it on one thread."""

    def __init__(self, backbone: Path, *, n_gpu_layers: int = 0,
                 n_threads: int | None = None, cache_dir: Path | None = None) -> None:
        self.path = Path(backbone)
        check_backbone(self.path)
        self.sha256 = file_sha256(self.path)
        folder = cache_dir or data_dir() / CACHE_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        self.cache_path = folder / f"{self.sha256}.sqlite"
        self._cache = sqlite3.connect(self.cache_path)
        self._cache.execute("CREATE TABLE IF NOT EXISTS features "
                            "(key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self.engine: LocalEngine = load(self.path, n_gpu_layers=n_gpu_layers)
        self.width = self.engine.info.embedding_length
        try:
            self._decoder = Decoder.last_hidden_state(self.engine, n_threads)
        except BaseException:
            self.engine.close()
            raise
        self.cached = 0
        """Distinct (prompt, response) features asked for so far that came from the cache."""
        self.computed = 0
        """... and that were decoded."""

    def features(
        self,
        texts: Sequence[tuple[str, str]],
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """h for each (prompt, response), shape (len(texts), n_embd), float32. Raises Cancelled
        when `cancel` turns True (what was computed by then stays cached)."""
        keys = [text_key(p, r) for p, r in texts]
        found = self._lookup(set(keys))
        missing: dict[str, list[tuple[str, str]]] = {}
        for key, (prompt, response) in zip(keys, texts, strict=True):
            if key not in found:
                group = missing.setdefault(prompt, [])
                if (prompt, response) not in group:
                    group.append((prompt, response))
        todo = sum(len(group) for group in missing.values())
        self.cached += len(found)
        done = 0
        # One prompt's replies share their prefix: decoded together, it is decoded once.
        for prompt, group in missing.items():
            inputs = [conversation_tokens(self.engine, prompt, r) for _, r in group]
            outputs = self._decoder.run(inputs, cancel)
            if any(o is None for o in outputs):
                raise Cancelled()
            rows = [(text_key(p, r), np.asarray(o, dtype=np.float32).tobytes())
                    for (p, r), o in zip(group, outputs, strict=True)]
            with self._cache:
                self._cache.executemany("INSERT OR REPLACE INTO features VALUES (?, ?)", rows)
            found.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)
            done += len(group)
            self.computed += len(group)
            if progress is not None:
                progress(done, todo)
        return np.stack([found[key] for key in keys]) if keys else np.zeros((0, self.width),
                                                                             np.float32)

    def _lookup(self, keys: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):  # SQLite's bound-parameter limit
            part = ordered[start:start + 500]
            rows = self._cache.execute(
                f"SELECT key, vector FROM features WHERE key IN ({','.join('?' * len(part))})",
                part)
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.size == self.width:
                    found[key] = vector
        return found

    def close(self) -> None:
        self._decoder.close()
        self.engine.close()
        self._cache.close()

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

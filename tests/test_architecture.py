"""The Qt-free core stays Qt-free: every core module is under the import-linter contract."""

from __future__ import annotations

import tomllib
from pathlib import Path

import playground

NOT_CORE = {"playground.cli", "playground.__main__", "playground.__init__"}


def test_every_core_module_is_in_the_no_qt_contract():
    config = tomllib.loads((Path(playground.__file__).parent.parent / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"]
                    if c["type"] == "forbidden")
    assert "PySide6" in contract["forbidden_modules"]
    package = Path(playground.__file__).parent
    core = {f"playground.{p.stem}" for p in package.glob("*.py")} - NOT_CORE
    assert core <= set(contract["source_modules"]), core - set(contract["source_modules"])

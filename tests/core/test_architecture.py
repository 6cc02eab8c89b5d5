"""The Qt-free core stays Qt-free: every core module is under the import-linter contract; and
every package ships in the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

import playground

NOT_CORE = {"playground.cli", "playground.__main__", "playground.__init__", "playground.ui"}
PACKAGE = Path(playground.__file__).parent
CONFIG = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())


def test_every_core_module_is_in_the_no_qt_contract():
    config = CONFIG
    contract = next(c for c in config["tool"]["importlinter"]["contracts"]
                    if c["type"] == "forbidden")
    assert "PySide6" in contract["forbidden_modules"]
    package = PACKAGE
    core = {f"playground.{p.stem}" for p in package.glob("*.py")}
    core |= {f"playground.{p.parent.name}" for p in package.glob("*/__init__.py")}
    core -= NOT_CORE
    assert core <= set(contract["source_modules"]), core - set(contract["source_modules"])


def test_every_package_is_in_the_wheel():
    """setuptools is given the packages by name: one left out is missing from the wheel."""
    packages = {".".join(p.parent.relative_to(PACKAGE.parent).parts)
                for p in PACKAGE.rglob("__init__.py")}
    listed = set(CONFIG["tool"]["setuptools"]["packages"])
    assert packages <= listed, packages - listed

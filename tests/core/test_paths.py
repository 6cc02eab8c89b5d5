"""Where the app finds its own files: in the checkout, in an installed wheel, in a frozen app."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from playground import paths
from playground.cli import main

REPO_RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def test_a_checkout_reads_the_top_level_folders():
    # The tests run on the checkout (in place or editable): there is no packaged copy.
    assert paths.resource_dir("demos") == REPO_RESOURCES / "demos"
    assert paths.resource_dir("") == REPO_RESOURCES
    assert paths.catalog_file() == REPO_RESOURCES.parent / "models" / "catalog.json"
    assert paths.repo_models_dir() == REPO_RESOURCES.parent / "models"


def test_an_installed_package_reads_its_packaged_copy(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    """The same lookup on a package laid out as the wheel lays out `playground` (the
    installed-wheel test runs the real wheel)."""
    package = tmp_path / "site" / "installed_playground"
    (package / "_data" / "resources" / "demos").mkdir(parents=True)
    (package / "_data" / "models").mkdir()
    (package / "__init__.py").write_text("")
    (package / "_data" / "models" / "catalog.json").write_text('{"models": []}')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(paths, "__package__", "installed_playground")

    assert paths.resource_dir("demos") == package / "_data" / "resources" / "demos"
    assert paths.resource_dir("") == package / "_data" / "resources"
    assert paths.catalog_file() == package / "_data" / "models" / "catalog.json"
    assert paths.repo_models_dir() is None  # an installed app has no checkout to search


@pytest.fixture
def frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretend to be the PyInstaller app whose bundle is `tmp_path / "bundle"`."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    return bundle


def test_a_frozen_app_uses_the_model_in_its_bundle(frozen: Path, tiny_model_path: Path):
    model = frozen / paths.EMBEDDED_FILE
    model.parent.mkdir()
    shutil.copy(tiny_model_path, model)
    assert paths.embedded_model_path() == model
    assert paths.bundled_model_problem() is None


def test_a_frozen_app_without_its_model_says_so(frozen: Path,
                                                capsys: pytest.CaptureFixture):
    assert paths.embedded_model_path() is None
    problem = paths.bundled_model_problem()
    assert problem is not None and problem.startswith("the app's bundled model is missing")

    assert main(["generate", "--prompt", "hi", "--max-tokens", "4", "--json", "--no-save"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"playground: {problem}\n"


def test_a_frozen_app_with_a_truncated_model_says_so(frozen: Path, tiny_model_path: Path,
                                                     capsys: pytest.CaptureFixture):
    model = frozen / paths.EMBEDDED_FILE
    model.parent.mkdir()
    data = tiny_model_path.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    problem = paths.bundled_model_problem()
    assert problem is not None
    assert problem.startswith("the app's bundled model is damaged")
    assert "truncated" in problem and "\n" not in problem

    assert main(["generate", "--prompt", "hi", "--max-tokens", "4", "--json", "--no-save"]) == 1
    assert capsys.readouterr().err == f"playground: {problem}\n"


def test_the_frozen_app_window_shows_the_missing_model_in_its_banner(qtbot, frozen: Path):
    from playground.ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.start()  # the embedded model, as on a first start
    qtbot.waitUntil(window.banner.isVisible, timeout=60_000)
    assert window.banner.label.text() == paths.bundled_model_problem()
    window.close()

"""Models folders with symlink loops, unreadable entries and files that are not models: each is
skipped with a note, in the CLI and in the GUI's chooser, and the search goes on."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from playground import cli, paths
from playground.catalog import discover


@pytest.fixture
def messy(tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    (folder / "deep" / "er").mkdir(parents=True)
    shutil.copy(tiny_model_path, folder / "deep" / "er" / "good.gguf")
    (folder / "self.gguf").symlink_to(folder / "self.gguf")  # a loop
    (folder / "a.gguf").symlink_to(folder / "b.gguf")  # a loop of two
    (folder / "b.gguf").symlink_to(folder / "a.gguf")
    (folder / "deep" / "up").symlink_to(folder)  # a folder loop
    (folder / "deep" / "self").symlink_to(folder / "deep" / "self")  # not named .gguf: ignored
    (folder / "gone.gguf").symlink_to(tmp_path / "nowhere")
    (folder / "notes.gguf").write_text("not a model")
    (folder / "empty.gguf").write_bytes(b"")
    (folder / "folder.gguf").mkdir()
    os.mkfifo(folder / "pipe.gguf")  # opening it would wait for a writer forever
    (folder / "readme.txt").write_text("not even named like a model")
    locked = folder / "locked"
    locked.mkdir()
    shutil.copy(tiny_model_path, locked / "hidden.gguf")
    real_scandir = os.scandir

    def scandir(path="."):  # root reads everything: deny this folder as a chmod 000 would
        if os.fspath(path) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return folder


def test_discover_notes_every_bad_entry_and_finds_the_good_one(messy: Path) -> None:
    found = {str(m.path.relative_to(messy)): m for m in discover([messy])
             if m.source == "given"}
    assert found["deep/er/good.gguf"].info is not None
    problems = {name: m.problem for name, m in found.items() if m.info is None}
    assert problems == {
        "self.gguf": "a symbolic link loop",
        "a.gguf": "a symbolic link loop",
        "b.gguf": "a symbolic link loop",
        "gone.gguf": "a broken symbolic link",
        "notes.gguf": "notes.gguf: not a GGUF model file (it does not start with 'GGUF')",
        "empty.gguf": "empty.gguf: the file is empty, not a GGUF model",
        "pipe.gguf": "it is a FIFO",
        "locked": "cannot be read (Permission denied)",
    }
    assert all("\n" not in problem for problem in problems.values())


def test_playground_models_lists_them(messy: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["models", str(messy)]) == 0
    out, err = capsys.readouterr()
    assert "good.gguf" in out and "unusable: a symbolic link loop" in out
    assert "unusable: it is a FIFO" in out and "cannot be read (Permission denied)" in out
    assert err == ""


def test_the_chooser_skips_them_with_a_note(qtbot, messy: Path) -> None:
    from playground.ui.main_window import MainWindow

    user_models = paths.user_models_dir()
    user_models.rmdir()
    user_models.symlink_to(messy)
    window = MainWindow()
    qtbot.addWidget(window)
    chooser = window.model_panel.chooser
    labels = [chooser.itemText(i) for i in range(chooser.count())]
    assert "good.gguf (user)" in labels
    assert not any("self.gguf" in label or "pipe.gguf" in label for label in labels)
    tip = chooser.toolTip()
    assert "Skipped:" in tip and "self.gguf: a symbolic link loop" in tip
    window.close()

"""The bundled fonts: every language of the parallel sentences is drawn with real glyphs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QFont, QTextLayout

from playground import paths
from playground.ui import fonts

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = json.loads((paths.resource_dir("languages") / "parallel.json").read_text("utf-8"))
LANGUAGES = SENTENCES["languages"]


def _text(language: str) -> str:
    return " ".join(s[language] for s in SENTENCES["sentences"])


def glyph_runs(text: str, font: QFont) -> list[tuple[str, int]]:
    """(family, glyphs drawn as the missing-glyph box) for each run of `text` laid out in
    `font`, fallbacks included. Qt draws a character that no font has either as its font's
    glyph 0 or with a font that has no character map at all (its "box" engine); the family is
    "" for the latter."""
    layout = QTextLayout(text, font)
    layout.beginLayout()
    line = layout.createLine()
    line.setLineWidth(100_000)
    layout.endLayout()
    runs = []
    for run in layout.glyphRuns():
        raw = run.rawFont()
        if not raw.fontTable("cmap"):  # Qt's box engine: asking its family crashes Qt 6.11
            runs.append(("", len(run.glyphIndexes())))
        else:
            runs.append((raw.familyName(), sum(1 for g in run.glyphIndexes() if g == 0)))
    return runs


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_is_drawn_with_real_glyphs(qapp, language: str):
    runs = glyph_runs(_text(language), qapp.font())
    assert runs and all(family and boxes == 0 for family, boxes in runs), runs


def test_the_tests_draw_with_the_bundled_fonts_only(qapp):
    bundled = {"Noto Sans", "Noto Sans Devanagari", "Noto Sans Arabic", "Noto Sans CJK SC"}
    used = {family for language in LANGUAGES for family, _ in glyph_runs(_text(language),
                                                                          qapp.font())}
    assert used <= bundled, used


def test_a_font_that_fails_to_load_is_skipped_with_a_warning(qapp, tmp_path, caplog):
    (tmp_path / "broken.ttf").write_bytes(b"\x00\x01\x00\x00" + b"not a font" * 100)
    math = next((paths.resource_dir("fonts") / "NotoSansMath").glob("*.ttf"))
    shutil.copy(math, tmp_path / "z.ttf")
    with caplog.at_level(logging.WARNING, logger="playground.ui.fonts"):
        assert fonts.load_fonts(tmp_path) == ["Noto Sans Math"]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped the font {tmp_path / 'broken.ttf'}: Qt cannot load it"]


START_UP = """
import json, sys
from PySide6.QtGui import QFontDatabase, QFontInfo
from PySide6.QtWidgets import QApplication
from playground.ui import fonts
from test_ui_fonts import LANGUAGES, _text, glyph_runs

app = QApplication([])
system = QFontInfo(app.font()).family()
covered = {folder: bool(QFontDatabase.families(ws)) for folder, ws in fonts.SCRIPT_FONTS.items()}
added = fonts.add_fallback_fonts(app)
json.dump({"system": system, "covered": covered, "added": added,
           "families": app.font().families(),
           "runs": {language: glyph_runs(_text(language), app.font()) for language in LANGUAGES}},
          sys.stdout)
"""
"""What the app's start-up does, on this machine's fonts rather than the tests' bundled ones."""

FAMILIES = {"NotoSansDevanagari": "Noto Sans Devanagari", "NotoSansArabic": "Noto Sans Arabic",
            "NotoSansCJKsc": "Noto Sans CJK SC"}


def test_at_start_up_bundled_fonts_back_up_the_scripts_no_system_font_covers(tmp_path):
    here = Path(__file__).parent  # for `from test_ui_fonts import ...`
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(here)])}
    done = subprocess.run([sys.executable, "-c", START_UP], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for language, runs in report["runs"].items():
        assert all(family and boxes == 0 for family, boxes in runs), (language, runs)
    uncovered = [FAMILIES[folder] for folder, covered in report["covered"].items() if not covered]
    assert report["added"] == uncovered
    # The system's own font stays first; the bundled ones come after it, and only those.
    if uncovered:
        assert report["families"] == [report["system"], *uncovered]
    else:
        assert len(report["families"]) == 1

"""The fonts the app ships (resources/fonts/): fallbacks for scripts the system cannot draw.

System fonts stay first: a bundled font joins the application font's families, after the system
family, only for a writing system that no installed font covers. Text measures the same
everywhere only with the same fonts, so the tests draw everything with the bundled ones instead
(`use_bundled_fonts`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QFontDatabase, QFontInfo
from PySide6.QtWidgets import QApplication

from playground import paths

log = logging.getLogger(__name__)

FONT_FILES = ("*.ttf", "*.otf")
LATIN = "Noto Sans"
SCRIPT_FONTS = {
    "NotoSansDevanagari": QFontDatabase.WritingSystem.Devanagari,
    "NotoSansArabic": QFontDatabase.WritingSystem.Arabic,
    "NotoSansCJKsc": QFontDatabase.WritingSystem.SimplifiedChinese,
}
"""The folders of resources/fonts/ that are fallbacks in the app, with what each one covers."""


def load_fonts(folder: Path) -> list[str]:
    """Register every font file under `folder` with Qt; return their families, in file order.

    A file Qt cannot load is skipped with a warning: a damaged font must not stop the app.
    """
    families: list[str] = []
    for path in sorted(p for pattern in FONT_FILES for p in folder.rglob(pattern)):
        font_id = QFontDatabase.addApplicationFont(str(path))
        if font_id < 0:
            log.warning("skipped the font %s: Qt cannot load it", path)
            continue
        families += [f for f in QFontDatabase.applicationFontFamilies(font_id) if f not in families]
    return families


def add_fallback_fonts(app: QApplication) -> list[str]:
    """Make the bundled fonts of the writing systems that no installed font covers fallbacks of
    the application font; return the families added."""
    fonts = paths.resource_dir("fonts")
    families: list[str] = []
    for folder, writing_system in SCRIPT_FONTS.items():
        if not QFontDatabase.families(writing_system):
            families += load_fonts(fonts / folder)
    if families:
        font = app.font()
        # The family Qt resolved, not an alias such as "Sans Serif" that Qt cannot find by name
        # and would then replace by the first fallback.
        font.setFamilies([QFontInfo(font).family(), *families])
        app.setFont(font)
    return families


def use_bundled_fonts(app: QApplication) -> list[str]:
    """Draw all text with the bundled fonts: Noto Sans, then the others as fallbacks. For the
    tests, whose measurements must not depend on what a machine has installed."""
    families = load_fonts(paths.resource_dir("fonts"))
    font = app.font()
    font.setFamilies([LATIN, *(f for f in families if f != LATIN)])
    font.setPointSize(9)  # Qt's default on Linux; the stylesheet sets most widgets' size
    app.setFont(font)
    return families


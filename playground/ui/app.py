"""Start the desktop app."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication

from playground import paths
from playground.ui import fonts, window_system
from playground.ui.main_window import MainWindow

STYLESHEET = paths.resource_dir("") / "style.qss"


def application() -> QApplication:
    """The QApplication, made once: styled, with the bundled fonts as fallbacks. Raises
    WindowSystemError where Qt could not open a window, instead of letting Qt abort."""
    app = QApplication.instance()
    if app is None:
        window_system.check()
        app = QApplication(sys.argv[:1])
        fonts.add_fallback_fonts(app)
    app.setApplicationName("Sampling Playground")
    app.setOrganizationName("sampling-playground")
    if STYLESHEET.is_file():
        app.setStyleSheet(STYLESHEET.read_text(encoding="utf-8"))
    return app


def main() -> int:
    app = application()
    window = MainWindow()
    app.aboutToQuit.connect(window.shut_down)
    window.show()
    window.start()
    return app.exec()

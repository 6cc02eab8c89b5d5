"""Start the desktop app."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication

from playground import paths
from playground.ui.main_window import MainWindow

STYLESHEET = paths.resource_dir("") / "style.qss"


def application() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
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

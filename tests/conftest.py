"""Shared fixtures: an isolated data dir for every test, tiny models, and the embedded model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tiny_models

from playground import paths
from playground.ui.window_system import offscreen_platform

TEST_SCREEN = (1280, 720)
"""The offscreen screen the tests run on: a small laptop's."""

# Before the QApplication is made: tests never need a display.
os.environ.setdefault("QT_QPA_PLATFORM", offscreen_platform(*TEST_SCREEN))


@pytest.fixture(scope="session")
def qapp():
    """The app as users get it (its stylesheet), but drawing all text with the bundled fonts,
    so that what a test measures does not depend on the fonts a machine has installed."""
    from PySide6.QtWidgets import QApplication

    from playground.ui import fonts
    from playground.ui.app import application

    app = QApplication.instance() or QApplication([])
    fonts.use_bundled_fonts(app)
    return application()


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point config and data at a temporary folder so no test touches the user's files."""
    data = tmp_path / "data"
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(data))
    return data


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_path: Path):
    from playground.engine import load

    engine = load(tiny_model_path, n_ctx=512)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def embedded_model_path() -> Path:
    path = paths.embedded_model_path()
    if path is None:
        pytest.fail("the embedded model is not installed: run `python3 dev.py setup`")
    return path


@pytest.fixture(scope="session")
def embedded_engine(embedded_model_path: Path):
    from playground.engine import load

    engine = load(embedded_model_path, n_ctx=2048)
    yield engine
    engine.close()


@pytest.fixture
def window(qtbot, tiny_model_path: Path):
    """The main window with the tiny model loaded."""
    from playground.ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    window.model_panel.select(str(tiny_model_path))
    window.load_model(tiny_model_path, 0)
    qtbot.waitUntil(lambda: window.model is not None, timeout=60_000)
    yield window
    window.close()


@pytest.fixture(scope="session")
def llama_server_url(embedded_model_path: Path):
    """llama-server (built once per machine by dev.py from the llama.cpp that llama-cpp-python
    vendors) serving the embedded model on 127.0.0.1: 4 slots, one thread (as the local engine
    decodes), flash attention on (as the local engine runs, so logits do not depend on
    batching)."""
    import dev

    with dev.running_llama_server(embedded_model_path, "-np", "4", "-c", "8192", "-t", "1",
                                  "-fa", "on") as url:
        yield url

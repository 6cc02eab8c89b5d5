"""The model chooser's downloads, against the local Hub: progress, cancel, resume, errors."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from local_hub import LocalHub, closed_port, isolate_hub_client

from playground import paths
from playground.catalog import CatalogModel
from playground.download import CHUNK, partial_size
from playground.ui.model_panel import CATALOG, ModelPanel
from playground.ui.tasks import Task
from playground.units import human_size

TIMEOUT = 30_000
REPO = "test-org/models-GGUF"
BIG = os.urandom(4 * CHUNK + 4321)


def model(id: str, file: str, content: bytes) -> CatalogModel:
    return CatalogModel(id=id, name=f"{id.title()} test model", role="generator",
                        source="huggingface", license="MIT", file=file,
                        size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(),
                        repo=REPO)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_path: Path):
    """The local Hub, serving a tiny GGUF and a 4 MB file, and a catalog of the two."""
    isolate_hub_client(monkeypatch, tmp_path)
    server = LocalHub()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    tiny = tiny_model_path.read_bytes()
    server.add(REPO, "tiny.gguf", tiny)
    server.add(REPO, "big.gguf", BIG)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"version": 1, "models": [
        model("tiny", "tiny.gguf", tiny).to_json(), model("big", "big.gguf", BIG).to_json()]}))
    monkeypatch.setattr(paths, "catalog_file", lambda: catalog)
    yield server
    server.close()


@pytest.fixture
def panel(qtbot, qapp, hub):
    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.resize(320, 420)
    panel.show()
    panel.set_choices([], [], "")
    return panel


def choose(panel: ModelPanel, model_id: str) -> None:
    panel.chooser.setCurrentIndex(panel.chooser.findData(CATALOG + model_id))


def test_a_catalog_model_downloads_and_becomes_loadable(qtbot, panel: ModelPanel,
                                                        tiny_model_path: Path):
    choose(panel, "tiny")
    size = human_size(tiny_model_path.stat().st_size)
    assert panel.chooser.currentText() == f"Tiny test model (download {size})"
    assert panel.load_button.text() == "Download"

    with qtbot.waitSignal(panel.download.downloaded, timeout=TIMEOUT):
        panel.load_button.click()

    target = paths.user_models_dir() / "tiny.gguf"
    assert panel.chooser.currentText() == "tiny.gguf (user)"
    assert panel.chosen_path() == target and target.is_file()
    assert panel.load_button.text() == "Load"
    assert "its sha256 is the catalog's" in panel.download.status.text()
    with qtbot.waitSignal(panel.load_requested) as loading:
        panel.load_button.click()
    assert loading.args == [target, 0]


def test_cancel_stops_that_download_and_resume_goes_on(qtbot, panel: ModelPanel,
                                                       hub: LocalHub, tmp_path: Path):
    hub.chunk_delay = 0.2  # 256 KiB every 0.2 s: a report every 0.8 s
    choose(panel, "big")
    # Another background task at the same time, which the cancel must leave alone.
    other = Task(lambda progress, cancelled: time.sleep(1.5) or "not cancelled")
    other_ended: list[str] = []
    other.finished.connect(other_ended.append)
    other.cancelled.connect(lambda: other_ended.append("cancelled"))
    panel.load_button.click()
    other.start()
    task = panel.download.task
    qtbot.waitUntil(lambda: panel.download.bar.value() > 0, timeout=TIMEOUT)
    size = human_size(len(BIG) // 1024 * 1024)  # it counts in KiB
    assert panel.download.status.text() == f"Downloading Big test model: 1.05 MB of {size}"
    assert panel.load_button.text() == "Downloading…" and not panel.load_button.isEnabled()
    out = tmp_path / "shots"
    out.mkdir()
    assert panel.grab().save(str(out / "model_download.png"))

    panel.download.cancel_button.click()

    qtbot.waitUntil(lambda: task.ended and other.ended, timeout=TIMEOUT)
    assert other_ended == ["not cancelled"]
    kept = partial_size(panel.chosen_download())  # what reached the disk before Cancel acted
    assert kept % CHUNK == 0 and 0 < kept < len(BIG)
    progress = f"{human_size(kept)} of {human_size(len(BIG))}"
    assert panel.download.status.text().startswith(f"Cancelled at {progress}: ")
    assert panel.chooser.currentText() == f"Big test model (resume: {progress})"
    assert panel.load_button.text() == "Resume download" and panel.load_button.isEnabled()

    hub.chunk_delay = 0
    with qtbot.waitSignal(panel.download.downloaded, timeout=TIMEOUT):
        panel.load_button.click()
    assert hub.gets()[-1].range == f"bytes={kept}-"
    assert (paths.user_models_dir() / "big.gguf").read_bytes() == BIG


def test_a_failed_download_says_why_and_can_be_tried_again(qtbot, panel: ModelPanel,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    choose(panel, "tiny")
    panel.load_button.click()
    qtbot.waitUntil(lambda: panel.download.task.ended, timeout=TIMEOUT)
    assert panel.download.status.text().startswith("cannot reach the Hub at http://127.0.0.1:")
    assert "\n" not in panel.download.status.text()
    assert panel.load_button.text() == "Download" and panel.load_button.isEnabled()
    assert not panel.download.bar.isVisible()


def test_quitting_during_a_stalled_download_is_prompt_and_keeps_what_arrived(
        qtbot, hub: LocalHub):
    from playground.ui.main_window import MainWindow

    hub.stall_after = 2 * CHUNK + 1000  # two chunks reach the disk, then nothing more comes
    window = MainWindow()
    qtbot.addWidget(window)
    panel = window.model_panel
    choose(panel, "big")
    panel.load_button.click()
    qtbot.waitUntil(lambda: partial_size(panel.chosen_download()) == 2 * CHUNK,
                    timeout=TIMEOUT)
    time.sleep(0.5)  # the read is blocked on the stalled line by now

    start = time.monotonic()
    window.shut_down()  # what quitting runs (aboutToQuit, closeEvent)
    took = time.monotonic() - start

    # It waited 10.6 s with huggingface_hub's http_get (its read timeout, then a retry).
    assert took < 3, f"shut_down took {took:.1f} s"
    qtbot.waitUntil(lambda: panel.download.task.ended, timeout=TIMEOUT)
    assert panel.download.status.text().startswith(
        f"Cancelled at {human_size(2 * CHUNK)} of {human_size(len(BIG))}: ")
    # What the quit left is what the next download resumes from.
    with qtbot.waitSignal(panel.download.downloaded, timeout=TIMEOUT):
        panel.load_button.click()
    assert hub.gets()[-1].range == f"bytes={2 * CHUNK}-"
    assert (paths.user_models_dir() / "big.gguf").read_bytes() == BIG

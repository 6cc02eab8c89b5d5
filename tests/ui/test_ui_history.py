"""The history panel and the export dialog, against runs of the tiny model.

Every test saves real runs into the isolated history (conftest points the data dir at a
temporary folder) and waits on signals, never on fixed sleeps. Set PLAYGROUND_SCREENSHOT_DIR to
keep the screenshots that `test_screenshots` takes (e.g. to look at them).
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from playground import export, paths
from playground.engine_api import Engine
from playground.records import Run
from playground.sampling import SamplingParams
from playground.store import Store, open_store
from playground.ui import history_panel as history_module
from playground.ui.export_dialog import CANCELLED_MESSAGE, ExportDialog
from playground.ui.history_panel import (
    EMPTY_TEXT,
    PROMPT,
    STAR,
    STATUS,
    TAGS,
    WHEN,
    HistoryPanel,
    N,
    when_text,
)

TIMEOUT = 30_000
PROMPTS = ("hello", "the cat sat\non the mat", "once upon a time")
SIZES = (3, 2, 4)


@pytest.fixture(scope="module")
def generated(tiny_engine: Engine) -> list[Run]:
    """Three real runs, oldest first (generated once; tests save copies)."""
    return [
        tiny_engine.run(prompt, SamplingParams(seed=1 + i, max_tokens=8, temperature=1.0), n=n)
        for i, (prompt, n) in enumerate(zip(PROMPTS, SIZES, strict=True))
    ]


@pytest.fixture
def store() -> Store:
    store, message = open_store()
    assert message is None
    yield store
    store.close()


@pytest.fixture
def saved(store: Store, generated: list[Run]) -> list[int]:
    """The three runs saved in order: ids oldest first."""
    return [store.save(copy.deepcopy(run)) for run in generated]


@pytest.fixture
def panel(qtbot, store: Store, saved: list[int]) -> HistoryPanel:
    panel = HistoryPanel(store)
    qtbot.addWidget(panel)
    panel.resize(1200, 700)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def listed(panel: HistoryPanel) -> list[int]:
    return [s.id for s in panel.model.rows]


def cell(panel: HistoryPanel, row: int, column: int) -> str:
    return panel.model.index(row, column).data()


def select(panel: HistoryPanel, *run_ids: int) -> None:
    panel._select(run_ids, run_ids[0])
    assert panel.selected_run_ids() == sorted(run_ids, key=listed(panel).index)


# ---------------------------------------------------------------------------------------------
# Listing


def test_lists_runs_newest_first(panel: HistoryPanel, saved: list[int]):
    assert listed(panel) == saved[::-1]
    assert panel.stack.currentWidget() is panel.table
    assert cell(panel, 0, PROMPT) == "once upon a time"
    assert cell(panel, 1, PROMPT) == "the cat sat …"  # first line; more lines follow
    assert [cell(panel, row, N) for row in range(3)] == ["4", "2", "3"]
    assert {cell(panel, row, STATUS) for row in range(3)} == {"finished"}
    assert cell(panel, 0, STAR) == "☆"
    assert "tiny" in cell(panel, 0, history_module.MODEL).lower()
    assert panel.count.text() == "3 runs"


def test_when_is_local_time():
    from datetime import UTC, datetime

    moment = datetime(2024, 11, 27, 14, 30, tzinfo=UTC)
    local = moment.astimezone()
    same_year = datetime(2024, 12, 31, tzinfo=UTC).astimezone()
    assert when_text(moment, same_year) == f"{local:%b} {local.day} {local:%H:%M}"
    assert when_text(moment, datetime(2026, 1, 1, tzinfo=UTC)) == f"{local:%b} {local.day} 2024"


def interrupted_copy(run: Run) -> Run:
    """The run as a crash leaves it: no RunEnd, its last sample cut off."""
    cut = copy.deepcopy(run)
    cut.stats = None
    cut.samples[-1].finish_reason = None
    return cut


def test_interrupted_and_running_runs(qtbot, panel: HistoryPanel, store: Store,
                                      generated: list[Run], monkeypatch: pytest.MonkeyPatch):
    interrupted = store.save(interrupted_copy(generated[0]))
    original = generated[1]
    writer = store.begin(Run.start(original.model, original.params, original.prompt,
                                   original.prompt_token_ids, 2, chat=original.chat))
    panel.refresh()
    assert listed(panel)[:2] == [writer.run_id, interrupted]
    assert [cell(panel, row, STATUS) for row in range(2)] == ["running", "interrupted"]
    assert panel.model.index(1, N).data(Qt.ItemDataRole.ToolTipRole) == "2 of 3 samples ended"
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    select(panel, writer.run_id)
    with qtbot.waitSignal(panel.errored) as blocker:
        panel.delete_action.trigger()
    assert "still being generated" in blocker.args[0]
    writer.close()
    panel.refresh()
    assert cell(panel, 0, STATUS) == "interrupted"
    assert panel.selected_run_ids() == [writer.run_id]


def test_empty_state(qtbot, store: Store):
    panel = HistoryPanel(store)
    qtbot.addWidget(panel)
    assert panel.stack.currentWidget() is panel.empty
    assert panel.empty.text() == EMPTY_TEXT
    assert not panel.export_action.isEnabled()
    assert not panel.open_action.isEnabled()


def test_search_filters_as_you_type(qtbot, panel: HistoryPanel, saved: list[int]):
    qtbot.keyClicks(panel.search, "CAT")
    qtbot.waitUntil(lambda: listed(panel) == [saved[1]], timeout=TIMEOUT)
    assert panel.count.text() == "1 run match"
    panel.search.setText("no such prompt")
    qtbot.waitUntil(lambda: panel.stack.currentWidget() is panel.empty, timeout=TIMEOUT)
    assert "no such prompt" in panel.empty.text()
    panel.search.clear()
    qtbot.waitUntil(lambda: len(listed(panel)) == 3, timeout=TIMEOUT)


def test_pages_load_as_needed(qtbot, panel: HistoryPanel, saved: list[int],
                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(history_module, "PAGE_SIZE", 2)
    panel.model.set_rows([])
    panel.refresh()
    assert listed(panel) == saved[:0:-1]
    assert "scroll down for more" in panel.count.text()
    assert panel.select_run(saved[0])  # loads the page it is on
    assert listed(panel) == saved[::-1]
    assert panel.selected_run_ids() == [saved[0]]
    assert not panel.load_more()


def test_selection_survives_refresh(panel: HistoryPanel, store: Store, saved: list[int],
                                    generated: list[Run]):
    select(panel, saved[0], saved[2])
    new = store.save(copy.deepcopy(generated[0]))
    panel.refresh()
    assert listed(panel)[0] == new
    assert panel.selected_run_ids() == [saved[2], saved[0]]


def test_select_run_clears_a_filter_that_hides_it(qtbot, panel: HistoryPanel,
                                                  saved: list[int]):
    panel.search.setText("hello")
    panel.refresh()
    assert listed(panel) == [saved[0]]
    assert panel.select_run(saved[2])
    assert panel.search.text() == ""
    assert panel.selected_run_ids() == [saved[2]]


# ---------------------------------------------------------------------------------------------
# Organising


def test_star_and_starred_only(qtbot, panel: HistoryPanel, store: Store, saved: list[int]):
    select(panel, saved[1])
    assert panel.star_action.text() == "Star"
    panel.star_action.trigger()
    assert store.summary(saved[1]).starred
    assert cell(panel, listed(panel).index(saved[1]), STAR) == "★"
    assert panel.star_action.text() == "Unstar"
    panel.starred_only.click()
    assert listed(panel) == [saved[1]]
    panel.starred_only.click()
    assert len(listed(panel)) == 3
    # Clicking the star column toggles that run's star in place.
    row = listed(panel).index(saved[1])
    rect = panel.table.visualRect(panel.model.index(row, STAR))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert not store.summary(saved[1]).starred


def test_tags_add_and_remove(qtbot, panel: HistoryPanel, store: Store, saved: list[int],
                             monkeypatch: pytest.MonkeyPatch):
    answers = iter([("alpha, beta , alpha", True), ("beta, gamma", True), ("", False)])
    asked = []

    def get_text(parent, title, label, echo, text):
        asked.append(text)
        return next(answers)

    monkeypatch.setattr(QInputDialog, "getText", get_text)
    select(panel, saved[0])
    panel.tags_action.trigger()
    assert store.tags(saved[0]) == ["alpha", "beta"]
    assert cell(panel, listed(panel).index(saved[0]), TAGS) == "alpha, beta"
    # Two runs: the dialog shows the tags they share; taking one out removes it from both.
    select(panel, saved[0], saved[1])
    panel.tags_action.trigger()
    assert asked[1] == ""  # saved[1] has no tags, so none are common
    assert store.tags(saved[0]) == ["alpha", "beta", "gamma"]
    assert store.tags(saved[1]) == ["beta", "gamma"]
    panel.tags_action.trigger()  # cancelled: nothing changes
    assert store.tags(saved[1]) == ["beta", "gamma"]
    panel.search.setText("alph")
    panel.refresh()
    assert listed(panel) == [saved[0]]


def test_bad_tag_is_reported(qtbot, panel: HistoryPanel, saved: list[int],
                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(QInputDialog, "getText", lambda *args: ("x" * 200, True))
    select(panel, saved[0])
    with qtbot.waitSignal(panel.errored) as blocker:
        panel.tags_action.trigger()
    assert "at most" in blocker.args[0]


def test_delete_asks_first(qtbot, panel: HistoryPanel, store: Store, saved: list[int],
                           monkeypatch: pytest.MonkeyPatch):
    answer = [QMessageBox.StandardButton.No]
    monkeypatch.setattr(QMessageBox, "question", lambda *args: answer[0])
    select(panel, saved[0], saved[2])
    panel.delete_action.trigger()
    assert len(store.list_runs()) == 3
    answer[0] = QMessageBox.StandardButton.Yes
    with qtbot.waitSignal(panel.reported) as blocker:
        panel.delete_action.trigger()
    assert blocker.args == ["Deleted 2 runs."]
    assert [s.id for s in store.list_runs()] == [saved[1]]
    assert listed(panel) == [saved[1]]


# ---------------------------------------------------------------------------------------------
# Open and run again


def test_open_emits_the_stored_run(qtbot, panel: HistoryPanel, store: Store, saved: list[int],
                                   generated: list[Run]):
    select(panel, saved[1])
    with qtbot.waitSignal(panel.run_opened, timeout=TIMEOUT) as blocker:
        panel.open_action.trigger()
        assert panel.busy.isVisible() and not panel.open_action.isEnabled()
    run, run_id = blocker.args
    original = generated[1]
    assert run_id == saved[1]
    assert run == store.load(saved[1])
    assert [s.text for s in run.samples] == [s.text for s in original.samples]
    assert [[t.id for t in s.tokens] for s in run.samples] == [
        [t.id for t in s.tokens] for s in original.samples
    ]
    assert run.prompt == original.prompt and run.params == original.params
    assert not panel.busy.isVisible() and panel.open_action.isEnabled()


def test_double_click_opens(qtbot, panel: HistoryPanel, saved: list[int]):
    rect = panel.table.visualRect(panel.model.index(0, PROMPT))
    with qtbot.waitSignal(panel.run_opened, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    # QTest's double click leaves its button down for the tests that follow (hover tests then
    # see a drag): let go of it.
    qtbot.mouseRelease(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args[1] == saved[2]


def test_open_of_a_deleted_run_reports(qtbot, panel: HistoryPanel, store: Store,
                                       saved: list[int]):
    select(panel, saved[0])
    store.delete(saved[0])  # e.g. by another window
    with qtbot.waitSignal(panel.errored, timeout=TIMEOUT) as blocker:
        panel.open_action.trigger()
    assert f"no run #{saved[0]}" in blocker.args[0]


def test_run_again_emits_the_request(qtbot, panel: HistoryPanel, saved: list[int],
                                     generated: list[Run]):
    select(panel, saved[2])
    with qtbot.waitSignal(panel.rerun_requested) as blocker:
        panel.rerun_action.trigger()
    request = blocker.args[0]
    original = generated[2]
    assert request.prompt == original.prompt
    assert request.params == original.params
    assert request.n == len(original.samples) == 4
    assert request.chat == original.chat and request.model_path == original.model.path


# ---------------------------------------------------------------------------------------------
# Export and import


@pytest.fixture
def dialog(qtbot, store: Store, saved: list[int]) -> ExportDialog:
    dialog = ExportDialog(store, saved)
    qtbot.addWidget(dialog)
    return dialog


def test_export_jsonl_writes_every_sample(qtbot, dialog: ExportDialog, tmp_path: Path,
                                          generated: list[Run]):
    assert dialog.heading.text() == "Export 3 runs · 9 samples"
    target = tmp_path / "out.jsonl"
    with qtbot.waitSignal(dialog.finished_export, timeout=TIMEOUT) as blocker:
        dialog.start_export("jsonl", target, include_tokens=True)
        assert dialog.close_button.text() == "Cancel"
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert blocker.args == [len(lines)] == [sum(SIZES)]
    assert {line["response"] for line in lines} == {
        s.text for run in generated for s in run.samples
    }
    assert all("tokens" in line for line in lines)
    assert dialog.result.text().startswith(f"Wrote 9 samples to {target}.")
    assert dialog.close_button.text() == "Close" and dialog.export_button.isEnabled()


def test_export_button_uses_the_chosen_format_and_options(qtbot, dialog: ExportDialog,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    dialog.show()
    dialog.set_format("labelstudio-pairwise")
    assert dialog.ranking.isVisible() and dialog.pair_mode.isVisible()
    assert not dialog.include_tokens.isVisible()
    assert dialog.path.text().endswith(".json")
    dialog.pair_mode.setCurrentIndex(dialog.pair_mode.findData("all-pairs"))
    assert dialog.max_pairs.isEnabled()
    dialog.ranking.setCurrentIndex(dialog.ranking.findData("sum-logprob"))
    assert dialog.export_options() == {"ranking": "sum-logprob", "pair_mode": "all-pairs",
                                       "max_pairs": 20}
    target = tmp_path / "pairs"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(target), ""))
    dialog.choose_path()
    assert dialog.path.text() == str(target.with_suffix(".json"))
    with qtbot.waitSignal(dialog.finished_export, timeout=TIMEOUT) as blocker:
        dialog.export_button.click()
    tasks = json.loads(target.with_suffix(".json").read_text(encoding="utf-8"))
    # All pairs of 3 + 2 + 4 samples.
    assert blocker.args == [len(tasks)] == [3 + 1 + 6]
    assert {t["data"]["ranking_method"] for t in tasks} == {"sum-logprob"}
    assert "Wrote 10 tasks" in dialog.result.text()
    assert "pairs.label_config.xml beside it" in dialog.result.text()
    assert target.with_name("pairs.label_config.xml").exists()
    dialog.set_format("csv")
    assert not dialog.options.isVisible()
    assert dialog.path.text().endswith(".csv")
    dialog.set_format("jsonl")
    assert dialog.include_tokens.isVisible() and not dialog.ranking.isVisible()


@pytest.fixture
def held_export(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """export_stored waits (on its worker thread) until the export is cancelled, then goes on
    as usual; the event is set once it waits, so a test knows the export is running."""
    real = export.export_stored
    waiting = threading.Event()

    def held(store, run_ids, fmt, path, *, cancel, **options):
        waiting.set()
        deadline = time.monotonic() + TIMEOUT / 1000
        while not cancel() and time.monotonic() < deadline:
            time.sleep(0.005)
        return real(store, run_ids, fmt, path, cancel=cancel, **options)

    monkeypatch.setattr(export, "export_stored", held)
    return waiting


def test_cancel_stops_the_export_without_a_file(qtbot, dialog: ExportDialog, tmp_path: Path,
                                                held_export: threading.Event):
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "cancelled.jsonl"
    with qtbot.waitSignal(dialog.cancelled_export, timeout=TIMEOUT):
        dialog.start_export("jsonl", target)
        assert held_export.wait(TIMEOUT / 1000)
        dialog.close_button.click()  # "Cancel" while exporting
    assert dialog.result.text() == CANCELLED_MESSAGE
    assert not target.exists()
    assert list(folder.iterdir()) == []  # no partial file either
    assert dialog.close_button.text() == "Close"


def test_closing_while_exporting_cancels_first(qtbot, dialog: ExportDialog, tmp_path: Path,
                                               held_export: threading.Event):
    dialog.show()
    with qtbot.waitSignal(dialog.rejected, timeout=TIMEOUT):
        dialog.start_export("csv", tmp_path / "closed.csv")
        assert held_export.wait(TIMEOUT / 1000)
        dialog.reject()
        assert dialog.isVisible()  # until the worker has stopped
    assert not dialog.isVisible()
    assert not (tmp_path / "closed.csv").exists()


def test_export_error_is_one_line(qtbot, dialog: ExportDialog, tmp_path: Path):
    with qtbot.waitSignal(dialog.errored, timeout=TIMEOUT) as blocker:
        dialog.start_export("jsonl", tmp_path / "missing" / "out.jsonl")
    assert blocker.args[0].startswith("cannot write")
    assert "\n" not in blocker.args[0]
    assert dialog.result.text().startswith("cannot write")
    assert dialog.export_button.isEnabled()


def test_panel_export_opens_the_dialog_for_the_selection(qtbot, panel: HistoryPanel,
                                                         saved: list[int]):
    select(panel, saved[0], saved[1])
    panel.export_action.trigger()
    dialog = panel.export_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.run_ids == [saved[1], saved[0]]
    dialog.reject()
    panel.table.clearSelection()
    panel.export_action.trigger()  # nothing selected: every run listed
    assert sorted(panel.export_dialog.run_ids) == sorted(saved)
    panel.export_dialog.reject()


def test_import_through_the_panel(qtbot, panel: HistoryPanel, store: Store, saved: list[int],
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    exported = tmp_path / "runs.jsonl"
    export.export_stored(store, saved[:2], "jsonl", exported, include_tokens=True)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(exported), ""))
    with qtbot.waitSignal(panel.reported, timeout=TIMEOUT) as blocker:
        panel.import_action.trigger()
    assert blocker.args == ["Imported 2 runs from runs.jsonl."]
    assert len(listed(panel)) == 5
    new = panel.selected_run_ids()
    assert len(new) == 2 and not set(new) & set(saved)
    assert [store.load(i) for i in sorted(new)] == [store.load(i) for i in saved[:2]]


def test_import_of_a_bad_file_reports(qtbot, panel: HistoryPanel, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    with qtbot.waitSignal(panel.errored, timeout=TIMEOUT) as blocker:
        panel.import_file(bad)
    assert blocker.args == ["bad.jsonl, line 1: not JSON"]
    assert len(listed(panel)) == 3
    assert panel.import_action.isEnabled()


# ---------------------------------------------------------------------------------------------
# What it looks like


def test_screenshots(qtbot, store: Store, saved: list[int], generated: list[Run],
                     tmp_path: Path):
    """The panel and the dialog as the app styles them (its stylesheet, set before they are
    made, as the app does)."""
    out = Path(os.environ.get("PLAYGROUND_SCREENSHOT_DIR") or tmp_path)
    stylesheet = (paths.resource_dir("") / "style.qss").read_text(encoding="utf-8")
    store.set_starred(saved[1])
    store.add_tags(saved[1], "cats", "keep")
    store.add_tags(saved[2], "stories")
    store.save(interrupted_copy(generated[0]))
    host = QWidget()
    qtbot.addWidget(host)
    host.setStyleSheet(stylesheet)
    panel = HistoryPanel(store, host)
    QVBoxLayout(host).addWidget(panel)
    host.resize(1200, 700)
    host.show()
    qtbot.waitExposed(host)
    select(panel, saved[1])
    QApplication.processEvents()  # the layout settles as it would in the event loop
    assert cell(panel, 0, WHEN)
    assert host.grab().save(str(out / "history.png"))

    dialog = ExportDialog(store, saved, host)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.grab().save(str(out / "export_dialog.png"))
    dialog.set_format("labelstudio-pairwise")
    assert dialog.grab().save(str(out / "export_dialog_pairwise.png"))
    dialog.reject()

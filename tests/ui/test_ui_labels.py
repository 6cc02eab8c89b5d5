"""Labelling in the app: "prefer" on a best-of-N panel, drag-to-rank, and the Agreement tab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import store_writer as sw
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QApplication

from playground.agreement import agreement
from playground.records import Run
from playground.ui.main_window import MainWindow

TIMEOUT = 20_000


@pytest.fixture
def window(qtbot) -> MainWindow:
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1280, 720)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.shut_down()


def open_run(window: MainWindow, n: int = 4, seed: int = 3) -> tuple[Run, int]:
    run = sw.synthetic_run(n, [6 + i for i in range(n)], seed=seed, prompt="What is 6 x 7?")
    run_id = window.store.save(run)
    window.show_stored_run(window.store.load(run_id), run_id)
    return run, run_id


def test_prefer_labels_the_run_under_the_annotators_name(qtbot, window: MainWindow,
                                                         tmp_path: Path):
    run, run_id = open_run(window)
    view = window.best_of_n_view
    view.annotator.setText("Ada")
    panel = view.panels()[2]
    assert panel.prefer_button.isEnabled() and panel.prefer_button.text() == "prefer"
    qtbot.mouseClick(panel.prefer_button, Qt.MouseButton.LeftButton)
    (label,) = window.store.labels([run_id])
    assert (label.annotator, label.source, label.samples) == ("Ada", "app", (0, 1, 2, 3))
    assert label.ranks == (2, 2, 1, 2)
    assert label.responses == tuple(s.text for s in run.samples)
    assert [p.is_preferred() for p in view.panels()] == [False, False, True, False]
    assert panel.prefer_button.text() == "✓ preferred"
    window.grab().save(str(tmp_path / "prefer.png"))

    # Changing one's mind replaces the label; reopening the run shows it.
    qtbot.mouseClick(view.panels()[0].prefer_button, Qt.MouseButton.LeftButton)
    (label,) = window.store.labels([run_id])
    assert label.ranks == (1, 2, 2, 2)
    window.show_stored_run(window.store.load(run_id), run_id)
    assert [p.is_preferred() for p in view.panels()] == [True, False, False, False]

    # Without a name there is no label, and the banner says why.
    view.annotator.setText(" ")
    qtbot.mouseClick(view.panels()[1].prefer_button, Qt.MouseButton.LeftButton)
    assert window.store.labels([run_id])[0].ranks == (1, 2, 2, 2)
    assert "Type your name" in window.banner.label.text()


def drop_row_on(list_widget, source: int, target: int) -> None:
    """What dropping row `source` on row `target` does: QListWidget's InternalMove drop moves
    the row through its model's moveRows. (A synthetic QDropEvent cannot stand in: it has no
    drag source, and InternalMove ignores drops from elsewhere.)"""
    root = QModelIndex()
    assert list_widget.model().moveRow(root, source, root, target)


def test_drag_to_rank_saves_the_order(qtbot, window: MainWindow, tmp_path: Path):
    run, run_id = open_run(window, seed=4)
    view = window.best_of_n_view
    view.annotator.setText("Grace")
    shown = view.panel_order()
    qtbot.mouseClick(view.rank_button, Qt.MouseButton.LeftButton)
    assert view.ranking_by_hand() and view.rank_list.order() == shown
    rows = view.rank_list.list
    drop_row_on(rows, 3, 0)  # the last sample dragged to the top
    QApplication.processEvents()
    expected = [shown[3], *shown[:3]]
    assert view.rank_list.order() == expected
    rows.setCurrentRow(1)
    qtbot.mouseClick(view.rank_list.down_button, Qt.MouseButton.LeftButton)
    expected[1], expected[2] = expected[2], expected[1]
    assert view.rank_list.order() == expected
    view.grab().save(str(tmp_path / "rank_by_hand.png"))
    qtbot.mouseClick(view.rank_list.save_button, Qt.MouseButton.LeftButton)
    assert not view.ranking_by_hand()
    (label,) = window.store.labels([run_id])
    assert label.samples == tuple(expected) and label.ranks == (1, 2, 3, 4)
    assert label.responses == tuple(run.samples[i].text for i in expected)


def test_agreement_tab_shows_the_figures_of_the_labelled_runs(qtbot, window: MainWindow,
                                                              tmp_path: Path):
    _, first = open_run(window, seed=5)
    view = window.best_of_n_view
    view.annotator.setText("Ada")
    qtbot.mouseClick(view.panels()[1].prefer_button, Qt.MouseButton.LeftButton)
    run, second = open_run(window, n=3, seed=6)
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": run.prompt, "chosen": run.samples[2].text,
                                "rejected": run.samples[0].text}) + "\n", encoding="utf-8")
    tab = window.agreement_view
    with qtbot.waitSignal(tab.reported, timeout=TIMEOUT):
        tab.import_file(path)
    assert tab.result is None  # measured when the tab is shown
    window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.result is not None, timeout=TIMEOUT)
    expected = agreement(window.store)
    assert [r.run_id for r in tab.result.runs] == [first, second]
    assert tab.summary.text() == "2 labelled runs, 2 labels"
    mean = expected.overall["mean-logprob"]
    assert tab.overall.item(0, 0).text() == "mean logprob"
    assert tab.overall.item(0, 1).text() == str(mean.pairs) == "4"
    assert tab.overall.item(0, 2).text() == f"{mean.pair_accuracy:.0%}"
    assert list(tab.accuracy_bars.opts["height"]) == pytest.approx(
        [expected.overall[m.key].pair_accuracy for m in expected.methods])
    assert tab.per_run.rowCount() == 2
    window.grab().save(str(tmp_path / "agreement.png"))

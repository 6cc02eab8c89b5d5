"""The Reward model tab: training on the loaded (tiny) model off the GUI thread, its one-line
errors, Cancel, and the shipped proof table."""

from __future__ import annotations

import json
from pathlib import Path

import gguf

from playground.paths import resource_dir
from playground.reward.proof import METHODS, RESULTS_FILE

PAIRS = [("the cat", "the cat is here", "a dog"), ("a dog", "a dog and the cat", "the sun"),
         ("the sun", "the sun is up", "a tree"), ("a tree", "a tree", "the cat is here"),
         ("the sea", "the cat is here", "a tree"), ("a bird", "the sun is up", "a dog")]


def _labels(path: Path, pairs: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                            for p, c, r in pairs))
    return path


def test_training_on_the_loaded_model_offers_the_result_for_reranking(qtbot, window,
                                                                      tmp_path: Path):
    panel = window.reward_tab.training_panel
    panel.labels.setText(str(_labels(tmp_path / "labels.jsonl", PAIRS)))
    panel.output.setText(str(tmp_path / "rm.gguf"))
    with qtbot.waitSignal(panel.trained, timeout=60_000) as signal:
        panel.train_button.click()
        assert panel.train_button.text() == "Cancel training"
    assert signal.args == [str(tmp_path / "rm.gguf")]
    reader = gguf.GGUFReader(str(tmp_path / "rm.gguf"))
    assert reader.get_field("playground.reward.score_head") is not None
    assert "Held-out pairwise accuracy" in panel.result.text()
    assert panel.train_button.text() == "Train" and not panel.progress.isVisible()
    chooser = window.reward_panel.chooser
    assert chooser.currentData() == str(tmp_path / "rm.gguf")


def test_too_few_pairs_is_one_line_and_writes_nothing(qtbot, window, tmp_path: Path):
    panel = window.reward_tab.training_panel
    panel.labels.setText(str(_labels(tmp_path / "labels.jsonl", PAIRS[:3])))
    panel.output.setText(str(tmp_path / "rm.gguf"))
    panel.train_button.click()
    qtbot.waitUntil(lambda: panel.task is not None and panel.task.ended, timeout=60_000)
    assert panel.result.text() == ("reward training needs at least 4 preference pairs, and got "
                                   "3")
    assert not (tmp_path / "rm.gguf").exists()


def test_cancel_stops_the_training(qtbot, window, tmp_path: Path):
    panel = window.reward_tab.training_panel
    panel.labels.setText(str(_labels(tmp_path / "labels.jsonl", PAIRS)))
    panel.output.setText(str(tmp_path / "rm.gguf"))
    panel.train_button.click()
    panel.train_button.click()  # Cancel: the job polls it before its first decode
    qtbot.waitUntil(lambda: panel.task.ended, timeout=60_000)
    assert panel.result.text() == "Cancelled: nothing was written."
    assert not (tmp_path / "rm.gguf").exists()


def test_proof_view_shows_the_shipped_table(window):
    shipped = json.loads((resource_dir("proof") / RESULTS_FILE).read_text())
    table = window.reward_tab.proof_view.table
    for row, method in enumerate(METHODS):
        assert table.item(row, 0).text() == f"{shipped['best_of_n'][method]['accuracy']:.1%}"

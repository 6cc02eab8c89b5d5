"""SteadyLabel: a label whose text changes often lays its parent out only when its size must."""

from __future__ import annotations

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QWidget
from qt_events import EventCounter

from playground.ui.steady_label import SteadyLabel


def _layouts_per_text(qtbot, label: QLabel, texts: list[str]) -> list[int]:
    parent = QWidget()
    qtbot.addWidget(parent)
    QHBoxLayout(parent).addWidget(label)
    parent.show()
    requests = EventCounter(parent, QEvent.Type.LayoutRequest)
    counts = []
    for text in texts:
        QApplication.processEvents()
        requests.count = 0
        label.setText(text)
        QApplication.processEvents()
        counts.append(requests.count)
        assert label.size() == label.sizeHint()  # the whole text, never clipped
    return counts


def test_a_new_text_lays_the_parent_out_only_when_it_needs_another_size(qtbot):
    texts = ["1 tokens", "2 tokens", "3 tokens", "10 tokens", "11 tokens"]
    # A plain label asks its parent for a layout at every new text.
    assert all(_layouts_per_text(qtbot, QLabel(), texts)[1:])
    # Digits are as wide as each other: only a second digit needs a wider label.
    assert _layouts_per_text(qtbot, SteadyLabel(), texts)[1:] == [0, 0, 1, 0]

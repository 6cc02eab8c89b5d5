"""Rank the samples by hand: drag them into order, best at the top, and save the ranking."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from playground.ui.colors import sample_color

_PREVIEW = 240
"""Characters of a sample shown in its row; the tooltip holds the whole text."""


class RankList(QWidget):
    """The samples as rows to drag (or move with the buttons), best first."""

    ranked = Signal(list)
    """The sample indices in the order the user gave them, best first."""
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.list.setWordWrap(True)
        self.list.setAlternatingRowColors(True)
        self.list.setSpacing(2)
        up, down = QPushButton("Move up"), QPushButton("Move down")
        up.clicked.connect(lambda: self.move_current(-1))
        down.clicked.connect(lambda: self.move_current(1))
        save = QPushButton("Save ranking")
        save.setDefault(True)
        save.setToolTip("Record this order as your ranking of the run (it replaces your last "
                        "label of this run)")
        save.clicked.connect(lambda: self.ranked.emit(self.order()))
        done = QPushButton("Back to the samples")
        done.clicked.connect(self.closed)
        buttons = QHBoxLayout()
        buttons.addWidget(up)
        buttons.addWidget(down)
        buttons.addStretch(1)
        buttons.addWidget(done)
        buttons.addWidget(save)
        self.save_button, self.up_button, self.down_button = save, up, down
        hint = QLabel("Drag the samples into order, the best at the top, then save.")
        hint.setObjectName("note")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(hint)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def set_samples(self, texts: Sequence[str], order: Sequence[int]) -> None:
        """Show the samples (texts by index) in `order`, e.g. the current ranking's."""
        self.list.clear()
        for index in order:
            text = " ".join(texts[index].split()) or "(nothing)"
            shown = text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…"
            item = QListWidgetItem(f"#{index}  {shown}")
            item.setData(Qt.ItemDataRole.UserRole, index)
            item.setForeground(Qt.GlobalColor.black)
            item.setToolTip(texts[index])
            item.setData(Qt.ItemDataRole.DecorationRole, sample_color(index))
            self.list.addItem(item)
        self.list.setCurrentRow(0)

    def order(self) -> list[int]:
        return [self.list.item(row).data(Qt.ItemDataRole.UserRole)
                for row in range(self.list.count())]

    def move_current(self, step: int) -> None:
        """Move the selected row up (-1) or down (+1), as dragging it would."""
        row = self.list.currentRow()
        target = row + step
        if row < 0 or not 0 <= target < self.list.count():
            return
        item = self.list.takeItem(row)
        self.list.insertItem(target, item)
        self.list.setCurrentRow(target)

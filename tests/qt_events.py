"""Counting the events a widget receives (paints, layout requests): how tests tell that a
view did work once rather than at every update."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QWidget


class EventCounter(QObject):
    """Counts the events of `kind` that reach `widget`; set `count` to 0 to start again."""

    def __init__(self, widget: QWidget, kind: QEvent.Type) -> None:
        super().__init__(widget)
        self.kind = kind
        self.count = 0
        widget.installEventFilter(self)

    def eventFilter(self, _watched: QObject, event: QEvent) -> bool:
        self.count += event.type() == self.kind
        return False

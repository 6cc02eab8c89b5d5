"""What every demonstration's view provides to the Demos tab (see demos_tab.py).

A view holds the demonstration's inputs (filled from a scenario, editable), turns them into a
`Job` that runs on the engine's thread (the work itself is the runner of its module in
`playground.demos`), and shows the job's result. Its `sections` are the parts that
presentation mode reveals one step at a time, in order; the first is the inputs.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QTableWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from playground.demos.scenario import Scenario
from playground.ui.engine_thread import Job


class DemoView(QWidget):
    demo = ""
    """The demonstration's name in the registry, `playground.demos.DEMOS` (see demo_views.py)."""

    job_requested = Signal(object)
    """A Job the view wants run on its own (e.g. a branch after a click), besides `job()`."""

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        """Fill the inputs from `scenario` with the settings for `profile` and clear results."""
        raise NotImplementedError

    def job(self) -> Job:
        """The work for the inputs as they are; raise InvalidRequestError for bad input."""
        raise NotImplementedError

    def show_result(self, result: Any) -> None:
        """Show what a job of this view returned (from `job()` or `job_requested`)."""
        raise NotImplementedError

    def sections(self) -> list[QWidget]:
        """The view's parts in reveal order, one per scenario step."""
        raise NotImplementedError


def caption(text: str) -> QLabel:
    """A section's heading: a short plain sentence saying what the section shows."""
    label = QLabel(text)
    label.setObjectName("caption")
    label.setWordWrap(True)
    return label


def note(text: str = "") -> QLabel:
    """A line of secondary text under a section: figures, or what to look for."""
    label = QLabel(text)
    label.setObjectName("note")
    label.setWordWrap(True)
    return label


def section(*widgets: QWidget) -> QWidget:
    """Widgets stacked into one section of a view."""
    widget = QWidget()
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 4, 0, 4)
    for child in widgets:
        layout.addWidget(child)
    return widget


def one_line(text: str) -> str:
    return " ".join(text.split()) or "(nothing)"


def fitted_table(columns: tuple[str, ...], stretch: tuple[int, ...]) -> QTableWidget:
    """A read-only table of one-line rows, as tall as its rows (also after presentation mode
    enlarges the font): the view scrolls as a whole, and a scroll bar inside would hide rows.
    The `stretch` columns share the width the others leave."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.verticalHeader().hide()
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
    table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    table.setWordWrap(False)
    header = table.horizontalHeader()
    for column in range(len(columns)):
        header.setSectionResizeMode(
            column, QHeaderView.ResizeMode.Stretch if column in stretch
            else QHeaderView.ResizeMode.ResizeToContents)
    return table


class LinesTall(QObject):
    """Keeps a text box `lines` lines tall in whatever font it has, also after presentation mode
    enlarges it (a height in pixels would cut the text off). With `shrink`, a box whose text is
    shorter is only as tall as its text (rich-text boxes only: a plain-text document measures
    its height in lines)."""

    def __init__(self, edit: QTextEdit | QPlainTextEdit, lines: int, *,
                 shrink: bool = False) -> None:
        super().__init__(edit)
        self.lines, self.shrink = lines, shrink
        edit.installEventFilter(self)
        if shrink:
            edit.document().contentsChanged.connect(lambda: self.fit(edit))
        self.fit(edit)

    def fit(self, edit: QTextEdit | QPlainTextEdit) -> None:
        document = edit.document()
        # Lines are laid out a whole number of pixels tall; half a line more because the text
        # box scrolls as soon as its last line touches the edge.
        height = ((self.lines + 0.5) * math.ceil(QFontMetricsF(edit.font()).lineSpacing())
                  + 2 * document.documentMargin())
        if self.shrink:
            height = min(height, document.size().height())
        margins = edit.contentsMargins()
        edit.setFixedHeight(round(height + margins.top() + margins.bottom()
                                  + 2 * edit.frameWidth()))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FontChange or (
                self.shrink and event.type() == QEvent.Type.Resize):
            self.fit(watched)
        return False

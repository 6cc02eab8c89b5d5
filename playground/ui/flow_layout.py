"""A layout that places widgets left to right and wraps them into rows, like words."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QWidget

FULL_ROW = "full_row"
"""Widget property: a FlowLayout gives such a widget (a group header) a row of its own."""


class FlowLayout(QLayout):
    """Widgets left to right at their size hints, wrapping to a new row when the width runs out.

    Qt has no wrapping layout; this is its documented flow-layout example, plus rows of their
    own for widgets with the FULL_ROW property. Measurements are cached until Qt invalidates
    the layout, as Qt's own layouts do: while a run streams, every label that changes asks
    the layouts above it for their sizes again, dozens of times a second.
    """

    def __init__(self, parent: QWidget | None = None, spacing: int = 10, *,
                 centred: bool = True) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._centred = centred
        self._minimum: QSize | None = None
        self._heights: dict[int, int] = {}
        self.setSpacing(spacing)

    def invalidate(self) -> None:
        self._minimum = None
        self._heights.clear()
        super().invalidate()

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)
        self.invalidate()

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        if not 0 <= index < len(self._items):
            return None
        self.invalidate()
        return self._items.pop(index)

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        if width not in self._heights:
            self._heights[width] = self._arrange(QRect(0, 0, width, 0), apply=False)
        return self._heights[width]

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, apply=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        if self._minimum is None:
            size = QSize()
            for item in self._items:
                if not self._is_full_row(item):
                    size = size.expandedTo(item.minimumSize())
            margins = self.contentsMargins()
            self._minimum = size + QSize(margins.left() + margins.right(),
                                         margins.top() + margins.bottom())
        return QSize(self._minimum)

    @staticmethod
    def _is_full_row(item: QLayoutItem) -> bool:
        widget = item.widget()
        return widget is not None and bool(widget.property(FULL_ROW))

    def _arrange(self, rect: QRect, *, apply: bool) -> int:
        """Place the items in `rect` (or only measure); returns the height used."""
        margins = self.contentsMargins()
        area = rect.adjusted(margins.left(), margins.top(), -margins.right(), -margins.bottom())
        items = [item for item in self._items if not item.isEmpty()]
        # Centred rows are centred as one block: equal side margins look tidier than a ragged
        # gap on the right, and every row still starts at the same x.
        width = self._widest_row(items, area.width()) if self._centred else area.width()
        left = area.x() + max((area.width() - width) // 2, 0)
        spacing = self.spacing()
        x, y, row_height = left, area.y(), 0
        for item in items:
            hint = item.sizeHint()
            full_row = self._is_full_row(item)
            starts_row = full_row or (x > left and x - left + hint.width() > width)
            if starts_row and row_height:
                x, y, row_height = left, y + row_height + spacing, 0
            if apply:
                size = QSize(width, hint.height()) if full_row else hint
                item.setGeometry(QRect(QPoint(x, y), size))
            row_height = max(row_height, hint.height())
            if full_row:
                x, y, row_height = left, y + row_height + spacing, 0
            else:
                x += hint.width() + spacing
        bottom = y + row_height if row_height else y - spacing
        return max(bottom - rect.y() + margins.bottom(), 0)

    def _widest_row(self, items: list[QLayoutItem], available: int) -> int:
        """The width of the widest row if the items wrapped at `available` without breaks.

        Ignoring the full-row breaks keeps the columns where they are when a vote groups the
        panels into short rows."""
        widest = row = 0
        for item in items:
            if self._is_full_row(item):
                continue
            step = item.sizeHint().width()
            if row and row + self.spacing() + step > available:
                row = 0
            row += (self.spacing() if row else 0) + step
            widest = max(widest, row)
        return widest or available

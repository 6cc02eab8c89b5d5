"""A label for text that changes while a run streams (token counts, the context used)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel


class SteadyLabel(QLabel):
    """A label of fixed size, the size its text needs.

    `QLabel.setText` lays out the label's parent again unless the label's size is fixed: while
    a run streams, a count in a sample panel or the status bar changes at every redraw, its
    width only now and then. Fixed, a new text is repainted in place, and the parent is laid
    out only when the size the text needs changes."""

    def setText(self, text: str) -> None:
        super().setText(text)
        hint = self.sizeHint()
        if self.minimumSize() != hint or self.maximumSize() != hint:
            self.setFixedSize(hint)

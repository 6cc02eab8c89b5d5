"""The key to the token heat map: which background colour means which probability."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QLinearGradient, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from playground.ui.colors import probability_color

TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
CAPTION = "token probability"
GRADIENT_STEPS = 32
"""Samples of `probability_color` along the bar: the gradient follows it whatever its stops."""
LABEL_COLOR = QColor("#5f6670")
BORDER_COLOR = QColor("#c9ced6")
BAR_TOP = 3
BAR_HEIGHT = 10


class ProbabilityLegend(QWidget):
    """A gradient bar painted with `probability_color` from 0 to 1, with percentage ticks."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fit()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Each token's background: how likely the model found it, "
            "from red (unlikely) to near white (certain)."
        )

    def _label_font(self) -> QFont:
        """A point smaller than the text around it. Derived rather than set: the app's
        stylesheet gives every widget its font size, and would undo a setFont."""
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1, 7))
        return font

    def _fit(self) -> None:
        """Size for the font: it grows in presentation mode, and the tick labels must not
        run into each other."""
        metrics = QFontMetricsF(self._label_font())
        label = metrics.horizontalAdvance("100%")
        self.setFixedHeight(round(BAR_TOP + BAR_HEIGHT + 2 + metrics.height() + 2))
        gaps = len(TICKS) - 1  # between tick labels: at least a third of a label apart
        self.setMinimumWidth(round(self._caption_width() + label * (1 + 1.3 * gaps)))
        self.setMaximumWidth(round(self._caption_width() + label * (1 + 2.2 * gaps)))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:
            self._fit()
        super().changeEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(self.maximumWidth(), self.height())

    def _caption_width(self) -> float:
        return QFontMetricsF(self._label_font()).horizontalAdvance(CAPTION) + 10

    def bar_rect(self) -> QRectF:
        """Where the gradient is painted: 0 at its left edge, 1 at its right."""
        # Half a label's width of room at each end, so "0%" and "100%" centre on the bar's ends.
        pad = QFontMetricsF(self._label_font()).horizontalAdvance("100%") / 2
        left = self._caption_width() + pad
        return QRectF(left, BAR_TOP, self.width() - left - pad - 1, BAR_HEIGHT)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(self._label_font())
        metrics = QFontMetricsF(painter.font())
        caption_width = self._caption_width()
        bar = self.bar_rect()

        painter.setPen(LABEL_COLOR)
        painter.drawText(
            QRectF(0, 0, caption_width, self.height()),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            CAPTION,
        )

        gradient = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for i in range(GRADIENT_STEPS + 1):
            p = i / GRADIENT_STEPS
            gradient.setColorAt(p, probability_color(p))
        painter.setBrush(gradient)
        painter.setPen(BORDER_COLOR)  # the near-white end would vanish into the window without it
        painter.drawRoundedRect(bar, 3, 3)

        label_top = bar.bottom() + 2
        for p in TICKS:
            x = bar.left() + p * bar.width()
            painter.setPen(BORDER_COLOR)
            painter.drawLine(round(x), round(bar.bottom()), round(x), round(bar.bottom() + 2))
            painter.setPen(LABEL_COLOR)
            text = f"{p:.0%}"
            width = metrics.horizontalAdvance(text)
            painter.drawText(
                QRectF(x - width / 2, label_top, width, metrics.height()),
                Qt.AlignmentFlag.AlignCenter,
                text,
            )

"""A card with one token's details and the alternatives the model weighed at its position."""

from __future__ import annotations

import math

from PySide6.QtCore import QPoint, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QCursor, QFont, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsDropShadowEffect,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from playground.records import Alternative, TokenRecord
from playground.ui.colors import CHOSEN, probability_color

WIDTH = 290
"""The card's width, unless its heading needs more in the font the stylesheet gives it."""
PERCENT_WIDTH = 50
MAX_ROWS = 10
"""Alternatives listed at most: with top_logprobs up to 100 the card would outgrow a window."""
MIN_ROWS = 3
"""Alternatives kept, in a short window, before the card may cover the token to show more."""
GAP = 4
"""Pixels between the anchor and the card."""
BAR_COLOR = QColor("#9aa7b4")
TRACK_COLOR = QColor("#eceff2")
MUTED = "#6b7280"
FIELDS = ("probability", "logprob", "rank", "entropy", "sampling prob.")

# Whitespace would be invisible or collapse in a label: show each character as a symbol.
_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})


def visible_text(text: str) -> str:
    """`text` with its whitespace shown as symbols, so that ' the' and 'the' look different."""
    return text.translate(_VISIBLE)


def format_probability(p: float) -> str:
    """A probability as a percentage with as many decimals as small values need."""
    percent = p * 100
    if percent >= 1 or percent == 0:
        return f"{percent:.1f}%"
    if percent >= 0.01:
        return f"{percent:.2f}%"
    return "<0.01%"


def is_partial(data: bytes) -> bool:
    """Whether a token's bytes are not a complete UTF-8 string on their own."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _literal(alt: Alternative, record: TokenRecord) -> str:
    """How an alternative reads in its row. An alternative that is only part of a character
    comes decoded as U+FFFD; the chosen token's own bytes are known, so show those instead."""
    if alt.id == record.id and is_partial(record.bytes):
        return f"‹{record.bytes.hex(' ')}›"
    if "\ufffd" in alt.text:
        return "(part of a char)"
    return visible_text(alt.text)


class _ProbabilityBar(QWidget):
    """A horizontal bar whose filled width is the probability (painted: labels can't do this)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._value = 0.0
        self._color = BAR_COLOR
        self.setFixedHeight(8)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_value(self, value: float, color: QColor) -> None:
        self._value = min(max(value, 0.0), 1.0)
        self._color = color
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        track = QRectF(self.rect())
        radius = track.height() / 2
        painter.setBrush(TRACK_COLOR)
        painter.drawRoundedRect(track, radius, radius)
        if self._value > 0:
            # A sliver stays visible for tiny probabilities, so the row never looks empty.
            width = max(track.width() * self._value, 2.0)
            painter.setBrush(self._color)
            painter.drawRoundedRect(QRectF(0, 0, width, track.height()), radius, radius)


class _AlternativeRow(QWidget):
    """One alternative: its text, a bar and its probability; clicking it chooses it."""

    clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("alternative_row")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setCursor(QCursor(Qt.CursorShape.PointingHandCursor))
        self.token_id = -1
        self.text_label = QLabel(self)
        self.text_label.setFixedWidth(104)
        self.bar = _ProbabilityBar(self)
        self.percent_label = QLabel(self)
        self.percent_label.setFixedWidth(PERCENT_WIDTH)
        self.percent_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(8)
        layout.addWidget(self.text_label)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.percent_label)

    def set_alternative(
        self, alt: Alternative, literal: str, *, chosen: bool, rank: int | None = None
    ) -> None:
        """Show `alt` as `literal`; `rank` labels a chosen token that is not among the listed
        alternatives."""
        self.token_id = alt.id
        metrics = self.text_label.fontMetrics()
        self.text_label.setText(
            metrics.elidedText(literal, Qt.TextElideMode.ElideRight, self.text_label.width())
        )
        self.text_label.setToolTip(literal)
        p = math.exp(alt.logprob)
        percent = format_probability(p)
        self.percent_label.setText(f"#{rank}  {percent}" if rank is not None else percent)
        self.bar.set_value(p, CHOSEN if chosen else BAR_COLOR)
        for label in (self.text_label, self.percent_label):
            font = label.font()
            font.setBold(chosen)
            label.setFont(font)
            label.setStyleSheet(f"color: {CHOSEN.name()};" if chosen else "")
        self.setProperty("chosen", chosen)
        self.style().unpolish(self)
        self.style().polish(self)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(
            event.position().toPoint()
        ):
            self.clicked.emit(self.token_id)
        super().mouseReleaseEvent(event)


class TokenPopup(QFrame):
    """An overlay card for one token: its literal text, probability, rank, entropy, and the
    alternatives as clickable bars.

    It is a child of the window it floats over, not a top-level tooltip, so that screenshots of
    the window include it."""

    alternative_clicked = Signal(int, int)
    """(position of the token, id of the clicked alternative)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TokenPopup")
        self.setFixedWidth(WIDTH)
        self.setStyleSheet(
            "#TokenPopup { background: white; border: 1px solid #c9ced6; border-radius: 8px; }"
            "#TokenPopup QLabel { background: transparent; color: #1f2328; }"
            "#alternative_row { border-radius: 4px; }"
            "#alternative_row:hover { background: #eef4fa; }"
            "#alternative_row[chosen=true] { background: #e6f0f8; }"
        )
        shadow = QGraphicsDropShadowEffect(self)
        shadow.setBlurRadius(18)
        shadow.setOffset(0, 3)
        shadow.setColor(QColor(0, 0, 0, 70))
        self.setGraphicsEffect(shadow)
        self._position = -1

        self.token_label = QLabel(self)
        heading = self.token_label.font()
        heading.setPointSizeF(heading.pointSizeF() * 1.25)
        heading.setBold(True)
        self.token_label.setFont(heading)
        self.token_label.setTextFormat(Qt.TextFormat.PlainText)
        self.token_label.setWordWrap(True)
        self.bytes_label = QLabel(self)
        self.bytes_label.setFont(QFont("monospace"))
        self.split_label = QLabel(self)
        self.split_label.setWordWrap(True)
        self.split_label.setStyleSheet(f"color: {MUTED}; font-style: italic;")

        self._values: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(1)
        for row, name in enumerate(FIELDS):
            key = QLabel(name, self)
            key.setStyleSheet(f"color: {MUTED};")
            grid.addWidget(key, row, 0)
            value = QLabel(self)
            value.setObjectName(name)
            grid.addWidget(value, row, 1)
            self._values[name] = value
        self._values["sampling prob."].setToolTip(
            "Probability under the distribution the token was drawn from: after temperature, "
            "top-k, top-p and min-p. — when it was not sampled (e.g. scored text)."
        )
        grid.setColumnStretch(1, 1)

        alternatives = QLabel("ALTERNATIVES  ·  click one to branch", self)
        small = alternatives.font()
        small.setPointSizeF(small.pointSizeF() * 0.85)
        small.setBold(True)
        alternatives.setFont(small)
        alternatives.setStyleSheet(f"color: {MUTED};")

        # Rows are made once and reused: hovering across tokens re-fills them many times a second.
        self._rows = [_AlternativeRow(self) for _ in range(MAX_ROWS + 1)]
        for row in self._rows:
            row.clicked.connect(self._row_clicked)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(4)
        layout.addWidget(self.token_label)
        layout.addWidget(self.bytes_label)
        layout.addWidget(self.split_label)
        layout.addSpacing(2)
        layout.addLayout(grid)
        layout.addSpacing(6)
        layout.addWidget(alternatives)
        self._alternatives_heading = alternatives
        rows = QVBoxLayout()
        rows.setSpacing(0)
        for row in self._rows:
            rows.addWidget(row)
        layout.addLayout(rows)
        self.hide()

    @property
    def rows(self) -> list[_AlternativeRow]:
        """The visible alternative rows, most likely first."""
        return [row for row in self._rows if not row.isHidden()]

    def show_token(self, record: TokenRecord, anchor: QPoint, *, token_height: int = 0,
                   exact_entropy: bool = True) -> None:
        """Fill the card with `record` and show it just below-right of `anchor` (in the parent's
        coordinates). Where it would leave the parent it flips left or up; flipping up it also
        clears `token_height` pixels above the anchor, so it doesn't cover the token itself.
        Without `exact_entropy` (a run on a server) the entropy shows as the lower bound it
        is."""
        self._position = record.position
        self._fill(record)
        entropy = self._values["entropy"]
        entropy.setToolTip("" if exact_entropy else
                           "At least this: the server gave only the most likely alternatives, "
                           "and the entropy is computed from them.")
        if not exact_entropy:
            entropy.setText(f"≥ {record.entropy:.2f} nats")
        self._fit_width()
        self.layout().activate()  # rows were just shown or hidden
        self.adjustSize()
        self._fit_height(anchor, token_height)
        self._place(anchor, token_height)
        self.show()
        self.raise_()

    def _fill(self, record: TokenRecord) -> None:
        chip = probability_color(record.prob).name()
        self.token_label.setText(visible_text(record.text) if record.text else "(no text)")
        self.token_label.setStyleSheet(
            f"background: {chip}; border-radius: 4px; padding: 2px 6px;"
        )
        partial = is_partial(record.bytes)
        self.bytes_label.setVisible(partial)
        self.split_label.setVisible(partial)
        if partial:
            self.bytes_label.setText("bytes  " + record.bytes.hex(" "))
            completes = "a later token completes it" if not record.text else "this token ends it"
            self.split_label.setText(f"part of a character split across tokens; {completes}")

        sampling = math.exp(record.sampling_logprob)
        self._values["probability"].setText(format_probability(record.prob))
        self._values["logprob"].setText(f"{record.logprob:.3f}")
        self._values["rank"].setText("most likely" if record.rank == 1 else f"#{record.rank}")
        self._values["entropy"].setText(f"{record.entropy:.2f} nats")
        self._values["sampling prob."].setText(
            "—" if math.isnan(sampling) else format_probability(sampling)
        )

        shown = record.top[:MAX_ROWS]
        self._alternatives_heading.setVisible(bool(record.top))
        for row, alt in zip(self._rows, shown, strict=False):
            row.set_alternative(alt, _literal(alt, record), chosen=alt.id == record.id)
            row.show()
        extra = self._rows[len(shown) :]
        if record.top and all(alt.id != record.id for alt in shown):
            chosen = Alternative(record.id, record.text, record.logprob)
            extra[0].set_alternative(chosen, _literal(chosen, record), chosen=True,
                                     rank=record.rank)
            extra[0].show()
            extra = extra[1:]
        for row in extra:
            row.hide()

    def _fit_width(self) -> None:
        """Room for the heading and for every row's percentage (with a rank, "#12  0.35%"),
        measured in the fonts they have now: the app's stylesheet sets their size, and
        presentation mode enlarges it."""
        rows = self.rows
        for label in (self._alternatives_heading, *(row.percent_label for row in rows)):
            label.ensurePolished()
        percent = max((r.percent_label.fontMetrics().horizontalAdvance(r.percent_label.text())
                       for r in rows), default=0)
        for row in self._rows:
            row.percent_label.setFixedWidth(max(PERCENT_WIDTH, percent))
        heading = self._alternatives_heading
        margins = self.layout().contentsMargins()
        needed = heading.fontMetrics().horizontalAdvance(heading.text()) + margins.left() \
            + margins.right()
        self.setFixedWidth(max(WIDTH, needed))

    def _fit_height(self, anchor: QPoint, token_height: int) -> None:
        """In a window too short for the whole card, drop the least likely alternatives (never
        the chosen token's row) so that it fits beside the token rather than over it; below
        MIN_ROWS it may cover the token instead, and it is never cut off."""
        parent = self.parentWidget()
        if parent is None:
            return
        below = parent.height() - anchor.y() - GAP
        above = anchor.y() - token_height - GAP
        for room, keep in ((max(below, above), MIN_ROWS), (parent.height(), 0)):
            while self.height() > room:
                others = [row for row in self.rows if row.property("chosen") is not True]
                if len(others) <= keep:
                    break
                others[-1].hide()
                self.layout().activate()  # else adjustSize goes by the rows before the hide
                self.adjustSize()

    def _place(self, anchor: QPoint, token_height: int) -> None:
        bounds = self.parentWidget().rect() if self.parentWidget() else QRect(0, 0, 10**6, 10**6)
        x = anchor.x() + GAP
        y = anchor.y() + GAP
        if x + self.width() > bounds.right():
            x = anchor.x() - GAP - self.width()
        if y + self.height() > bounds.bottom():
            y = anchor.y() - token_height - GAP - self.height()
        x = min(max(x, bounds.left()), bounds.right() - self.width())
        y = min(max(y, bounds.top()), bounds.bottom() - self.height())
        self.move(max(x, bounds.left()), max(y, bounds.top()))

    def _row_clicked(self, token_id: int) -> None:
        self.alternative_clicked.emit(self._position, token_id)

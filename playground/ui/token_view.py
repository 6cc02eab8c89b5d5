"""The generated text as a heat map: each token's background shows how likely the model found it."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import shiboken6
from PySide6.QtCore import (
    QEvent,
    QLineF,
    QObject,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextLine,
)
from PySide6.QtWidgets import QApplication, QFrame, QTextEdit, QWidget

from playground.records import TokenRecord
from playground.sampling import SamplingParams
from playground.sampling_lab import Moment
from playground.ui.colors import CHOSEN, probability_color
from playground.ui.token_popup import TokenPopup

TEXT_COLOR = QColor("#1f2328")
"""Token backgrounds are always light, so text stays dark even under a dark theme."""
MARKER_COLOR = QColor("#8a9099")
LINE_HEIGHT = 135
"""Percent of the font's height: a gap between lines keeps their backgrounds from merging."""
HIDE_DELAY_MS = 250
"""Leaving a token waits this long before hiding its popup, so the mouse can reach the popup."""


def _utf16_length(text: str) -> int:
    """Length in QTextDocument positions: characters beyond the BMP take two."""
    return len(text.encode("utf-16-le")) // 2


class TokenView(QTextEdit):
    """Read-only generated text, each token on a background coloured by its raw probability.

    Hovering a token shows a `TokenPopup` with its details; tokens can be appended while a run
    streams without re-rendering what is already there. `compact` suits small panels: a
    smaller font, no frame, a lower minimum height."""

    token_hovered = Signal(int)
    """Index of the token under the mouse; -1 when the mouse leaves the tokens."""
    alternative_clicked = Signal(int, int)
    """(token position, alternative token id), clicked in the popup."""
    moment_clicked = Signal(object)
    """A `Moment`: a token was clicked, to see its distribution (needs `set_context`)."""

    def __init__(self, parent: QWidget | None = None, *, compact: bool = False) -> None:
        super().__init__(parent)
        self._popup: TokenPopup | None = None  # first: eventFilter may run during set-up
        self.exact_entropy = True
        """False for a run on a server: its entropies are lower bounds, and the popup says
        so."""
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)  # an undo stack of every streamed token is pure cost
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        font = QFont(QApplication.font())
        font.setPointSizeF(9 if compact else 11)
        self.setFont(font)
        self.document().setDefaultFont(font)
        self.document().setDocumentMargin(4 if compact else 10)
        if compact:
            self.setFrameShape(QFrame.Shape.NoFrame)
            self.setMinimumHeight(48)
        else:
            self.setMinimumHeight(120)
        self.viewport().setMouseTracking(True)
        self.viewport().setCursor(Qt.CursorShape.ArrowCursor)

        self._block_format = QTextBlockFormat()
        self._block_format.setLineHeight(
            LINE_HEIGHT, QTextBlockFormat.LineHeightTypes.ProportionalHeight.value
        )
        self._tokens: list[TokenRecord] = []
        self._ranges: list[tuple[int, int]] = []
        """Each token's [start, end) in document positions; "" tokens have start == end."""
        self._ends: list[int] = []
        """The ends alone, for bisecting from a position to a token."""
        self._newlines: list[int] = []
        """Document positions of newline characters: they get a painted marker to be seen."""
        self._hovered = -1
        self._highlighted = -1
        self._popup_index = -1
        self._hide_timer = QTimer(self)
        self._hide_timer.setSingleShot(True)
        self._hide_timer.setInterval(HIDE_DELAY_MS)
        self._hide_timer.timeout.connect(self._hide_unless_over_popup)
        self.verticalScrollBar().valueChanged.connect(self.hide_popup)
        self._context: tuple[tuple[int, ...], SamplingParams, str] | None = None
        self.clear_tokens()

    # -- content ---------------------------------------------------------------------------

    @property
    def tokens(self) -> Sequence[TokenRecord]:
        """The tokens shown, by index (read-only: change them with set/append/clear)."""
        return self._tokens

    def set_context(self, prompt: Sequence[int], params: SamplingParams, model_path: str) -> None:
        """What the tokens follow: a click on token i then emits the `Moment` of the prompt and
        tokens 0..i-1 (the tokens must be the sample's, in order, from its first)."""
        self._context = (tuple(prompt), params, model_path)

    def moment(self, index: int) -> Moment | None:
        """Token `index`'s moment, or None without a context."""
        if self._context is None or not 0 <= index < len(self._tokens):
            return None
        prompt, params, model_path = self._context
        before = tuple(t.id for t in self._tokens[:index])
        return Moment(prompt + before, self._tokens[index], params, model_path)

    def set_tokens(self, tokens: Sequence[TokenRecord]) -> None:
        """Show `tokens` instead, from the top."""
        self.clear_tokens()
        self._insert(tokens)
        self.verticalScrollBar().setValue(0)

    def clear_tokens(self) -> None:
        self.hide_popup()
        self.document().clear()
        QTextCursor(self.document()).setBlockFormat(self._block_format)
        self._tokens.clear()
        self._ranges.clear()
        self._ends.clear()
        self._newlines.clear()
        self._highlighted = -1
        self.setExtraSelections([])
        if self._hovered != -1:
            self._hovered = -1
            self.token_hovered.emit(-1)

    def append_tokens(self, tokens: Sequence[TokenRecord]) -> None:
        """Add tokens at the end, leaving the rest of the document untouched (cheap to stream).
        A reader at the end keeps following the stream; one who scrolled up stays put."""
        bar = self.verticalScrollBar()
        follow = bar.value() >= bar.maximum() - 2
        self._insert(tokens)
        if follow:
            bar.setValue(bar.maximum())

    def _insert(self, tokens: Sequence[TokenRecord]) -> None:
        if not tokens:
            return
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        for record in tokens:
            start = cursor.position()
            if record.text:
                cursor.insertText(record.text, self._format(record))
                if "\n" in record.text:
                    self._add_newlines(start, record.text)
            end = cursor.position()
            self._tokens.append(record)
            self._ranges.append((start, end))
            self._ends.append(end)
        cursor.endEditBlock()

    def _format(self, record: TokenRecord) -> QTextCharFormat:
        fmt = QTextCharFormat()
        fmt.setBackground(probability_color(record.prob))
        fmt.setForeground(TEXT_COLOR)
        return fmt

    def _add_newlines(self, start: int, text: str) -> None:
        offset = start
        for char in text:
            if char == "\n":
                self._newlines.append(offset)
            offset += _utf16_length(char)

    def token_range(self, index: int) -> tuple[int, int]:
        """Token `index`'s [start, end) in document positions."""
        return self._ranges[index]

    def token_at_position(self, position: int) -> int:
        """The token holding the character at document `position`, or -1.

        Tokens without text take no characters, so a character split over several tokens
        belongs to the last of them: the one whose text holds it."""
        i = bisect.bisect_right(self._ends, position)
        if i < len(self._ranges) and self._ranges[i][0] <= position:
            return i
        return -1

    def token_at(self, point: QPoint) -> int:
        """The token under `point` (viewport coordinates), or -1 over blank space."""
        hit = self._hit(point)
        return self.token_at_position(hit[0]) if hit else -1

    # -- highlight -------------------------------------------------------------------------

    def highlight(self, index: int, ensure_visible: bool = False) -> None:
        """Emphasise token `index` (-1 clears), e.g. to follow a crosshair in a plot."""
        self._highlighted = index if 0 <= index < len(self._tokens) else -1
        if self._highlighted < 0:
            self.setExtraSelections([])
            return
        start, end = self._display_range(self._highlighted)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = QTextCursor(self.document())
        selection.cursor.setPosition(start)
        selection.cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setBackground(probability_color(self._tokens[self._highlighted].prob).darker(135))
        fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
        fmt.setUnderlineColor(CHOSEN)
        selection.format = fmt
        self.setExtraSelections([selection])
        if ensure_visible:
            rects = self._range_rects(start, end)
            if rects:
                self._scroll_into_view(rects[0])

    def _display_range(self, index: int) -> tuple[int, int]:
        """Where token `index` shows: a token without text shows as the character it starts."""
        start, end = self._ranges[index]
        if start == end:
            following = self.token_at_position(start)
            if following >= 0:
                return self._ranges[following]
        return start, end

    # -- popup -----------------------------------------------------------------------------

    @property
    def popup(self) -> TokenPopup:
        """The popup, a child of this view's window so that it floats over everything in it."""
        window = self.window()
        if self._popup is None or not shiboken6.isValid(self._popup):
            self._popup = TokenPopup(window)
            self._popup.alternative_clicked.connect(self.alternative_clicked)
            self._popup.installEventFilter(self)
        elif self._popup.parentWidget() is not window:
            self._popup.setParent(window)  # the view moved to another window
        return self._popup

    def show_popup_for(self, index: int) -> None:
        """Show the popup for token `index` below it, scrolling it into view first."""
        if not 0 <= index < len(self._tokens):
            self.hide_popup()
            return
        rects = self._range_rects(*self._display_range(index))
        if not rects:
            self.hide_popup()
            return
        self._scroll_into_view(rects[0])
        rect = self._range_rects(*self._display_range(index))[0]
        self._show_popup(index, rect.left(), rect)

    def hide_popup(self) -> None:
        self._hide_timer.stop()
        if self._popup is not None and shiboken6.isValid(self._popup):
            self._popup.hide()
        if self._popup_index != -1:
            self._popup_index = -1
            self.viewport().update()

    def _show_popup(self, index: int, x: float, rect: QRectF) -> None:
        self._hide_timer.stop()
        popup = self.popup
        anchor = self.viewport().mapTo(self.window(), QPoint(round(x), round(rect.bottom())))
        popup.show_token(self._tokens[index], anchor, token_height=round(rect.height()),
                         exact_entropy=self.exact_entropy)
        self._popup_index = index
        self.viewport().update()

    def _hide_unless_over_popup(self) -> None:
        if self._popup is not None and shiboken6.isValid(self._popup) and self._popup.underMouse():
            return
        self.hide_popup()

    # -- events ----------------------------------------------------------------------------

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        if event.buttons() != Qt.MouseButton.NoButton:
            return  # selecting text: a popup would get in the way
        point = event.position().toPoint()
        hit = self._hit(point)
        index = self.token_at_position(hit[0]) if hit else -1
        self._set_hovered(index)
        if index < 0:
            if self._popup_index >= 0:
                self._hide_timer.start()
        elif index != self._popup_index:
            self._show_popup(index, point.x(), hit[1])
        else:
            self._hide_timer.stop()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        super().mouseReleaseEvent(event)
        if event.button() != Qt.MouseButton.LeftButton or self.textCursor().hasSelection():
            return  # the end of a text selection, not a click
        moment = self.moment(self.token_at(event.position().toPoint()))
        if moment is not None:
            self.hide_popup()
            self.moment_clicked.emit(moment)

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._set_hovered(-1)
            if self._popup_index >= 0:
                self._hide_timer.start()
        return super().viewportEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # The mouse may travel from a token into its popup (to click an alternative): the popup
        # stays while the mouse is over it and hides after it leaves.
        if watched is self._popup:
            if event.type() == QEvent.Type.Enter:
                self._hide_timer.stop()
            elif event.type() == QEvent.Type.Leave:
                self._hide_timer.start()
        return super().eventFilter(watched, event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self._popup_index >= 0:
            self.hide_popup()
            return
        super().keyPressEvent(event)

    def hideEvent(self, event: QEvent) -> None:
        self.hide_popup()
        super().hideEvent(event)

    def _set_hovered(self, index: int) -> None:
        if index != self._hovered:
            self._hovered = index
            self.token_hovered.emit(index)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        painter = QPainter(self.viewport())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        # Often only the lines a streamed token changed are repainted: the marks are looked
        # up for those alone.
        first, last = self._positions_in(event.rect())
        self._paint_boundaries(painter, first, last)
        self._paint_newlines(painter, first, last)
        if 0 <= self._popup_index < len(self._tokens):
            # Outline the token the popup describes, so it is clear which one that is.
            painter.setPen(QPen(CHOSEN, 1.5))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            for rect in self._range_rects(*self._display_range(self._popup_index)):
                painter.drawRoundedRect(rect.adjusted(-0.5, -0.5, 0.5, 0.5), 2, 2)

    def _positions_in(self, rect: QRect) -> tuple[int, int]:
        """The first and last document positions in `rect` of the viewport, and a little past
        it: the marks of the lines next to it are antialiased into its edge."""
        rect = rect.adjusted(0, -2, 0, 2)
        first = self.cursorForPosition(rect.topLeft()).position()
        last = self.cursorForPosition(rect.bottomRight()).position()
        return first, last

    def _paint_boundaries(self, painter: QPainter, first: int, last: int) -> None:
        """A hairline of the window's colour between adjacent tokens between document positions
        `first` and `last`: two tokens of similar probability would otherwise read as one."""
        if not self._tokens:
            return
        lo = bisect.bisect_right(self._ends, first)
        hi = bisect.bisect_right(self._ends, last + 1)
        document = self.document()
        offset = self._offset()
        lines: list[QLineF] = []
        block = document.findBlock(self._ranges[lo][0]) if lo < len(self._ranges) else None
        line = None
        for start, end in self._ranges[lo : hi + 1]:
            if start == end:
                continue
            if not block.contains(start):  # most tokens share their block and line
                block, line = document.findBlock(start), None
                if not block.isValid():
                    break
            rel = start - block.position()
            if line is None or not line.textStart() <= rel < line.textStart() + line.textLength():
                layout = block.layout()
                line = layout.lineForTextPosition(rel)
                if not line.isValid():
                    line = None
                    continue
                left, top = layout.position().x() + offset.x(), layout.position().y() + offset.y()
                top += line.y()
            if rel == line.textStart():
                continue  # nothing to its left to set it apart from
            x = round(left + line.cursorToX(rel)[0]) - 0.5
            lines.append(QLineF(x, top, x, top + line.height()))
        painter.setPen(QPen(self.viewport().palette().base().color(), 1))
        painter.drawLines(lines)  # one call: hundreds of tokens can be on screen

    def _paint_newlines(self, painter: QPainter, first: int, last: int) -> None:
        """A newline has no width of its own: draw a small coloured "↵" at the end of its line
        so that its probability shows and it can be hovered like any token."""
        if not self._newlines:
            return
        lo = bisect.bisect_left(self._newlines, first - 1)
        hi = bisect.bisect_right(self._newlines, last + 1)
        painter.setFont(self.document().defaultFont())
        for position in self._newlines[lo:hi]:
            rect = self._newline_rect(position)
            token = self.token_at_position(position)
            if rect is None or token < 0:
                continue
            painter.fillRect(rect, probability_color(self._tokens[token].prob))
            painter.setPen(MARKER_COLOR)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "↵")

    # -- geometry --------------------------------------------------------------------------

    def _offset(self) -> QPointF:
        """Add to document coordinates to get viewport coordinates."""
        return QPointF(-self.horizontalScrollBar().value(), -self.verticalScrollBar().value())

    def _marker_width(self) -> float:
        return QFontMetricsF(self.document().defaultFont()).horizontalAdvance("↵") + 2

    def _newline_rect(self, position: int) -> QRectF | None:
        """Where the marker of the newline at document `position` is painted (viewport)."""
        block = self.document().findBlock(position)
        layout = block.layout()
        if not block.isValid() or layout.lineCount() == 0:
            return None
        line = layout.lineAt(layout.lineCount() - 1)
        origin = layout.position() + self._offset()
        x = origin.x() + line.x() + line.naturalTextWidth() + 1
        return QRectF(x, origin.y() + line.y(), self._marker_width(), line.height())

    def _range_rects(self, start: int, end: int) -> list[QRectF]:
        """The on-screen boxes (viewport coordinates) of document range [start, end), one per
        line it covers."""
        rects: list[QRectF] = []
        document = self.document()
        block = document.findBlock(start)
        while block.isValid() and block.position() < end:
            layout = block.layout()
            origin = layout.position() + self._offset()
            base = block.position()
            first_line = layout.lineForTextPosition(max(start - base, 0)).lineNumber()
            for i in range(max(first_line, 0), layout.lineCount()):
                line = layout.lineAt(i)
                if line.textStart() >= end - base:
                    break
                a = max(start - base, line.textStart())
                b = min(end - base, line.textStart() + line.textLength())
                if a < b:
                    x1, x2 = sorted((line.cursorToX(a)[0], line.cursorToX(b)[0]))
                    rects.append(
                        QRectF(origin.x() + x1, origin.y() + line.y(), x2 - x1, line.height())
                    )
            separator = base + block.length() - 1
            if start <= separator < end and block.next().isValid():
                newline = self._newline_rect(separator)
                if newline is not None:
                    rects.append(newline)
            block = block.next()
        return rects

    def _hit(self, point: QPoint) -> tuple[int, QRectF] | None:
        """The document position of the character under `point` (viewport coordinates) and its
        line's box there; None over blank space, such as right of a line's end."""
        block = self.cursorForPosition(point).block()
        layout = block.layout()
        if not block.isValid() or layout.lineCount() == 0:
            return None
        origin = layout.position() + self._offset()
        x = point.x() - origin.x()
        y = point.y() - origin.y()
        for i in range(layout.lineCount()):
            line = layout.lineAt(i)
            # The gap below a line (LINE_HEIGHT) counts as the line, so moving the mouse down a
            # paragraph doesn't flicker between tokens and nothing.
            bottom = line.y() + line.height() * LINE_HEIGHT / 100
            if line.y() <= y < bottom:
                break
        else:
            return None
        box = QRectF(origin.x() + line.x(), origin.y() + line.y(), 0, line.height())
        right = line.x() + line.naturalTextWidth()
        if line.x() <= x < right:
            return self._hit_character(block.position(), layout, line, x, box)
        last_line = i == layout.lineCount() - 1
        if last_line and block.next().isValid() and right <= x < right + 1 + self._marker_width():
            newline = self._newline_rect(block.position() + block.length() - 1)
            if newline is not None:
                return block.position() + block.length() - 1, newline
        return None

    def _hit_character(
        self, base: int, layout, line: QTextLine, x: float, box: QRectF
    ) -> tuple[int, QRectF] | None:
        """The character at `x` on `line`. A cluster drawn as one glyph (a Devanagari conjunct,
        an emoji sequence) is shared out evenly between its characters, so each token in it can
        still be hovered."""
        start = line.xToCursor(x, QTextLine.CursorPosition.CursorOnCharacter)
        end = layout.nextCursorPosition(start)
        if end <= start:
            return None
        x1 = line.cursorToX(start)[0]
        x2 = line.cursorToX(end)[0]
        left, right = min(x1, x2), max(x1, x2)
        if not left <= x < right:
            return None
        document = self.document()
        # Skip the low halves of surrogate pairs: a position inside a pair is no character.
        chars = [
            p for p in range(start, end)
            if not "\udc00" <= document.characterAt(base + p) <= "\udfff"
        ]
        share = (x - left) / (right - left)
        if x1 > x2:
            share = 1 - share  # right-to-left text
        position = base + chars[min(int(share * len(chars)), len(chars) - 1)]
        rect = QRectF(box.x() - line.x() + left, box.y(), right - left, box.height())
        return position, rect

    def _scroll_into_view(self, rect: QRectF) -> None:
        bar = self.verticalScrollBar()
        margin = 8
        if rect.top() < 0:
            bar.setValue(bar.value() + int(rect.top()) - margin)
        elif rect.bottom() > self.viewport().height():
            bar.setValue(bar.value() + int(rect.bottom() - self.viewport().height()) + margin)

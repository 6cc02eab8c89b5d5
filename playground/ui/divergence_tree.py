"""Where the N answers to one prompt parted, drawn left to right as a prefix-shared tree.

Each box is text that the same runs share (`playground.demos.inconsistency.TreeNode`); the runs
part where it ends. Each branch is labelled with the probability the model gave the token that
opened it, on the heat-map colour of the token view, and numbered dots in a sample's colour mark
where each run ends. Long text is elided to fit; the tooltip has all of it.
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QHelpEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QTextLayout,
)
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from playground.demos.inconsistency import TreeNode
from playground.ui.colors import probability_color, sample_color

LINES = 2
"""Lines of text in every box: one row height keeps the tree a regular grid."""
PADDING = 6.0
ROW_GAP = 12.0
MARGIN = 2.0
COLUMN_CHARS = (6, 24)
"""Narrowest and widest box of a fork column, in average characters."""
LEAF_CHARS = 36
"""Least room for a final box (an ending), in average characters."""
TEXT_COLOR = QColor("#1f2328")
MUTED_COLOR = QColor("#6b6b6b")
BOX_FILL = QColor("#ffffff")
ROOT_FILL = QColor("#eef1f5")
BOX_BORDER = QColor("#c8ccd2")
EDGE_COLOR = QColor("#9aa3ad")
START = "(start)"
"""The root's text when the answers part at their first token."""


def fork_label(prob: float) -> str:
    """A branch's label: the opening token's probability as a whole percentage."""
    return "<1%" if prob < 0.005 else f"{prob:.0%}"


def ink_on(color: QColor) -> QColor:
    """Black or white, whichever reads on `color` (the sample palette has light yellows)."""
    return QColor("#1f2328") if color.lightnessF() > 0.6 else QColor("#ffffff")


def shown_text(node: TreeNode) -> str:
    """The node's text on one line: newlines as ↵, a lone space as ␣, the empty root named."""
    text = node.text or node.first_piece
    if not text:
        return START
    return text.replace("\n", "↵").strip() or "␣"


@dataclass(frozen=True)
class PlacedNode:
    """A tree node with the box it is drawn in."""

    node: TreeNode
    depth: int
    rect: QRectF
    lines: tuple[str, ...]
    """The text shown in the box: `shown_text` wrapped to at most LINES, the last elided."""
    parent: int | None
    """Index of the parent in the list `place_tree` returns; None for the root."""

    @property
    def label(self) -> str:
        """The branch label on the edge into this box ("" for the root)."""
        return "" if self.parent is None else fork_label(self.node.prob)


def place_tree(root: TreeNode, font: QFont, width: float) -> list[PlacedNode]:
    """Boxes for every node, parents before children, in a `width` wide area.

    Every ending gets a row of its own and a fork sits level with the middle of its branches.
    Fork columns are as wide as their widest text needs (within COLUMN_CHARS); endings reach
    the right edge, so that the answers' differing tails line up like a list.
    """
    metrics = QFontMetricsF(font)
    char = metrics.averageCharWidth()
    dot = dot_size(metrics)
    gap = metrics.horizontalAdvance("100%") + 6 * char
    box_height = LINES * metrics.lineSpacing() + 2 * PADDING
    pitch = box_height + ROW_GAP

    order: list[tuple[TreeNode, int, int | None]] = []
    rows: list[float] = []
    needed: dict[int, float] = {}
    leaves = 0

    def visit(node: TreeNode, depth: int, parent: int | None) -> float:
        """Record the subtree in preorder; returns the node's row (leaves count up)."""
        nonlocal leaves
        index = len(order)
        order.append((node, depth, parent))
        rows.append(0.0)
        if not node.children:
            rows[index] = float(leaves)
            leaves += 1
            return rows[index]
        room = metrics.horizontalAdvance(shown_text(node)) + _dots_width(node, dot)
        needed[depth] = max(needed.get(depth, 0.0), room + 2 * PADDING + 1)
        ys = [visit(child, depth + 1, index) for child in node.children]
        rows[index] = (ys[0] + ys[-1]) / 2
        return rows[index]

    visit(root, 0, None)
    lefts = [MARGIN]
    for depth in range(max(d for _, d, _ in order)):
        column = min(max(needed.get(depth, 0.0), COLUMN_CHARS[0] * char), COLUMN_CHARS[1] * char)
        lefts.append(lefts[-1] + column + gap)
    right = max([width - MARGIN] + [lefts[d] + LEAF_CHARS * char
                                    for n, d, _ in order if not n.children])

    placed = []
    for index, (node, depth, parent) in enumerate(order):
        if node.children:
            next_left = lefts[depth + 1]
            box_width = next_left - gap - lefts[depth]
        else:
            box_width = right - lefts[depth]
        top = MARGIN + rows[index] * pitch
        rect = QRectF(lefts[depth], top, box_width, box_height)
        text_width = box_width - 2 * PADDING - _dots_width(node, dot)
        lines = wrap_lines(shown_text(node), font, text_width, LINES)
        placed.append(PlacedNode(node, depth, rect, tuple(lines), parent))
    return placed


def dot_size(metrics: QFontMetricsF) -> float:
    return metrics.height() * 1.1


def draw_run_dot(painter: QPainter, rect: QRectF, sample: int, font: QFont) -> None:
    """Run `sample`'s number on its colour: the one mark for a run, in the tree and elsewhere."""
    color = sample_color(sample)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    painter.drawEllipse(rect)
    bold = QFont(font)
    bold.setBold(True)
    painter.setFont(bold)
    painter.setPen(ink_on(color))
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, str(sample + 1))
    painter.restore()


def _dots_width(node: TreeNode, dot: float) -> float:
    return len(node.ended) * (dot + 3) + (4 if node.ended else 0)


def wrap_lines(text: str, font: QFont, width: float, lines: int) -> list[str]:
    """`text` word-wrapped to `width`; what does not fit in `lines` lines ends the last in …."""
    layout = QTextLayout(text, font)
    layout.beginLayout()
    starts = []
    while len(starts) < lines:
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(max(width, 1.0))
        starts.append(line.textStart())
    layout.endLayout()
    # QTextLayout counts UTF-16 code units: slice in the same units.
    units = text.encode("utf-16-le")

    def piece(start: int, end: int | None = None) -> str:
        return units[2 * start : None if end is None else 2 * end].decode("utf-16-le", "replace")

    wrapped = [piece(a, b).rstrip() for a, b in itertools.pairwise(starts)]
    if starts:
        wrapped.append(QFontMetricsF(font).elidedText(
            piece(starts[-1]).strip(), Qt.TextElideMode.ElideRight, width))
    return wrapped


class DivergenceTree(QWidget):
    """The tree of `set_tree`, laid out again whenever the width or the font changes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree: TreeNode | None = None
        self.boxes: list[PlacedNode] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_tree(self, tree: TreeNode | None) -> None:
        self.tree = tree
        self._relayout()

    def leaves(self) -> list[PlacedNode]:
        return [b for b in self.boxes if not b.node.children]

    def _relayout(self) -> None:
        self.boxes = place_tree(self.tree, self.font(), self.width()) if self.tree else []
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:
        if not self.boxes:
            return QSize(0, 0)
        bottom = max(b.rect.bottom() for b in self.boxes)
        right = max(b.rect.left() for b in self.boxes) + LEAF_CHARS * QFontMetricsF(
            self.font()).averageCharWidth()
        return QSize(int(right + MARGIN) + 1, int(bottom + MARGIN) + 1)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._relayout()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._relayout()

    # -- drawing ---------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = QFontMetricsF(self.font())
        total = max(len(self.tree.samples), 1) if self.tree else 1
        for box in self.boxes:
            if box.parent is not None:
                self._draw_edge(painter, self.boxes[box.parent].rect, box, total)
        for box in self.boxes:
            self._draw_box(painter, box, metrics)
        for box in self.boxes:
            if box.parent is not None:
                self._draw_label(painter, box, metrics)

    def _draw_edge(self, painter: QPainter, start: QRectF, box: PlacedNode, total: int) -> None:
        # Thicker for branches more runs took: the main road reads at a glance.
        width = 1.5 + 4.5 * (len(box.node.samples) - 1) / max(total - 1, 1)
        pen = QPen(EDGE_COLOR, width)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        a = QPointF(start.right(), start.center().y())
        b = QPointF(box.rect.left(), box.rect.center().y())
        middle = (a.x() + b.x()) / 2
        path = QPainterPath(a)
        path.cubicTo(QPointF(middle, a.y()), QPointF(middle, b.y()), b)
        painter.drawPath(path)

    def _draw_box(self, painter: QPainter, box: PlacedNode, metrics: QFontMetricsF) -> None:
        painter.setPen(QPen(BOX_BORDER, 1))
        painter.setBrush(ROOT_FILL if box.parent is None else BOX_FILL)
        painter.drawRoundedRect(box.rect, 6, 6)
        dot = dot_size(metrics)
        x = box.rect.left() + PADDING
        cy = box.rect.center().y()
        for sample in box.node.ended:
            draw_run_dot(painter, QRectF(x, cy - dot / 2, dot, dot), sample, self.font())
            x += dot + 3
        if box.node.ended:
            x += 4
        muted = box.parent is None and not box.node.text
        painter.setPen(MUTED_COLOR if muted else TEXT_COLOR)
        line_height = metrics.lineSpacing()
        top = cy - len(box.lines) * line_height / 2
        for i, line in enumerate(box.lines):
            rect = QRectF(x, top + i * line_height, box.rect.right() - PADDING - x, line_height)
            painter.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             line)

    def _draw_label(self, painter: QPainter, box: PlacedNode, metrics: QFontMetricsF) -> None:
        rect = self._label_rect(box, metrics)
        painter.setPen(QPen(BOX_BORDER, 1))
        painter.setBrush(probability_color(box.node.prob))
        painter.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
        painter.setPen(TEXT_COLOR)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, box.label)

    @staticmethod
    def _label_rect(box: PlacedNode, metrics: QFontMetricsF) -> QRectF:
        """The label sits on the edge just before the box, where the curve has levelled out."""
        width = metrics.horizontalAdvance(box.label) + 2 * metrics.averageCharWidth()
        height = metrics.height() + 2
        left = box.rect.left() - width - metrics.averageCharWidth()
        return QRectF(left, box.rect.center().y() - height / 2, width, height)

    # -- tooltips --------------------------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            text = self.tooltip_at(QPointF(event.pos()))
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def tooltip_at(self, point: QPointF) -> str:
        """What the box or branch label under `point` holds, in full; "" over nothing."""
        metrics = QFontMetricsF(self.font())
        for box in self.boxes:
            node = box.node
            if box.parent is not None and self._label_rect(box, metrics).contains(point):
                piece = html.escape(repr(node.first_piece))
                return (f"The model gave {piece} a {fork_label(node.prob)} chance here; "
                        f"{_runs(node.samples)} took it.")
            if box.rect.contains(point):
                text = html.escape(node.text) if node.text else START
                lines = [f"<p style='white-space: pre-wrap'>{text}</p>"]
                if len(node.samples) > 1:
                    lines.append(f"{_runs(node.samples).capitalize()} wrote this alike.")
                if node.ended:
                    verb = "ends" if len(node.ended) == 1 else "end"
                    lines.append(f"{_runs(node.ended).capitalize()} {verb} here.")
                return "".join(f"<div>{line}</div>" for line in lines)
        return ""


def _runs(samples: tuple[int, ...]) -> str:
    numbers = ", ".join(str(s + 1) for s in samples)
    return f"run {numbers}" if len(samples) == 1 else f"runs {numbers}"

"""Per-token charts: one sample's probabilities and entropy, a sparkline, and N samples overlaid.

All three take plain records by method call and update plot items made once in the constructor
(`setData`/`setOpts`), so the main window can call them ~10 times a second while a run streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QComboBox, QGraphicsItem, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from playground.analysis import Divergence, first_divergence
from playground.records import Sample, TokenRecord
from playground.ui.colors import ENTROPY, KEPT, probability_color, sample_color

pg.setConfigOptions(antialias=True, background="w", foreground="k")

PROBABILITY = "probability"
LOGPROB = "log-probability"
CUMULATIVE = "cumulative log-probability"

# Below this a logprob is drawn as this: an -inf (or a 1e-30 token) would squash every other bar.
LOGPROB_FLOOR = -20.0
AXIS_WIDTH = 44
"""Both stacked plots get the same left axis width, so their x axes line up exactly."""

_BAR_LEVELS = 101
"""Bar colours are looked up in a table of this many probabilities, not made per token."""
_MARKER_PEN = pg.mkPen(QColor(40, 40, 40, 170), width=1)
_FORK_PEN = pg.mkPen(QColor("#555555"), width=1.2, style=Qt.PenStyle.DashLine)
_LABEL_FILL = pg.mkBrush(255, 255, 255, 235)
_LABEL_BORDER = pg.mkPen("#9a9a9a")
_STREAMED = {"dynamicRangeLimit": None}
"""Options of a curve that a streaming run updates. pyqtgraph's limit (for values far
outside the view) made every change of the y range set the curve's data again, twice per
update; our values are floored at LOGPROB_FLOOR per token."""


def token_label(text: str) -> str:
    """A token's text quoted, with line breaks and tabs made visible."""
    return "'" + text.replace("\n", "↵").replace("\t", "→") + "'"


def fork_text(divergence: Divergence | None) -> str:
    """One line describing where the samples part ways, e.g.
    "fork at token 5: ' Paris' 62% (5) / ' Lyon' 21% (3)"."""
    if divergence is None:
        return "all samples identical"
    branches = " / ".join(
        f"{token_label(b.text)} {b.prob:.0%} ({len(b.samples)})"
        if b.token_id is not None
        else f"ended ({len(b.samples)})"
        for b in divergence.branches
    )
    return f"fork at token {divergence.position}: {branches}"


def _floored(logprobs: np.ndarray) -> np.ndarray:
    return np.maximum(np.nan_to_num(logprobs, nan=LOGPROB_FLOOR, neginf=LOGPROB_FLOOR),
                      LOGPROB_FLOOR)


def _settle(*plots: pg.PlotItem) -> None:
    """Apply the plots' pending ranges now. pyqtgraph leaves them to the start of the next
    paint, and a view that moves during a paint makes its curves ask for a second one: every
    streamed update was painted twice."""
    for plot in plots:
        plot.getViewBox().prepareForPaint()


def _streaming_span(n_tokens: int) -> int:
    """The token axis of a streaming chart: the next power of two past its longest sample, so
    that the axis is laid out again only when that is outgrown, not at every update."""
    return 2 ** math.ceil(math.log2(max(16, n_tokens)))


def _rounded_up(value: float) -> float:
    """`value` (> 0) rounded up to a round number: the y range of a streaming chart then
    changes, and its axis is laid out again, only a few times per sample."""
    step = 10 ** math.floor(math.log10(value))
    return next(m * step for m in (1, 1.5, 2, 3, 4, 5, 6, 8, 10) if m * step >= value)


def _cache_axes(plot: pg.PlotItem) -> None:
    """Keep each axis as a pixmap until its range or size changes: most updates of a streaming
    chart move no axis, and playing the axes' tick text back was a third of each paint."""
    for name in ("left", "bottom"):
        plot.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def _label_left(plot: pg.PlotItem, text: str) -> None:
    """Label the left axis; setting the same label again lays its text out again."""
    if plot.getAxis("left").labelText != text:
        plot.setLabel("left", text)


def _header(title: str, mode: QComboBox) -> QHBoxLayout:
    """A chart's header row: a muted title and its mode chooser."""
    header = QHBoxLayout()
    header.setContentsMargins(4, 0, 4, 0)
    label = QLabel(title)
    label.setStyleSheet("color: #555;")
    header.addWidget(label)
    header.addWidget(mode)
    header.addStretch(1)
    return header


ENTROPY_KEY = "below: entropy (nats)"
ENTROPY_BOUND_KEY = "below: entropy, at least (nats; top alternatives only)"


class LogprobChart(QWidget):
    """One sample, token by token: probability (or logprob) bars above, entropy below it, and
    at the bottom how many tokens the sampling filters kept (a log scale: 1 to the vocabulary)."""

    token_hovered = Signal(int)
    """The token index under the mouse; -1 when the mouse leaves the plots."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tokens: list[TokenRecord] = []
        self._logprobs = np.zeros(0)
        self._entropy = np.zeros(0)
        self._hovered = -1
        self._marked = -1
        self._streamed = False

        self._mode = QComboBox()
        self._mode.addItems([PROBABILITY, LOGPROB])
        self._mode.setToolTip("Plot each token's probability, or its log-probability")
        self._mode.currentTextChanged.connect(self._redraw_values)
        header = _header("per token", self._mode)
        self._entropy_key = QLabel(ENTROPY_KEY)
        self._entropy_key.setStyleSheet(f"color: {ENTROPY.name()};")
        header.addWidget(self._entropy_key)
        kept_key = QLabel("· tokens kept")  # short: two charts share a laptop's width
        kept_key.setStyleSheet(f"color: {KEPT.name()};")
        kept_key.setToolTip("How many tokens top-k, top-p and min-p left to draw from at each "
                            "step (log scale). 1 means the choice was forced.")
        header.addWidget(kept_key)

        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.ci.setSpacing(2)
        self._values_plot = self._graphics.addPlot(row=0, col=0)
        self._entropy_plot = self._graphics.addPlot(row=1, col=0)
        self._kept_plot = self._graphics.addPlot(row=2, col=0)
        self._graphics.ci.layout.setRowStretchFactor(0, 2)
        self._graphics.ci.layout.setRowStretchFactor(1, 1)
        self._graphics.ci.layout.setRowStretchFactor(2, 1)
        for plot in (self._values_plot, self._entropy_plot, self._kept_plot):
            _cache_axes(plot)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            # Zooming along the tokens helps with long samples; the y ranges are meaningful.
            plot.setMouseEnabled(x=True, y=False)
            plot.showGrid(y=True, alpha=0.15)
            plot.getAxis("left").setWidth(AXIS_WIDTH)
        self._values_plot.getAxis("bottom").setStyle(showValues=False)
        self._entropy_plot.setXLink(self._values_plot)
        self._entropy_plot.getAxis("bottom").setStyle(showValues=False)
        self._entropy_plot.setLabel("left", "H")
        self._kept_plot.setXLink(self._values_plot)
        self._kept_plot.setLabel("bottom", "token")
        self._kept_plot.setLabel("left", "kept")
        # log10 of the count on a plain axis, labelled with powers of ten: pyqtgraph's log mode
        # crowds a plot this short with minor ticks.
        self._kept_plot.getAxis("left").setTicks(
            [list(enumerate(("1", "10", "100", "1k", "10k", "100k", "1M"))), []])

        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, pen=None, brush="#cccccc")
        self._values_plot.addItem(self.bars)
        self.entropy_curve = pg.PlotDataItem(
            **_STREAMED,
            pen=pg.mkPen(ENTROPY, width=1.5),
            fillLevel=0,
            fillBrush=QColor(ENTROPY.red(), ENTROPY.green(),
                             ENTROPY.blue(), 50),
        )
        self._entropy_plot.addItem(self.entropy_curve)
        self._entropy_plot.setYRange(0, 1, padding=0)
        self.kept_curve = pg.PlotDataItem(**_STREAMED, pen=pg.mkPen(KEPT, width=1.5))
        self._kept_plot.addItem(self.kept_curve)

        self._value_line = pg.InfiniteLine(angle=90, movable=False, pen=_MARKER_PEN)
        self._entropy_line = pg.InfiniteLine(angle=90, movable=False, pen=_MARKER_PEN)
        self._kept_line = pg.InfiniteLine(angle=90, movable=False, pen=_MARKER_PEN)
        self._label = pg.TextItem(color="k", fill=_LABEL_FILL, border=_LABEL_BORDER)
        self._values_plot.addItem(self._value_line, ignoreBounds=True)
        self._entropy_plot.addItem(self._entropy_line, ignoreBounds=True)
        self._kept_plot.addItem(self._kept_line, ignoreBounds=True)
        self._values_plot.addItem(self._label, ignoreBounds=True)
        self._label.setZValue(20)
        self._show_marker(-1)

        self._brushes = [QBrush(self._bar_color(i / (_BAR_LEVELS - 1)))
                         for i in range(_BAR_LEVELS)]
        self._pens = [QPen(self._bar_color(i / (_BAR_LEVELS - 1)).darker(135))
                      for i in range(_BAR_LEVELS)]
        for pen in self._pens:
            pen.setCosmetic(True)

        self._graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        self._graphics.installEventFilter(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self._graphics, 1)
        self._redraw_values()

    @staticmethod
    def _bar_color(p: float) -> QColor:
        # The heat-map scale is made for text backgrounds and fades to white at p = 1; a shade
        # darker keeps confident tokens' bars visible against the white plot.
        return probability_color(p).darker(112)

    # -- data ------------------------------------------------------------------------------

    def mode(self) -> str:
        """PROBABILITY or LOGPROB: what the upper plot shows."""
        return self._mode.currentText()

    def set_mode(self, mode: str) -> None:
        self._mode.setCurrentText(mode)

    def set_exact_entropy(self, exact: bool) -> None:
        """False for a run on a server, whose entropies are lower bounds: the key says so."""
        self._entropy_key.setText(ENTROPY_KEY if exact else ENTROPY_BOUND_KEY)
        self._entropy_key.setToolTip("" if exact else
                                     "The server gives only the most likely alternatives, so "
                                     "each entropy is computed from them: a lower bound.")

    def set_tokens(self, tokens: Sequence[TokenRecord], *, streaming: bool = False) -> None:
        """Show these tokens; called with the whole list again and again while `streaming`,
        when the token axis runs to the next power of two past the sample."""
        shrank = len(tokens) < len(self._tokens)
        self._tokens = list(tokens)
        self._logprobs = np.fromiter((t.logprob for t in tokens), float, len(tokens))
        self._entropy = np.fromiter((t.entropy for t in tokens), float, len(tokens))
        self._entropy = np.nan_to_num(self._entropy, nan=0.0, posinf=0.0)
        x = np.arange(len(tokens), dtype=float)
        self.entropy_curve.setData(x, self._entropy)
        top = float(self._entropy.max()) if len(tokens) else 1.0
        self._entropy_plot.setYRange(0, _rounded_up(max(top, 0.5)) * 1.08, padding=0)
        # 0 is "not recorded" (a scored text, an older run): no point rather than a false 1.
        kept = np.array([math.log10(t.kept) if t.kept > 0 else np.nan for t in tokens])
        self.kept_curve.setData(x, kept, connect="finite")
        most = float(np.nanmax(kept)) if np.isfinite(kept).any() else 1.0
        # Room below 1 and up to 10 at least: a tick on the plot's edge is not drawn.
        self._kept_plot.setYRange(-0.2, _rounded_up(max(most, 1.0)) * 1.08 + 0.1, padding=0)
        if streaming:
            self._values_plot.setXRange(0, _streaming_span(len(tokens)), padding=0)
        elif shrank or self._streamed:
            # A new sample (or a stop string trimmed this one), or the end of a stream: follow
            # it again even if the user had zoomed in on the last one.
            self._values_plot.enableAutoRange(x=True)
        self._streamed = streaming
        self._redraw_values()
        if self._marked >= len(tokens) or self._hovered >= len(tokens):
            self._show_marker(-1)

    def values(self) -> np.ndarray:
        """What the upper plot shows for each token, in the current mode."""
        if self.mode() == PROBABILITY:
            return np.exp(self._logprobs)
        return _floored(self._logprobs)

    def _redraw_values(self) -> None:
        values = self.values()
        probs = np.exp(self._logprobs)
        levels = np.clip(np.rint(np.nan_to_num(probs) * (_BAR_LEVELS - 1)), 0, _BAR_LEVELS - 1)
        levels = levels.astype(int)
        # pyqtgraph 0.14 fails on empty pen lists: no bars take the shared (default) colours.
        self.bars.setOpts(
            x=np.arange(len(values), dtype=float),
            height=values,
            brushes=[self._brushes[i] for i in levels] if len(levels) else None,
            pens=[self._pens[i] for i in levels] if len(levels) else None,
        )
        if self.mode() == PROBABILITY:
            self._values_plot.setYRange(0, 1.0, padding=0.02)
            _label_left(self._values_plot, "p")
        else:
            low = float(values.min()) if len(values) else -1.0
            self._values_plot.setYRange(-_rounded_up(max(-low, 1.0)) * 1.05, 0, padding=0)
            _label_left(self._values_plot, "log p")
        self._show_marker(self._hovered if self._hovered >= 0 else self._marked)
        _settle(self._values_plot, self._entropy_plot, self._kept_plot)

    # -- hover and highlight ---------------------------------------------------------------

    def highlight(self, index: int) -> None:
        """Mark token `index` (e.g. the one hovered in the text); -1 clears the mark."""
        self._marked = index
        if self._hovered < 0:
            self._show_marker(index)

    def hovered(self) -> int:
        return self._hovered

    def hover_at(self, x: float) -> None:
        """Hover the token nearest to data coordinate `x` (what a mouse move does)."""
        n = len(self._tokens)
        index = min(max(round(x), 0), n - 1) if n else -1
        self._set_hovered(index)

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        for plot in (self._values_plot, self._entropy_plot, self._kept_plot):
            if plot.vb.sceneBoundingRect().contains(scene_pos):
                self.hover_at(plot.vb.mapSceneToView(scene_pos).x())
                return
        self._set_hovered(-1)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._graphics and event.type() == QEvent.Type.Leave:
            self._set_hovered(-1)
        return super().eventFilter(watched, event)

    def _set_hovered(self, index: int) -> None:
        if index == self._hovered:
            return
        self._hovered = index
        self._show_marker(index if index >= 0 else self._marked)
        self.token_hovered.emit(index)

    def _show_marker(self, index: int) -> None:
        visible = 0 <= index < len(self._tokens)
        for item in (self._value_line, self._entropy_line, self._kept_line, self._label):
            item.setVisible(visible)
        if not visible:
            return
        self._value_line.setValue(index)
        self._entropy_line.setValue(index)
        self._kept_line.setValue(index)
        token = self._tokens[index]
        self._label.setText(
            f"token {index}  {token_label(token.text)}\n"
            f"p {token.prob:.1%}   log p {token.logprob:.3f}\n"
            f"rank {token.rank}   entropy {token.entropy:.2f}"
            + (f"   kept {token.kept:,}" if token.kept else "")
        )
        # Pinned to the top of the plot, on the side with more room, so it never hides the bar.
        (x_low, x_high), (_, y_high) = self._values_plot.vb.viewRange()
        right_half = index > (x_low + x_high) / 2
        self._label.setAnchor((1.0, 0.0) if right_half else (0.0, 0.0))
        self._label.setPos(index + (-0.5 if right_half else 0.5), y_high)


class Sparkline(QWidget):
    """A tiny line of one sample's token probabilities: no axes, no mouse interaction.

    Painted directly rather than through pyqtgraph: N sparklines redraw about ten times a
    second while a run streams, and as pyqtgraph plots they took half of the GUI thread's
    time (each update re-ranged a view box and repainted a scene). Transparent, so it sits on
    the panel's own background (the winner's is tinted)."""

    def __init__(self, parent: QWidget | None = None, color: QColor | None = None) -> None:
        super().__init__(parent)
        self.setFixedHeight(40)
        self._pen = QPen(QColor(color or QColor("#4a6fa5")), 1.2)
        self._values = np.empty(0)
        self._marked = -1
        self.setToolTip("token probabilities, first token on the left")

    def set_values(self, probs: Sequence[float] | np.ndarray) -> None:
        self._values = np.asarray(probs, dtype=float)
        self.update()

    def highlight(self, index: int) -> None:
        """Mark token `index`; -1 clears the mark."""
        if index != self._marked:
            self._marked = index
            self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        n = self._values.shape[0]
        if n == 0:
            return
        painter = QPainter(self)  # not antialiased: that tripled the time of a paint
        width, height = self.width() - 1, self.height() - 4
        xs = np.arange(n) * (width / max(n - 1, 1))
        ys = 2 + height * (1 - np.clip(self._values, 0.0, 1.0))
        if 0 <= self._marked < n:
            painter.setPen(_MARKER_PEN)
            x = round(float(xs[self._marked]))
            painter.drawLine(x, 0, x, self.height())
        painter.setPen(self._pen)
        painter.drawPolyline(QPolygonF([QPointF(x, y) for x, y in zip(xs, ys, strict=True)]))
        painter.end()


class OverlayChart(QWidget):
    """All N samples' curves together, one colour each, with the first fork marked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._samples: list[Sample] = []
        self._span: int | None = None
        self._curves: list[pg.PlotDataItem] = []
        self._emphasis: int | None = None
        self._divergence: Divergence | None = None

        self._mode = QComboBox()
        self._mode.addItems([CUMULATIVE, LOGPROB, PROBABILITY])
        self._mode.setToolTip(
            "Cumulative log-probability ends at each sample's sum score; per-token values show "
            "where samples were unsure"
        )
        self._mode.currentTextChanged.connect(self._redraw)
        header = _header("all samples", self._mode)

        self._plot = pg.PlotWidget()
        self._plot.setMenuEnabled(False)
        self._plot.hideButtons()
        self._plot.setMouseEnabled(x=True, y=False)
        # No grid: its lines were most of a redraw's time, and it redraws while a run streams.
        self._plot.getAxis("left").setWidth(AXIS_WIDTH)
        _cache_axes(self._plot.getPlotItem())
        self._plot.setLabel("bottom", "token")
        self._fork_line = pg.InfiniteLine(angle=90, movable=False, pen=_FORK_PEN)
        self._fork_label = pg.TextItem(color="#333333", fill=_LABEL_FILL, anchor=(0.0, 1.0))
        self._fork_label.setZValue(20)
        self._plot.addItem(self._fork_line, ignoreBounds=True)
        self._plot.addItem(self._fork_label, ignoreBounds=True)
        self._plot.getViewBox().sigRangeChanged.connect(self._place_fork_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self._plot, 1)
        self._redraw()

    def mode(self) -> str:
        return self._mode.currentText()

    def set_mode(self, mode: str) -> None:
        self._mode.setCurrentText(mode)

    def curves(self) -> list[pg.PlotDataItem]:
        """One curve per sample, by sample index."""
        return list(self._curves)

    def divergence(self) -> Divergence | None:
        """The first fork among the samples last given."""
        return self._divergence

    def set_samples(self, samples: Sequence[Sample], *, streaming: bool = False) -> None:
        """Show these samples' curves. While they are `streaming`, the token axis runs to
        the next power of two past the longest sample."""
        self._samples = list(samples)
        longest = max((len(s.tokens) for s in samples), default=0)
        self._span = _streaming_span(longest) if streaming else None
        # Curves are kept across refreshes; only a run with another N adds or drops some.
        restyle = len(self._curves) != len(samples)
        while len(self._curves) < len(samples):
            curve = pg.PlotDataItem(**_STREAMED)
            self._plot.addItem(curve)
            self._curves.append(curve)
        while len(self._curves) > len(samples):
            self._plot.removeItem(self._curves.pop())
        if restyle:  # a new pen sets a curve's data again
            self._style_curves()
        self._divergence = first_divergence(self._samples)
        self._redraw()

    def set_emphasis(self, index: int | None) -> None:
        """Draw sample `index` bold and the others faint; None draws all alike."""
        if index == self._emphasis:
            return
        self._emphasis = index
        self._style_curves()

    def _style_curves(self) -> None:
        for i, curve in enumerate(self._curves):
            color = sample_color(i)
            if self._emphasis is None:
                curve.setPen(pg.mkPen(color, width=1.6))
                curve.setZValue(0)
            elif i == self._emphasis:
                curve.setPen(pg.mkPen(color, width=3.2))
                curve.setZValue(10)
            else:
                color.setAlpha(110)
                curve.setPen(pg.mkPen(color, width=1.2))
                curve.setZValue(0)

    def _redraw(self) -> None:
        mode = self.mode()
        for sample, curve in zip(self._samples, self._curves, strict=True):
            logprobs = _floored(np.fromiter((t.logprob for t in sample.tokens), float))
            if mode == PROBABILITY:
                values = np.exp(logprobs)
            elif mode == LOGPROB:
                values = logprobs
            else:
                values = np.cumsum(logprobs)
            curve.setData(np.arange(len(values), dtype=float), values)
        label = {PROBABILITY: "p", LOGPROB: "log p"}.get(mode, "Σ log p")
        _label_left(self._plot.getPlotItem(), label)
        if self._span:
            self._plot.setXRange(0, self._span, padding=0)
        else:
            self._plot.enableAutoRange(x=True)
        if mode == PROBABILITY:
            self._plot.enableAutoRange(y=False)
            self._plot.setYRange(0, 1, padding=0.02)
        else:
            self._plot.enableAutoRange(y=True)
        _settle(self._plot.getPlotItem())
        self._show_fork()

    def _show_fork(self) -> None:
        divergence = self._divergence
        self._fork_line.setVisible(divergence is not None)
        self._fork_label.setVisible(divergence is not None)
        if divergence is None:
            return
        # The fork is the first token that differs; the line sits just before it.
        self._fork_line.setValue(divergence.position - 0.5)
        self._fork_label.setText(fork_text(divergence))
        self._place_fork_label()

    def _place_fork_label(self) -> None:
        if self._divergence is None:
            return
        (x_low, x_high), (y_low, _) = self._plot.getViewBox().viewRange()
        x = self._divergence.position - 0.5
        # At the bottom, where cumulative curves (which start at 0 and fall) leave room; past
        # the middle it goes left of the line so that it stays inside the plot.
        right_half = x > (x_low + x_high) / 2
        self._fork_label.setAnchor((1.0, 1.0) if right_half else (0.0, 1.0))
        self._fork_label.setPos(x, y_low)

"""One sample: its coloured text, the legend, and its per-token chart, linked by hover."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from playground.records import Sample
from playground.ui.logprob_chart import LogprobChart
from playground.ui.probability_legend import ProbabilityLegend
from playground.ui.token_view import TokenView

CHART_INTERVAL = 0.3
"""Seconds between chart redraws while a sample streams."""


class SingleRunView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = TokenView()
        self.legend = ProbabilityLegend()
        self.chart = LogprobChart()
        self.text.token_hovered.connect(self.chart.highlight)
        self.chart.token_hovered.connect(lambda i: self.text.highlight(i, ensure_visible=True))

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.text, 1)
        top_layout.addWidget(self.legend)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.chart)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self._shown = 0
        self._charted = 0
        self._charted_at = 0.0

    def set_exact_entropy(self, exact: bool) -> None:
        """False for a run on a server: its entropies are lower bounds, and the views say so."""
        self.text.exact_entropy = exact
        self.chart.set_exact_entropy(exact)

    def clear(self) -> None:
        self.text.clear_tokens()
        self.chart.set_tokens([])
        self._shown = self._charted = 0

    def refresh(self, sample: Sample) -> None:
        """Show what is new since the last call; redraw all when a stop string trimmed it."""
        tokens = sample.tokens
        if len(tokens) < self._shown:
            self.text.set_tokens(tokens)
        elif len(tokens) > self._shown:
            self.text.append_tokens(tokens[self._shown :])
        # The chart repaints its axes and every bar, holding the GIL that the engine's thread
        # needs between tokens: while streaming, a few times a second is enough.
        now = time.monotonic()
        done = sample.finish_reason is not None
        if len(tokens) != self._charted and (done or now - self._charted_at >= CHART_INTERVAL):
            self.chart.set_tokens(tokens, streaming=not done)
            self._charted, self._charted_at = len(tokens), now
        self._shown = len(tokens)

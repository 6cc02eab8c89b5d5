"""Best-of-N: the N samples of one prompt side by side, ranked by the chosen method.

While the run streams the panels stay in sample order; once it has finished they are re-ordered
best first (grouped by answer for a majority vote), and again whenever the ranking changes.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from functools import partial

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from playground.analysis import Divergence
from playground.records import Run
from playground.ui.flow_layout import FULL_ROW, FlowLayout
from playground.ui.logprob_chart import OverlayChart, fork_text
from playground.ui.rank_list import RankList
from playground.ui.sample_panel import SamplePanel

RANKINGS: tuple[tuple[str, str], ...] = (
    ("mean log-probability", "mean-logprob"),
    ("sum log-probability", "sum-logprob"),
    ("normalised log-probability", "normalized-logprob"),
    ("majority vote", "vote"),
)
"""(label, method) offered in the ranking selector; `add_ranking` adds more."""

_SCORE_BADGES: tuple[tuple[str, str, int], ...] = (
    ("mean", "mean_logprob", 3),
    ("sum", "sum_logprob", 2),
    ("norm", "normalized_logprob", 2),
)
"""(badge name, key of Sample.all_scores, decimals) shown on every panel."""

_SUMMARY_SCORE_NAMES = {
    "mean-logprob": "mean logprob",
    "sum-logprob": "sum logprob",
    "normalized-logprob": "normalised logprob",
}
OVERLAY_HEIGHT = 170
OVERLAY_INTERVAL = 1.0
"""Seconds between redraws of the overlay, the score badges and the summary while a run
streams (the panels' text follows every redraw of the window). A redraw of the overlay took
15 ms, and the badges' rich text most of the panels' layout time: at every redraw, the two
slowed generation in the app by a tenth."""


def _number(value: float, decimals: int) -> str:
    # A minus sign, not a hyphen: these are read as numbers side by side.
    return f"{value:.{decimals}f}".replace("-", "−") if math.isfinite(value) else "—"


class BestOfNView(QWidget):
    """The N samples of a run as panels, ordered by a ranking, with all their curves above."""

    ranking_changed = Signal(str)
    """The method picked in the ranking selector (by the user or `set_method`)."""
    alternative_clicked = Signal(int, int, int)
    """(sample index, token position, alternative token id), clicked in a token's popup."""
    moment_clicked = Signal(object)
    """A token was clicked in a panel: its `Moment`."""
    sample_preferred = Signal(int)
    """The user labelled this sample the best of the run (its panel's "prefer")."""
    ranked = Signal(list)
    """The user's own ranking of the samples, best first (drag-to-rank, saved)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._run: Run | None = None
        self._panels: list[SamplePanel] = []
        self._headers: list[QLabel] = []
        self._order: list[int] = []
        self._groups: list[tuple[str | None, list[int]]] = []
        self._signature: tuple | None = None
        self._overlay_drawn = 0.0
        self._pending: list[Callable[[], None]] = []
        """Panels still to refresh while streaming, one per step of the zero-delay timer."""
        self._chores: list[Callable[[], None]] = []
        """The overlay, badges and summary still to redraw this OVERLAY_INTERVAL, one after
        each redraw's panels (see `refresh`)."""
        self._trickle = QTimer(self)
        self._trickle.setInterval(0)
        self._trickle.timeout.connect(self._trickle_step)
        self._winners: set[int] = set()
        self._ranked = False

        self._selector = QComboBox()
        for label, method in RANKINGS:
            self._selector.addItem(label, method)
        self._selector.setToolTip(
            "How to pick the best sample: by the model's own log-probabilities (mean ignores "
            "length, sum favours short answers, normalised sits between), or by the most "
            "frequent final answer"
        )
        self._selector.currentIndexChanged.connect(self._method_changed)
        self._summary = QLabel()
        self._summary.setTextFormat(Qt.TextFormat.RichText)
        self._fork = QLabel()
        self._fork.setStyleSheet("color: #555;")
        self._fork.setToolTip("The first token position where the samples stop agreeing")
        top_bar = QHBoxLayout()
        top_bar.setContentsMargins(6, 4, 6, 0)
        top_bar.setSpacing(8)
        top_bar.addWidget(QLabel("rank by"))
        top_bar.addWidget(self._selector)
        top_bar.addSpacing(8)
        top_bar.addWidget(self._summary, 1)
        self.annotator = QLineEdit()
        self.annotator.setPlaceholderText("your name")
        self.annotator.setMaximumWidth(130)
        self.annotator.setToolTip("Who labels: saved with every prefer and ranking you give")
        self.rank_button = QPushButton("Rank by hand…")
        self.rank_button.setToolTip("Drag the samples into your own order, best first, and "
                                    "save it as a label of this run")
        self.rank_button.clicked.connect(self.start_ranking)

        self.overlay = OverlayChart()
        self.overlay.setMinimumHeight(110)

        self._grid = QWidget()
        self._grid.setObjectName("panelGrid")
        self._grid.setStyleSheet("#panelGrid { background: #f3f4f6; }")
        self._flow = FlowLayout(self._grid, spacing=10)
        self._flow.setContentsMargins(10, 10, 10, 10)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self._grid)
        # Panels scrolled into view catch up at once (streaming refreshes only visible ones).
        self.scroll.verticalScrollBar().valueChanged.connect(self._catch_up)

        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.setSpacing(2)
        fork_row = QHBoxLayout()
        fork_row.setContentsMargins(8, 0, 8, 0)
        fork_row.addWidget(self._fork, 1)
        fork_row.addWidget(QLabel("labels by"))
        fork_row.addWidget(self.annotator)
        fork_row.addWidget(self.rank_button)
        lower_layout.addLayout(fork_row)
        self.rank_list = RankList()
        self.rank_list.ranked.connect(self.ranked)
        self.rank_list.closed.connect(self.stop_ranking)
        self._pages = QStackedWidget()
        self._pages.addWidget(self.scroll)
        self._pages.addWidget(self.rank_list)
        lower_layout.addWidget(self._pages, 1)

        # A splitter, so the chart can be dragged taller, or shut to make room for the panels.
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.overlay)
        self.splitter.addWidget(lower)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([OVERLAY_HEIGHT, 10_000])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top_bar)
        layout.addWidget(self.splitter, 1)
        self._show_summary()

    # -- public API ------------------------------------------------------------------------

    def add_ranking(self, label: str, method: str) -> None:
        """Offer another ranking, e.g. ("reward model", "reward") once samples carry rewards."""
        if self._selector.findData(method) < 0:
            self._selector.addItem(label, method)

    def current_method(self) -> str:
        return self._selector.currentData()

    def set_method(self, method: str) -> None:
        index = self._selector.findData(method)
        if index < 0:
            raise ValueError(f"unknown ranking method {method!r}")
        self._selector.setCurrentIndex(index)

    def panel_order(self) -> list[int]:
        """Sample indices in display order, as the grid lays them out."""
        items = (self._flow.itemAt(i).widget() for i in range(self._flow.count()))
        return [w.sample_index for w in items if isinstance(w, SamplePanel)]

    def panels(self) -> list[SamplePanel]:
        """The panels by sample index."""
        return list(self._panels)

    def group_titles(self) -> list[str]:
        """The group headers shown, in display order (only a vote groups panels)."""
        return [title for title, _ in self._groups if title is not None]

    def groups(self) -> list[tuple[str | None, list[int]]]:
        """(header or None, sample indices) in display order."""
        return [(title, list(indices)) for title, indices in self._groups]

    def divergence(self) -> Divergence | None:
        return self.overlay.divergence()

    def divergence_text(self) -> str:
        return self._fork.text()

    def summary_text(self) -> str:
        return self._summary.text()

    def set_run(self, run: Run) -> None:
        """Show a new run (often still empty, at its start): one panel per sample.

        Panels of the last run are emptied and reused: building N of them at every run would
        stall the window."""
        self._run = run
        exact = run.model.exact_entropy
        if len(self._panels) != len(run.samples):
            self._groups = []  # the panels in the grid change even if the grouping does not
        while len(self._panels) > len(run.samples):
            self._panels.pop().deleteLater()
        for panel in self._panels:
            panel.clear()
        for index in range(len(self._panels), len(run.samples)):
            panel = SamplePanel(index, self._grid)
            panel.hovered.connect(self._panel_hovered)
            panel.alternative_clicked.connect(self.alternative_clicked)
            panel.text_view.moment_clicked.connect(self.moment_clicked)
            panel.preferred.connect(self.sample_preferred)
            self._panels.append(panel)
        for panel in self._panels:
            panel.text_view.exact_entropy = exact
            panel.text_view.set_context(run.prompt_token_ids, run.params, run.model.path)
        self._signature = None
        self._chores = []
        self._ranked = False
        self._winners = set()
        self._set_groups([(None, [s.index for s in run.samples])])
        self.stop_ranking()
        self._allow_labels(False)
        self._show_summary()
        if not run.finished:  # (`refresh` draws a finished run's)
            self._draw_overlay()  # now, before the view is painted with the last run's curves
        self.refresh()

    def refresh(self) -> None:
        """Catch up with the run; cheap when nothing changed since the last call.

        While the run streams, the work is spread over the event loop: one panel per step of
        a zero-delay timer, and every OVERLAY_INTERVAL the overlay, the badges and the summary,
        one of them at each call (each redraw), so that no single event (and the repaint after
        it) blocks the window long; panels out of view wait until they are scrolled into it. A
        finished run is drawn at once.
        """
        run = self._run
        if run is None:
            return
        signature = (
            run.finished,
            # Scores count too: a reward model may score the samples after the run.
            tuple((len(s.tokens), s.finish_reason, len(s.text), len(s.scores))
                  for s in run.samples),
        )
        if signature == self._signature:
            return
        self._signature = signature
        if run.finished:
            self._trickle.stop()
            self._pending, self._chores = [], []
            for panel, sample in zip(self._panels, run.samples, strict=True):
                panel.refresh(sample)
            self._draw_overlay()
            self._rank()
            self._allow_labels(True)
            return
        self._pending = [partial(panel.refresh, sample)
                         for panel, sample in zip(self._panels, run.samples, strict=True)
                         if not panel.visibleRegion().isEmpty()]
        if not self._chores and time.monotonic() - self._overlay_drawn >= OVERLAY_INTERVAL:
            self._chores = [self._draw_overlay, self._update_badges, self._show_summary]
        self._trickle.start()
        self._ranked = False

    def _catch_up(self) -> None:
        if self._run is None or self._run.finished:
            return  # a finished run drew every panel
        self._signature = None
        self.refresh()

    def _trickle_step(self) -> None:
        if self._run is not None and self._pending:
            self._pending.pop(0)()
            return
        self._trickle.stop()
        if self._run is not None and self._chores:
            self._chores.pop(0)()  # one a redraw, so that each repaints apart

    def _draw_overlay(self) -> None:
        self._overlay_drawn = time.monotonic()
        self.overlay.set_samples(self._run.samples, streaming=not self._run.finished)
        fork = fork_text(self.overlay.divergence())
        if fork != self._fork.text():
            self._fork.setText(fork)

    # -- labels by hand --------------------------------------------------------------------

    def show_preferred(self, index: int | None) -> None:
        """Mark the sample the user's label prefers (None: no "prefer" label)."""
        for panel in self._panels:
            panel.set_preferred(panel.sample_index == index)

    def start_ranking(self) -> None:
        """Show the samples as a list to drag into order, starting from the shown order."""
        run = self._run
        if run is None or not run.finished:
            return
        self.rank_list.set_samples([s.text for s in run.samples], self.panel_order())
        self._pages.setCurrentWidget(self.rank_list)

    def stop_ranking(self) -> None:
        self._pages.setCurrentWidget(self.scroll)

    def ranking_by_hand(self) -> bool:
        return self._pages.currentWidget() is self.rank_list

    def _allow_labels(self, allowed: bool) -> None:
        # Labels judge finished samples: a sample still growing may change after the click.
        self.rank_button.setEnabled(allowed)
        for panel in self._panels:
            panel.prefer_button.setEnabled(allowed)

    # -- ranking ---------------------------------------------------------------------------

    def _method_changed(self) -> None:
        if self._run is not None and self._run.finished:
            self._rank()
        self.ranking_changed.emit(self.current_method())

    def _rank(self) -> None:
        run = self._run
        assert run is not None
        method = self.current_method()
        ranking = run.rank(method)
        if method == "vote" and run.vote is not None:
            vote, total = run.vote, len(run.samples)
            groups: list[tuple[str | None, list[int]]] = [
                (
                    f"'{answer}' — {len(voters)} vote{'s' if len(voters) != 1 else ''}"
                    f" ({len(voters) / total:.0%})",
                    list(voters),
                )
                for answer, voters in vote.groups
            ]
            if vote.unparsed:
                groups.append(("no answer found", list(vote.unparsed)))
            places = {i: place for place, (_, voters) in enumerate(vote.groups, 1) for i in voters}
            self._winners = set(vote.voters) if vote.answer is not None else set()
        else:
            groups = [(None, list(ranking.order))]
            places = {i: place for place, i in enumerate(ranking.order, 1)}
            self._winners = {ranking.order[0]} if ranking.order else set()
        for panel in self._panels:
            index = panel.sample_index
            panel.set_rank(places.get(index), winner=index in self._winners)
        self._ranked = True
        self._set_groups(groups)
        self._update_badges()
        self._show_summary()
        self.overlay.set_emphasis(self._emphasised())

    def _emphasised(self) -> int | None:
        return self._order[0] if self._ranked and self._order and self._winners else None

    def _set_groups(self, groups: list[tuple[str | None, list[int]]]) -> None:
        if groups == self._groups and self._flow.count():
            return
        while self._flow.count():
            self._flow.takeAt(0)
        for header in self._headers:
            header.deleteLater()
        self._headers = []
        for title, indices in groups:
            if title is not None:
                header = QLabel(title, self._grid)
                header.setProperty(FULL_ROW, True)
                header.setStyleSheet(
                    "font-weight: bold; color: #333; padding: 6px 2px 0 2px;"
                    " border-bottom: 1px solid #c9ccd1;"
                )
                header.show()
                self._headers.append(header)
                self._flow.addWidget(header)
            for index in indices:
                self._flow.addWidget(self._panels[index])
                self._panels[index].show()
        self._groups = groups
        self._order = [index for _, indices in groups for index in indices]
        self._flow.invalidate()

    def _update_badges(self) -> None:
        run = self._run
        assert run is not None
        voting = self._ranked and self.current_method() == "vote" and run.vote is not None
        for panel, sample in zip(self._panels, run.samples, strict=True):
            scores = sample.all_scores()
            badges = {
                name: _number(scores[key], decimals) for name, key, decimals in _SCORE_BADGES
            }
            # Scores stored on the samples (e.g. "reward") follow the logprob ones.
            known = {key for _, key, _ in _SCORE_BADGES}
            badges.update(
                {key: _number(value, 3) for key, value in scores.items() if key not in known}
            )
            if voting:
                # The answer decides a vote, so it leads.
                answer = run.vote.answers[sample.index]
                badges = {"answer": f"'{answer.value}'" if answer is not None else "none",
                          **badges}
            panel.set_badges(badges)

    def _show_summary(self) -> None:
        run = self._run
        if run is None:
            self._summary.setText("<span style='color:#777'>no run yet</span>")
            return
        n = len(run.samples)
        head = f"{n} sample{'s' if n != 1 else ''}"
        if not self._ranked:
            done = sum(s.finish_reason is not None for s in run.samples)
            self._summary.setText(
                f"{head} · {done}/{n} done · <span style='color:#777'>ranking when done…</span>"
            )
            return
        method = self.current_method()
        if method == "vote" and run.vote is not None:
            vote = run.vote
            if vote.answer is None:
                text = f"{head} · no answer found in any sample"
            else:
                text = (
                    f"{head} · answer <b>'{html.escape(vote.answer)}'</b> · "
                    f"{vote.share:.0%} ({len(vote.voters)}/{n})"
                )
        else:
            ranking = run.rankings[method]
            name = _SUMMARY_SCORE_NAMES.get(method) or self._selector.currentText()
            text = (
                f"{head} · winner <b>#{ranking.order[0]}</b> · "
                f"{html.escape(name)} {_number(ranking.scores[0], 3)}"
            )
        self._summary.setText(text)

    def _panel_hovered(self, index: int) -> None:
        self.overlay.set_emphasis(index if index >= 0 else self._emphasised())

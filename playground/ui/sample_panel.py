"""One of the N samples of a best-of-N run: its text, a probability sparkline and its scores."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QEnterEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from playground.records import Sample, TokenRecord
from playground.ui.colors import WINNER, WINNER_BACKGROUND, sample_color
from playground.ui.flow_layout import FlowLayout
from playground.ui.logprob_chart import Sparkline
from playground.ui.steady_label import SteadyLabel
from playground.ui.token_view import TokenView

PANEL_WIDTH = 320
TEXT_HEIGHT = 160

_FRAME_STYLE = f"""
#samplePanel {{ background: white; border: 1px solid #d3d7dd; border-radius: 6px; }}
#samplePanel[winner="true"] {{
    background: {WINNER_BACKGROUND.name()}; border: 2px solid {WINNER.name()};
}}
"""
_BADGE_STYLE = (
    "background: #eef1f5; color: #222; border-radius: 4px; padding: 1px 6px;"
)
_RANK_STYLE = "color: #444; font-weight: bold;"
_BEST_STYLE = (
    f"background: {WINNER.name()}; color: white; border-radius: 4px; padding: 1px 6px;"
    " font-weight: bold;"
)
_MUTED = "color: #6b6b6b;"

_FINISH_WORDS = {
    None: "running…",
    "stop": "stopped",
    "length": "hit max tokens",
    "cancelled": "cancelled",
    "interrupted": "interrupted",
}


def ordinal(place: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    teens = 10 <= place % 100 <= 20
    return f"{place}{'th' if teens else {1: 'st', 2: 'nd', 3: 'rd'}.get(place % 10, 'th')}"


def fitted_tokens(tokens: Sequence[TokenRecord], text: str) -> list[TokenRecord]:
    """The tokens with their texts cut to `text`.

    A stop string may end inside a sample's last kept token; the sample's text then stops
    short of the tokens' joined texts, and the panel must show the text, not the stop string.
    """
    joined = "".join(t.text for t in tokens)
    if joined == text or not joined.startswith(text):
        return list(tokens)
    fitted, used = [], 0
    for token in tokens:
        room = max(len(text) - used, 0)
        fitted.append(token if len(token.text) <= room else replace(token, text=token.text[:room]))
        used += len(token.text)
    return fitted


class SamplePanel(QFrame):
    """Header (number, seed, rank), the coloured text, a sparkline, score badges, finish reason.

    `refresh` appends only the tokens that are new since the last call, so it is cheap enough
    for the main window's ~10 redraws a second while the run streams.
    """

    hovered = Signal(int)
    """This panel's sample index when the mouse enters it, -1 when it leaves."""
    token_hovered = Signal(int, int)
    """(sample index, token index) hovered in the text; token -1 when it leaves."""
    alternative_clicked = Signal(int, int, int)
    """(sample index, token position, alternative token id), clicked in a token's popup."""
    preferred = Signal(int)
    """This panel's sample index: the user prefers this sample to all the others."""

    def __init__(self, sample_index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sample_index = sample_index
        self._shown = 0
        """How many tokens the text view holds."""
        self._shown_text = ""
        self._finish: str | None = None
        self._winner: bool | None = None
        self._badge_labels: dict[str, QLabel] = {}
        self._badge_values: dict[str, str] = {}

        self.setObjectName("samplePanel")
        self.setStyleSheet(_FRAME_STYLE)
        self.setFixedWidth(PANEL_WIDTH)
        color = sample_color(sample_index)

        self._number = QLabel(
            f"<span style='color:{color.name()}'>●</span> <b>#{sample_index}</b>"
        )
        self._number.setToolTip(f"sample {sample_index}; its colour in the chart above")
        self._seed = QLabel()
        self._seed.setStyleSheet(_MUTED)
        self._rank = QLabel()
        self._rank.setStyleSheet(_RANK_STYLE)
        self._best = QLabel("★ best")
        self._best.setStyleSheet(_BEST_STYLE)
        self.prefer_button = QToolButton()
        self.prefer_button.setCheckable(True)
        self.prefer_button.setToolTip(
            "Label this sample the best of the run, better than every other: saved with the "
            "run, under your name, for the Agreement tab and reward training")
        self.prefer_button.clicked.connect(lambda: self.preferred.emit(self.sample_index))
        header = QHBoxLayout()
        header.setSpacing(8)
        header.addWidget(self._number)
        header.addWidget(self._seed)
        header.addStretch(1)
        header.addWidget(self._rank)
        header.addWidget(self._best)
        header.addWidget(self.prefer_button)

        self.text_view = TokenView(compact=True)
        self.text_view.setFixedHeight(TEXT_HEIGHT)
        self.text_view.token_hovered.connect(self._token_hovered)
        self.text_view.alternative_clicked.connect(
            lambda position, alternative: self.alternative_clicked.emit(
                self.sample_index, position, alternative
            )
        )
        self.sparkline = Sparkline(color=color)

        # Badges wrap like words: their widths vary with the numbers and the font.
        self._badges = FlowLayout(spacing=4, centred=False)
        self._finish_label = SteadyLabel()
        self._finish_label.setStyleSheet(_MUTED)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.text_view)
        layout.addWidget(self.sparkline)
        layout.addLayout(self._badges)
        layout.addWidget(self._finish_label)

        self.set_rank(None, winner=False)
        self.set_preferred(False)
        self._show_finish(None, 0)
        self._fit_height()

    # -- data ------------------------------------------------------------------------------

    def refresh(self, sample: Sample) -> None:
        """Catch up with `sample`; a no-op when nothing changed since the last call."""
        tokens = sample.tokens
        seed = f"seed {sample.seed}"
        if self._seed.text() != seed:
            self._seed.setText(seed)
        unchanged = (
            len(tokens) == self._shown
            and sample.finish_reason == self._finish
            and sample.text == self._shown_text
        )
        if unchanged:
            return
        new = tokens[self._shown :] if len(tokens) >= self._shown else []
        new_text = "".join(t.text for t in new)
        if len(tokens) >= self._shown and sample.text == self._shown_text + new_text:
            if new:
                self.text_view.append_tokens(new)
        else:
            # Tokens were dropped (a stop string) or the text no longer matches: start over.
            self.text_view.set_tokens(fitted_tokens(tokens, sample.text))
        self._shown = len(tokens)
        self._shown_text = sample.text
        self._finish = sample.finish_reason
        self.sparkline.set_values([t.prob for t in tokens])
        self._show_finish(sample.finish_reason, len(tokens))

    def clear(self) -> None:
        """Empty the panel for a new run (reusing a panel is much cheaper than building one)."""
        self.text_view.clear_tokens()
        self.sparkline.set_values([])
        self._shown, self._shown_text, self._finish = 0, "", None
        self._show_finish(None, 0)
        self.set_rank(None, winner=False)
        self.set_preferred(False)
        # The same badges, blank until the new run's scores: making and deleting their labels
        # at every run was half of the window's stall at a run's start.
        self.set_badges(dict.fromkeys(self._badge_labels, "—"))

    def text(self) -> str:
        """The text shown: the sample's text as of the last refresh."""
        return self._shown_text

    def _show_finish(self, reason: str | None, n_tokens: int) -> None:
        word = _FINISH_WORDS.get(reason, reason or "")
        self._finish_label.setText(f"{n_tokens:,} tokens · {word}")

    # -- rank and scores -------------------------------------------------------------------

    def set_rank(self, place: int | None, winner: bool) -> None:
        """Show the place in the current ranking (None while there is none) and mark the winner."""
        self._rank.setText(ordinal(place) if place is not None else "")
        self._rank.setVisible(place is not None)
        self._best.setVisible(winner)
        if winner != self._winner:
            self._winner = winner
            # The frame's style follows the property. Polishing this one widget again is
            # cheap; a new style sheet restyled every child (7 ms at each run's start).
            self.setProperty("winner", winner)
            self.style().unpolish(self)
            self.style().polish(self)

    def set_preferred(self, preferred: bool) -> None:
        """Show whether the user's label chose this sample."""
        self.prefer_button.setChecked(preferred)
        self.prefer_button.setText("✓ preferred" if preferred else "prefer")

    def is_preferred(self) -> bool:
        return self.prefer_button.isChecked()

    def place(self) -> int | None:
        text = self._rank.text()
        return int(text[:-2]) if text else None

    def is_winner(self) -> bool:
        return bool(self._winner)

    def set_badges(self, badges: dict[str, str]) -> None:
        """Show one small badge per entry, "name value", in the order given."""
        if list(badges) != list(self._badge_labels):
            for label in self._badge_labels.values():
                self._badges.removeWidget(label)
                label.deleteLater()
            self._badge_labels = {}
            for name in badges:
                label = QLabel()
                label.setStyleSheet(_BADGE_STYLE)
                label.setTextFormat(Qt.TextFormat.RichText)
                self._badges.addWidget(label)
                self._badge_labels[name] = label
        for name, value in badges.items():
            self._badge_labels[name].setText(
                f"<span style='color:#6b6b6b'>{html.escape(name)}</span> {html.escape(value)}"
            )
        self._badge_values = dict(badges)
        self._fit_height()

    def _fit_height(self) -> None:
        """Fix the panel's height to what its content needs at its fixed width.

        Only the badges can change it (they wrap). A panel of fixed size does not ask the grid
        to lay out all N panels again each time one of its labels changes, which while a run
        streams happened dozens of times a second."""
        layout = self.layout()
        height = max(layout.totalHeightForWidth(PANEL_WIDTH), layout.totalMinimumSize().height())
        if height != self.minimumHeight() or height != self.maximumHeight():
            self.setFixedHeight(height)

    def badges(self) -> dict[str, str]:
        """The badges shown, as given to `set_badges`."""
        return dict(self._badge_values)

    # -- hover -----------------------------------------------------------------------------

    def _token_hovered(self, index: int) -> None:
        self.sparkline.highlight(index)
        self.token_hovered.emit(self.sample_index, index)

    def enterEvent(self, event: QEnterEvent) -> None:
        self.hovered.emit(self.sample_index)
        super().enterEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        self.hovered.emit(-1)
        super().leaveEvent(event)

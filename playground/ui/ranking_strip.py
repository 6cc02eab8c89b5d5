"""Two rankings of the same samples, one above the other, with their disagreements marked."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from playground.scoring import Ranking, kendall_tau, top_agrees
from playground.ui.colors import DIFFERS, SAME, WARNING_TEXT, sample_color

_CHIP = ("<span style='background:{bg}; color:{fg}; border-radius:3px;'>&nbsp;"
         "<span style='color:{dot}'>●</span>#{index}&nbsp;</span>")


class RankingStrip(QWidget):
    """E.g. the reward ranking against mean log-probability: a place where the two put
    different samples is highlighted, and Kendall's tau sums up how far they agree."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setToolTip("Places where the two rankings put different samples are "
                              "highlighted. Kendall's tau is 1 when they agree fully, −1 when "
                              "one reverses the other.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.label)
        self.hide()

    def set_rankings(self, first: Ranking, first_name: str, second: Ranking,
                     second_name: str) -> None:
        differs = [a != b for a, b in zip(first.order, second.order, strict=True)]

        def row(name: str, ranking: Ranking) -> str:
            chips = " ".join(
                _CHIP.format(bg=(DIFFERS if diff else SAME).name(), fg="#222",
                             dot=sample_color(index).name(), index=index)
                for index, diff in zip(ranking.order, differs, strict=True))
            return f"<td style='color:#555; padding-right:8px'>{html.escape(name)}</td>" \
                   f"<td>{chips}</td>"

        tau = kendall_tau(first.order, second.order)
        same = ("yes" if top_agrees(first, second)
                else f"<b style='color:{WARNING_TEXT.name()}'>no</b>")
        self.label.setText(
            f"<table cellspacing='2'><tr>{row(first_name, first)}</tr>"
            f"<tr>{row(second_name, second)}</tr></table>"
            f"<span style='color:#555'>Kendall τ {tau:+.2f} · same best sample: {same} · "
            f"{sum(differs)} of {len(differs)} places differ</span>")
        self.show()

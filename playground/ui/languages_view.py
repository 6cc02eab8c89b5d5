"""Tokens across languages: the same sentence through the loaded model's tokenizer.

Each language's tokens are shown as alternately shaded chips, so every boundary is visible; a
token holding only part of a character (common in Hindi, Chinese and Arabic with an
English-centred vocabulary) shows its bytes instead. A bar chart compares tokens per word and
per character, and the medians over every parallel sentence give the chapter's comparison.
"""

from __future__ import annotations

import html
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from playground.demos.scenario import Scenario
from playground.demos.tokens import LanguageCount, TokensResult, load_parallel, run_tokens
from playground.ui.colors import PER_CHARACTER, PER_WORD, TOKEN_CHIPS
from playground.ui.demo_view import DemoView, caption, note
from playground.ui.engine_thread import Job
from playground.ui.token_popup import is_partial

CHAPTER_MEDIANS = {"English": 7, "Hindi": 32}
"""The textbook's figures (MASSIVE dataset, the GPT-4 tokenizer): median tokens per sentence."""


def clusters(count: LanguageCount) -> list[tuple[str, int]]:
    """The tokens grouped into whole characters: (text, tokens) for each group. A token that
    ends inside a character is joined with the ones that complete it."""
    groups: list[tuple[str, int]] = []
    pending, tokens = b"", 0
    for _text, data in count.pieces:
        pending, tokens = pending + data, tokens + 1
        if not is_partial(pending):
            groups.append((pending.decode("utf-8", "replace"), tokens))
            pending, tokens = b"", 0
    if pending:
        groups.append((pending.decode("utf-8", "replace"), tokens))
    return groups


def chips_html(count: LanguageCount) -> str:
    """The tokens as alternately shaded spans; characters that took several tokens carry the
    number as a subscript."""
    spans = []
    for i, (text, tokens) in enumerate(clusters(count)):
        shown = html.escape(text).replace(" ", "&#183;")  # a visible space: ·
        if tokens > 1:
            shown += f"<sub><b>{tokens}</b></sub>"
        spans.append(f'<span style="background:{TOKEN_CHIPS[i % 2].name()}">{shown}</span>')
    return "&#8203;".join(spans)  # zero-width spaces let long rows wrap between tokens


class LanguagesView(DemoView):
    demo = "tokens"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: TokensResult | None = None
        self.sentence = QComboBox()
        for text in load_parallel()["English"]:
            self.sentence.addItem(text)
        inputs = QWidget()
        row = QHBoxLayout(inputs)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Sentence"))
        row.addWidget(self.sentence, 1)

        self.texts = QWidget()
        self.rows = QGridLayout(self.texts)
        self.rows.setColumnStretch(3, 1)
        cut = QWidget()
        cut_layout = QVBoxLayout(cut)
        cut_layout.setContentsMargins(0, 0, 0, 0)
        cut_layout.addWidget(caption("The same sentence, cut into the model's tokens "
                                     "(shading changes at every token boundary)"))
        cut_layout.addWidget(self.texts)
        cut_layout.addWidget(note("A small number marks a character that took several tokens: "
                                  "the tokenizer had to spell it out byte by byte."))

        self.chart = pg.PlotWidget(background="w")
        self.chart.setMinimumHeight(240)
        self.chart.setMaximumHeight(340)
        self.chart.setMouseEnabled(x=False, y=False)
        self.chart.hideButtons()
        self.chart.setMenuEnabled(False)
        self.chart.addLegend(offset=(-10, 10))
        self.chart.setLabel("left", "tokens")
        chart = QWidget()
        chart_layout = QVBoxLayout(chart)
        chart_layout.setContentsMargins(0, 0, 0, 0)
        chart_layout.addWidget(caption("Tokens per word and per character"))
        chart_layout.addWidget(self.chart)

        self.median = QLabel()
        self.median.setObjectName("headline")
        self.median.setWordWrap(True)
        self.median_note = note()
        medians = QWidget()
        median_layout = QVBoxLayout(medians)
        median_layout.setContentsMargins(0, 0, 0, 0)
        median_layout.addWidget(caption("The median sentence, over every parallel sentence"))
        median_layout.addWidget(self.median)
        median_layout.addWidget(self.median_note)

        self._sections = [inputs, cut, chart, medians]
        layout = QVBoxLayout(self)
        for section in self._sections:
            layout.addWidget(section)
        layout.addStretch(1)

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        self.sentence.setCurrentIndex(int(scenario.extra.get("sentence", 0)))
        self.show_result(None)

    def job(self) -> Job:
        sentence = self.sentence.currentIndex()
        return Job("tokens", lambda engine, progress, cancel: run_tokens(
            engine, sentence, progress=progress, cancel=cancel))

    def sections(self) -> list[QWidget]:
        return self._sections

    def show_result(self, result: Any) -> None:
        self.result = result
        while self.rows.count():
            self.rows.takeAt(0).widget().deleteLater()
        self.chart.clear()
        self.median.setText("Run to tokenize the sentence with the loaded model.")
        self.median_note.clear()
        if result is None:
            return
        for i, count in enumerate(result.counts):
            name = QLabel(f"<b>{html.escape(count.language)}</b>")
            figures = QLabel(f"{count.tokens} tokens")
            figures.setToolTip(f"{count.words} words, {count.chars} characters")
            chips = QLabel(chips_html(count))
            chips.setTextFormat(Qt.TextFormat.RichText)
            chips.setWordWrap(True)
            chips.setObjectName("tokenChips")
            # Absolute: an Arabic row is right-to-left text, but the rows align on the left.
            chips.setAlignment(Qt.AlignmentFlag.AlignAbsolute | Qt.AlignmentFlag.AlignLeft
                               | Qt.AlignmentFlag.AlignVCenter)
            chips.setToolTip(count.text)
            original = QLabel(html.escape(count.text))
            original.setAlignment(chips.alignment())
            self.rows.addWidget(name, i, 0)
            self.rows.addWidget(original, i, 1)
            self.rows.addWidget(figures, i, 2)
            self.rows.addWidget(chips, i, 3)
        self._draw_chart(result.counts)
        self._show_medians(result)

    def _draw_chart(self, counts: list[LanguageCount]) -> None:
        xs = list(range(len(counts)))
        width = 0.38
        self.chart.addItem(pg.BarGraphItem(
            x=[x - width / 2 for x in xs], height=[c.tokens_per_word for c in counts],
            width=width, brush=PER_WORD, name="per word"))
        self.chart.addItem(pg.BarGraphItem(
            x=[x + width / 2 for x in xs], height=[c.tokens_per_char for c in counts],
            width=width, brush=PER_CHARACTER, name="per character"))
        self.chart.getAxis("bottom").setTicks([[(x, c.language) for x, c in zip(
            xs, counts, strict=True)]])

    def _show_medians(self, result: TokensResult) -> None:
        medians = result.medians
        english, hindi = medians.get("English"), medians.get("Hindi")
        if english and hindi:
            self.median.setText(
                f"English {english:g} tokens, Hindi {hindi:g} tokens: "
                f"{hindi / english:.1f}× as many for the same meaning.")
        self.median_note.setText(
            f"Tokenizer of {result.model}. The textbook's figures, with another tokenizer: "
            f"English {CHAPTER_MEDIANS['English']}, Hindi {CHAPTER_MEDIANS['Hindi']}. "
            "All languages: " + ", ".join(f"{lang} {m:g}" for lang, m in medians.items()) + ".")

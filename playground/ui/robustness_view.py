"""Slightly different input: one question reworded several ways, the answers side by side.

Every variant is answered with the same settings and seed (see
`demos.robustness.run_robustness`), so any difference in the answers comes from the wording
alone. Answers to reordered options are mapped back to the original letters before they are
compared.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.demos.robustness import RobustnessResult, Variant, run_robustness
from playground.demos.scenario import Scenario
from playground.errors import InvalidRequestError
from playground.ui.colors import BAD, BAD_ROW, GOOD
from playground.ui.demo_view import DemoView, LinesTall, caption, fitted_table, note, one_line
from playground.ui.engine_thread import Job
from playground.ui.scenario_inputs import ScenarioInputs

MAX_OPTIONS = 5
"""Answers are read as the letters A to E."""
KIND_LABELS = {
    "original": "Original",
    "typos": "Typos",
    "lowercase": "lowercase",
    "uppercase": "UPPERCASE",
    "extra-spaces": "Extra spaces",
    "reordered": "Options reordered",
    "user": "Your variant",
}
_OPTION_LINE = re.compile(r"^[A-E]\) ")
COLUMNS = ("Wording", "What the model read", "Its answer", "Read as", "Same as most")


def kind_label(kind: str) -> str:
    """A variant's kind for people: "template:wondering" -> "Template: wondering"."""
    if kind.startswith("template:"):
        return "Template: " + kind.removeprefix("template:").replace("-", " ")
    return KIND_LABELS.get(kind, kind)


def shown_prompt(variant: Variant, original: Variant) -> str:
    """The part of a variant's prompt that was reworded, on one line: its question and frame,
    and its options only where they differ from the original's (the reordered variant)."""
    lines = variant.text.split("\n")
    options = [line for line in lines if _OPTION_LINE.match(line)]
    others = [line for line in lines if not _OPTION_LINE.match(line)]
    original_options = [line for line in original.text.split("\n") if _OPTION_LINE.match(line)]
    # Spaces are kept as they are: for "Extra spaces" they are the point.
    shown = "  ".join(others)
    if options and options != original_options:
        shown += "  " + "  ".join(options)
    return shown


def answer_label(answer: str | None, original: Variant) -> str:
    """An answer as "B) Mars" when it is one of the original options, else as it was read."""
    if answer is None:
        return "—"
    if original.option_order is not None:
        for line in original.text.split("\n"):
            if line.startswith(f"{answer}) "):
                return line
    return answer


class RobustnessView(DemoView):
    demo = "robustness"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: RobustnessResult | None = None
        self._scenario: Scenario | None = None

        self.question = QPlainTextEdit()
        LinesTall(self.question, 2)
        self.options = QPlainTextEdit()
        LinesTall(self.options, MAX_OPTIONS)
        self.options.setPlaceholderText("Leave empty for an open question")
        self.options.setToolTip(f"One option per line, at most {MAX_OPTIONS}: they are listed "
                                "under the question as A), B), ...")
        self.user_text = QLineEdit()
        self.user_text.setPlaceholderText("Your own wording of the question (optional)")
        self.user_text.setToolTip("Added as one more variant; the options are listed under it")
        self.inputs = ScenarioInputs()
        self.inputs.temperature.setToolTip("0 is greedy: the most likely token every time")
        inputs = QWidget()
        grid = QGridLayout(inputs)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(caption("One question, reworded several ways"), 0, 0, 1, 4)
        grid.addWidget(QLabel("Question"), 1, 0)
        grid.addWidget(self.question, 1, 1)
        grid.addWidget(QLabel("Options"), 1, 2)
        grid.addWidget(self.options, 1, 3, 3, 1)
        grid.addWidget(QLabel("Your wording"), 2, 0)
        grid.addWidget(self.user_text, 2, 1)
        grid.addWidget(self.inputs, 3, 1)
        grid.setColumnStretch(1, 3)
        grid.setColumnStretch(3, 2)

        self.table = fitted_table(COLUMNS, stretch=(1, 2))
        table = QWidget()
        table_layout = QVBoxLayout(table)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addWidget(caption("The answers, side by side"))
        table_layout.addWidget(note("Every prompt lists the options; the table shows them only "
                                    "where they were reordered. Answers are read in terms of "
                                    "the original options. Hover over a cell for the full "
                                    "prompt or output."))
        table_layout.addWidget(self.table)

        self.summary = QLabel()
        self.summary.setObjectName("headline")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.chart = pg.PlotWidget(background="w")
        self.chart.setFixedHeight(240)
        self.chart.setMouseEnabled(x=False, y=False)
        self.chart.hideButtons()
        self.chart.setMenuEnabled(False)
        self.chart.setLabel("left", "mean logprob")
        self.chart.setLabel("bottom", "wording (the table's numbers)")
        self.chart.showGrid(y=True, alpha=0.15)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, pen=None)
        self.chart.addItem(self.bars)
        summary = QWidget()
        summary_layout = QVBoxLayout(summary)
        summary_layout.setContentsMargins(0, 0, 0, 0)
        summary_layout.addWidget(caption("How often they agree, and how sure the model was"))
        summary_layout.addWidget(self.summary)
        summary_layout.addWidget(note(
            "How sure the model was of each answer: the mean log-probability of its tokens; "
            f'closer to 0 is surer. <span style="color:{GOOD.name()}">■</span> the '
            f'most common answer, <span style="color:{BAD.name()}">■</span> '
            "another answer or none. Being sure does not make an answer consistent."))
        summary_layout.addWidget(self.chart)

        self._sections = [inputs, table, summary]
        layout = QVBoxLayout(self)
        for section in self._sections:
            layout.addWidget(section)
        layout.addStretch(1)

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        self._scenario = scenario
        self.question.setPlainText(scenario.prompt)
        self.options.setPlainText("\n".join(scenario.extra.get("options", [])))
        self.user_text.setText(scenario.extra.get("variant", ""))
        self.inputs.set_params(*scenario.params(profile))
        self.show_result(None)

    def job(self) -> Job:
        if self._scenario is None:
            raise InvalidRequestError("Choose a scenario first.")
        question = self.question.toPlainText().strip()
        if not question:
            raise InvalidRequestError("Type a question to reword.")
        options = [o.strip() for o in self.options.toPlainText().splitlines() if o.strip()]
        if len(options) > MAX_OPTIONS:
            raise InvalidRequestError(f"At most {MAX_OPTIONS} options (A to E), one per line.")
        user_text = self.user_text.text().strip()
        params, _n = self.inputs.params()
        chat = self._scenario.chat
        return Job("robustness", lambda engine, progress, cancel: run_robustness(
            engine, question, params, options=options or None, user_text=user_text, chat=chat,
            progress=progress, cancel=cancel))

    def sections(self) -> list[QWidget]:
        return self._sections

    def show_result(self, result: Any) -> None:
        self.result = result
        self.table.setRowCount(0)
        self.bars.setOpts(x=[], height=[], brushes=[])
        self.chart.getAxis("bottom").setTicks([[]])
        if result is None:
            self.summary.setText("Run to ask every variant.")
            return
        agreement = result.agreement
        original = result.variants[0]
        self.table.setRowCount(len(result.variants))
        for row, (variant, run) in enumerate(zip(result.variants, result.runs, strict=True)):
            output = run.samples[0].text
            agrees = agreement.agrees[row]
            answer = agreement.answers[row]
            items = [
                QTableWidgetItem(f"{row + 1}. {kind_label(variant.kind)}"),
                QTableWidgetItem(shown_prompt(variant, original)),
                QTableWidgetItem(one_line(output) or "(nothing)"),
                QTableWidgetItem(answer_label(answer, original)),
                QTableWidgetItem("✓" if agrees else "✗"),
            ]
            items[1].setToolTip(variant.text)
            items[2].setToolTip(output)
            if answer is None:
                items[3].setToolTip("No answer could be read from the output")
            mark = items[4]
            mark.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            mark.setForeground(GOOD if agrees else BAD)
            for column, item in enumerate(items):
                if not agrees:
                    item.setBackground(BAD_ROW)
                self.table.setItem(row, column, item)

        groups = agreement.groups
        if agreement.answer is None:
            self.summary.setText("No answer could be read from any variant.")
        else:
            same = len(groups[0][1])
            self.summary.setText(
                f"Same answer in {same} of {len(result.variants)} variants "
                f"({agreement.share:.0%}): {answer_label(agreement.answer, original)}")
        colors = [GOOD if a else BAD for a in agreement.agrees]
        # An empty output has no mean (-inf): it gets no bar rather than an endless one.
        heights = [v if math.isfinite(v) else 0.0 for v in result.mean_logprobs()]
        self.bars.setOpts(x=list(range(len(heights))), height=heights, brushes=colors)
        # Numbered as the table's rows: ten wordings' names do not fit under ten bars.
        self.chart.getAxis("bottom").setTicks([[(i, str(i + 1)) for i in range(len(heights))]])

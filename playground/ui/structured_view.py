"""Structured output: N answers constrained by a JSON Schema's grammar beside N free ones.

The free answers use the same seeds as the constrained ones, so the two columns differ only by
the grammar. The last section shows what `demos.structured.repair_json` makes of every invalid
free answer, and the mistake the model repeats most.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QFont, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.demos.scenario import Scenario
from playground.demos.structured import (
    StructuredResult,
    ValidityCounts,
    json_schema_grammar,
    run_structured,
    validate_json,
)
from playground.errors import InvalidRequestError
from playground.records import Run
from playground.ui.colors import BAD, BAD_ROW, FAIR, GOOD, WARNING_BACKGROUND, WARNING_BORDER
from playground.ui.demo_view import (
    DemoView,
    LinesTall,
    caption,
    fitted_table,
    note,
    one_line,
    section,
)
from playground.ui.engine_thread import Job
from playground.ui.scenario_inputs import ScenarioInputs

VALID = "valid"
REPAIRED = "repaired"
INVALID = "invalid"
STATE_COLORS = {VALID: GOOD, REPAIRED: FAIR, INVALID: BAD}
SCHEMA_WIDTH = 60
"""Characters up to which a part of the schema is written on one line."""
FULL_TEXT = Qt.ItemDataRole.UserRole
"""Where each output cell keeps the text exactly as generated (the cell shows it on one line)."""


def schema_text(value: Any, indent: int = 0) -> str:
    """JSON laid out for reading: a part that fits on one line stays on one line, so a typical
    schema takes ten lines rather than json.dumps(indent=2)'s twenty-odd."""
    compact = json.dumps(value)
    if indent + len(compact) <= SCHEMA_WIDTH or not value or not isinstance(value, dict | list):
        return compact
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        parts = [f"{inner}{json.dumps(k)}: {schema_text(v, indent + 2)}" for k, v in value.items()]
        opening, closing = "{", "}"
    else:
        parts = [inner + schema_text(v, indent + 2) for v in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(parts) + "\n" + " " * indent + closing


class ValidityBar(QWidget):
    """One block per output, coloured by whether it was valid, valid after repair, or not."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.states: list[str] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(200, 16)

    def set_states(self, states: list[str]) -> None:
        self.states = states
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        if not self.states:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        gap = 3.0
        width = (self.width() - gap * (len(self.states) - 1)) / len(self.states)
        for i, state in enumerate(self.states):
            painter.setBrush(STATE_COLORS[state])
            painter.drawRoundedRect(QRectF(i * (width + gap), 0, width, self.height()), 3, 3)


def _text_item(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(one_line(text))
    item.setData(FULL_TEXT, text)
    item.setToolTip(text)
    return item


def _mark_item(ok: bool) -> QTableWidgetItem:
    item = QTableWidgetItem("✓" if ok else "✗")
    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    item.setForeground(STATE_COLORS[VALID if ok else INVALID])
    return item


class OutputsPanel(QWidget):
    """One column of the comparison: how many outputs were valid, and the outputs."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self.count = QLabel()
        self.count.setObjectName("headline")
        self.bar = ValidityBar()
        self.table = fitted_table(("", "Output", "Why it is not valid"), stretch=(1,))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (caption(title), self.count, self.bar, self.table):
            layout.addWidget(widget)

    def show_outputs(self, run: Run | None, counts: ValidityCounts | None) -> None:
        self.table.setRowCount(0)
        if run is None or counts is None:
            self.count.clear()
            self.bar.set_states([])
            return
        self.count.setText(f"{counts.valid_raw} of {len(run.samples)} valid")
        self.bar.set_states([INVALID if reason else VALID for reason in counts.reasons])
        self.table.setRowCount(len(run.samples))
        for row, (sample, reason) in enumerate(zip(run.samples, counts.reasons, strict=True)):
            items = [_mark_item(not reason), _text_item(sample.text), QTableWidgetItem(reason)]
            for column, item in enumerate(items):
                if reason:
                    item.setBackground(BAD_ROW)
                self.table.setItem(row, column, item)
        self.table.setColumnHidden(2, not any(counts.reasons))


class StructuredView(DemoView):
    demo = "structured"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: StructuredResult | None = None
        self._scenario: Scenario | None = None

        self.prompt = QPlainTextEdit()
        LinesTall(self.prompt, 2)
        self.schema = QPlainTextEdit()
        self.schema.setFont(QFont("monospace"))
        LinesTall(self.schema, 10)
        self.schema.setToolTip("A JSON Schema: a grammar is built from it for the constrained "
                               "outputs, and every output is checked against it")
        self.inputs = ScenarioInputs("Outputs (N)")
        self.inputs.n.setToolTip("How many outputs of each kind")
        self.inputs.max_tokens.setToolTip("An output cut off here is usually broken JSON")
        inputs = QWidget()
        grid = QGridLayout(inputs)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(caption("The schema the output must follow"), 0, 0, 1, 3)
        grid.addWidget(QLabel("Prompt"), 1, 0)
        grid.addWidget(self.prompt, 1, 1)
        grid.addWidget(QLabel("JSON Schema"), 2, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.schema, 2, 1)
        grid.addWidget(self.inputs, 3, 1)
        grid.setColumnStretch(1, 1)

        self.constrained = OutputsPanel("Constrained by a grammar built from the schema")
        self.free = OutputsPanel("Unconstrained: the same prompt and seeds, no grammar")
        # Kept in place while hidden, so that revealing the second column in a presentation
        # does not squeeze the first one.
        policy = self.free.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.free.setSizePolicy(policy)
        columns = QHBoxLayout()
        columns.setSpacing(16)
        columns.addWidget(self.constrained, 1)
        columns.addWidget(self.free, 1)

        self.repair_summary = QLabel()
        self.repair_summary.setObjectName("headline")
        self.repair_bar = ValidityBar()
        self.repeated = QLabel()
        self.repeated.setWordWrap(True)
        self.repeated.setStyleSheet(
            f"background: {WARNING_BACKGROUND.name()}; border: 1px solid "
            f"{WARNING_BORDER.name()}; border-radius: 6px; padding: 6px 10px;")
        self.repairs = fitted_table(
            ("Output as generated", "What repair did", "After repair", ""), stretch=(0, 2))
        legend = note(" ".join(
            f'<span style="color:{STATE_COLORS[state].name()}">■</span> {text}'
            for state, text in ((VALID, "valid as generated"), (REPAIRED, "valid after repair"),
                                (INVALID, "still invalid"))))
        repair = section(caption("What repair fixes, and the mistakes the model repeats"),
                          self.repair_summary, self.repair_bar, legend, self.repeated,
                          self.repairs,
                          note("Repair takes JSON out of code fences and surrounding text, "
                               "closes what was left open and drops trailing commas. It does "
                               "not guess at missing content."))

        self._sections = [inputs, self.constrained, self.free, repair]
        layout = QVBoxLayout(self)
        layout.addWidget(inputs)
        layout.addLayout(columns)
        layout.addWidget(repair)
        layout.addStretch(1)

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        self._scenario = scenario
        self.prompt.setPlainText(scenario.prompt)
        self.schema.setPlainText(schema_text(scenario.extra.get("schema", {})))
        self.inputs.set_params(*scenario.params(profile))
        self.show_result(None)

    def job(self) -> Job:
        if self._scenario is None:
            raise InvalidRequestError("Choose a scenario first.")
        prompt = self.prompt.toPlainText().strip()
        if not prompt:
            raise InvalidRequestError("Type a prompt that asks for JSON.")
        schema = self._parsed_schema()
        params, n = self.inputs.params()
        chat = self._scenario.chat
        return Job("structured", lambda engine, progress, cancel: run_structured(
            engine, prompt, schema, params, n, chat=chat, progress=progress, cancel=cancel))

    def _parsed_schema(self) -> dict[str, Any]:
        try:
            schema = json.loads(self.schema.toPlainText())
        except json.JSONDecodeError as error:
            raise InvalidRequestError(f"The schema is not valid JSON: {error.msg} (line "
                                      f"{error.lineno}, column {error.colno}).") from error
        if not isinstance(schema, dict):
            raise InvalidRequestError("The schema must be a JSON object.")
        # llama-cpp-python's converter reports a schema it cannot handle with whatever error
        # it meets (AssertionError, AttributeError, ...): caught here, before the model runs.
        try:
            json_schema_grammar(schema)
        except Exception as error:
            raise InvalidRequestError(
                f"No grammar can be built from this schema: {one_line(str(error))}") from error
        return schema

    def sections(self) -> list[QWidget]:
        return self._sections

    def show_result(self, result: Any) -> None:
        self.result = result
        self.repairs.setRowCount(0)
        self.repeated.hide()
        if result is None:
            self.constrained.show_outputs(None, None)
            self.free.show_outputs(None, None)
            self.constrained.count.setText("Run to generate both kinds of output.")
            self.repair_summary.clear()
            self.repair_bar.set_states([])
            return
        self.constrained.show_outputs(result.constrained, result.constrained_counts)
        self.free.show_outputs(result.free, result.free_counts)
        counts = result.free_counts
        self.repair_bar.set_states([
            VALID if not reason else REPAIRED if validate_json(r.text, result.schema)[0]
            else INVALID
            for reason, r in zip(counts.reasons, result.repairs, strict=True)])
        if counts.valid_repaired + counts.invalid == 0:
            self.repair_summary.setText("Every unconstrained output was valid: nothing to "
                                        "repair.")
        else:
            self.repair_summary.setText(f"{counts.valid_repaired} more valid after repair, "
                                        f"{counts.invalid} still invalid")
        if counts.common_failure is not None and counts.common_failure_count >= 2:
            self.repeated.setText(f"The model made the same mistake "
                                  f"{counts.common_failure_count} times: "
                                  f"{counts.common_failure}")
            self.repeated.show()
        for sample, repaired in zip(result.free.samples, result.repairs, strict=True):
            if repaired is None:
                continue
            ok, reason = validate_json(repaired.text, result.schema)
            row = self.repairs.rowCount()
            self.repairs.insertRow(row)
            changes = QTableWidgetItem("; ".join(repaired.changes) or "nothing it could fix")
            after = _text_item(repaired.text)
            if reason:
                after.setToolTip(f"{repaired.text}\n\nStill not valid: {reason}")
            items = [_text_item(sample.text), changes, after, _mark_item(ok)]
            for column, item in enumerate(items):
                if not ok:
                    item.setBackground(BAD_ROW)
                self.repairs.setItem(row, column, item)

"""Base against instruct: one prompt, continued as plain text by a base model and answered in its
chat template by an instruct model, side by side, with each one's per-token probabilities."""

from __future__ import annotations

import statistics
from pathlib import Path

from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from playground.demos.base_instruct import BaseInstructResult, base_model, run_base_vs_instruct
from playground.demos.scenario import Cancel, Progress, Scenario
from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.records import Run
from playground.ui.demo_view import DemoView, LinesTall, caption, note
from playground.ui.engine_thread import Job
from playground.ui.logprob_chart import LogprobChart
from playground.ui.scenario_inputs import ScenarioInputs
from playground.ui.token_view import TokenView

TEXT_HEIGHT = 180
CHART_HEIGHT = 230


class ModelChooser(QWidget):
    """A GGUF path typed or picked with a file dialog; empty means the default model."""

    def __init__(self, default_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.line = QLineEdit()
        self.line.setPlaceholderText(default_name)
        self.line.setClearButtonEnabled(True)
        self.line.setToolTip("A GGUF model file; leave empty for the default")
        button = QPushButton("Choose…")
        button.clicked.connect(self._choose)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line, 1)
        layout.addWidget(button)

    def path(self) -> Path | None:
        text = self.line.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path: Path | None) -> None:
        self.line.setText(str(path) if path else "")

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", self.line.text(),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.line.setText(path)


class Side:
    """One model's half of the view: a column with its output, and its chart."""

    def __init__(self, role: str, how: str) -> None:
        self._role = role
        self.title = caption(role)
        self.how = note(how)
        self.text = TokenView()
        self.text.setMinimumHeight(TEXT_HEIGHT)
        self.ending = note()
        self.chart = LogprobChart()
        self.chart.setMinimumHeight(CHART_HEIGHT)
        self.mean = note()
        self.text.token_hovered.connect(self.chart.highlight)
        self.chart.token_hovered.connect(lambda i: self.text.highlight(i, ensure_visible=True))

        self.column = QWidget()
        layout = QVBoxLayout(self.column)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.title, self.how, self.text, self.ending):
            layout.addWidget(widget)
        self.chart_box = QWidget()
        layout = QVBoxLayout(self.chart_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.mean)
        self.clear()

    def clear(self) -> None:
        self.title.setText(self._role)
        self.text.clear_tokens()
        self.ending.setText("")
        self.chart.set_tokens([])
        self.mean.setText("")

    def show_run(self, run: Run) -> None:
        sample = run.samples[0]
        tokens = sample.tokens
        # The file's name, not the GGUF's: it says "Instruct" where general.name often does not.
        name = Path(run.model.path).stem
        self.title.setText(f"{self._role}: {name}")
        self.title.setToolTip(run.model.name)
        self.text.set_context(run.prompt_token_ids, run.params, run.model.path)
        self.text.set_tokens(tokens)
        self.ending.setText({
            "stop": f"It ended on its own after {len(tokens)} tokens.",
            "length": f"Cut off at the limit of {len(tokens)} tokens.",
        }.get(sample.finish_reason or "", f"Stopped after {len(tokens)} tokens."))
        self.chart.set_tokens(tokens)
        mean = statistics.fmean(t.prob for t in tokens) if tokens else float("nan")
        self.mean.setText(f"{name}: mean token probability {mean:.0%}")


class BaseInstructView(DemoView):
    demo = "base-vs-instruct"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompt = QPlainTextEdit()
        LinesTall(self.prompt, 2)
        self.inputs = ScenarioInputs()
        self.inputs.temperature.setToolTip("0 always picks the most likely token: every run is "
                                           "the same")
        self.inputs.max_tokens.setToolTip("Each model writes at most this many tokens")
        self.base_model = ModelChooser("Gemma 3 270M base (from PyPI)")
        self.instruct_model = ModelChooser("SmolLM2-135M-Instruct (embedded)")
        self.input_section = QWidget()
        form = QFormLayout(self.input_section)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Prompt", self.prompt)
        form.addRow("", self.inputs)
        form.addRow("Base model", self.base_model)
        form.addRow("Instruct model", self.instruct_model)

        self.base = Side("Base model", "Gets the prompt as plain text, with no chat template.")
        self.instruct = Side("Instruct model", "Gets the prompt in its chat template, as a "
                             "user's message.")
        columns = QHBoxLayout()
        columns.addWidget(self.base.column, 1)
        columns.addSpacing(12)
        columns.addWidget(self.instruct.column, 1)
        self.charts = QWidget()
        charts = QVBoxLayout(self.charts)
        charts.setContentsMargins(0, 0, 0, 0)
        charts.addWidget(caption("How sure each model was of each token it wrote"))
        row = QHBoxLayout()
        row.addWidget(self.base.chart_box, 1)
        row.addSpacing(12)
        row.addWidget(self.instruct.chart_box, 1)
        charts.addLayout(row, 1)

        # Presentation mode hides the sections not reached yet; they keep their room, so that
        # the left column does not shrink to half its width when the right one appears.
        for section in self.sections()[1:]:
            policy = section.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            section.setSizePolicy(policy)
        layout = QVBoxLayout(self)
        layout.addWidget(self.input_section)
        layout.addLayout(columns, 1)
        layout.addWidget(self.charts, 1)

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        """The model choices are the user's, not the scenario's: they stay."""
        self.prompt.setPlainText(scenario.prompt)
        self.inputs.set_params(*scenario.params(profile))
        self.base.clear()
        self.instruct.clear()

    def job(self) -> Job:
        prompt = self.prompt.toPlainText().strip()
        if not prompt:
            raise InvalidRequestError("Write a prompt first.")
        base, instruct = self.base_model.path(), self.instruct_model.path()
        for path in (base, instruct):
            if path is not None and not path.is_file():
                raise InvalidRequestError(f"No model file at {path}.")
        params, _n = self.inputs.params()

        def work(_engine: Engine | None, progress: Progress, cancel: Cancel) -> BaseInstructResult:
            # The default base model is resolved here, off the GUI thread: the first time, it is
            # joined from its parts (a 253 MB copy).
            return run_base_vs_instruct(base or base_model(), instruct, prompt, params,
                                        progress=progress, cancel=cancel)

        return Job(self.demo, work, needs_engine=False)

    def show_result(self, result: BaseInstructResult) -> None:
        self.base.show_run(result.base)
        self.instruct.show_run(result.instruct)

    def sections(self) -> list[QWidget]:
        return [self.input_section, self.base.column, self.instruct.column, self.charts]

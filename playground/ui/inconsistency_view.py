"""Same input, different outputs: one prompt asked N times, with the seed unlocked, then locked.

Unlocked, run i draws with seed + i and the answers differ; the tree shows where they parted
and how likely each fork was. Locked, every run draws with the same seed (run 1's) and every
answer is the same: the randomness is all in the draws, and the seed fixes every draw.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QFontMetricsF, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from playground.demos.inconsistency import InconsistencyResult, distinct_texts, run_inconsistency
from playground.demos.scenario import Cancel, Progress, Scenario
from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.records import Run, Sample
from playground.ui.demo_view import DemoView, LinesTall, caption, note
from playground.ui.divergence_tree import DivergenceTree, dot_size, draw_run_dot
from playground.ui.engine_thread import Job
from playground.ui.scenario_inputs import ScenarioInputs

NOT_RUN = "Not run yet."
_SUMMARY_STYLE = "font-weight: 600;"
_SEED_STYLE = "color: #6b6b6b;"


def answers_summary(runs: int, answers: int) -> str:
    """E.g. "6 runs, 6 different answers" or "6 runs, 1 answer"."""
    plural = "s" if runs != 1 else ""
    if answers == 1:
        return f"{runs} run{plural}, 1 answer"
    return f"{runs} run{plural}, {answers} different answers"


def shown_answer(sample: Sample) -> str:
    """The answer as listed: trimmed, with … where it hit the token limit."""
    return sample.text.strip() + ("…" if sample.finish_reason == "length" else "")


class AnswerList(QWidget):
    """One row per run: its number on its colour, its seed, its answer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(10)
        self.grid.setColumnStretch(2, 1)
        self.answers: list[QLabel] = []
        """The answer labels, in run order."""
        self.seeds: list[QLabel] = []

    def set_run(self, run: Run | None) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.answers, self.seeds = [], []
        for row, sample in enumerate(run.samples if run else []):
            chip = RunChip(sample.index)
            seed = QLabel(f"seed {sample.seed}")
            seed.setStyleSheet(_SEED_STYLE)
            answer = QLabel(shown_answer(sample))
            answer.setTextFormat(Qt.TextFormat.PlainText)
            answer.setWordWrap(True)
            answer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.grid.addWidget(chip, row, 0, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(seed, row, 1, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(answer, row, 2)
            self.answers.append(answer)
            self.seeds.append(seed)


class RunChip(QWidget):
    """A run's number on its colour, as the tree's dots show it; sized by the font."""

    def __init__(self, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        side = math.ceil(dot_size(QFontMetricsF(self.font())))
        return QSize(side, side)

    def paintEvent(self, event: QPaintEvent) -> None:
        draw_run_dot(QPainter(self), QRectF(self.rect()), self.index, self.font())


class InconsistencyView(DemoView):
    demo = "inconsistency"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scenario: Scenario | None = None
        self.result: InconsistencyResult | None = None

        # 0. inputs
        self.prompt_edit = QPlainTextEdit()
        LinesTall(self.prompt_edit, 2)
        self.inputs = ScenarioInputs("Runs", seed=True)
        self.inputs.n.setToolTip("How many times the question is asked, in each half")
        self.inputs.temperature.setToolTip("Higher is more random; 0 always takes the most "
                                           "likely token, and every answer is the same even "
                                           "unlocked")
        self.inputs.seed.setToolTip("Unlocked, run i uses this seed + i; locked, every run "
                                    "uses it. \"random\" draws a new one each time.")
        self.seed_note = note()
        self.inputs_caption = caption("")
        inputs = _section(self.inputs_caption, self.prompt_edit, self.inputs, self.seed_note)

        # 1. seed unlocked
        self.free_caption = caption("")
        self.free_summary = _summary()
        self.free_list = AnswerList()
        free = _section(self.free_caption, self.free_summary, self.free_list)

        # 2. the tree
        self.tree_caption = caption("")
        self.tree = DivergenceTree()
        self.tree_note = note(
            "Read from left to right. Each box is text that some runs wrote alike; where it "
            "ends, they parted. The percentage on a branch is the chance the model gave the "
            "token that opened it. The numbered dots show where each run ended.")
        tree = _section(self.tree_caption, self.tree, self.tree_note)

        # 3. seed locked
        self.locked_caption = caption("")
        self.locked_summary = _summary()
        self.locked_list = AnswerList()
        self.locked_note = note()
        locked = _section(self.locked_caption, self.locked_summary, self.locked_list,
                          self.locked_note)

        self._sections = [inputs, free, tree, locked]
        layout = QVBoxLayout(self)
        for section in self._sections:
            layout.addWidget(section)
        layout.addStretch(1)
        self.show_result(None)

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        self.scenario = scenario
        for label, step in zip((self.inputs_caption, self.free_caption, self.tree_caption,
                                self.locked_caption), scenario.steps, strict=False):
            label.setText(step)
        self.prompt_edit.setPlainText(scenario.prompt)
        self.inputs.set_params(*scenario.params(profile))
        self.show_result(None)

    def job(self) -> Job:
        prompt = self.prompt_edit.toPlainText().strip()
        if not prompt:
            raise InvalidRequestError("write a question first")
        params, n = self.inputs.params()
        chat = self.scenario.chat if self.scenario else True

        def work(engine: Engine, progress: Progress, cancel: Cancel) -> InconsistencyResult:
            return run_inconsistency(engine, prompt, params, n, chat=chat, progress=progress,
                                     cancel=cancel)

        return Job("inconsistency", work)

    def show_result(self, result: InconsistencyResult | None) -> None:
        self.result = result
        free = result.free if result else None
        locked = result.locked if result else None
        self.free_list.set_run(free)
        self.locked_list.set_run(locked)
        self.tree.set_tree(result.tree if result else None)
        self.tree_note.setVisible(result is not None)
        if result is None:
            for label in (self.free_summary, self.locked_summary):
                label.setText(NOT_RUN)
            self.seed_note.setText("Unlocked, run 1 uses the seed, run 2 the seed + 1, and so "
                                   "on; locked, every run uses the seed itself.")
            self.locked_note.setText("")
            self.locked_note.hide()
            return
        seed = result.free.params.seed
        self.seed_note.setText(f"Seed used: {seed}. Set it in the seed box to repeat exactly "
                               "these answers.")
        self.free_summary.setText(
            f"{answers_summary(len(free.samples), distinct_texts(free))}: every run drew its "
            "tokens with a different seed.")
        self.locked_summary.setText(
            f"{answers_summary(len(locked.samples), distinct_texts(locked))}: every run drew "
            f"its tokens with seed {seed}, run 1's seed above.")
        self.locked_note.setText(
            "The seed fixes every random draw: the same seed makes the same choices, token "
            "after token, and so writes the same answer.")
        self.locked_note.show()

    def sections(self) -> list[QWidget]:
        return self._sections


def _summary() -> QLabel:
    label = QLabel()
    label.setObjectName("summary")
    label.setStyleSheet(_SUMMARY_STYLE)
    label.setWordWrap(True)
    return label


def _section(*parts: QWidget) -> QWidget:
    section = QWidget()
    layout = QVBoxLayout(section)
    layout.setContentsMargins(0, 6, 0, 10)
    for part in parts:
        layout.addWidget(part)
    return section

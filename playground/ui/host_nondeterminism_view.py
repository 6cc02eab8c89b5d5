"""Same seed, different machine: one request with one seed, alone and inside a batch of other
requests, with flash attention off and then on (see `demos.host_nondeterminism`).

Each comparison shows the two answers with the part where they differ tinted, the figures of
the fork (each token's probability in both runs) and the largest logprob difference before it;
the last section says in plain words what the app does to keep its own runs deterministic.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QPlainTextEdit,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.demos.host_nondeterminism import (
    SAFEGUARDS,
    Comparison,
    HostResult,
    logprob_of,
    run_host_nondeterminism,
    token_text,
)
from playground.demos.scenario import Cancel, Progress, Scenario
from playground.errors import InvalidRequestError
from playground.records import Sample, TokenRecord
from playground.ui.colors import DIFFERS
from playground.ui.demo_view import DemoView, LinesTall, caption, fitted_table, note, section
from playground.ui.engine_thread import Job
from playground.ui.scenario_inputs import ScenarioInputs

if TYPE_CHECKING:
    from playground.engine import LocalEngine

NOT_RUN = "Not run yet."
ENDED = "(the answer ended)"
FORK_COLUMNS = ("Token", "Drawn by", "Probability alone", "Probability in the batch")


def answer_html(sample: Sample, parting: int | None) -> str:
    """The answer as its tokens wrote it, tinted from token `parting` on (None: nothing)."""
    texts = [t.text for t in sample.tokens]
    cut = len(texts) if parting is None else parting
    shared, differs = "".join(texts[:cut]), "".join(texts[cut:])
    tinted = (f'<span style="background:{DIFFERS.name()};">{html.escape(differs)}</span>'
              if differs else "")
    ellipsis = "…" if sample.finish_reason == "length" else ""
    return html.escape(shared) + tinted + ellipsis


def percent(logprob: float | None, record: TokenRecord | None) -> str:
    """A fork token's logprob as a probability, or why there is none: the answer ended there
    (`record` None), or the run did not record the token among its alternatives."""
    if record is None:
        return "—"
    return "not among the top" if logprob is None else f"{math.exp(logprob):.1%}"


class ComparisonPanel(QWidget):
    """One comparison: a headline, the two answers, the fork's figures and a note."""

    def __init__(self) -> None:
        super().__init__()
        self.caption = caption("")
        self.headline = QLabel()
        self.headline.setObjectName("headline")
        self.headline.setWordWrap(True)
        self.alone_label, self.batched_label = QLabel("Alone"), QLabel()
        self.alone, self.batched = _answer(), _answer()
        answers = QWidget()
        grid = QGridLayout(answers)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(12)
        grid.setColumnStretch(1, 1)
        for row, (label, answer) in enumerate(((self.alone_label, self.alone),
                                               (self.batched_label, self.batched))):
            grid.addWidget(label, row, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(answer, row, 1)
        self.fork = fitted_table(FORK_COLUMNS, stretch=(0, 1, 2, 3))
        self.note = note()
        self.widget = section(self.caption, self.headline, answers, self.fork, self.note)

    def show_comparison(self, comparison: Comparison | None, others: int) -> None:
        self.batched_label.setText(f"In a batch of {others + 1}")
        self.fork.setRowCount(0)
        self.fork.hide()
        if comparison is None:
            self.headline.setText(NOT_RUN)
            self.alone.clear()
            self.batched.clear()
            self.note.clear()
            return
        parting = comparison.parting
        position = parting.position if parting else None
        self.alone.setText(answer_html(comparison.ours_alone, position))
        self.batched.setText(answer_html(comparison.ours_batched, position))
        largest = comparison.largest_difference
        if comparison.identical:
            self.headline.setText("Identical, token for token: every probability is the same "
                                  "to the last bit.")
            self.note.setText("Largest logprob difference: 0. The other requests in the batch "
                              "changed nothing about this one. (Flash attention adds up in its "
                              "own order too, so its answer may differ from the ones without "
                              "it; what matters is that it is the same alone and in a batch.)")
            return
        before = (f"the same tokens got logprobs up to {largest:.3g} nats apart (one "
                  f"probability up to {math.exp(largest):.3f} times the other)")
        if parting is None:
            self.headline.setText("The same tokens, but not the same numbers.")
            self.note.setText(f"All along, {before}.")
            return
        self.headline.setText(f"Same seed, different answers: they part at token "
                              f"{parting.position + 1}.")
        self.note.setText(
            f"Before token {parting.position + 1}, {before}. The random draw was the same in "
            "both runs; with the probabilities shifted, it fell on another token.")
        rows = ((parting.alone, "alone", logprob_of(parting.alone, parting.alone),
                 parting.alone_token_in_batch),
                (parting.batched, "the batch", parting.batched_token_alone,
                 logprob_of(parting.batched, parting.batched)))
        self.fork.setRowCount(len(rows))
        for row, (record, drawn_by, alone, batched) in enumerate(rows):
            shown = token_text(record)
            cells = (ENDED if shown is None else repr(shown), drawn_by,
                     percent(alone, record), percent(batched, record))
            for column, text in enumerate(cells):
                self.fork.setItem(row, column, QTableWidgetItem(text))
        self.fork.show()


class HostNondeterminismView(DemoView):
    demo = "host-nondeterminism"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scenario: Scenario | None = None
        self.result: HostResult | None = None

        self.inputs_caption = caption("")
        self.prompt_edit = QPlainTextEdit()
        LinesTall(self.prompt_edit, 2)
        self.inputs = ScenarioInputs("Other requests", seed=True)
        self.inputs.n.setToolTip("How many other requests share the batch (each with its own "
                                 "seed); the request itself makes one more")
        self.inputs.seed.setToolTip("The request's seed, the same alone and in the batch")
        inputs = section(self.inputs_caption, self.prompt_edit, self.inputs,
                         note("The request is decoded four times: alone and in the batch, "
                              "with flash attention off, then on."))

        self.without = ComparisonPanel()
        self.with_flash = ComparisonPanel()

        self.safeguards_caption = caption("")
        self.safeguards = QLabel("<ul style='margin-left: -20px;'>" + "".join(
            f"<li>{html.escape(line)}</li>" for line in SAFEGUARDS) + "</ul>")
        self.safeguards.setWordWrap(True)
        safeguards = section(self.safeguards_caption, self.safeguards)

        self._sections = [inputs, self.without.widget, self.with_flash.widget, safeguards]
        layout = QVBoxLayout(self)
        for part in self._sections:
            layout.addWidget(part)
        layout.addStretch(1)
        self.show_result(None)

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        self.scenario = scenario
        captions = (self.inputs_caption, self.without.caption, self.with_flash.caption,
                    self.safeguards_caption)
        for label, step in zip(captions, scenario.steps, strict=False):
            label.setText(step)
        self.prompt_edit.setPlainText(scenario.prompt)
        self.inputs.set_params(*scenario.params(profile))
        self.show_result(None)

    def job(self) -> Job:
        prompt = self.prompt_edit.toPlainText().strip()
        if not prompt:
            raise InvalidRequestError("write a prompt first")
        params, others = self.inputs.params()
        chat = self.scenario.chat if self.scenario else True

        def work(engine: LocalEngine, progress: Progress, cancel: Cancel) -> HostResult:
            return run_host_nondeterminism(engine, prompt, params, others, chat=chat,
                                           progress=progress, cancel=cancel)

        return Job(self.demo, work)

    def show_result(self, result: HostResult | None) -> None:
        self.result = result
        others = result.others if result else self.inputs.n.value()
        self.without.show_comparison(result.without if result else None, others)
        self.with_flash.show_comparison(result.with_flash if result else None, others)

    def sections(self) -> list[QWidget]:
        return self._sections


def _answer() -> QLabel:
    label = QLabel()
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label

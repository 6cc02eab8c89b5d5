"""Hallucination and snowballing: sentences the other answers do not back up, one forced token
that a whole story grows from, and a false claim scored token by token.

After the inputs come three parts: N answers to one question, each sentence marked by how much
the other answers support it (SelfCheck); an answer as coloured tokens, where clicking an
alternative in a token's popup forces it and adds a branch to a tree; and a claim scored under
the model (teacher forcing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QResizeEvent,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTextEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.demos.hallucination import (
    FLAG_THRESHOLD,
    ConsistencyResult,
    ForcedBranch,
    SentenceSupport,
    SnowballResult,
    force_branch,
    run_consistency,
    run_snowball,
    score_claim,
    snowball_params,
)
from playground.demos.scenario import Cancel, Progress, Scenario, chat_for
from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.records import Run, Sample, TokenRecord
from playground.scoring import mean_logprob
from playground.ui.colors import FLAGGED
from playground.ui.demo_view import DemoView, LinesTall, caption, note, section
from playground.ui.engine_thread import Job
from playground.ui.probability_legend import ProbabilityLegend
from playground.ui.sample_panel import fitted_tokens
from playground.ui.scenario_inputs import ScenarioInputs
from playground.ui.token_popup import format_probability, visible_text
from playground.ui.token_view import TokenView

"""Background of a flagged sentence: the other answers do not back it up."""
TEXT_COLOR = QColor("#1f2328")
HEADER_COLOR = QColor("#6b7280")
ANSWER = QTextFormat.Property.UserProperty
"""Char-format property: the index of the answer a piece of text belongs to."""
SENTENCE = ANSWER + 1
"""Char-format property: a sentence's index in its answer (-1 between sentences)."""
ANSWER_GAP = 10
"""Pixels between one answer and the next one's header."""
CONTINUATION_CHARS = 48
"""How much of a branch's continuation its tree item shows."""


@dataclass
class HallucinationResult:
    """The main job's result: the N answers scored, and the snowball scenario."""

    consistency: ConsistencyResult
    snowball: SnowballResult


@dataclass
class BranchResult:
    """A branch forced after a click on an alternative."""

    branch: ForcedBranch


@dataclass
class ClaimResult:
    """A text scored token by token after the snowball prompt."""

    records: list[TokenRecord]


def _part(progress: Progress, start: float, end: float) -> Progress:
    """A runner's progress as the [start, end] share of one bar of 100 steps."""
    return lambda done, total: progress(
        round(100 * (start + (end - start) * done / max(total, 1))), 100)


def _typical(records: Sequence[TokenRecord]) -> str:
    """Mean log-probability, with the probability it is the geometric mean of, for people who
    do not read logs."""
    mean = mean_logprob([r.logprob for r in records])
    if not math.isfinite(mean):
        return "no tokens"
    number = f"{mean:.2f}".replace("-", "−")
    return f"mean log-probability {number} (a typical token: {format_probability(math.exp(mean))})"


def forced_tokens(branch: ForcedBranch) -> list[TokenRecord]:
    """The tokens a branch was made to take: teacher-forced tokens have no sampling
    probability, so they are the run of NaN sampling logprobs from its position."""
    if branch.parent is None:
        return []
    forced = []
    for record in branch.sample.tokens[branch.position:]:
        if not math.isnan(record.sampling_logprob):
            break
        forced.append(record)
    return forced


def branch_label(branch: ForcedBranch) -> str:
    """A tree item's text: where the branch departs, what it was forced to say, and how it
    went on."""
    sample = branch.sample
    if branch.parent is None:
        return f"original answer → {_clip(sample.text)}"
    forced = forced_tokens(branch)
    p = math.exp(math.fsum(r.logprob for r in forced))
    after = "".join(r.text for r in fitted_tokens(sample.tokens, sample.text)[
        branch.position + len(forced):])
    return (f"at token {branch.position + 1}: forced “{_shown(forced)}” "
            f"(p={format_probability(p)}) → {_clip(after)}")


def _shown(records: Sequence[TokenRecord]) -> str:
    """Tokens' text for a label: trimmed, unless it is only whitespace, then made visible."""
    text = "".join(r.text for r in records)
    return text.strip() or visible_text(text)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CONTINUATION_CHARS else text[:CONTINUATION_CHARS - 1] + "…"


class SupportText(QTextEdit):
    """The N answers, one paragraph each, with flagged sentences on a red background; hovering a
    sentence shows its support figures (its char format's tooltip). Its height follows its
    text, so that the page scrolls rather than the box."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        font = QFont(self.font())
        font.setPointSizeF(11)
        self.document().setDefaultFont(font)
        self.viewport().setCursor(Qt.CursorShape.ArrowCursor)
        self._answers = 0
        self._fit()

    def set_result(self, result: ConsistencyResult | None) -> None:
        """Show `result`'s answers, or nothing."""
        self.clear()
        self._answers = len(result.run.samples) if result is not None else 0
        if result is not None:
            cursor = QTextCursor(self.document())
            for sample, scored in zip(result.run.samples, result.overlap, strict=True):
                judged = result.judge[sample.index] if result.judge is not None else None
                self._insert_answer(cursor, sample, scored, judged)
        self._fit()

    def _insert_answer(self, cursor: QTextCursor, sample: Sample, scored: list[SentenceSupport],
                       judged: list[float] | None) -> None:
        """A header line, then the answer's text as it was written, each sentence formatted by
        its support."""
        answer, text = sample.index, sample.text
        spaced = QTextBlockFormat()
        spaced.setTopMargin(ANSWER_GAP if answer else 0)
        if answer:
            cursor.insertBlock(spaced)
        else:
            cursor.setBlockFormat(spaced)
        plain = QTextCharFormat()
        plain.setForeground(TEXT_COLOR)
        plain.setProperty(ANSWER, answer)
        plain.setProperty(SENTENCE, -1)
        header = QTextCharFormat(plain)
        header.setForeground(HEADER_COLOR)
        header.setFontPointSize(9)
        flagged = sum(s.flagged for s in scored)
        cursor.insertText(f"ANSWER {answer + 1}  ·  {flagged} of {len(scored)} sentences "
                          "flagged", header)
        cursor.insertBlock(QTextBlockFormat())
        used = 0
        for support in scored:
            # split_sentences returns stripped pieces of the text, in order.
            start = text.find(support.text, used)
            cursor.insertText(text[used:start], plain)
            fmt = QTextCharFormat(plain)
            fmt.setProperty(SENTENCE, support.index)
            if support.flagged:
                fmt.setBackground(FLAGGED)
            fmt.setToolTip(_tooltip(support, judged[support.index] if judged else None))
            cursor.insertText(support.text, fmt)
            used = start + len(support.text)
        cursor.insertText(text[used:].rstrip(), plain)
        if sample.finish_reason == "length":
            cursor.insertText("…", plain)  # cut off at max tokens

    def sentence_formats(self) -> list[dict[int, QTextCharFormat]]:
        """For each answer, each sentence's format by its index, read back from the document
        (what the reader sees: background, tooltip)."""
        shown: list[dict[int, QTextCharFormat]] = [{} for _ in range(self._answers)]
        block = self.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fmt = it.fragment().charFormat()
                if fmt.property(SENTENCE) >= 0:
                    shown[fmt.property(ANSWER)].setdefault(fmt.property(SENTENCE), fmt)
                it += 1
            block = block.next()
        return shown

    def flagged_shown(self) -> list[list[int]]:
        """For each answer, the indices of the sentences shown on the flag colour."""
        return [[i for i, fmt in sorted(formats.items()) if fmt.background().color() == FLAGGED]
                for formats in self.sentence_formats()]

    def _fit(self) -> None:
        self.document().setTextWidth(self.viewport().width())
        margins = self.contentsMargins()
        self.setFixedHeight(max(round(self.document().size().height()), 40)
                            + margins.top() + margins.bottom())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()


def _tooltip(support: SentenceSupport, judge: float | None) -> str:
    verdict = f" (flagged: under {FLAG_THRESHOLD:.0%})" if support.flagged else ""
    lines = [f"The other answers repeat {support.support:.0%} of its words{verdict}",
             "The model as judge: " + ("not asked" if judge is None
                                       else f"{judge:.0%} sure the other answers agree")]
    if support.unsupported:
        lines.append("In no other answer: " + ", ".join(support.unsupported))
    return "\n".join(lines)


class HallucinationView(DemoView):
    demo = "hallucination"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._chat = True
        self._snowball: dict[str, Any] = {}
        self._snowball_run: Run | None = None
        self.branches: list[ForcedBranch] = []
        """The original snowball answer first, then every forced branch, in the order made."""
        self._items: list[QTreeWidgetItem] = []

        # -- inputs
        self.question = QPlainTextEdit()
        LinesTall(self.question, 2)
        self.inputs = ScenarioInputs("Answers")
        self.inputs.n.setToolTip("How many answers to compare")
        self.inputs.temperature.setToolTip("Higher: more varied answers")
        self.inputs.max_tokens.setToolTip("The longest an answer may be, in tokens")
        self.judge_box = QCheckBox("Judge with the model")
        self.judge_box.setChecked(True)
        self.judge_box.setToolTip("Also ask the model, for every sentence, whether each other "
                                  "answer agrees with it (slower); shown when you hover a "
                                  "sentence")
        self.snowball_prompt = QPlainTextEdit()
        LinesTall(self.snowball_prompt, 2)
        self.forced_text = QLineEdit()
        self.forced_text.setToolTip("The text the answer is made to start with at that token")
        self.replaced_text = QLineEdit()
        self.replaced_text.setToolTip("The force starts at the token where the answer first "
                                      "says this")
        self.position_box = QSpinBox()
        self.position_box.setRange(1, 500)
        self.position_box.setToolTip("Which token of the answer to replace when it does not "
                                     "say the text on the left (1: the first)")
        inputs = QGridLayout()
        inputs.setContentsMargins(0, 0, 0, 0)
        inputs.addWidget(QLabel("Question"), 0, 0)
        inputs.addWidget(self.question, 0, 1)
        self.inputs.add(self.judge_box)
        inputs.addWidget(self.inputs, 1, 1)
        inputs.addWidget(QLabel("Snowball"), 2, 0)
        inputs.addWidget(self.snowball_prompt, 2, 1)
        inputs.addLayout(_row(QLabel("Force"), self.forced_text,
                              QLabel("where the answer says"), self.replaced_text,
                              QLabel("(else at token"), self.position_box, QLabel(")")), 3, 1)
        inputs.setColumnStretch(1, 1)
        input_widget = QWidget()
        input_widget.setLayout(inputs)

        # -- 1: the answers
        self.answers_caption = caption("")
        legend = note(f'<span style="background:{FLAGGED.name()};">&nbsp;red&nbsp;</span> '
                      "a sentence the other answers do not back up (they repeat under "
                      f"{FLAG_THRESHOLD:.0%} of its words): likely made up. Hover a sentence "
                      "for its figures.")
        self.answers = SupportText()
        self.answers_note = note()

        # -- 2: branching
        self.snowball_caption = note()
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(True)
        self.tree.setFixedHeight(96)
        self.tree.currentItemChanged.connect(self._branch_selected)
        self.branch_view = TokenView()
        LinesTall(self.branch_view, 5, shrink=True)
        self.branch_view.alternative_clicked.connect(self.branch_requested)
        self.branch_note = note()
        key = QHBoxLayout()
        key.addWidget(ProbabilityLegend())
        key.addWidget(note("Hover a token for what else the model could have said; click an "
                           "alternative to force it and see where the answer goes."), 1)

        # -- 3: teacher forcing
        self.claim = QPlainTextEdit()
        LinesTall(self.claim, 2)
        self.score_button = QPushButton("Score this text")
        self.score_button.setToolTip("Feed the text to the model token by token and show how "
                                     "likely it found each one")
        self.score_button.clicked.connect(self._score_requested)
        claim_row = QHBoxLayout()
        claim_row.setContentsMargins(0, 0, 0, 0)
        claim_row.addWidget(self.claim, 1)
        claim_row.addWidget(self.score_button, 0, Qt.AlignmentFlag.AlignTop)
        self.claim_view = TokenView()
        LinesTall(self.claim_view, 3, shrink=True)
        self.claim_note = note()

        self._sections = [
            section(input_widget),
            section(self.answers_caption, legend, self.answers, self.answers_note),
            section(caption("Force one unlikely token: the answer builds on it"),
                     self.snowball_caption, self.tree, self.branch_view, _wrap(key),
                     self.branch_note),
            section(caption("A false claim, token by token, as the model sees it"),
                     _wrap(claim_row), self.claim_view,
                     self.claim_note),
        ]
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in self._sections:
            layout.addWidget(part)
        layout.addStretch(1)

    # -- DemoView --------------------------------------------------------------------------

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        self._chat = scenario.chat
        self._snowball = dict(scenario.extra.get("snowball", {}))
        self.question.setPlainText(scenario.prompt)
        self.inputs.set_params(*scenario.params(profile))
        self.snowball_prompt.setPlainText(self._snowball.get("prompt", ""))
        self.forced_text.setText(self._snowball.get("text", ""))
        self.replaced_text.setText(self._snowball.get("at", ""))
        self.position_box.setValue(int(self._snowball.get("position", 0)) + 1)
        self.claim.setPlainText(self._snowball.get("claim", ""))
        self._clear()

    def sections(self) -> list[QWidget]:
        return self._sections

    def job(self) -> Job:
        question = self.question.toPlainText().strip()
        prompt = self.snowball_prompt.toPlainText()
        if not question:
            raise InvalidRequestError("Write a question for the answers to compare.")
        if not prompt.strip():
            raise InvalidRequestError("Write a snowball prompt for the model to continue.")
        params, n = self.inputs.params()
        branch_params = snowball_params(self._snowball, params)
        judge, chat = self.judge_box.isChecked(), self._chat
        prompt_chat = bool(self._snowball.get("chat", False))
        forced, replaced = self.forced_text.text(), self.replaced_text.text()
        position = self.position_box.value() - 1
        claim = self.claim.toPlainText()
        # The answers take the bar's time; the snowball is about one answer's worth.
        share = n / (n + 1)

        def work(engine: Engine, progress: Progress, cancel: Cancel) -> HallucinationResult:
            consistency = run_consistency(
                engine, question, params, n, chat=chat, judge=judge,
                progress=_part(progress, 0, share), cancel=cancel)
            snowball = run_snowball(
                engine, prompt, branch_params, chat=prompt_chat, branch_at=replaced,
                branch_position=position, branch_text=forced, claim=claim,
                progress=_part(progress, share, 1), cancel=cancel)
            return HallucinationResult(consistency, snowball)

        return Job("hallucination", work)

    def show_result(self, result: Any) -> None:
        if isinstance(result, HallucinationResult):
            self._show_answers(result.consistency)
            self._show_snowball(result.snowball)
        elif isinstance(result, BranchResult):
            self._add_branch(result.branch)
        elif isinstance(result, ClaimResult):
            self._show_claim(result.records)
        else:
            raise TypeError(f"not a hallucination result: {type(result).__name__}")

    # -- results ---------------------------------------------------------------------------

    def _clear(self) -> None:
        self._snowball_run = None
        self.branches.clear()
        self._items.clear()
        self.tree.clear()
        self.branch_view.clear_tokens()
        self.claim_view.clear_tokens()
        self.answers.set_result(None)
        self.answers_caption.setText(f"{self.inputs.n.value()} answers to the same question: "
                                     "what the others do not repeat is suspect")
        for label in (self.answers_note, self.branch_note, self.claim_note):
            label.clear()
        self.snowball_caption.setText(f"Prompt: “{self.snowball_prompt.toPlainText()}”")

    def _show_answers(self, result: ConsistencyResult) -> None:
        self.answers_caption.setText(f"{len(result.run.samples)} answers to the same question: "
                                     "what the others do not repeat is suspect")
        self.answers.set_result(result)
        scored = [s for sentences in result.overlap for s in sentences]
        flagged = sum(s.flagged for s in scored)
        text = f"{flagged} of {len(scored)} sentences flagged."
        if result.judge is not None:
            doubted = sum(j < FLAG_THRESHOLD for row in result.judge for j in row)
            text += (f" The model itself, asked whether the other answers agree, doubts "
                     f"{doubted} of them.")
        self.answers_note.setText(text)

    def _show_snowball(self, result: SnowballResult) -> None:
        self._snowball_run = result.run
        self.snowball_caption.setText(f"Prompt: “{result.run.prompt}”")
        self.branches.clear()
        self._items.clear()
        self.tree.clear()
        self._add_branch(ForcedBranch(None, 0, result.run.samples[0]))
        if result.branch is not None:
            self._add_branch(result.branch)
        self._show_claim(result.claim)

    def _add_branch(self, branch: ForcedBranch) -> None:
        """Add `branch` to the tree under its parent and show it."""
        if branch.parent is not None and branch.parent >= len(self.branches):
            return  # from a run no longer shown
        self.branches.append(branch)
        item = QTreeWidgetItem([branch_label(branch)])
        item.setData(0, Qt.ItemDataRole.UserRole, len(self.branches) - 1)
        item.setToolTip(0, branch.sample.text)
        if branch.parent is None:
            self.tree.addTopLevelItem(item)
        else:
            self._items[branch.parent].addChild(item)
        self._items.append(item)
        self.tree.expandAll()
        self.tree.setCurrentItem(item)

    def _branch_selected(self, item: QTreeWidgetItem | None) -> None:
        if item is None:
            return
        branch = self.branches[item.data(0, Qt.ItemDataRole.UserRole)]
        sample = branch.sample
        run = self._snowball_run
        if run is not None:
            self.branch_view.set_context(run.prompt_token_ids, run.params, run.model.path)
        self.branch_view.set_tokens(fitted_tokens(sample.tokens, sample.text))
        forced = forced_tokens(branch)
        if forced:
            self.branch_view.highlight(branch.position)
            self.branch_note.setText(
                f"Forced “{_shown(forced)}”; the model "
                f"continued on its own, {_typical(sample.tokens[branch.position + len(forced):])}.")
        else:
            self.branch_note.setText(f"The model's own answer: {_typical(sample.tokens)}.")

    @property
    def current_branch(self) -> int:
        """Index in `branches` of the branch shown, -1 when none."""
        item = self.tree.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else -1

    def branch_from(self, run: Run, sample: Sample) -> None:
        """Make `sample` of `run` (from anywhere in the app) the root of the branch tree."""
        self._snowball_run = run
        self.snowball_caption.setText(f"Prompt: “{run.prompt}”")
        self.branches.clear()
        self._items.clear()
        self.tree.clear()
        self._add_branch(ForcedBranch(None, 0, sample))

    def branch_requested(self, position: int, token_id: int) -> None:
        """Force `token_id` at `position` of the branch shown; the result is a new branch."""
        source, run = self.current_branch, self._snowball_run
        if source < 0 or run is None:
            return
        tokens = self.branches[source].sample.tokens
        if token_id == tokens[position].id:
            return  # the token it already has
        self.branch_view.hide_popup()
        prefix = tokens[:position]

        def work(engine: Engine, _progress: Progress, cancel: Cancel) -> BranchResult:
            sample = force_branch(engine, run.prompt_token_ids, prefix, [token_id], run.params,
                                  cancel=cancel)
            return BranchResult(ForcedBranch(source, position, sample))

        self.job_requested.emit(Job("force a branch", work))

    def _score_requested(self) -> None:
        text, prompt = self.claim.toPlainText(), self.snowball_prompt.toPlainText()
        if not text.strip() or not prompt.strip():
            self.claim_note.setText("Write a prompt (above) and a text to score.")
            return
        chat, top = bool(self._snowball.get("chat", False)), self.inputs.params()[0].top_logprobs

        def work(engine: Engine, _progress: Progress, _cancel: Cancel) -> ClaimResult:
            tokens = engine.prompt_tokens(prompt, chat=chat_for(engine, chat))
            return ClaimResult(score_claim(engine, tokens, text, top))

        self.job_requested.emit(Job("score a text", work))

    def _show_claim(self, records: list[TokenRecord]) -> None:
        self.claim_view.set_tokens(records)
        if not records:
            self.claim_note.clear()
            return
        text = f"This text: {_typical(records)}."
        if self._snowball_run is not None:
            text += f" The model's own answer: {_typical(self._snowball_run.samples[0].tokens)}."
        self.claim_note.setText(text)


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        row.addWidget(widget)
    row.addStretch(1)
    return row


def _wrap(layout: QHBoxLayout) -> QWidget:
    widget = QWidget()
    widget.setLayout(layout)
    return widget

"""The sampling lab's window: one moment of a generation, reshaped live by the sampling knobs.

A click on a token anywhere opens it (`TokenView.moment_clicked`). The full row comes from
re-decoding the token's prefix on the engine's thread (see `playground.sampling_lab` for why);
then every slider move reshapes it here, in numpy, with no new generation: a `reshape` of a
49k-token row takes a few milliseconds. Both sampler orders are drawn side by side over the same
bars, so the difference between temperature first and temperature last is seen, not told.
"""

from __future__ import annotations

import html
import math
from dataclasses import replace

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from playground.sampling import SAMPLER_ORDERS, SamplingParams
from playground.sampling_lab import CandidateScore, Moment, Reshaped, both_orders
from playground.ui.colors import CHOSEN, ERROR_TEXT, KEPT
from playground.ui.engine_thread import Distribution, EngineThread
from playground.ui.tasks import Task
from playground.ui.token_popup import format_probability, visible_text

TOP_BARS = 50
"""Tokens drawn as bars, the most likely first (the rest is one "tail" row)."""
ORDER_TITLES = {
    "temperature-first": "Temperature first (Hugging Face, OpenAI)",
    "temperature-last": "Temperature last (llama.cpp)",
}
CUT_COLORS = {"greedy": QColor("#9aa0a6"), "top-k": QColor("#c9a227"),
              "top-p": QColor("#7a8fd6"), "min-p": QColor("#c77dbb")}
"""The shade of a token cut by each filter."""
RAW = QColor("#c4c9d0")
MUTED = "#6b7280"
ROW_HEIGHT = 17
LABEL_WIDTH = 150

# (SamplingParams field, label, low, high, scale): the slider's integer over `scale` is the
# field's value.
SLIDERS = (
    ("temperature", "Temperature", 0, 300, 100),
    ("top_k", "Top-k", 0, 200, 1),
    ("top_p", "Top-p", 1, 100, 100),
    ("min_p", "Min-p", 0, 50, 100),
    ("repeat_penalty", "Repetition penalty", 50, 300, 100),
)


class DistributionView(QDialog):
    """One token's whole distribution under settings the user moves."""

    def __init__(self, engine: EngineThread | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sampling lab")
        self.resize(1180, 680)
        self._engine = engine
        self.task: Task | None = None
        self.probe_task: Task | None = None
        """The latest task of each kind that the view started (ended or not)."""
        self.moment: Moment | None = None
        self.distribution: Distribution | None = None
        self.reshaped: dict[str, Reshaped] = {}
        """Under the sliders' settings, by sampler order."""

        self.heading = QLabel()
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        self.heading.setWordWrap(True)
        self.status = QLabel()
        self.status.setStyleSheet(f"color: {ERROR_TEXT.name()};")
        self.status.setWordWrap(True)

        self.sliders: dict[str, QSlider] = {}
        self._values: dict[str, QLabel] = {}
        knobs = QGridLayout()
        for row, (name, label, low, high, _scale) in enumerate(SLIDERS):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(low, high)
            slider.setMinimumWidth(150)
            slider.valueChanged.connect(self._reshape)
            value = QLabel()
            value.setFixedWidth(40)
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            knobs.addWidget(QLabel(label), row, 0)
            knobs.addWidget(slider, row, 1)
            knobs.addWidget(value, row, 2)
            self.sliders[name] = slider
            self._values[name] = value
        reset = QPushButton("The run's settings")
        reset.setToolTip("Put the sliders back where the run had them.")
        reset.clicked.connect(self._reset)
        knobs.addWidget(reset, len(SLIDERS), 0, 1, 3)
        self.entropy_before = QLabel()
        self.entropy_before.setWordWrap(True)
        explain = QLabel(
            "Bars: the probability each token would be drawn with; the grey line is the "
            "model's own (temperature 1, nothing cut). A shaded row was cut, by the filter "
            "named. Temperature first tempers the row before top-k, top-p and min-p cut it; "
            "temperature last (llama.cpp) cuts at temperature 1 and then tempers what is left.")
        explain.setWordWrap(True)
        explain.setStyleSheet(f"color: {MUTED};")
        side = QVBoxLayout()
        side.addLayout(knobs)
        side.addWidget(self.entropy_before)
        side.addWidget(explain)
        side.addStretch(1)
        side_box = QWidget()
        side_box.setLayout(side)
        side_box.setFixedWidth(340)

        self.summaries: dict[str, QLabel] = {}
        summaries = QHBoxLayout()
        summaries.addSpacing(LABEL_WIDTH)
        for order in SAMPLER_ORDERS:
            label = QLabel()
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setWordWrap(True)
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            summaries.addWidget(label, 1)
            self.summaries[order] = label
        self.bars = _Bars()
        scroll = QScrollArea()
        scroll.setWidget(self.bars)
        scroll.setWidgetResizable(True)
        centre = QVBoxLayout()
        centre.addLayout(summaries)
        centre.addWidget(scroll, 1)

        self.candidate = QLineEdit()
        self.candidate.setPlaceholderText('Any continuation, e.g. " Paris" (a leading space '
                                          "counts)")
        self.candidate.returnPressed.connect(self.score_candidate)
        score = QPushButton("Probability")
        score.clicked.connect(self.score_candidate)
        self.candidate_result = QLabel()
        self.candidate_result.setTextFormat(Qt.TextFormat.RichText)
        self.candidate_result.setWordWrap(True)
        probe_row = QHBoxLayout()
        probe_row.addWidget(QLabel("Candidate"))
        probe_row.addWidget(self.candidate, 1)
        probe_row.addWidget(score)

        body = QHBoxLayout()
        body.addWidget(side_box)
        body.addLayout(centre, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.status)
        layout.addLayout(body, 1)
        layout.addLayout(probe_row)
        layout.addWidget(self.candidate_result)
        self.status.hide()

    # -- input -----------------------------------------------------------------------------

    def show_moment(self, moment: Moment) -> None:
        """Show `moment`: its row is re-decoded on the engine's thread, then drawn."""
        if self.task is not None:
            self.task.cancel()
        self.moment, self.distribution, self.reshaped = moment, None, {}
        self.bars.clear()
        self.candidate_result.clear()
        self._say("")
        self._set_sliders(moment.params)
        self.heading.setText(self._heading(moment) + "  <i>decoding its prefix…</i>")
        if self._engine is None:
            return
        task = self._engine.distribution(moment, TOP_BARS)
        task.finished.connect(lambda d, m=moment: self.set_distribution(m, d))
        task.errored.connect(lambda message, m=moment: self._failed(m, message))
        self.task = task.start()

    def set_distribution(self, moment: Moment, distribution: Distribution) -> None:
        if moment is not self.moment:
            return  # another token was clicked meanwhile
        self.distribution = distribution
        self.heading.setText(self._heading(moment))
        self._reshape()

    def _failed(self, moment: Moment, message: str) -> None:
        if moment is self.moment:
            self.heading.setText(self._heading(moment))
            self._say(message)

    def params(self) -> SamplingParams:
        """The moment's settings with the sliders' values."""
        assert self.moment is not None
        values = {name: self.sliders[name].value() / scale for name, *_, scale in SLIDERS}
        values["top_k"] = int(values["top_k"])
        return replace(self.moment.params, **values).validate()

    def score_candidate(self) -> None:
        """The typed continuation's probability and rank, by teacher forcing."""
        text = self.candidate.text()
        if not text or self.moment is None or self._engine is None:
            return
        if self.probe_task is not None:
            self.probe_task.cancel()
        self.candidate_result.setText("<i>scoring…</i>")
        task = self._engine.probe(self.moment, [text])
        task.finished.connect(lambda scores: self.show_candidate(scores[0]))
        task.errored.connect(self._say)
        self.probe_task = task.start()

    def show_candidate(self, score: CandidateScore) -> None:
        pieces = " · ".join(f"{visible_text(t)} {format_probability(math.exp(lp))}"
                            for _, t, lp in score.tokens)
        first = score.tokens[0][0]
        under = ""
        if self.reshaped:
            parts = []
            for order, shaped in self.reshaped.items():
                cut = shaped.cut_by(first)
                shown = f"cut by {cut}" if cut else _percent(shaped.probs[first])
                parts.append(f"{ORDER_TITLES[order].split(' (')[0].lower()}: {shown}")
            under = "; its first token under these settings, " + ", ".join(parts)
        vocab = len(self.distribution.logits) if self.distribution else 0
        self.candidate_result.setText(
            f"<b>{html.escape(visible_text(score.text))}</b>: probability "
            f"<b>{_percent(math.exp(score.logprob))}</b> (logprob {score.logprob:.3f}), "
            f"first token rank <b>{score.rank:,}</b>" + (f" of {vocab:,}" if vocab else "")
            + f"; {len(score.tokens)} token(s): {html.escape(pieces)}{under}")

    # -- drawing ---------------------------------------------------------------------------

    def shaded(self, order: str) -> dict[int, str]:
        """The shown tokens that `order` cuts, with the filter that cut each."""
        shaped = self.reshaped.get(order)
        if shaped is None or self.distribution is None:
            return {}
        return {t: cut for t in self.distribution.shown if (cut := shaped.cut_by(t))}

    def _reshape(self) -> None:
        for name, *_, scale in SLIDERS:
            value = self.sliders[name].value() / scale
            off = {"top_k": value == 0, "top_p": value >= 1, "min_p": value == 0,
                   "repeat_penalty": value == 1}.get(name, False)
            self._values[name].setText("off" if off else f"{value:g}")
        if self.moment is None or self.distribution is None:
            return
        params = self.params()
        logits = self.distribution.logits
        self.reshaped = both_orders(logits, params, self.moment.history)
        drawn = self.moment.drawn.id
        self.entropy_before.setText("Entropy of the model's distribution: "
                                    f"<b>{self.distribution.entropy:.2f} nats</b>")
        for order, shaped in self.reshaped.items():
            used = " <i>(this run)</i>" if order == self.moment.params.sampler_order else ""
            cut = shaped.cut_by(drawn)
            drawn_text = f"cut by {cut}" if cut else _percent(shaped.probs[drawn])
            self.summaries[order].setText(
                f"<b>{ORDER_TITLES[order]}</b>{used}<br>kept <b>{shaped.kept:,}</b> tokens · "
                f"drawn token <b>{drawn_text}</b> · entropy after "
                f"<b>{shaped.entropy_after:.2f}</b> nats")
        self.bars.set_rows(self.distribution, self.reshaped, drawn)

    def _heading(self, moment: Moment) -> str:
        record = moment.drawn
        return (f"Token {record.position + 1} of sample {record.sample}: drawn "
                f"<b style='color:{CHOSEN.name()}'>{html.escape(visible_text(record.text))}</b> "
                f"(the model's probability {_percent(record.prob)}, rank "
                f"{record.rank:,}; kept {record.kept:,} when it was drawn)")

    def _set_sliders(self, params: SamplingParams) -> None:
        for name, _label, _low, high, scale in SLIDERS:
            slider = self.sliders[name]
            value = round(getattr(params, name) * scale)
            slider.blockSignals(True)
            slider.setMaximum(max(high, value))  # a run's top-k of 1000 stays 1000
            slider.setValue(value)
            slider.blockSignals(False)

    def _reset(self) -> None:
        if self.moment is not None:
            self._set_sliders(self.moment.params)
            self._reshape()

    def _say(self, message: str) -> None:
        self.status.setText(message)
        self.status.setVisible(bool(message))


def _percent(p: float) -> str:
    """`format_probability` for rich text, where its "<0.01%" would open a tag."""
    return html.escape(format_probability(p))


class _Bars(QWidget):
    """Rows of tokens with one bar per sampler order, and a last row for the tail's mass."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[str, float, dict[str, tuple[float, str | None]], bool]] = []
        font = QFont(self.font())
        font.setPointSizeF(8.5)
        self.setFont(font)

    def clear(self) -> None:
        self._rows = []
        self.updateGeometry()
        self.update()

    def set_rows(self, distribution: Distribution, reshaped: dict[str, Reshaped],
                 drawn: int) -> None:
        raw = distribution.logprobs
        rows = []
        for rank_index, token in enumerate(distribution.shown):
            per_order = {order: (float(s.probs[token]), s.cut_by(token))
                         for order, s in reshaped.items()}
            label = f"{rank_index + 1:>2}  {visible_text(distribution.texts[token])}"
            if rank_index >= TOP_BARS:
                label = f"drawn  {visible_text(distribution.texts[token])}"
            rows.append((label, math.exp(raw[token]), per_order, token == drawn))
        shown = list(distribution.shown)
        tail_raw = max(0.0, 1.0 - math.fsum(math.exp(raw[t]) for t in shown))
        tail = {order: (max(0.0, 1.0 - float(s.probs[shown].sum())), None)
                for order, s in reshaped.items()}
        rows.append((f"the other {len(raw) - len(shown):,}", tail_raw, tail, False))
        self._rows = rows
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(600, ROW_HEIGHT * (len(self._rows) + 1))

    def minimumSizeHint(self) -> QSize:
        return QSize(400, ROW_HEIGHT * (len(self._rows) + 1))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("white"))
        metrics = QFontMetricsF(self.font())
        orders = list(SAMPLER_ORDERS)
        column = (self.width() - LABEL_WIDTH) / len(orders)
        for i, (label, raw, per_order, is_drawn) in enumerate(self._rows):
            y = i * ROW_HEIGHT
            text_pen = QPen(CHOSEN if is_drawn else QColor("#1f2328"))
            painter.setPen(text_pen)
            font = QFont(self.font())
            font.setBold(is_drawn)
            painter.setFont(font)
            painter.drawText(QRectF(4, y, LABEL_WIDTH - 8, ROW_HEIGHT),
                             Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(label, Qt.TextElideMode.ElideRight,
                                                LABEL_WIDTH - 8))
            for j, order in enumerate(orders):
                left = LABEL_WIDTH + j * column + 4
                width = column - 70
                p, cut = per_order[order]
                track = QRectF(left, y + 3, width, ROW_HEIGHT - 6)
                if cut:
                    painter.fillRect(QRectF(left, y + 1, column - 8, ROW_HEIGHT - 2),
                                     _faded(CUT_COLORS.get(cut, RAW)))
                painter.fillRect(QRectF(track.left(), track.top(), width * min(p, 1.0),
                                        track.height()), KEPT)
                painter.setPen(QPen(RAW, 2))
                x = track.left() + width * min(raw, 1.0)
                painter.drawLine(round(x), round(track.top()), round(x), round(track.bottom()))
                painter.setPen(QPen(QColor("#1f2328")))
                painter.setFont(self.font())
                painter.drawText(QRectF(left + width + 4, y, 66, ROW_HEIGHT),
                                 Qt.AlignmentFlag.AlignVCenter,
                                 cut if cut else format_probability(p))
        painter.end()


def _faded(color: QColor) -> QColor:
    faded = QColor(color)
    faded.setAlpha(90)
    return faded

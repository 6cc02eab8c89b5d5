"""The Agreement tab: does each ranking agree with the people who labelled the runs?

A chart of every method's pair accuracy and Kendall tau over all labelled runs, with chance
marked, a table of the figures, and one row per run. The figures are computed off the GUI
thread (loading runs takes time); importing a label file runs there too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QScrollArea,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.agreement import Agreement, Method, agreement
from playground.labels import ImportResult, import_labels
from playground.store import Store
from playground.ui.colors import BAD, GOOD
from playground.ui.demo_view import caption, fitted_table, note, one_line
from playground.ui.tasks import Task

CHART_HEIGHT = 230
CHANCE = QColor("#9aa0a6")
"""The colour of a figure no better or worse than chance."""
_TICK_LENGTH = 14
_OVERALL_COLUMNS = ("ranking", "pairs", "agree", "rankings", "Kendall τ")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _tau(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}".replace("-", "−")


def _brush(value: float | None, chance: float) -> QColor:
    if value is None or value == chance:
        return CHANCE
    return GOOD if value > chance else BAD


def _short(method: Method) -> str:
    """A method's name under its bar: a few words fit under each."""
    if method.reward_model is not None:
        name = method.reward_model.name
        return name if len(name) <= _TICK_LENGTH else name[: _TICK_LENGTH - 1] + "…"
    return {"majority vote": "vote"}.get(method.title, method.title.removesuffix(" logprob"))


def _chart(label: str, low: float, high: float, chance: float) -> tuple[pg.PlotWidget,
                                                                          pg.BarGraphItem]:
    chart = pg.PlotWidget(background="w")
    chart.setFixedHeight(CHART_HEIGHT)
    chart.setMouseEnabled(x=False, y=False)
    chart.hideButtons()
    chart.setMenuEnabled(False)
    chart.setLabel("left", label)
    chart.setYRange(low, high, padding=0.02)
    chart.showGrid(y=True, alpha=0.15)
    bars = pg.BarGraphItem(x=[], height=[], width=0.6, pen=None)
    chart.addItem(bars)
    chart.addItem(pg.InfiniteLine(chance, angle=0, pen=pg.mkPen("#777", dash=[4, 4])),
                  ignoreBounds=True)
    return chart, bars


class AgreementView(QWidget):
    errored = Signal(str)
    reported = Signal(str)

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.result: Agreement | None = None
        self.task: Task | None = None
        self._again = False
        """Labels changed while a measure ran: measure again when it ends."""

        import_button = QPushButton("Import labels…")
        import_button.setToolTip("A Label Studio or Argilla export of this app's tasks, or a "
                                 "JSONL of {prompt, chosen, rejected}")
        import_button.clicked.connect(self.choose_import)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        self.summary = caption("No labels yet.")
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(refresh)
        top.addWidget(import_button)

        self.accuracy_chart, self.accuracy_bars = _chart("pairs agreeing", 0.0, 1.0, 0.5)
        self.tau_chart, self.tau_bars = _chart("Kendall τ", -1.0, 1.0, 0.0)
        charts = QHBoxLayout()
        charts.addWidget(self.accuracy_chart)
        charts.addWidget(self.tau_chart)
        self.overall = fitted_table(_OVERALL_COLUMNS, stretch=(0,))
        self.per_run = fitted_table(("run", "prompt", "labels"), stretch=(1,))

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(top)
        layout.addWidget(note(
            "Does the likelihood know what people prefer? For every pair of samples that a "
            "label orders, a ranking agrees when it orders them the same way (a tie counts "
            "half; the dashed line is a coin toss). Kendall τ compares whole rankings of three "
            "samples or more: 1 the same order, 0 unrelated, −1 reversed. Label runs with "
            "“prefer” or “Rank by hand” in best-of-N, or import an annotation tool's export."))
        layout.addLayout(charts)
        layout.addWidget(caption("Over all labelled runs"))
        layout.addWidget(self.overall)
        layout.addWidget(caption("Pairs agreeing, run by run"))
        layout.addWidget(self.per_run)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # -- computing -------------------------------------------------------------------------

    def mark_stale(self) -> None:
        """Labels changed: measure again now if the tab is shown (else when it is)."""
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        # Runs are labelled and deleted elsewhere: every showing measures what is there now.
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> Task | None:
        if self.task is not None and not self.task.ended:
            self._again = True
            return None
        self._again = False
        store = self.store

        def work(progress: Callable[[int, int], None], cancel: Callable[[], bool]) -> Agreement:
            return agreement(store, progress=progress, cancel=cancel)

        self.summary.setText("Measuring…")
        self.task = Task(work, "agreement")
        self.task.finished.connect(self.show_result)
        self.task.errored.connect(self._failed)
        self.task.finished.connect(self._measure_again)
        return self.task.start()

    def _measure_again(self) -> None:
        if self._again:
            self.refresh()

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.summary.setText("The agreement could not be measured.")
        self.errored.emit(message)

    def choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import labels", "", "Label files (*.json *.jsonl);;All files (*)")
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> Task:
        store = self.store

        def work(_progress: Callable[[int, int], None], _cancel: Callable[[], bool]
                 ) -> ImportResult:
            return import_labels(path, store)

        task = Task(work, "import labels")
        task.finished.connect(lambda result: self._imported(path, result))
        task.errored.connect(self.errored)
        return task.start()

    def _imported(self, path: Path, result: ImportResult) -> None:
        self.reported.emit(f"Imported {result.read} labels from {path.name} ({result.added} new, "
                           f"{result.linked} matched to runs).")
        self.mark_stale()

    # -- showing ---------------------------------------------------------------------------

    @Slot(object)
    def show_result(self, result: Agreement) -> None:
        self.result = result
        labels = sum(run.labels for run in result.runs)
        self.summary.setText(
            f"{len(result.runs)} labelled run{'s' * (len(result.runs) != 1)}, {labels} label"
            f"{'s' * (labels != 1)}" if result.runs else "No labelled runs yet.")
        methods = [m for m in result.methods if m.key in result.overall]
        tallies = [result.overall[m.key] for m in methods]
        self.overall.setRowCount(len(methods))
        for row, (method, tally) in enumerate(zip(methods, tallies, strict=True)):
            cells = (method.title, str(tally.pairs), _percent(tally.pair_accuracy),
                     str(len(tally.taus)), _tau(tally.kendall_tau))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.overall.setItem(row, column, item)
        xs = list(range(len(methods)))
        accuracies = [t.pair_accuracy for t in tallies]
        taus = [t.kendall_tau for t in tallies]
        # A method without a figure gets no bar, rather than one at zero.
        self.accuracy_bars.setOpts(x=xs, height=[a or 0.0 for a in accuracies],
                                   brushes=[_brush(a, 0.5) for a in accuracies])
        self.tau_bars.setOpts(x=xs, height=[t or 0.0 for t in taus],
                              brushes=[_brush(t, 0.0) for t in taus])
        ticks = [[(x, _short(m)) for x, m in zip(xs, methods, strict=True)]]
        for chart in (self.accuracy_chart, self.tau_chart):
            chart.getAxis("bottom").setTicks(ticks)
            chart.setXRange(-0.6, max(len(methods) - 0.4, 0.6), padding=0)
        self._show_runs(result, methods)

    def _show_runs(self, result: Agreement, methods: list[Method]) -> None:
        columns = ("run", "prompt", "labels", *(m.title for m in methods))
        self.per_run.setColumnCount(len(columns))
        self.per_run.setHorizontalHeaderLabels(columns)
        header = self.per_run.horizontalHeader()
        for column in range(len(columns)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch if column == 1
                                        else QHeaderView.ResizeMode.ResizeToContents)
        self.per_run.setRowCount(len(result.runs))
        for row, run in enumerate(result.runs):
            cells = [str(run.run_id), one_line(run.prompt), str(run.labels)]
            cells += [_percent(run.tallies[m.key].pair_accuracy) if m.key in run.tallies
                      else "—" for m in methods]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column != 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                else:
                    item.setToolTip(run.prompt)
                self.per_run.setItem(row, column, item)

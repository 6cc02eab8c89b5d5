"""The Demos tab: pick a demonstration or a scenario, read what it shows, run it, present it.

One scenario picker serves both ways of working: choosing a demonstration on the left picks its
first scenario, choosing a scenario shows its demonstration. A view's job runs as a task on the
engine's thread; its own signals bring progress and the result (or the one-line reason it
failed) back to this tab, and Stop cancels that task alone. Presentation mode hides everything
but the demonstration, makes text large and high in contrast, and reveals the view's sections
one step at a time (→ / Space: next, ←: back, Esc: leave).
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from playground.demos import DEMOS
from playground.demos.scenario import Scenario, profile_for, scenarios
from playground.errors import PlaygroundError
from playground.gguf_file import ModelInfo
from playground.records import Run
from playground.ui.demo_view import DemoView
from playground.ui.demo_views import VIEWS
from playground.ui.engine_thread import EngineThread, Job
from playground.ui.tasks import Task
from playground.ui.token_view import TokenView

PRESENTING_CHART_SCALE = 1.4
"""How much larger chart text is in presentation mode (less than the stylesheet's ~1.7x: tick
labels must still fit side by side)."""


class DemosTab(QWidget):
    presenting_changed = Signal(bool)
    moment_clicked = Signal(object)
    """A token was clicked in a demonstration: its `Moment`, for the sampling lab."""

    def __init__(self, engine: EngineThread, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demos")
        self.engine = engine
        self.scenarios: list[Scenario] = []
        self.profile = "small"
        self.presenting = False
        self.step = 0
        self.task: Task | None = None
        """The running demonstration's task."""
        self._result_shown: set[str] = set()

        self.views: dict[str, DemoView] = {}
        self.stack = QStackedWidget()
        for demo in DEMOS:
            view = VIEWS[demo]()
            self.views[demo] = view
            view.job_requested.connect(lambda job, v=view: self._request(v, job))
            for text in view.findChildren(TokenView):
                text.moment_clicked.connect(self.moment_clicked)
            scroll = QScrollArea()
            scroll.setWidget(view)
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            self.stack.addWidget(scroll)

        self.demo_list = QListWidget()
        self.demo_list.addItems([demo.title for demo in DEMOS.values()])
        self.demo_list.setFixedWidth(self.demo_list.sizeHintForColumn(0) + 28)
        self.demo_list.currentRowChanged.connect(self._demo_chosen)

        self.title = QLabel()
        self.title.setObjectName("demoTitle")
        self.explanation = QLabel()
        self.explanation.setObjectName("explanation")
        self.explanation.setWordWrap(True)
        self.scenario_box = QComboBox()
        # As wide as the room allows, not as the longest scenario name: that one would push
        # the window beyond a laptop screen.
        self.scenario_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.scenario_box.setMinimumContentsLength(16)
        self.scenario_box.setToolTip("A ready scenario: prompts and settings that show the effect")
        self.scenario_box.currentIndexChanged.connect(self._scenario_chosen)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("primary")
        self.run_button.setToolTip("Run the demonstration with the settings below")
        self.run_button.clicked.connect(self.run_current)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.progress.setFixedHeight(6)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.back_button = QPushButton("◀ Back")
        self.back_button.clicked.connect(lambda: self.set_step(self.step - 1))
        self.next_button = QPushButton("Next ▶")
        self.next_button.setObjectName("primary")
        self.next_button.clicked.connect(self.next_step)
        self.step_label = QLabel()
        self.step_label.setObjectName("stepLabel")
        self.present_button = QPushButton("Present")
        self.present_button.setCheckable(True)
        self.present_button.setToolTip("Presentation mode: large text, one step at a time "
                                       "(→ next, ← back, Esc leaves)")
        self.present_button.toggled.connect(self.set_presenting)
        self.message = QLabel()
        self.message.setObjectName("demoMessage")
        self.message.setWordWrap(True)
        self.message.hide()

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Scenario"))
        controls.addWidget(self.scenario_box, 1)
        for widget in (self.run_button, self.stop_button, self.back_button, self.next_button,
                       self.present_button):
            controls.addWidget(widget)
        right = QVBoxLayout()
        right.addWidget(self.title)
        right.addWidget(self.explanation)
        right.addLayout(controls)
        right.addWidget(self.step_label)
        right.addWidget(self.progress)
        right.addWidget(self.message)
        right.addWidget(self.stack, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.addWidget(self.demo_list)
        layout.addLayout(right, 1)

        self.reload_scenarios()
        self._show_controls()

    # -- scenarios -------------------------------------------------------------------------

    def reload_scenarios(self) -> None:
        try:
            self.scenarios = scenarios()
        except PlaygroundError as error:
            self.scenarios = []
            self.show_message(str(error))
        self.scenario_box.blockSignals(True)
        self.scenario_box.clear()
        for s in self.scenarios:
            self.scenario_box.addItem(f"{DEMOS[s.demo].title}: {s.name}", s.name)
        self.scenario_box.blockSignals(False)
        if self.scenarios:
            self.choose(self.scenarios[0].name)

    def set_model(self, info: ModelInfo) -> None:
        """Use the settings that the scenarios give for a model of this size."""
        profile = profile_for(info)
        if profile != self.profile:
            self.profile = profile
            self._scenario_chosen(self.scenario_box.currentIndex())

    def choose(self, name: str) -> None:
        """Show the scenario named `name` (a file stem) with its demonstration."""
        index = self.scenario_box.findData(name)
        if index < 0:
            raise KeyError(name)
        if index == self.scenario_box.currentIndex():
            self._scenario_chosen(index)
        else:
            self.scenario_box.setCurrentIndex(index)

    def branch_from(self, run: Run, sample: int, position: int, token: int) -> None:
        """Show the hallucination demonstration branching a sample of another run: `token`
        forced at `position`, and the model going on from there."""
        if self.scenario is None or self.scenario.demo != "hallucination":
            self.choose(next(s.name for s in self.scenarios if s.demo == "hallucination"))
        self.set_step(len(self.view.sections()) - 1)
        view = self.views["hallucination"]
        view.branch_from(run, run.samples[sample])
        view.branch_requested(position, token)

    @property
    def scenario(self) -> Scenario | None:
        index = self.scenario_box.currentIndex()
        return self.scenarios[index] if 0 <= index < len(self.scenarios) else None

    @property
    def view(self) -> DemoView:
        return self.views[list(DEMOS)[self.stack.currentIndex()]]

    def _demo_chosen(self, row: int) -> None:
        demo = list(DEMOS)[row]
        if self.scenario is not None and self.scenario.demo == demo:
            return
        first = next((s for s in self.scenarios if s.demo == demo), None)
        if first is not None:
            self.choose(first.name)
        else:
            self.stack.setCurrentIndex(row)

    def _scenario_chosen(self, index: int) -> None:
        scenario = self.scenario
        if scenario is None or index < 0:
            return
        row = list(DEMOS).index(scenario.demo)
        self.demo_list.blockSignals(True)
        self.demo_list.setCurrentRow(row)
        self.demo_list.blockSignals(False)
        self.stack.setCurrentIndex(row)
        self.title.setText(scenario.title)
        self.explanation.setText(scenario.explanation)
        self.message.hide()
        self._result_shown.discard(scenario.demo)
        self.view.set_scenario(scenario, self.profile)
        self.set_step(0 if self.presenting else len(self.view.sections()) - 1)

    # -- running ---------------------------------------------------------------------------

    def run_current(self) -> None:
        try:
            job = self.view.job()
        except PlaygroundError as error:
            self.show_message(str(error))
            return
        self._request(self.view, job)

    def _request(self, view: DemoView, job: Job) -> None:
        if self.running:
            self.show_message("Wait for the running demonstration, or stop it.")
            return
        task = self.engine.job(job)
        task.progressed.connect(self._progressed)
        task.finished.connect(lambda result: self._finished(view, result))
        task.errored.connect(self._failed)
        task.cancelled.connect(lambda: self._failed("Cancelled."))
        self.message.hide()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.task = task.start()

    def stop(self) -> None:
        """Stop the running demonstration before its next step (or before it starts)."""
        if self.task is not None:
            self.task.cancel()

    def _progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _finished(self, view: DemoView, result: Any) -> None:
        self._ended()
        view.show_result(result)
        self._result_shown.add(view.demo)

    def _failed(self, message: str) -> None:
        self._ended()
        self.show_message(message)

    def _ended(self) -> None:
        self.task = None
        self.progress.hide()
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    @property
    def running(self) -> bool:
        return self.task is not None

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    # -- presentation ----------------------------------------------------------------------

    def set_presenting(self, on: bool) -> None:
        if on == self.presenting:
            return
        self.presenting = on
        self.present_button.setChecked(on)
        self.setProperty("presenting", on)
        for widget in [self, *self.findChildren(QWidget)]:
            widget.style().unpolish(widget)
            widget.style().polish(widget)
        self._scale_charts(PRESENTING_CHART_SCALE if on else 1.0)
        self.presenting_changed.emit(on)
        self.set_step(0 if on else len(self.view.sections()) - 1)
        if on:
            self.setFocus()

    def _scale_charts(self, scale: float) -> None:
        """Stylesheets do not reach pyqtgraph's axes and legends: size their text here."""
        for plot in self.findChildren(pg.PlotWidget):
            font = QFont(plot.font())
            font.setPointSizeF(font.pointSizeF() * scale)
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setTickFont(font)
                axis.label.setFont(font)
            legend = plot.getPlotItem().legend
            if legend is not None:
                size = f"{font.pointSizeF():.0f}pt"
                legend.setLabelTextSize(size)  # for labels to come; those shown need redrawing
                for _, label in legend.items:
                    label.setText(label.text, size=size)

    def next_step(self) -> None:
        """Reveal the next section; leaving the inputs runs the demonstration if it has not
        run yet, so a talk needs only this one key."""
        if (self.step == 0 and self.view.demo not in self._result_shown
                and not self.running):
            self.run_current()
        self.set_step(self.step + 1)

    def set_step(self, step: int) -> None:
        sections = self.view.sections()
        self.step = max(0, min(step, len(sections) - 1))
        for i, section in enumerate(sections):
            section.setVisible(not self.presenting or i <= self.step)
        # On stage the explanation is said at the first step; after it, the room goes to the view.
        self.explanation.setVisible(not self.presenting or self.step == 0)
        steps = self.scenario.steps if self.scenario else ()
        if self.presenting and self.step < len(steps):
            self.step_label.setText(f"{self.step + 1}/{len(sections)}   {steps[self.step]}")
            # Once the layout has made room for it, bring the revealed section into view.
            scroll, shown = self.stack.currentWidget(), sections[self.step]
            QTimer.singleShot(0, lambda: scroll.ensureWidgetVisible(shown, 0, 0))
        self._show_controls()

    def _show_controls(self) -> None:
        presenting = self.presenting
        self.demo_list.setVisible(not presenting)
        self.run_button.setVisible(not presenting)
        self.stop_button.setVisible(not presenting or self.running)
        for widget in (self.back_button, self.next_button, self.step_label):
            widget.setVisible(presenting)
        last = len(self.view.sections()) - 1
        self.back_button.setEnabled(self.step > 0)
        self.next_button.setEnabled(self.step < last)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if not self.presenting:
            super().keyPressEvent(event)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Space, Qt.Key.Key_PageDown):
            self.next_step()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_PageUp):
            self.set_step(self.step - 1)
        elif key == Qt.Key.Key_Escape:
            self.set_presenting(False)
        else:
            super().keyPressEvent(event)

"""The proof table: best-of-8 accuracy on held-out arithmetic when the pick is random, by mean
logprob, by vote and by a reward model trained on the checker's labels (see
`playground.reward.proof`). It shows the shipped result, and "Run again" regenerates it on the
loaded model (minutes: it samples 8 replies to each of 96 questions)."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.engine_api import Engine
from playground.paths import data_dir, resource_dir
from playground.reward.proof import METHODS, RESULTS_FILE, run_proof
from playground.ui.engine_thread import EngineThread, Job
from playground.ui.tasks import IsCancelled, Progress, Task

METHOD_NAMES = {
    "random": "Random pick (expected)",
    "mean-logprob": "Highest mean logprob",
    "vote": "Majority vote",
    "reward-model": "Trained reward model",
    "oracle": "Oracle (any reply right)",
}


class ProofView(QGroupBox):
    trained = Signal(str)  # the reward model a new run wrote

    def __init__(self, engine: EngineThread, parent: QWidget | None = None) -> None:
        super().__init__("Does it work? Best-of-8 on checkable arithmetic", parent)
        self.engine = engine
        self.task: Task | None = None
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.table = QTableWidget(len(METHODS), 3)
        self.table.setHorizontalHeaderLabels(["Accuracy", "Right / questions", "20 splits"])
        self.table.horizontalHeaderItem(2).setToolTip(
            "Mean ± standard deviation of the accuracy over 20 more random splits")
        self.table.setVerticalHeaderLabels([METHOD_NAMES[m] for m in METHODS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSizeAdjustPolicy(QTableWidget.SizeAdjustPolicy.AdjustToContents)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.run_button = QPushButton("Run again on the loaded model")
        self.run_button.clicked.connect(self._run_clicked)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.progress.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress)
        layout.addStretch(1)
        shipped = resource_dir("proof") / RESULTS_FILE
        if shipped.is_file():
            self.show_result(json.loads(shipped.read_text(encoding="utf-8")))

    def show_result(self, document: dict[str, Any]) -> None:
        table = document["best_of_n"]
        for row, method in enumerate(METHODS):
            entry = table[method]
            self.table.setItem(row, 0, QTableWidgetItem(f"{entry['accuracy']:.1%}"))
            self.table.setItem(row, 1, QTableWidgetItem(
                f"{entry['correct']:g} / {entry['questions']}"))
            more = document["repeated_splits"]["accuracy"][method]
            self.table.setItem(row, 2, QTableWidgetItem(f"{more['mean']:.1%} ± {more['sd']:.1%}"))
        training = document["training"]
        self.summary.setText(
            f"{document['model']['name']} sampled {document['samples_per_question']} replies to "
            f"each of {document['questions']} word problems; a checker labelled them. A reward "
            f"model (a score head on the same model) was trained on a random half of the "
            f"questions ({training['pairs']} right-against-wrong pairs, from the "
            f"{training['prompts']} of its {document['train_questions']} questions that had both) "
            f"and ranks the replies of the other {document['held_out_questions']}. Its held-out "
            f"pairwise accuracy: {training['held_out_accuracy']:.0%}. The oracle row is the "
            "ceiling: a question none of the 8 replies gets right stays wrong.")

    def _run_clicked(self) -> None:
        if self.task is not None and not self.task.ended:
            self.task.cancel()
            return

        def work(engine: Engine | None, progress: Progress,
                 cancelled: IsCancelled) -> dict[str, Any]:
            assert engine is not None
            return run_proof(engine.path, data_dir() / "proof-rm.gguf",
                             progress=lambda _phase, done, total: progress(done, total),
                             cancel=cancelled)

        task = self.engine.job(Job("reward proof", work))
        task.progressed.connect(self._progressed)
        task.finished.connect(self._finished)
        task.errored.connect(self._ended)
        task.cancelled.connect(lambda: self._ended("Cancelled."))
        self.task = task.start()
        self.run_button.setText("Cancel")
        self.progress.setRange(0, 0)
        self.progress.show()

    def _progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _finished(self, document: dict[str, Any]) -> None:
        self._ended("")
        self.show_result(document)
        self.trained.emit(document["reward_model"])

    def _ended(self, message: str) -> None:
        self.run_button.setText("Run again on the loaded model")
        self.progress.hide()
        if message:
            self.summary.setText(message)

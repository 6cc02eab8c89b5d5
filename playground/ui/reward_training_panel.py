"""Train a score-head reward model on preference labels (a label file, or the labelled runs of
the history), with a progress bar and a Cancel, and hand the result to the reward-model chooser.

The training decodes with llama.cpp, so it runs as a job on the engine's thread; the backbone is
the loaded model unless another GGUF is chosen.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.labels import Preference, preferences_for_runs, read_preferences
from playground.paths import data_dir
from playground.reward.training import TrainingReport, train_reward_model
from playground.ui.engine_thread import EngineThread, Job
from playground.ui.tasks import IsCancelled, Progress, Task

FROM_FILE = "file"
FROM_RUNS = "runs"


class RewardTrainingPanel(QGroupBox):
    trained = Signal(str)  # the reward model's path

    def __init__(self, engine: EngineThread, parent: QWidget | None = None) -> None:
        super().__init__("Train a reward model", parent)
        self.engine = engine
        self.task: Task | None = None
        self.source = QComboBox()
        self.source.addItem("A label file (Label Studio, Argilla, JSONL)", FROM_FILE)
        self.source.addItem("Labelled runs of the history", FROM_RUNS)
        self.source.currentIndexChanged.connect(self._source_chosen)
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("an annotation tool's export, or a .jsonl of pairs")
        browse = QPushButton("Open…")
        browse.clicked.connect(self._open_labels)
        self.labels_row = QWidget()
        row = QHBoxLayout(self.labels_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.labels, 1)
        row.addWidget(browse)
        self.runs = QLineEdit()
        self.runs.setPlaceholderText("run ids, e.g. 12 13 15")
        self.runs.hide()
        self.backbone = QLineEdit()
        self.backbone.setPlaceholderText("the loaded model")
        self.backbone.setToolTip("The causal language model whose last hidden state the score "
                                 "head reads. Empty: the model loaded in the app.")
        self.output = QLineEdit(str(data_dir() / "reward-models" / "my-reward-model.gguf"))
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self._train_clicked)
        self.progress = QProgressBar()
        self.progress.setFixedHeight(6)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.result = QLabel("Fits a Bradley–Terry score head on the backbone's hidden states; "
                             "the L2 weight is chosen by cross-validation.")
        self.result.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Labels", self.source)
        form.addRow("", self.labels_row)
        form.addRow("", self.runs)
        form.addRow("Backbone", self.backbone)
        form.addRow("Save as", self.output)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.train_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.result)

    @property
    def training(self) -> bool:
        return self.task is not None and not self.task.ended

    def _source_chosen(self) -> None:
        runs = self.source.currentData() == FROM_RUNS
        self.labels_row.setVisible(not runs)
        self.runs.setVisible(runs)

    def _open_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open preference labels", "",
                                              "Label files (*.json *.jsonl);;All files (*)")
        if path:
            self.labels.setText(path)

    def _train_clicked(self) -> None:
        if self.training:
            assert self.task is not None
            self.task.cancel()
            return
        try:
            job = self._job()
        except InvalidRequestError as error:
            self.result.setText(str(error))
            return
        task = self.engine.job(job)
        task.progressed.connect(self._progressed)
        task.finished.connect(self._finished)
        task.errored.connect(lambda message: self._ended(message))
        task.cancelled.connect(lambda: self._ended("Cancelled: nothing was written."))
        self.task = task.start()
        self.train_button.setText("Cancel training")
        self.progress.setRange(0, 0)  # busy until the first report
        self.progress.show()
        self.result.setText("Reading the labels and decoding the replies…")

    def _job(self) -> Job:
        """The training job for what the form says (checked here, before anything runs)."""
        out = Path(self.output.text().strip())
        if not self.output.text().strip():
            raise InvalidRequestError("Choose where to save the reward model.")
        backbone = Path(self.backbone.text().strip()) if self.backbone.text().strip() else None
        if self.source.currentData() == FROM_FILE:
            if not self.labels.text().strip():
                raise InvalidRequestError("Choose a label file.")
            labels = Path(self.labels.text().strip())

            def read() -> list[Preference]:
                return read_preferences(labels)
        else:
            try:
                ids = [int(word) for word in self.runs.text().replace(",", " ").split()]
            except ValueError:
                raise InvalidRequestError("Run ids are whole numbers, e.g. 12 13 15.") from None
            if not ids:
                raise InvalidRequestError("Give the ids of the labelled runs.")
            store = self.engine.store

            def read() -> list[Preference]:
                return preferences_for_runs(store, ids)

        def work(engine: Engine | None, progress: Progress,
                 cancelled: IsCancelled) -> TrainingReport:
            path = backbone if backbone is not None else engine.path  # type: ignore[union-attr]
            return train_reward_model(read(), path, out, progress=progress, cancel=cancelled)

        return Job("reward training", work, needs_engine=backbone is None)

    def _progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _finished(self, report: TrainingReport) -> None:
        curve = ", ".join(f"{p.pairs} → {p.held_out_accuracy:.0%}" for p in report.learning_curve)
        self._ended(
            f"Held-out pairwise accuracy {report.held_out_accuracy:.0%} on "
            f"{report.held_out_pairs} pairs (L2 {report.l2:g}, chosen by cross-validation; "
            f"{report.pairs} pairs in all). Learning curve, training pairs → held-out accuracy: "
            f"{curve}. Saved as {report.output}; it is now in the reward-model chooser.")
        self.trained.emit(report.output)

    def _ended(self, message: str) -> None:
        self.train_button.setText("Train")
        self.progress.hide()
        self.result.setText(message)

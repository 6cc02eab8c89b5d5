"""Choose a reward model (a GGUF or the LLM judge), edit the judge's rubric, score the samples."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from playground.reward import DEFAULT_RUBRIC

JUDGE = "judge"


class RewardPanel(QGroupBox):
    score_requested = Signal(str, str)  # reward model spec ("judge" or a path), rubric
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Reward model", parent)
        self.chooser = QComboBox()
        self.chooser.addItem("LLM judge (the loaded model)", JUDGE)
        self.chooser.setToolTip(
            "What scores each sample. The judge asks the loaded model the rubric below and "
            "scores log P(yes) − log P(no); a reward-model or reranker GGUF scores directly.")
        self.chooser.currentIndexChanged.connect(self._chosen)
        open_button = QPushButton("Open…")
        open_button.clicked.connect(self._open_file)
        self.rubric = QPlainTextEdit(DEFAULT_RUBRIC)
        self.rubric.setMaximumHeight(60)
        self.rubric.setToolTip("The judge's yes/no question about each response.")
        self.score_button = QPushButton("Score samples")
        self.score_button.setToolTip("Score every sample of the run on screen (best-of-N)")
        self.score_button.clicked.connect(self._score_clicked)
        self.progress = QProgressBar()
        self.progress.setFixedHeight(6)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #555;")

        row = QHBoxLayout()
        row.addWidget(self.chooser, 1)
        row.addWidget(open_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.rubric)
        layout.addWidget(self.score_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.info)
        self._scoring = False

    def spec(self) -> str:
        return self.chooser.currentData()

    def set_scoring(self, scoring: bool) -> None:
        self._scoring = scoring
        self.score_button.setText("Cancel scoring" if scoring else "Score samples")
        self.progress.setVisible(scoring)
        self.progress.setRange(0, 0)  # busy until the first progress report

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def set_info(self, text: str) -> None:
        self.info.setText(text)

    def _score_clicked(self) -> None:
        if self._scoring:
            self.cancel_requested.emit()
        else:
            self.score_requested.emit(self.spec(), self.rubric.toPlainText().strip())

    def _chosen(self) -> None:
        self.rubric.setVisible(self.spec() == JUDGE)

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a reward model", "",
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.add_model(Path(path))

    def add_model(self, path: Path) -> None:
        index = self.chooser.findData(str(path))
        if index < 0:
            self.chooser.addItem(path.name, str(path))
            index = self.chooser.count() - 1
        self.chooser.setCurrentIndex(index)

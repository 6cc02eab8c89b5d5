"""The Reward model tab: train a reward model on labels, and the proof that training works."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from playground.ui.engine_thread import EngineThread
from playground.ui.proof_view import ProofView
from playground.ui.reward_training_panel import RewardTrainingPanel


class RewardTab(QWidget):
    trained = Signal(str)  # a reward model written by either part: offered for reranking

    def __init__(self, engine: EngineThread, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.training_panel = RewardTrainingPanel(engine)
        self.proof_view = ProofView(engine)
        self.training_panel.trained.connect(self.trained)
        self.proof_view.trained.connect(self.trained)
        column = QVBoxLayout()
        column.addWidget(self.training_panel)
        column.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(column, 1)
        layout.addWidget(self.proof_view, 1)

"""The prompt: chat or raw, the system prompt, and Generate / Stop."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class PromptPanel(QWidget):
    generate_requested = Signal()
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("Type a prompt…  (Ctrl+Enter generates)")
        self.editor.setMaximumHeight(110)

        self.chat_button = QPushButton("Chat")
        self.chat_button.setToolTip("Wrap the prompt in the model's own chat template, as an "
                                    "instruction-tuned model expects.")
        self.raw_button = QPushButton("Raw")
        self.raw_button.setToolTip("Send the text exactly as typed: the model continues it. "
                                   "Use this for base models.")
        self._mode = QButtonGroup(self)
        for button in (self.chat_button, self.raw_button):
            button.setCheckable(True)
            button.setObjectName("segment")
            self._mode.addButton(button)
        self.chat_button.setChecked(True)
        self.chat_button.toggled.connect(self._mode_changed)

        self.system = QLineEdit()
        self.system.setPlaceholderText("System prompt (optional)")
        self.system.setToolTip("Instructions the chat template puts before your prompt.")

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("primary")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.clicked.connect(self.generate_requested)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop before the next token (Esc)")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.setEnabled(False)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.generate_button.click)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.stop_button.click)

        row = QHBoxLayout()
        row.addWidget(self.chat_button)
        row.addWidget(self.raw_button)
        row.addWidget(self.system, 1)
        row.addWidget(self.generate_button)
        row.addWidget(self.stop_button)
        row.setSpacing(6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.editor)
        layout.addLayout(row)

    def prompt(self) -> str:
        return self.editor.toPlainText()

    def chat(self) -> bool:
        return self.chat_button.isChecked()

    def system_prompt(self) -> str | None:
        return self.system.text().strip() or None

    def set_values(self, prompt: str, chat: bool, system: str) -> None:
        self.editor.setPlainText(prompt)
        (self.chat_button if chat else self.raw_button).setChecked(True)
        self.system.setText(system)

    def set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _mode_changed(self, chat: bool) -> None:
        self.system.setEnabled(chat)

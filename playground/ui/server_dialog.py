"""'Connect to server…': a server's URL and, if it needs one, its API key."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from playground import credentials

EXPLANATION = ("A llama-server, vLLM, Ollama or other OpenAI-compatible server. The views fill "
               "from it as from a local model, with what it can give: see docs/remote.md.")


class ServerDialog(QDialog):
    def __init__(self, url: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Connect to server")
        self.url = QLineEdit(url)
        self.url.setPlaceholderText("http://127.0.0.1:8080")
        self.url.setToolTip("https:// where the server has TLS; credentials in the URL are "
                            "used as the key and never recorded.")
        self.key = QLineEdit(credentials.stored_key(url) or "" if url else "")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("none")
        self.key.setToolTip("Sent as a Bearer token. Never written to the history or an "
                            "export.")
        self.remember = QCheckBox("Keep the key in the system keyring")
        available = credentials.keyring_available()
        self.remember.setChecked(available)
        self.remember.setEnabled(available)
        if not available:
            self.remember.setToolTip("There is no system keyring here: the key is kept only "
                                     "while the app is open.")
        note = QLabel(EXPLANATION)
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("URL", self.url)
        form.addRow("API key", self.key)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(form)
        layout.addWidget(self.remember)
        layout.addWidget(buttons)

    def server(self) -> tuple[str, str | None, bool]:
        """(URL, key or None, whether to keep the key in the keyring once connected)."""
        return self.url.text().strip(), self.key.text() or None, self.remember.isChecked()

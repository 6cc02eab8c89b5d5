"""A catalog model's download from the Hugging Face Hub: what it does, a progress bar, Cancel."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from playground.catalog import CatalogModel
from playground.download import Downloaded, IsCancelled, download, partial_size
from playground.ui.tasks import Progress, Task
from playground.units import human_size

KIB = 1024
"""Progress travels in KiB: Qt's signals and progress bars hold 32-bit ints, and a catalog
file may be larger than 2 GiB."""


class ModelDownload(QWidget):
    """One download at a time, on the background executor (ui/tasks.py). Cancel stops exactly
    this download; what it fetched stays in the data folder, and the next download of the same
    model resumes from it."""

    downloaded = Signal(object)  # Downloaded: the checked file is in the models folder
    ended = Signal()  # after downloaded, an error or a cancel

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setFormat("%p%")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the download; Resume download goes on from here.")
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addLayout(row)
        self.task: Task | None = None
        self.model: CatalogModel | None = None
        self.hide()

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.ended

    def start(self, model: CatalogModel) -> Task:
        if self.busy:
            raise RuntimeError("one download at a time")
        self.model = model
        size = model.size_bytes or 0
        self._show_bytes(partial_size(model) // KIB, size // KIB)
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.bar.show()
        self.show()

        def work(progress: Progress, cancelled: IsCancelled) -> Downloaded:
            return download(model, lambda done, total: progress(done // KIB, total // KIB),
                            cancelled)

        task = Task(work, f"download {model.id}")
        task.progressed.connect(self._show_bytes)
        task.finished.connect(self._finished)
        task.errored.connect(self._errored)
        task.cancelled.connect(self._cancelled)
        self.task = task.start()
        return task

    def cancel(self) -> None:
        if self.task is not None and self.busy:
            self.task.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText(f"Cancelling the download of {self._name()}…")

    # -- what the task reports -------------------------------------------------------------

    def _show_bytes(self, done_kib: int, total_kib: int) -> None:
        self.bar.setRange(0, max(total_kib, 1))
        self.bar.setValue(done_kib)
        if not self.cancel_button.isEnabled():
            return  # "Cancelling…" stays until the task ends
        if done_kib >= total_kib:
            self.status.setText(f"Checking the sha256 of {self._name()}…")
        else:
            self.status.setText(f"Downloading {self._name()}: {human_size(done_kib * KIB)} of "
                                f"{human_size(total_kib * KIB)}")

    def _finished(self, result: Downloaded) -> None:
        self._end(f"Downloaded {result.path.name} ({human_size(result.size_bytes)}); its "
                  "sha256 is the catalog's.")
        self.downloaded.emit(result)
        self.ended.emit()

    def _errored(self, message: str) -> None:
        self._end(message)
        self.ended.emit()

    def _cancelled(self) -> None:
        assert self.model is not None
        self._end(f"Cancelled at {human_size(partial_size(self.model))} of "
                  f"{human_size(self.model.size_bytes or 0)}: Resume download goes on from "
                  "there.")
        self.ended.emit()

    def _end(self, text: str) -> None:
        self.status.setText(text)
        self.bar.hide()
        self.cancel_button.hide()

    def _name(self) -> str:
        return self.model.name if self.model else ""

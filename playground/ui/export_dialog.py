"""Export stored runs: choose a format and its options and a file, then export in the background.

The export itself is `playground.export.export_stored`, run as a background `Task` on its own
connection to the history file, so the dialog and the window stay responsive and the window's
own queries never wait behind a long load. Loading the runs (most of the time for long runs) is
reported and can be cancelled run by run, like the writing that follows.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from playground import export
from playground.errors import Cancelled
from playground.export import FORMATS, PAIR_MODES
from playground.records import Run
from playground.store import Store
from playground.ui.colors import ERROR_TEXT
from playground.ui.tasks import Task

DESCRIPTIONS = {
    "jsonl": "Prompt, model, parameters and seed with every sample; loads with "
             "datasets.load_dataset(\"json\") and imports back into the history.",
    "csv": "One row per sample with its scores, for Excel, LibreOffice or pandas.",
    "labelstudio-pairwise": "Two samples of a prompt side by side, for preference labelling "
                            "(RLHF).",
    "labelstudio-ranking": "All N samples of a prompt to put in order, best first "
                           "(LLM Ranker template).",
    "argilla": "Argilla 2 records for a ranking question, the model's ranking as a suggestion.",
}
RANKINGS = {
    "mean-logprob": "Mean logprob per token",
    "sum-logprob": "Sum of logprobs",
    "normalized-logprob": "Normalized logprob",
    "vote": "Majority vote on the answers",
}
PAIR_MODE_TITLES = {"best-vs-worst": "Best vs worst (one pair a run)", "all-pairs": "All pairs"}
NOUNS = {"jsonl": "sample", "csv": "sample", "labelstudio-pairwise": "task",
         "labelstudio-ranking": "task", "argilla": "record"}
RANKED = ("labelstudio-pairwise", "labelstudio-ranking", "argilla")
CANCELLED_MESSAGE = "Export cancelled; no file was written."
ERROR_STYLE = f"color: {ERROR_TEXT.name()};"
MUTED_STYLE = "color: #666; font-weight: normal;"

assert set(DESCRIPTIONS) == set(FORMATS) and set(PAIR_MODE_TITLES) == set(PAIR_MODES)


class ExportDialog(QDialog):
    finished_export = Signal(int)  # records written
    cancelled_export = Signal()
    errored = Signal(str)  # a one-line message, also shown in the dialog

    def __init__(self, store: Store, run_ids: list[int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export runs")
        self.setMinimumWidth(600)
        self.store = store
        self.run_ids = list(run_ids)
        self.task: Task | None = None
        self._close_when_done = False
        self._path_chosen = False
        self._noun = "record"  # what the running export writes: samples, tasks, records
        self._target = Path()
        self._sidecar: Path | None = None

        self.heading = QLabel(self._heading_text())
        self.heading.setStyleSheet("font-weight: 600; font-size: 11pt;")

        formats = QGroupBox("Format")
        format_layout = QVBoxLayout(formats)
        format_layout.setSpacing(2)
        self.format_buttons = QButtonGroup(self)
        self._format_radios: dict[str, QRadioButton] = {}
        for key, fmt in FORMATS.items():
            radio = QRadioButton(fmt.title)
            radio.setProperty("format", key)
            description = QLabel(DESCRIPTIONS[key])
            description.setStyleSheet(MUTED_STYLE)
            description.setWordWrap(True)
            description.setContentsMargins(22, 0, 0, 6)
            self.format_buttons.addButton(radio)
            self._format_radios[key] = radio
            format_layout.addWidget(radio)
            format_layout.addWidget(description)

        self.include_tokens = QCheckBox("Include token logprobs, ranks, entropies and "
                                        "alternatives (a much larger file)")
        self.ranking = QComboBox()
        for key, title in RANKINGS.items():
            self.ranking.addItem(title, key)
        self.ranking.setToolTip("Which ranking the tasks follow: the pairs' order, the "
                                "suggested ranking. A run's stored ranking is used as it is.")
        self.pair_mode = QComboBox()
        for key in PAIR_MODES:
            self.pair_mode.addItem(PAIR_MODE_TITLES[key], key)
        self.max_pairs = QSpinBox()
        self.max_pairs.setRange(1, 10_000)
        self.max_pairs.setValue(20)
        self.max_pairs.setSuffix(" pairs a run at most")
        self.max_pairs.setToolTip("With all pairs, runs with more pairs than this get a "
                                  "repeatable random choice of them.")
        pairs_row = QWidget()
        pairs = QHBoxLayout(pairs_row)
        pairs.setContentsMargins(0, 0, 0, 0)
        pairs.addWidget(self.pair_mode)
        pairs.addWidget(self.max_pairs)
        pairs.addStretch(1)
        self.options = QGroupBox("Options")
        self.option_form = QFormLayout(self.options)
        self.option_form.addRow(self.include_tokens)
        self.option_form.addRow("Ranking", self.ranking)
        self.option_form.addRow("Pairs", pairs_row)
        self._pairs_row = pairs_row

        self.path = QLineEdit()
        self.path.textEdited.connect(self._path_edited)
        choose = QPushButton("Choose…")
        choose.clicked.connect(self.choose_path)
        file_row = QHBoxLayout()
        file_row.addWidget(QLabel("File"))
        file_row.addWidget(self.path, 1)
        file_row.addWidget(choose)
        self._choose_button = choose

        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(6)
        self.progress.hide()
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextFormat(Qt.TextFormat.RichText)
        self.result.setOpenExternalLinks(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)

        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("primary")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self._export_clicked)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.result, 1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(formats)
        layout.addWidget(self.options)
        layout.addLayout(file_row)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)

        self.format_buttons.buttonToggled.connect(self._format_toggled)
        self.pair_mode.currentIndexChanged.connect(self._update_options)
        self._format_radios["jsonl"].setChecked(True)
        self.export_button.setEnabled(bool(self.run_ids))

    # -- choices ---------------------------------------------------------------------------

    def format(self) -> str:
        checked = self.format_buttons.checkedButton()
        return str(checked.property("format")) if checked else "jsonl"

    def set_format(self, fmt: str) -> None:
        self._format_radios[fmt].setChecked(True)

    def export_options(self) -> dict[str, Any]:
        """The keyword options of `export_stored` that apply to the chosen format."""
        fmt = self.format()
        options: dict[str, Any] = {}
        if fmt == "jsonl":
            options["include_tokens"] = self.include_tokens.isChecked()
        if fmt in RANKED:
            options["ranking"] = self.ranking.currentData()
        if fmt == "labelstudio-pairwise":
            options["pair_mode"] = self.pair_mode.currentData()
            options["max_pairs"] = self.max_pairs.value()
        return options

    def choose_path(self) -> None:
        fmt = FORMATS[self.format()]
        path, _ = QFileDialog.getSaveFileName(
            self, "Export to", self.path.text(), f"{fmt.title} (*{fmt.suffix});;All files (*)"
        )
        if path:
            chosen = Path(path)
            if not chosen.suffix:
                chosen = chosen.with_suffix(fmt.suffix)
            self.path.setText(str(chosen))
            self._path_chosen = True

    def _path_edited(self) -> None:
        self._path_chosen = True

    def _format_toggled(self, _button: QRadioButton, checked: bool) -> None:
        if not checked:  # the other half of the same change
            return
        fmt = FORMATS[self.format()]
        text = self.path.text().strip()
        if not text or not self._path_chosen:
            self.path.setText(str(Path.home() / f"playground-{fmt.key}-{date.today()}{fmt.suffix}"))
        elif Path(text).suffix.lower() in {f.suffix for f in FORMATS.values()}:
            self.path.setText(str(Path(text).with_suffix(fmt.suffix)))
        self._update_options()

    def _update_options(self) -> None:
        fmt = self.format()
        self.option_form.setRowVisible(self.include_tokens, fmt == "jsonl")
        self.option_form.setRowVisible(self.ranking, fmt in RANKED)
        self.option_form.setRowVisible(self._pairs_row, fmt == "labelstudio-pairwise")
        self.max_pairs.setEnabled(self.pair_mode.currentData() == "all-pairs")
        self.options.setVisible(fmt != "csv")
        self.adjustSize()

    # -- exporting -------------------------------------------------------------------------

    def _export_clicked(self) -> None:
        text = self.path.text().strip()
        if not text:
            self._fail("Choose a file to export to.")
            return
        self.start_export(self.format(), Path(text).expanduser(), **self.export_options())

    def start_export(self, fmt: str, path: Path, **options: Any) -> Task:
        """Export the dialog's runs to `path` in the background (what Export does)."""
        if self.task is not None:
            raise RuntimeError("an export is already running")
        store_path, run_ids = self.store.path, list(self.run_ids)

        def work(progress: Callable[[int, int], None], cancel: Callable[[], bool]) -> int:
            n = len(run_ids)
            with Store(store_path) as reader:
                loading = _ReportingStore(reader, progress, cancel, 2 * n)
                return export.export_stored(
                    loading, run_ids, fmt, path,
                    progress=lambda done, total: progress(n + done, n + total),
                    cancel=cancel, **options,
                )

        self._noun = NOUNS.get(fmt, "record")
        self._target = Path(path)
        self._sidecar = export.sidecar_path(path, fmt)
        task = Task(work, "export")
        task.progressed.connect(self._progressed)
        task.finished.connect(self._exported)
        task.errored.connect(self._export_failed)
        task.cancelled.connect(self._export_cancelled)
        self.task = task
        self._set_running(True)
        self.result.setStyleSheet("")
        self.result.setText(f"Exporting {len(run_ids)} run{_s(len(run_ids))}…")
        task.start()
        return task

    def cancel(self) -> None:
        """Stop the running export before its next run; no file is written."""
        if self.task is not None:
            self.task.cancel()
            self.result.setText("Cancelling…")
            self.close_button.setEnabled(False)

    def reject(self) -> None:
        # Closing while exporting cancels first: the dialog goes once the worker has stopped,
        # so nothing is left writing behind a dialog that is gone.
        if self.task is not None:
            self._close_when_done = True
            self.cancel()
            return
        super().reject()

    @Slot(int, int)
    def _progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    @Slot(object)
    def _exported(self, count: int) -> None:
        self._finish()
        folder = QUrl.fromLocalFile(str(self._target.parent)).toString()
        beside = f" and {html.escape(self._sidecar.name)} beside it" if self._sidecar else ""
        self.result.setText(
            f"Wrote {count:,} {self._noun}{_s(count)} to {html.escape(str(self._target))}{beside}. "
            f"<a href='{folder}'>Show folder</a>"
        )
        self.finished_export.emit(count)

    @Slot(str)
    def _export_failed(self, message: str) -> None:
        self._finish()
        self._fail(message)

    @Slot()
    def _export_cancelled(self) -> None:
        self._finish()
        self.result.setText(CANCELLED_MESSAGE)
        self.cancelled_export.emit()

    def _fail(self, message: str) -> None:
        self.result.setStyleSheet(ERROR_STYLE)
        self.result.setText(html.escape(message))
        self.errored.emit(message)

    def _finish(self) -> None:
        self.task = None
        self._set_running(False)
        if self._close_when_done:
            self._close_when_done = False
            super().reject()

    def _set_running(self, running: bool) -> None:
        for widget in (*self._format_radios.values(), self.options, self.path,
                       self._choose_button, self.export_button):
            widget.setEnabled(not running and bool(self.run_ids))
        self.close_button.setText("Cancel" if running else "Close")
        self.close_button.setEnabled(True)
        self.progress.setVisible(running)
        self.progress.setRange(0, 0)  # busy until the first progress report

    def _heading_text(self) -> str:
        wanted = set(self.run_ids)
        samples = sum(s.n_samples for s in self.store.list_runs() if s.id in wanted)
        runs = len(self.run_ids)
        return f"Export {runs:,} run{_s(runs)} · {samples:,} sample{_s(samples)}"


class _ReportingStore:
    """The store as `export_stored` uses it, reporting each run it loads and checking `cancel`
    before each: loading long runs is most of an export's time."""

    def __init__(self, store: Store, progress: Callable[[int, int], None],
                 cancel: Callable[[], bool], total: int) -> None:
        self._store = store
        self._progress = progress
        self._cancel = cancel
        self._total = total
        self._loaded = 0

    def load(self, run_id: int) -> Run:
        if self._cancel():
            raise Cancelled("export cancelled; no file was written")
        run = self._store.load(run_id)
        self._loaded += 1
        self._progress(self._loaded, self._total)
        return run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _s(count: int) -> str:
    return "" if count == 1 else "s"

"""The history: past runs, newest first, to search, star, tag, open, run again, delete and export.

The list reads `RunSummary`s (no tokens) a page at a time; more pages load as the list is
scrolled to its end. Listing is quick, so it runs on the GUI thread; opening a run (up to
32 x 2048 tokens to decode) and importing run as background `Task`s on a connection of their
own, so that the window's queries never wait behind them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QColor, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from playground.errors import PlaygroundError
from playground.export import import_jsonl
from playground.records import Run
from playground.store import RunSummary, Store
from playground.ui.colors import INTERRUPTED, RUNNING, STARRED, UNSTARRED
from playground.ui.export_dialog import ExportDialog
from playground.ui.tasks import Task

PAGE_SIZE = 200
SEARCH_DELAY_MS = 200
EMPTY_TEXT = "No runs yet. Generate something and it appears here."
STAR, WHEN, STATUS, N, MODEL, PROMPT, TAGS = range(7)
HEADERS = ("★", "When", "Status", "N", "Model", "Prompt", "Tags")
WIDTHS = {STAR: 34, WHEN: 118, STATUS: 96, N: 44, MODEL: 190, TAGS: 190}
MUTED = QColor("#5f6670")
STATUS_COLORS = {"interrupted": INTERRUPTED, "running": RUNNING}
STATUS_TIPS = {
    "finished": "Every sample ended.",
    "interrupted": "The app stopped before the run ended; the samples that reached the disk "
                   "are kept.",
    "running": "Being generated now.",
}


class HistoryPanel(QWidget):
    run_opened = Signal(object, int)  # the loaded Run, its id in the store
    rerun_requested = Signal(object)  # playground.store.RunRequest
    errored = Signal(str)  # a one-line message for the window's banner
    reported = Signal(str)  # a one-line status message ("Imported 3 runs from …")

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.open_task: Task | None = None
        self.import_task: Task | None = None
        self.export_dialog: ExportDialog | None = None
        self._more = False  # the last query filled its page: there may be more rows
        self._opening: int | None = None  # the run being opened
        self._importing: Path | None = None  # the file being imported

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts, models and tags")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(260)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(self._search_changed)
        self.starred_only = QPushButton("★ Starred only")
        self.starred_only.setObjectName("segment")
        self.starred_only.setCheckable(True)
        self.starred_only.toggled.connect(self.refresh)

        self.model = _RunTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for column, width in WIDTHS.items():
            header.resizeSection(column, width)
        for column in (STAR, N):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(PROMPT, QHeaderView.ResizeMode.Stretch)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(self.open_selected)
        self.table.clicked.connect(self._clicked)
        self.table.selectionModel().selectionChanged.connect(self._update_actions)
        self.table.verticalScrollBar().valueChanged.connect(self._scrolled)

        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet(f"color: {MUTED.name()}; font-size: 11pt;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.empty)

        self.open_action = self._action("Open", self.open_selected, "Return",
                                        "Show the run with all its tokens (double-click, Enter)")
        self.rerun_action = self._action("Run again", self.rerun_selected, "Ctrl+R",
                                         "Put the prompt, parameters and N back, to run again")
        self.star_action = self._action("Star", self.toggle_star, "Ctrl+D",
                                        "Star the selected runs, or unstar them")
        self.tags_action = self._action("Tags…", self.edit_tags, "Ctrl+T",
                                        "Add or remove tags of the selected runs")
        self.delete_action = self._action("Delete", self.delete_selected,
                                          QKeySequence.StandardKey.Delete,
                                          "Delete the selected runs from the history")
        self.export_action = self._action("Export…", self.export_selected, None,
                                          "Export the selected runs, or all runs listed")
        self.import_action = self._action("Import JSONL…", self.choose_import, None,
                                          "Add the runs of a JSON Lines export to the history")

        # The search and the actions in two rows: in one, they would not fit beside the
        # sidebar on a 1280-pixel laptop screen.
        search = QHBoxLayout()
        search.addWidget(self.search, 1)
        search.addWidget(self.starred_only)
        actions = QHBoxLayout()
        for action in (self.open_action, self.rerun_action, self.star_action, self.tags_action,
                       self.delete_action):
            actions.addWidget(_ActionButton(action, primary=action is self.open_action,
                                            widest="Unstar" if action is self.star_action else ""))
        actions.addStretch(1)
        actions.addWidget(_ActionButton(self.export_action))
        actions.addWidget(_ActionButton(self.import_action))

        self.count = QLabel("")
        self.count.setStyleSheet(f"color: {MUTED.name()};")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setFixedSize(120, 6)
        self.busy.hide()
        self.busy_label = QLabel("")
        self.busy_label.setStyleSheet(f"color: {MUTED.name()};")
        bottom = QHBoxLayout()
        bottom.addWidget(self.count, 1)
        bottom.addWidget(self.busy_label)
        bottom.addWidget(self.busy)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 4)
        layout.addLayout(search)
        layout.addLayout(actions)
        layout.addWidget(self.stack, 1)
        layout.addLayout(bottom)
        self.refresh()

    def _action(self, text: str, slot: Callable[[], Any],
                shortcut: str | QKeySequence.StandardKey | None, tip: str) -> QAction:
        action = QAction(text, self)
        action.setToolTip(tip)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            # Only while the list has the focus: Enter and Delete mean other things elsewhere.
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            self.table.addAction(action)
        action.triggered.connect(slot)
        return action

    # -- listing ---------------------------------------------------------------------------

    @Slot(str)
    def _search_changed(self, _text: str) -> None:
        self._search_timer.start()  # restarted by every keystroke: one query when typing stops

    def search_text(self) -> str:
        return self.search.text().strip()

    def refresh(self) -> None:
        """Query again (after a run was saved, changed or deleted), keeping the selection, the
        scroll position and the number of pages loaded."""
        self._search_timer.stop()
        keep, current = self.selected_run_ids(), self.current_run_id()
        scroll = self.table.verticalScrollBar().value()
        wanted = max(PAGE_SIZE, -(-self.model.rowCount() // PAGE_SIZE) * PAGE_SIZE)
        try:
            rows = self._query(limit=wanted)
        except PlaygroundError as error:
            self.errored.emit(str(error))
            return
        self._more = len(rows) == wanted
        self.model.set_rows(rows)
        self._select(keep, current)
        self.table.verticalScrollBar().setValue(scroll)
        self._update_view()

    def _query(self, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        return self.store.list_runs(self.search_text(), starred_only=self.starred_only.isChecked(),
                                    limit=limit, offset=offset)

    def load_more(self) -> bool:
        """Append the next page; False when every matching run is listed."""
        if not self._more:
            return False
        try:
            rows = self._query(limit=PAGE_SIZE, offset=self.model.rowCount())
        except PlaygroundError as error:
            self.errored.emit(str(error))
            return False
        self._more = len(rows) == PAGE_SIZE
        self.model.append_rows(rows)
        self._update_view()
        return bool(rows)

    def _scrolled(self, value: int) -> None:
        margin = 2 * self.table.verticalHeader().defaultSectionSize()
        if self._more and value >= self.table.verticalScrollBar().maximum() - margin:
            self.load_more()

    def _update_view(self) -> None:
        rows = self.model.rowCount()
        filtered = bool(self.search_text()) or self.starred_only.isChecked()
        if rows:
            self.stack.setCurrentWidget(self.table)
        else:
            self.empty.setText(self._empty_text() if filtered else EMPTY_TEXT)
            self.stack.setCurrentWidget(self.empty)
        shown = f"{rows:,} run{'' if rows == 1 else 's'}"
        if self._more:
            self.count.setText(f"{shown} shown; scroll down for more")
        elif filtered:
            self.count.setText(f"{shown} match")
        else:
            self.count.setText(shown)
        self._update_actions()

    def _empty_text(self) -> str:
        what = "starred runs" if self.starred_only.isChecked() else "runs"
        search = self.search_text()
        return f"No {what} match “{search}”." if search else f"No {what} yet."

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()  # cheap, and the list may have changed while hidden

    # -- selection -------------------------------------------------------------------------

    def selected_run_ids(self) -> list[int]:
        """The selected runs in list order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.model.rows[row].id for row in rows]

    def selected_summaries(self) -> list[RunSummary]:
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.model.rows[row] for row in rows]

    def current_run_id(self) -> int | None:
        """The run that Open and Run again act on: the current row if it is selected, else the
        first selected one."""
        selected = self.selected_run_ids()
        current = self.table.currentIndex()
        if current.isValid() and self.model.rows[current.row()].id in selected:
            return self.model.rows[current.row()].id
        return selected[0] if selected else None

    def select_run(self, run_id: int) -> bool:
        """Select and show a run, loading more pages or clearing the filters to reach it."""
        try:
            self.store.summary(run_id)
        except PlaygroundError as error:
            self.errored.emit(str(error))
            return False
        if self.model.row_of(run_id) is None and not self._listed(run_id):
            self.search.blockSignals(True)
            self.search.clear()
            self.search.blockSignals(False)
            self.starred_only.blockSignals(True)
            self.starred_only.setChecked(False)
            self.starred_only.blockSignals(False)
            self.refresh()
        while self.model.row_of(run_id) is None and self.load_more():
            pass
        if self.model.row_of(run_id) is None:
            return False
        self._select([run_id], run_id)
        return True

    def _listed(self, run_id: int) -> bool:
        """Whether the run matches the current search and filter (listed or further down)."""
        return any(s.id == run_id for s in self._query())

    def _select(self, run_ids: Iterable[int], current: int | None) -> None:
        selection = QItemSelection()
        for run_id in run_ids:
            row = self.model.row_of(run_id)
            if row is not None:
                selection.select(self.model.index(row, 0),
                                 self.model.index(row, self.model.columnCount() - 1))
        model = self.table.selectionModel()
        model.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        row = self.model.row_of(current) if current is not None else None
        if row is not None:
            model.setCurrentIndex(self.model.index(row, 0),
                                  QItemSelectionModel.SelectionFlag.NoUpdate)
            self.table.scrollTo(self.model.index(row, 0))
        self._update_actions()

    @Slot()
    def _update_actions(self, *_args: object) -> None:
        selected = self.selected_summaries()
        idle = self.open_task is None
        self.open_action.setEnabled(bool(selected) and idle)
        self.rerun_action.setEnabled(bool(selected))
        self.star_action.setEnabled(bool(selected))
        self.star_action.setText("Unstar" if selected and all(s.starred for s in selected)
                                 else "Star")
        self.tags_action.setEnabled(bool(selected))
        self.delete_action.setEnabled(bool(selected))
        self.export_action.setEnabled(self.model.rowCount() > 0)
        self.import_action.setEnabled(self.import_task is None)

    def _context_menu(self, position: QPoint) -> None:
        index = self.table.indexAt(position)
        if index.isValid() and not self.table.selectionModel().isRowSelected(index.row()):
            self._select([self.model.rows[index.row()].id], self.model.rows[index.row()].id)
        menu = QMenu(self)
        menu.addActions([self.open_action, self.rerun_action])
        menu.addSeparator()
        menu.addActions([self.star_action, self.tags_action, self.export_action])
        menu.addSeparator()
        menu.addAction(self.delete_action)
        menu.exec(self.table.viewport().mapToGlobal(position))

    def _clicked(self, index: QModelIndex) -> None:
        if index.column() == STAR:  # the star toggles in place, like in a mail client
            summary = self.model.rows[index.row()]
            self._change([summary.id], lambda run_id: self.store.set_starred(
                run_id, not summary.starred))

    # -- actions ---------------------------------------------------------------------------

    def open_selected(self) -> None:
        """Load the run in the background, then emit `run_opened(run, run_id)`."""
        run_id = self.current_run_id()
        if run_id is None or self.open_task is not None:
            return
        path = self.store.path

        def load(_progress: Callable[[int, int], None], _cancel: Callable[[], bool]) -> Run:
            with Store(path) as reader:
                return reader.load(run_id)

        self._opening = run_id
        self.open_task = Task(load, "open run")
        self.open_task.finished.connect(self._opened)
        self.open_task.errored.connect(self._open_failed)
        self._set_busy(f"Opening run #{run_id}…")
        self.open_task.start()

    @Slot(object)
    def _opened(self, run: Run) -> None:
        self.open_task = None
        self._set_busy("")
        assert self._opening is not None
        self.run_opened.emit(run, self._opening)

    @Slot(str)
    def _open_failed(self, message: str) -> None:
        self.open_task = None
        self._set_busy("")
        self.errored.emit(message)

    def rerun_selected(self) -> None:
        run_id = self.current_run_id()
        if run_id is None:
            return
        try:
            request = self.store.duplicate(run_id)
        except PlaygroundError as error:
            self.errored.emit(str(error))
            return
        self.rerun_requested.emit(request)

    def toggle_star(self) -> None:
        selected = self.selected_summaries()
        starred = not all(s.starred for s in selected)
        self._change([s.id for s in selected],
                     lambda run_id: self.store.set_starred(run_id, starred))

    def edit_tags(self) -> None:
        """Ask for comma-separated tags: tags typed are added to every selected run, and tags
        of all of them that were taken out of the list are removed (other tags stay)."""
        selected = self.selected_summaries()
        if not selected:
            return
        common = [t for t in selected[0].tags if all(t in s.tags for s in selected)]
        others = sorted({t for s in selected for t in s.tags} - set(common))
        label = ("Tags, separated by commas:" if len(selected) == 1 else
                 f"Tags of all {len(selected)} runs, separated by commas:")
        if others:
            label += f"\n(Tags that only some of them have stay: {', '.join(others)}.)"
        text, ok = QInputDialog.getText(self, "Tags", label, QLineEdit.EchoMode.Normal,
                                        ", ".join(common))
        if not ok:
            return
        wanted = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        removed = [t for t in common if t not in wanted]

        def apply(run_id: int) -> None:
            if removed:
                self.store.remove_tags(run_id, *removed)
            if wanted:
                self.store.add_tags(run_id, *wanted)

        self._change([s.id for s in selected], apply)

    def delete_selected(self) -> None:
        selected = self.selected_summaries()
        if not selected:
            return
        if len(selected) == 1:
            question = (f"Delete run #{selected[0].id} ({_first_line(selected[0].prompt, 60)})"
                        " and all its samples?")
        else:
            question = f"Delete {len(selected)} runs and all their samples?"
        answer = QMessageBox.question(
            self, "Delete runs", f"{question}\nThis cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        self._change([s.id for s in selected], self.store.delete)
        self.reported.emit(f"Deleted {len(selected)} run{'' if len(selected) == 1 else 's'}.")

    def export_selected(self) -> None:
        """Open the export dialog for the selected runs, or for every run the list matches."""
        run_ids = self.selected_run_ids()
        if not run_ids:
            try:
                run_ids = [s.id for s in self._query()]
            except PlaygroundError as error:
                self.errored.emit(str(error))
                return
        dialog = ExportDialog(self.store, run_ids, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.errored.connect(self.errored)
        dialog.finished_export.connect(self._exported)
        dialog.destroyed.connect(self._export_dialog_closed)
        self.export_dialog = dialog
        dialog.open()

    @Slot(int)
    def _exported(self, count: int) -> None:
        self.reported.emit(f"Exported {count:,} records.")

    @Slot()
    def _export_dialog_closed(self) -> None:
        self.export_dialog = None

    def choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import runs", "", "JSON Lines (*.jsonl);;All files (*)"
        )
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> Task | None:
        """Add the runs of a JSON Lines export in the background; then list and select them."""
        if self.import_task is not None:
            return None
        store_path = self.store.path

        def work(_progress: Callable[[int, int], None], _cancel: Callable[[], bool]) -> list[int]:
            with Store(store_path) as writer:
                return import_jsonl(path, writer)

        self._importing = path
        self.import_task = Task(work, "import")
        self.import_task.finished.connect(self._imported)
        self.import_task.errored.connect(self._import_failed)
        self._set_busy(f"Importing {path.name}…")
        self.import_task.start()
        return self.import_task

    @Slot(object)
    def _imported(self, run_ids: list[int]) -> None:
        self.import_task = None
        self._set_busy("")
        self.search.clear()
        self.starred_only.setChecked(False)
        self.refresh()
        self._select(run_ids, run_ids[0] if run_ids else None)
        n = len(run_ids)
        name = self._importing.name if self._importing else "the file"
        self.reported.emit(f"Imported {n} run{'' if n == 1 else 's'} from {name}.")

    @Slot(str)
    def _import_failed(self, message: str) -> None:
        self.import_task = None
        self._set_busy("")
        self.errored.emit(message)

    def _change(self, run_ids: list[int], change: Callable[[int], None]) -> None:
        """Apply a quick store change to each run, then list again; stop at the first error."""
        try:
            for run_id in run_ids:
                change(run_id)
        except PlaygroundError as error:
            self.errored.emit(str(error))
        self.refresh()

    def _set_busy(self, text: str) -> None:
        self.busy_label.setText(text)
        self.busy.setVisible(bool(text))
        self._update_actions()


class _ActionButton(QPushButton):
    """A push button that mirrors an action: text, tooltip and enabled state. `widest` is the
    longest text the action takes, so that the row does not shift when the text changes."""

    def __init__(self, action: QAction, primary: bool = False, widest: str = "") -> None:
        super().__init__(widest or action.text())
        if primary:
            self.setObjectName("primary")
        self._widest = widest
        self._action = action
        self.clicked.connect(action.trigger)
        action.changed.connect(self._sync)
        self._sync()

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        metrics = self.fontMetrics()
        extra = metrics.horizontalAdvance(self._widest) - metrics.horizontalAdvance(self.text())
        return QSize(hint.width() + max(extra, 0), hint.height())

    @Slot()
    def _sync(self) -> None:
        self.setText(self._action.text())
        self.setToolTip(self._action.toolTip())
        self.setEnabled(self._action.isEnabled())


class _RunTableModel(QAbstractTableModel):
    """The listed `RunSummary`s as table rows (read-only)."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.rows: list[RunSummary] = []
        self._row_of: dict[int, int] = {}
        self._now = datetime.now().astimezone()

    def set_rows(self, rows: list[RunSummary]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self._row_of = {s.id: i for i, s in enumerate(self.rows)}
        self._now = datetime.now().astimezone()
        self.endResetModel()

    def append_rows(self, rows: list[RunSummary]) -> None:
        new = [s for s in rows if s.id not in self._row_of]  # runs added meanwhile shift pages
        if not new:
            return
        start = len(self.rows)
        self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
        for i, summary in enumerate(new, start):
            self.rows.append(summary)
            self._row_of[summary.id] = i
        self.endInsertRows()

    def row_of(self, run_id: int) -> int | None:
        return self._row_of.get(run_id)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return HEADERS[section]
            if role == Qt.ItemDataRole.TextAlignmentRole and section in (STAR, N):
                return Qt.AlignmentFlag.AlignCenter
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        s = self.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(s, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tip(s, column)
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == STAR:
                return STARRED if s.starred else UNSTARRED
            if column == STATUS:
                return STATUS_COLORS.get(s.status)
            if column in (WHEN, TAGS):
                return MUTED
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (STAR, N):
            return Qt.AlignmentFlag.AlignCenter
        if role == Qt.ItemDataRole.UserRole:
            return s.id
        return None

    def _text(self, s: RunSummary, column: int) -> str:
        if column == STAR:
            return "★" if s.starred else "☆"
        if column == WHEN:
            return when_text(s.created_at, self._now)
        if column == STATUS:
            return s.status
        if column == N:
            return str(s.n_samples)
        if column == MODEL:
            return s.model_name
        if column == PROMPT:
            return _first_line(s.prompt)
        return ", ".join(s.tags)

    def _tip(self, s: RunSummary, column: int) -> str | None:
        if column == STAR:
            return "Unstar" if s.starred else "Star"
        if column == WHEN:
            return f"Run #{s.id}, {s.created_at.astimezone():%A %d %B %Y, %H:%M:%S}"
        if column == STATUS:
            return STATUS_TIPS.get(s.status)
        if column == N:
            return f"{s.samples_done} of {s.n_samples} samples ended"
        if column == MODEL:
            return s.model_path
        if column == PROMPT:
            prompt = s.prompt if len(s.prompt) <= 600 else s.prompt[:600] + "…"
            mode = "Chat" if s.chat else "Raw"
            system = f"System: {s.system}\n" if s.system else ""
            return f"{mode} prompt\n{system}{prompt}"
        return ", ".join(s.tags) or None


def when_text(moment: datetime, now: datetime | None = None) -> str:
    """A run's time as the list shows it, in local time: "Nov 27 14:30" (with the year when it
    is not this year's)."""
    local = moment.astimezone()
    now = now or datetime.now().astimezone()
    if local.year != now.year:
        return f"{local:%b} {local.day} {local.year}"
    return f"{local:%b} {local.day} {local:%H:%M}"


def _first_line(prompt: str, limit: int = 300) -> str:
    lines = prompt.strip().splitlines() or [""]
    first = lines[0] if len(lines[0]) <= limit else lines[0][:limit] + "…"
    return first + (" …" if len(lines) > 1 and not first.endswith("…") else "")

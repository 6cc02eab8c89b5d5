"""Choose, load and describe a model: chooser, GPU layers, progress and the info card."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from playground.catalog import CatalogModel, FoundModel, catalog_models
from playground.download import Downloaded, is_downloaded, partial_size, target_path
from playground.ui.engine_thread import LoadedModel
from playground.ui.model_download import ModelDownload
from playground.ui.server_dialog import ServerDialog
from playground.units import human_count, human_size

EMBEDDED = ""  # the chooser's data for the embedded default model
CATALOG = "catalog:"  # the chooser's data for a catalog model to download: CATALOG + its id
CHOOSER_TIP = ("The embedded SmolLM2, recent models and servers, and the GGUF files found in "
               "the models folders, then the catalog's models to download from Hugging Face. "
               "Drop a .gguf on the window to add one.")


def is_server(choice: str) -> bool:
    """Whether a chooser entry (a remembered model) is a server's URL rather than a file."""
    return choice.startswith(("http://", "https://"))


class ModelPanel(QGroupBox):
    load_requested = Signal(object, int)  # path (None: embedded), GPU layers
    connect_requested = Signal(str, object, bool)  # URL, API key or None, keep it in keyring
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.chooser = QComboBox()
        self.chooser.setToolTip(CHOOSER_TIP)
        self.chooser.setMinimumContentsLength(18)
        self.chooser.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        open_button = QPushButton("Open GGUF…")
        open_button.clicked.connect(self._open_file)
        self.server_button = QPushButton("Connect to server…")
        self.server_button.setToolTip("Use a model on a llama-server, vLLM, Ollama or other "
                                      "OpenAI-compatible server instead of a local file.")
        self.server_button.clicked.connect(self._open_server)

        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(-1, 999)
        self.gpu_layers.setSpecialValueText("all")
        self.gpu_layers.setToolTip("How many of the model's layers run on the GPU. 0 keeps "
                                   "everything on the CPU; 'all' offloads every layer.")
        self.backend = QLabel("Backend: —")
        self.backend.setWordWrap(True)

        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self._request_load)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(6)
        self.progress.hide()
        self.download = ModelDownload()
        self.download.downloaded.connect(self._downloaded)
        self.download.ended.connect(self._download_ended)
        self.chooser.currentIndexChanged.connect(self._show_action)
        self._catalog: dict[str, CatalogModel] = {}

        self.card = QLabel("No model loaded.")
        self.card.setObjectName("infoCard")
        self.card.setWordWrap(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # The chooser has a row of its own: beside a button, a sidebar narrow enough for a
        # laptop screen cut the embedded model's name.
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button, 1)
        buttons.addWidget(open_button)
        form = QFormLayout()
        form.addRow("GPU layers", self.gpu_layers)
        layout = QVBoxLayout(self)
        layout.addWidget(self.chooser)
        layout.addLayout(form)
        layout.addWidget(self.backend)
        layout.addLayout(buttons)
        layout.addWidget(self.server_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.download)
        layout.addWidget(self.card)
        self._loading = False

    # -- choices ---------------------------------------------------------------------------

    def set_choices(self, found: list[FoundModel], recent: list[str], current: str) -> None:
        self.chooser.clear()
        self.chooser.addItem("SmolLM2-135M-Instruct (embedded)", EMBEDDED)
        seen = {EMBEDDED}
        for path in recent:
            if path not in seen and is_server(path):
                self.chooser.addItem(f"{path} (server)", path)
                seen.add(path)
            elif path not in seen and Path(path).is_file():
                self.chooser.addItem(f"{Path(path).name} (recent)", path)
                seen.add(path)
        for model in found:
            key = str(model.path)
            if model.source != "embedded" and model.info and key not in seen:
                self.chooser.addItem(f"{model.path.name} ({model.source})", key)
                seen.add(key)
        self._catalog = {m.id: m for m in catalog_models() if m.downloadable}
        for model in self._catalog.values():
            if not is_downloaded(model):  # else it is listed above, as a file of the user's
                self.chooser.addItem(_catalog_label(model), CATALOG + model.id)
        skipped = [f"{m.path.name}: {m.problem}" for m in found if m.info is None]
        self.chooser.setToolTip(CHOOSER_TIP + ("\n\nSkipped:\n" + "\n".join(skipped)
                                               if skipped else ""))
        self.select(current)

    def select(self, path: str) -> None:
        index = self.chooser.findData(path)
        if index < 0:
            self.chooser.addItem(f"{path} (server)" if is_server(path) else Path(path).name, path)
            index = self.chooser.count() - 1
        self.chooser.setCurrentIndex(index)

    def chosen_path(self) -> Path | None:
        """The chosen file (where it will be, for a catalog model); None: the embedded model
        (or a server: see `chosen`)."""
        model = self.chosen_download()
        if model is not None:
            return target_path(model)
        data = self.chooser.currentData()
        return Path(data) if data and not is_server(data) else None

    def chosen(self) -> str:
        """The chooser's entry: a path, a server's URL, a catalog entry, or EMBEDDED."""
        return self.chooser.currentData() or EMBEDDED

    def _open_server(self) -> None:
        current = self.chosen()
        dialog = ServerDialog(current if is_server(current) else "", self)
        if dialog.exec():
            url, key, remember = dialog.server()
            self.select(url)
            self.connect_requested.emit(url, key, remember)

    def chosen_download(self) -> CatalogModel | None:
        """The catalog model chosen to download, if that is what is chosen."""
        data = self.chooser.currentData()
        if isinstance(data, str) and data.startswith(CATALOG):
            return self._catalog[data.removeprefix(CATALOG)]
        return None

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", "",
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.select(path)
            self._request_load()

    def _request_load(self) -> None:
        model = self.chosen_download()
        if self._loading:
            self.cancel_requested.emit()
        elif model is not None:
            self.download.start(model)
            self._show_action()
        elif is_server(self.chosen()):
            self.connect_requested.emit(self.chosen(), None, False)
        else:
            self.load_requested.emit(self.chosen_path(), self.gpu_layers.value())

    def _show_action(self) -> None:
        """The button says what it does to the chosen model; one download runs at a time."""
        model = self.chosen_download()
        if self._loading:
            return
        busy = self.download.busy
        self.load_button.setText(
            "Load" if model is None else
            "Downloading…" if busy and model == self.download.model else
            "Resume download" if partial_size(model) else "Download")
        self.load_button.setEnabled(model is None or not busy)

    def _download_ended(self) -> None:
        model = self.download.model
        index = self.chooser.findData(CATALOG + model.id) if model else -1
        if model is not None and index >= 0:  # cancelled or failed: say what it left
            self.chooser.setItemText(index, _catalog_label(model))
        self._show_action()

    def _downloaded(self, result: Downloaded) -> None:
        """The downloaded model becomes a file of the user's, ready to load."""
        index = self.chooser.findData(CATALOG + result.model_id)
        if index >= 0:
            self.chooser.setItemText(index, f"{result.path.name} (user)")
            self.chooser.setItemData(index, str(result.path))

    # -- state -----------------------------------------------------------------------------

    def set_loading(self, loading: bool) -> None:
        self._loading = loading
        self.load_button.setText("Cancel loading" if loading else "Load")
        self.chooser.setEnabled(not loading)
        self.server_button.setEnabled(not loading)
        self.progress.setVisible(loading)
        self.progress.setValue(0)
        self._show_action()

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def set_model(self, model: LoadedModel) -> None:
        if model.info.server is not None:
            self._set_server_model(model)
            return
        info, backend = model.info, model.backend
        offload = (f"{model.layers_offloaded}/{info.layers + 1} layers offloaded"
                   if backend.gpu_offload else "this build runs on the CPU only")
        self.backend.setText(f"Backend: <b>{backend.accelerator}</b> · {offload}")
        rows = [
            ("Name", info.name),
            ("Architecture", info.architecture),
            ("Parameters", human_count(info.parameters)),
            ("Quantization", info.quantization),
            ("Context", f"{model.n_ctx:,} of {info.context_length:,} tokens"),
            ("File", human_size(info.file_size)),
            ("Memory", human_size(model.memory_bytes)),
            ("Chat template", "yes" if info.has_chat_template else "no (use raw mode)"),
            ("Chinchilla data", f"{human_count(info.chinchilla_tokens)} tokens (20 × params)"),
            ("Training compute", f"{info.training_flops:.1e} FLOPs (6 × params × tokens)"),
        ]
        self._set_card(rows)
        self.card.setToolTip(info.path)

    def _set_server_model(self, model: LoadedModel) -> None:
        """A server's model: what it is, and what the server can give the views (and what
        it cannot, which the views that need it say)."""
        info, caps = model.info, model.capabilities
        self.backend.setText(f"Server: <b>{html.escape(info.server or '')}</b>")
        rows = [
            ("Model", info.name),
            ("Parameters", human_count(info.parameters) if info.parameters else "not said"),
            ("Context", f"{model.n_ctx:,} tokens" if model.n_ctx else "not said"),
            ("Alternatives", f"up to {caps.max_alternatives} per token"),
            ("Entropy", "exact" if caps.exact_entropy else "a lower bound, from the top "
                                                           "alternatives only"),
            ("Seed", "kept: runs repeat" if caps.reproducible_seed else "ignored: runs do "
                                                                        "not repeat"),
            ("Forcing a token", "yes" if caps.teacher_forcing else "off: the server cannot "
                                                                   "score a given text"),
            ("Grammar", "yes" if caps.grammar else "off: structured output is not available"),
        ]
        self._set_card(rows)
        self.card.setToolTip("\n".join(model.notices) or info.server or "")

    def _set_card(self, rows: list[tuple[str, str]]) -> None:
        body = "".join(f"<tr><td class='k'>{k}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
        self.card.setText("<style>td.k{color:#666;padding-right:8px;}</style>"
                          f"<table cellspacing='0' cellpadding='1'>{body}</table>")


def _catalog_label(model: CatalogModel) -> str:
    size = human_size(model.size_bytes or 0)
    have = partial_size(model)
    return (f"{model.name} (download {size})" if not have else
            f"{model.name} (resume: {human_size(have)} of {size})")


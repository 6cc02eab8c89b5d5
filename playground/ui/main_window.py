"""The main window: composes the panels and wires them to tasks on the engine's thread.

All state about the run on screen is the `Run` that the GUI thread fills from the generation
task's events; the views read it. Redraws are throttled to about 10 per second while streaming.
Each task (a load, a generation, a scoring) has its own signals: its Stop cancels it and no
other, and its failure resets only the panel that started it.
"""

from __future__ import annotations

import gc
import getpass
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from playground import credentials, paths
from playground.catalog import discover
from playground.errors import PlaygroundError
from playground.labels import Label, best_of_label, order_label
from playground.records import Run, RunStats
from playground.sampling_lab import Moment
from playground.store import RunRequest, open_store
from playground.ui import tasks
from playground.ui.agreement_view import AgreementView
from playground.ui.best_of_n_view import BestOfNView
from playground.ui.demos_tab import DemosTab
from playground.ui.distribution_view import DistributionView
from playground.ui.engine_thread import (
    DecodeThreads,
    EngineThread,
    LoadedModel,
    Notice,
    RewardOpened,
    Scored,
    StartedRun,
)
from playground.ui.history_panel import HistoryPanel
from playground.ui.model_panel import EMBEDDED, ModelPanel, is_server
from playground.ui.prompt_panel import PromptPanel
from playground.ui.ranking_strip import RankingStrip
from playground.ui.reward_panel import RewardPanel
from playground.ui.reward_tab import RewardTab
from playground.ui.sampling_panel import SamplingPanel
from playground.ui.settings import Settings
from playground.ui.single_run_view import SingleRunView
from playground.ui.steady_label import SteadyLabel
from playground.ui.tasks import Task
from playground.units import human_size

REDRAW_INTERVAL_MS = 100


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Sampling Playground")
        self.setAcceptDrops(True)
        self.settings = settings or Settings()
        self.prefs = self.settings.preferences()
        self.run: Run | None = None
        self.model: LoadedModel | None = None
        self._dirty = False
        self._normal_state = self.windowState()
        self._fitted = False
        """Whether the first show has fitted the window to its screen."""
        self.load_task: Task | None = None
        self.generate_task: Task | None = None
        self.score_task: Task | None = None
        """The latest task of each kind that the window started (ended or not)."""

        self.model_panel = ModelPanel()
        self.sampling_panel = SamplingPanel()
        self.prompt_panel = PromptPanel()
        self.single_view = SingleRunView()
        self.best_of_n_view = BestOfNView()
        self.views = QStackedWidget()
        self.views.addWidget(self.single_view)
        self.views.addWidget(self.best_of_n_view)
        self.banner = _Banner()
        self.store, store_notice = open_store()
        self.engine = EngineThread(self.store)
        self.run_id: int | None = None
        """The shown run's id in the history (None when it is not saved)."""
        self.history_panel = HistoryPanel(self.store)
        self.agreement_view = AgreementView(self.store)
        self.reward_panel = RewardPanel()
        self.ranking_strip = RankingStrip()
        self.demos_tab = DemosTab(self.engine)
        self.reward_tab = RewardTab(self.engine)
        self.reward_tab.trained.connect(lambda path: self.reward_panel.add_model(Path(path)))
        self._reward_bytes = 0
        self._server_keys: dict[str, str | None] = {}
        """Keys used this session, by server URL: never saved (the keyring may keep them)."""
        self._closed = False
        self._build_layout()
        self._build_status_bar()

        self.model_panel.load_requested.connect(self.load_model)
        self.model_panel.connect_requested.connect(self.connect_server)
        self.model_panel.cancel_requested.connect(lambda: _cancel(self.load_task))
        self.prompt_panel.generate_requested.connect(self.generate)
        self.prompt_panel.stop_requested.connect(lambda: _cancel(self.generate_task))
        self.best_of_n_view.ranking_changed.connect(lambda _method: self.save_rankings())
        self.history_panel.errored.connect(self.banner.show_message)
        self.history_panel.reported.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.history_panel.run_opened.connect(self.show_stored_run)
        self.history_panel.rerun_requested.connect(self.prepare_rerun)
        self.reward_panel.score_requested.connect(self.score_samples)
        self.reward_panel.cancel_requested.connect(lambda: _cancel(self.score_task))
        self.demos_tab.presenting_changed.connect(self._presenting)
        self.single_view.text.alternative_clicked.connect(
            lambda position, token: self.branch(0, position, token))
        self.best_of_n_view.alternative_clicked.connect(self.branch)
        self.distribution_view: DistributionView | None = None
        for view in (self.single_view.text, self.best_of_n_view, self.demos_tab):
            view.moment_clicked.connect(self.show_distribution)
        self.best_of_n_view.sample_preferred.connect(self.prefer_sample)
        self.best_of_n_view.ranked.connect(self.rank_samples)
        self.agreement_view.errored.connect(self.banner.show_message)
        self.agreement_view.reported.connect(lambda m: self.statusBar().showMessage(m, 8000))

        self.redraw_timer = QTimer(self)
        self.redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self.redraw_timer.timeout.connect(self._redraw)
        self._restore()
        if store_notice:
            self.banner.show_message(store_notice)

    # -- layout ----------------------------------------------------------------------------

    def _build_layout(self) -> None:
        sidebar = QWidget()
        side = QVBoxLayout(sidebar)
        side.addWidget(self.model_panel)
        side.addWidget(self.sampling_panel)
        side.addWidget(self.reward_panel)
        side.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(sidebar)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side_width = sidebar.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(side_width)

        main = QWidget()
        right = QVBoxLayout(main)
        right.addWidget(self.banner)
        generate_tab = QWidget()
        generate_layout = QVBoxLayout(generate_tab)
        generate_layout.setContentsMargins(0, 6, 0, 0)
        generate_layout.addWidget(self.prompt_panel)
        generate_layout.addWidget(self.ranking_strip)
        generate_layout.addWidget(self.views, 1)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(generate_tab, "Generate")
        self.tabs.addTab(self.demos_tab, "Demos")
        self.tabs.addTab(self.history_panel, "History")
        self.tabs.addTab(self.agreement_view, "Agreement")
        self.tabs.addTab(self.reward_tab, "Reward model")
        self.generate_tab = generate_tab
        right.addWidget(self.tabs, 1)
        self.tabs.currentChanged.connect(self._show_sidebar)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.sidebar = scroll
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(main)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([side_width, 1100])
        self.setCentralWidget(self.splitter)

    def _build_status_bar(self) -> None:
        # Their texts change while a run streams (the context at every redraw).
        self.speed_label = SteadyLabel("—")
        self.threads_label = SteadyLabel("")
        self.threads_label.setToolTip(
            "Threads per decode step: the count measured fastest now (it follows the load "
            "on this computer), or the one set with --threads")
        self.prompt_label = SteadyLabel("")
        self.context_label = SteadyLabel("")
        self.memory_label = SteadyLabel("")
        for label in (self.speed_label, self.threads_label, self.prompt_label,
                      self.context_label, self.memory_label):
            self.statusBar().addPermanentWidget(label)

    # -- model -----------------------------------------------------------------------------

    def load_model(self, path: Path | None, gpu_layers: int) -> None:
        task = self.engine.load(path, gpu_layers)
        task.progressed.connect(self.model_panel.set_progress)
        self._start_loading(task, f"Loading {path.name if path else 'the embedded model'}…",
                            self._loaded)

    def connect_server(self, url: str, api_key: str | None, remember: bool) -> None:
        """Use a server's model. The key: the one given, else the one this session used,
        else the keyring's; kept in the keyring after connecting when `remember`."""
        key = api_key or self._server_keys.get(url) or credentials.stored_key(url)

        def connected(model: LoadedModel) -> None:
            server = model.info.server or url
            self._server_keys[server] = key
            if remember:
                credentials.store_key(server, api_key)
            self.model_panel.select(server)
            self._loaded(model)
            if model.notices:
                self.banner.show_message(" ".join(model.notices))

        self._start_loading(self.engine.connect(url, key), f"Connecting to {url}…", connected)

    def _start_loading(self, task: Task, message: str,
                       done: Callable[[LoadedModel], None]) -> None:
        """Start a model's load or a server's connection: the one model task at a time."""
        self.banner.hide()
        self.model_panel.set_loading(True)
        self.prompt_panel.generate_button.setEnabled(False)
        self.statusBar().showMessage(message)
        task.finished.connect(done)
        task.errored.connect(self._load_failed)
        task.cancelled.connect(lambda: self._load_failed("Cancelled."))
        self.load_task = task.start()

    def _load_failed(self, message: str) -> None:
        self.model_panel.set_loading(False)
        self.prompt_panel.set_running(False)
        self._show_error(message)

    def _loaded(self, model: LoadedModel) -> None:
        self.model = model
        self.model_panel.set_loading(False)
        self.model_panel.set_model(model)
        self.prompt_panel.set_running(False)
        self._show_memory()
        self.statusBar().showMessage(f"Loaded {model.info.name}.", 5000)
        chosen = model.info.server or self.model_panel.chosen()
        if chosen:
            self.settings.remember_model(self.prefs, chosen)
        else:
            self.prefs.last_model = ""
        if not model.info.has_chat_template:
            self.prompt_panel.raw_button.setChecked(True)
        self.demos_tab.set_model(model.info)
        _freeze_what_is_loaded()

    # -- generation ------------------------------------------------------------------------

    def generate(self) -> None:
        if self.model is None:
            self._show_error("Load a model first.")
            return
        self.banner.hide()
        self.prompt_panel.set_running(True)
        self.statusBar().showMessage("Generating…")
        task = self.engine.generate(
            self.prompt_panel.prompt(), self.sampling_panel.params(),
            self.sampling_panel.n.value(), chat=self.prompt_panel.chat(),
            system=self.prompt_panel.system_prompt())
        task.yielded.connect(self._yielded)
        task.finished.connect(self._run_finished)
        task.errored.connect(self._generate_failed)
        task.cancelled.connect(lambda: self._generate_failed("Cancelled."))
        self.generate_task = task.start()

    def _generate_failed(self, message: str) -> None:
        self.redraw_timer.stop()
        self._redraw()
        self.prompt_panel.set_running(False)
        self._show_error(message)

    def _show_run(self, run: Run, run_id: int | None) -> None:
        """Point the views at `run`: the single view for one sample, the panels for N."""
        self.run, self.run_id = run, run_id
        self.ranking_strip.hide()
        single = len(run.samples) == 1
        self.views.setCurrentWidget(self.single_view if single else self.best_of_n_view)
        if single:
            self.single_view.clear()
            self.single_view.set_exact_entropy(run.model.exact_entropy)
            self.single_view.text.set_context(run.prompt_token_ids, run.params, run.model.path)
        else:
            self.best_of_n_view.set_run(run)

    def _run_started(self, started: StartedRun) -> None:
        run = started.run
        self._show_run(run, started.run_id)
        self.sampling_panel.show_seed(run.params.seed)
        self.prompt_label.setText(f"prompt {len(run.prompt_token_ids):,} tokens")
        self.redraw_timer.start()
        if started.notice:
            self._show_error(started.notice)

    def _yielded(self, items: list) -> None:
        for item in items:
            if isinstance(item, StartedRun):
                self._run_started(item)
            elif isinstance(item, Notice):
                self.banner.show_message(item.text)
            elif isinstance(item, DecodeThreads):
                self.threads_label.setText(f"{item.count} thread{'s' if item.count > 1 else ''}")
            elif self.run is not None:
                self.run.add(item)
        self._dirty = True

    def _run_finished(self, stats: RunStats) -> None:
        self.redraw_timer.stop()
        self._redraw()
        self.save_rankings()
        self.history_panel.refresh()
        self.prompt_panel.set_running(False)
        reasons = {s.finish_reason for s in self.run.samples} if self.run else set()
        done = "Stopped." if "cancelled" in reasons else "Done."
        self.statusBar().showMessage(
            f"{done} {stats.new_tokens:,} tokens in {stats.seconds:.1f} s", 8000)

    def save_rankings(self) -> None:
        """Record what was computed after the run (rankings, vote) with the run's history."""
        if self.run is None or self.run_id is None:
            return
        try:
            self.store.save_scores(self.run_id, self.run)
        except PlaygroundError as error:
            self.banner.show_message(f"Could not save the rankings: {error}")

    def _redraw(self) -> None:
        if not self._dirty or self.run is None:
            return
        self._dirty = False
        run = self.run
        if len(run.samples) == 1:
            self.single_view.refresh(run.samples[0])
        else:
            self.best_of_n_view.refresh()
        stats = run.stats
        if stats:
            self.speed_label.setText(f"{stats.tokens_per_second:.1f} tok/s")
        longest = max(len(s.tokens) for s in run.samples)
        if self.model:
            self.context_label.setText(
                f"context {len(run.prompt_token_ids) + longest:,} / {self.model.n_ctx:,}")

    # -- reward ----------------------------------------------------------------------------

    def score_samples(self, reward_model: str, rubric: str) -> None:
        """Score the samples on screen with a reward model, on the engine's thread."""
        run = self.run
        if run is None or not run.finished:
            self._show_error("Generate samples first, then score them.")
            return
        self.banner.hide()
        self.reward_panel.set_scoring(True)
        self.prompt_panel.generate_button.setEnabled(False)
        task = self.engine.score(reward_model, rubric or None, run.prompt,
                                 tuple(s.text for s in run.samples))
        task.yielded.connect(self._reward_opened)
        task.progressed.connect(self.reward_panel.set_progress)
        task.finished.connect(self._scored)
        task.errored.connect(self._score_failed)
        task.cancelled.connect(lambda: self._score_failed("Cancelled."))
        self.score_task = task.start()

    def _reward_opened(self, opened: list[RewardOpened]) -> None:
        self._reward_bytes = opened[-1].memory_bytes
        self.reward_panel.set_info(opened[-1].description)
        self._show_memory()

    def _score_failed(self, message: str) -> None:
        self.reward_panel.set_scoring(False)
        self.prompt_panel.set_running(False)
        self._show_error(message)

    def _scored(self, scored: Scored) -> None:
        scores = scored.scores
        self.reward_panel.set_scoring(False)
        self.prompt_panel.set_running(False)
        run = self.run
        if run is None or len(scores) != len(run.samples):
            return
        for sample, score in zip(run.samples, scores, strict=True):
            sample.scores["reward"] = score
        run.reward_models["reward"] = scored.identity
        if len(run.samples) == 1:
            self.statusBar().showMessage(f"Reward: {scores[0]:.3f}", 10000)
        else:
            self.best_of_n_view.add_ranking("reward model", "reward")
            self.best_of_n_view.refresh()
            self.ranking_strip.set_rankings(run.rank("reward"), "reward",
                                            run.rank("mean-logprob"), "mean logprob")
        self.save_rankings()

    def _show_memory(self) -> None:
        if self.model is None:
            return
        text = f"model {human_size(self.model.memory_bytes)}"
        if self._reward_bytes:
            text += f" + reward model {human_size(self._reward_bytes)}"
        self.memory_label.setText(text)

    def show_distribution(self, moment: Moment) -> None:
        """Open the sampling lab on a clicked token (one window, reused)."""
        if self.distribution_view is None:
            self.distribution_view = DistributionView(self.engine, self)
        self.distribution_view.show_moment(moment)
        self.distribution_view.show()
        self.distribution_view.raise_()

    # -- labels ----------------------------------------------------------------------------

    def prefer_sample(self, index: int) -> None:
        """Label the sample the best of the shown run, under the annotator's name."""
        run = self.run
        if self._save_label(lambda name, run_id: best_of_label(
                run.prompt, [s.text for s in run.samples], index, name, run_id)):
            self.statusBar().showMessage(f"Labelled: sample #{index} preferred.", 5000)
        self.best_of_n_view.show_preferred(self._preferred_sample())

    def rank_samples(self, order: list[int]) -> None:
        """Label the shown run with the user's own ranking, best first."""
        run = self.run
        if self._save_label(lambda name, run_id: order_label(
                run.prompt, [s.text for s in run.samples], order, name, run_id)):
            self.best_of_n_view.stop_ranking()
            self.best_of_n_view.show_preferred(None)
            places = " > ".join(f"#{i}" for i in order)
            self.statusBar().showMessage(f"Labelled: ranking {places}.", 8000)

    def annotator(self) -> str:
        return self.best_of_n_view.annotator.text().strip()

    def _save_label(self, make: Callable[[str, int], Label]) -> bool:
        if self.run is None or not self.run.finished:
            self._show_error("Label a run once its samples are finished.")
            return False
        if self.run_id is None:
            self._show_error("This run is not in the history, so it cannot be labelled.")
            return False
        name = self.annotator()
        if not name:
            self._show_error("Type your name beside “labels by”: every label says who gave it.")
            return False
        try:
            self.store.add_labels([make(name, self.run_id)])
        except PlaygroundError as error:
            self._show_error(f"Could not save the label: {error}")
            return False
        self.agreement_view.mark_stale()
        return True

    def _preferred_sample(self) -> int | None:
        """The sample the annotator's own "prefer" label of the shown run chose, if any."""
        if self.run_id is None or not self.annotator():
            return None
        try:
            labels = self.store.labels([self.run_id])
        except PlaygroundError:
            return None
        mine = [label for label in labels
                if label.source == "app" and label.annotator == self.annotator()]
        if not mine or mine[-1].samples is None:
            return None
        ranks = mine[-1].ranks
        best = [i for i, rank in enumerate(ranks) if rank == 1]
        # A "prefer" ranks one sample first and ties all the others.
        if len(best) == 1 and len(set(ranks)) == 2:
            return mine[-1].samples[best[0]]
        return None

    # -- demonstrations --------------------------------------------------------------------

    def branch(self, sample: int, position: int, token: int) -> None:
        """Force an alternative a sample's token popup offered: the branch continues in the
        hallucination demonstration, where the branches grow as a tree."""
        if self.run is None or not self.run.finished:
            self.statusBar().showMessage("Wait for the run to finish, then branch from it.", 5000)
            return
        if self.model is not None and not self.model.capabilities.teacher_forcing:
            self._show_error("Branching forces a token and scores what follows (teacher "
                             "forcing), which this server does not offer: load a local model.")
            return
        self.tabs.setCurrentWidget(self.demos_tab)
        self.demos_tab.branch_from(self.run, sample, position, token)

    def _show_sidebar(self) -> None:
        """The sidebar's settings are the Generate tab's. The Demos, with their own inputs, and
        the History take the whole width: beside the sidebar, a 1280-pixel laptop screen
        leaves them too little room."""
        self.sidebar.setVisible(
            self.tabs.currentWidget() is self.generate_tab and not self.demos_tab.presenting)

    def _presenting(self, on: bool) -> None:
        """Presentation mode: the demonstration alone, full screen."""
        self._show_sidebar()
        self.tabs.tabBar().setVisible(not on)
        self.statusBar().setVisible(not on)
        self.banner.hide()
        if on:
            self._normal_state = self.windowState()
            self.showFullScreen()
        else:
            self.setWindowState(self._normal_state)

    # -- history ---------------------------------------------------------------------------

    def show_stored_run(self, run: Run, run_id: int) -> None:
        """Show a run from the history exactly as it was shown when it was made."""
        self._show_run(run, run_id)
        self._dirty = True
        self._redraw()
        if len(run.samples) > 1:
            self.best_of_n_view.show_preferred(self._preferred_sample())
        self.tabs.setCurrentWidget(self.generate_tab)
        self.statusBar().showMessage(f"Opened run {run_id}.", 5000)

    def prepare_rerun(self, request: RunRequest) -> None:
        """Fill the controls with a stored run's prompt, settings and seed, ready to repeat."""
        self.prompt_panel.set_values(request.prompt, request.chat, request.system or "")
        self.sampling_panel.set_params(request.params)
        self.sampling_panel.seed_lock.setChecked(True)
        self.sampling_panel.n.setValue(request.n)
        embedded = paths.embedded_model_path()
        same_as_embedded = embedded is not None and Path(request.model_path) == embedded.resolve()
        self.model_panel.select(EMBEDDED if same_as_embedded else request.model_path)
        self.tabs.setCurrentWidget(self.generate_tab)
        if self.model is None or Path(self.model.info.path) != Path(request.model_path):
            self.statusBar().showMessage("That run used another model: press Load first.", 8000)

    # -- errors ----------------------------------------------------------------------------

    def _show_error(self, message: str) -> None:
        self.banner.show_message(message)
        self.statusBar().showMessage(message, 10000)

    # -- drag and drop ---------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.toLocalFile().lower().endswith(".gguf") for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            path = url.toLocalFile()
            if path.lower().endswith(".gguf"):
                self.model_panel.select(path)
                self.load_model(Path(path), self.model_panel.gpu_layers.value())
                event.acceptProposedAction()
                return

    # -- settings --------------------------------------------------------------------------

    def _restore(self) -> None:
        prefs = self.prefs
        self.model_panel.set_choices(discover(), prefs.recent_models, prefs.last_model)
        self.model_panel.gpu_layers.setValue(prefs.gpu_layers)
        self.sampling_panel.set_params(prefs.params)
        self.sampling_panel.seed_lock.setChecked(prefs.seed_locked)
        self.sampling_panel.n.setValue(prefs.n)
        self.prompt_panel.set_values(prefs.prompt, prefs.chat, prefs.system)
        self.best_of_n_view.annotator.setText(prefs.annotator or _login_name())
        geometry = self.settings.window_state("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1400, 860)
        splitter = self.settings.window_state("splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)

    def save_settings(self) -> None:
        prefs = self.prefs
        prefs.gpu_layers = self.model_panel.gpu_layers.value()
        prefs.params = self.sampling_panel.params()
        if prefs.params.seed is None:
            prefs.params = replace(prefs.params, seed=self.sampling_panel.seed.value())
        prefs.seed_locked = self.sampling_panel.seed_lock.isChecked()
        prefs.n = self.sampling_panel.n.value()
        prefs.prompt = self.prompt_panel.prompt()
        prefs.chat = self.prompt_panel.chat()
        prefs.system = self.prompt_panel.system.text()
        prefs.annotator = self.annotator()
        self.settings.save_preferences(prefs)
        self.settings.save_window_state("geometry", self.saveGeometry())
        self.settings.save_window_state("splitter", self.splitter.saveState())

    def start(self) -> None:
        """Load the last model (or the embedded one, or connect to the last server) once the
        window is up."""
        chosen = self.model_panel.chosen()
        if is_server(chosen):
            self.connect_server(chosen, None, False)
        else:
            self.load_model(self.model_panel.chosen_path(), self.model_panel.gpu_layers.value())

    def showEvent(self, event: QShowEvent) -> None:
        if not self._fitted:
            self._fitted = True
            self._fit_screen()
        super().showEvent(event)

    def _fit_screen(self) -> None:
        """Keep the window, frame included, inside its screen's free area: a saved geometry
        may come from a larger screen, and a laptop's is as small as 1280×720 less its panels.
        Run at the first show, once the window system knows the frame."""
        area = self.screen().availableGeometry()
        frame = self.frameGeometry().size() - self.geometry().size()
        self.resize(self.size().boundedTo(area.size() - frame))
        place = self.frameGeometry()
        place.moveLeft(max(area.left(), min(place.left(), area.right() - place.width() + 1)))
        place.moveTop(max(area.top(), min(place.top(), area.bottom() - place.height() + 1)))
        self.move(place.topLeft())

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        self.shut_down()
        super().closeEvent(event)

    def shut_down(self) -> None:
        """Cancel every task and wait for them; llama.cpp is freed on its own thread."""
        if self._closed:
            return
        self._closed = True
        tasks.shut_down_background()
        self.engine.shut_down()
        self.store.close()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this user id (a container, say)
        return ""


def _cancel(task: Task | None) -> None:
    if task is not None:
        task.cancel()


class _Banner(QWidget):
    """A one-line message above the prompt for errors; dismissable, never modal."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("banner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        close = QPushButton("✕")
        close.setFlat(True)
        close.setFixedWidth(28)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.hide()

    def show_message(self, message: str) -> None:
        self.label.setText(message)
        self.show()


def _freeze_what_is_loaded() -> None:
    """Leave the objects alive now (Qt's wrappers, the modules, the model's) out of the
    garbage collector's later passes.

    They are most of what a full collection walks: about 30 ms on an idle machine, and 70 ms
    of a blocked window during a run, where the GUI thread shares the cores with the decode.
    Frozen, they are not walked: a full collection takes a millisecond or so. What an earlier
    freeze kept is thawed and collected first, so the cycles of a model loaded before this one
    are freed, not kept for good.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()

"""The window on a server: "Connect to server…", the model card saying what the server can
and cannot give, the views filled from it with the entropy labelled a lower bound, and the
server remembered in the settings (the key only in the keyring). The screenshot test uses the
real llama-server with the embedded model."""

from __future__ import annotations

import os
from pathlib import Path

from fake_server import Behaviour, FakeServer

from playground.sampling import SamplingParams
from playground.ui.main_window import MainWindow
from playground.ui.settings import Settings

TIMEOUT = 120_000


def connect(qtbot, window: MainWindow, url: str, key: str | None = None) -> None:
    window.connect_server(url, key, False)
    qtbot.waitUntil(lambda: window.model is not None and window.model.info.server == url
                    and window.prompt_panel.generate_button.isEnabled(), timeout=TIMEOUT)


def generate(qtbot, window: MainWindow, n: int, params: SamplingParams,
             prompt: str = "Why is the sky blue?") -> None:
    window.prompt_panel.set_values(prompt, chat=True, system="")
    window.sampling_panel.set_params(params)
    window.sampling_panel.seed_lock.setChecked(True)
    window.sampling_panel.n.setValue(n)
    window.generate()
    qtbot.waitUntil(lambda: window.run is not None and window.run.finished
                    and window.prompt_panel.generate_button.isEnabled(), timeout=TIMEOUT)


def test_a_server_fills_the_views_and_says_what_it_lacks(qtbot, window: MainWindow) -> None:
    with FakeServer(Behaviour(api_key="sesame")) as fake:
        connect(qtbot, window, fake.url, "sesame")
        card = window.model_panel.card.text()
        assert "fake-model" in card and "a lower bound" in card
        assert "off: the server cannot score a given text" in card
        assert fake.url in window.model_panel.backend.text()
        generate(qtbot, window, 2, SamplingParams(seed=0, top_logprobs=2))
        assert [s.text for s in window.run.samples] == ["Hello, world!", ", world!"]
        assert window.views.currentWidget() is window.best_of_n_view
        # The popup of a token from the server shows its entropy as a lower bound.
        view = window.best_of_n_view._panels[0].text_view
        view.show_popup_for(0)
        assert view.popup.isVisible()
        assert view.popup._values["entropy"].text().startswith("≥ ")
        # Branching from an alternative needs teacher forcing: said, not attempted.
        window.branch(0, 1, 101)
        assert "teacher forcing" in window.banner.label.text()
        assert window.tabs.currentWidget() is window.generate_tab
        # A run of one sample: the chart's key says it too.
        generate(qtbot, window, 1, SamplingParams(seed=0, top_logprobs=2))
        assert "at least" in window.single_view.chart._entropy_key.text()
    window.save_settings()
    prefs = Settings().preferences()
    assert prefs.last_model == fake.url and fake.url in prefs.recent_models
    settings_file = Path(os.environ["PLAYGROUND_DATA_DIR"]) / "settings.ini"
    assert "sesame" not in settings_file.read_text()


def test_a_dropped_stream_keeps_the_samples_interrupted(qtbot, window: MainWindow) -> None:
    with FakeServer(Behaviour(drop_after=3, faults_from=2)) as fake:
        connect(qtbot, window, fake.url)
        window.prompt_panel.set_values("hi", chat=True, system="")
        window.sampling_panel.set_params(SamplingParams(seed=0, top_logprobs=2))
        window.sampling_panel.seed_lock.setChecked(True)
        window.sampling_panel.n.setValue(2)
        window.generate()
        qtbot.waitUntil(lambda: window.banner.isVisible()
                        and window.prompt_panel.generate_button.isEnabled(), timeout=TIMEOUT)
    assert "dropped" in window.banner.label.text()
    assert [s.finish_reason for s in window.run.samples] == ["interrupted"] * 2
    assert [len(s.tokens) for s in window.run.samples] == [3, 3]
    (summary,) = window.store.list_runs()
    assert summary.status == "interrupted"


def test_a_buffering_proxy_is_said_in_the_banner(qtbot, window: MainWindow) -> None:
    with FakeServer(Behaviour(buffer=0.8, faults_from=2)) as fake:
        connect(qtbot, window, fake.url)
        assert not window.banner.isVisible()
        generate(qtbot, window, 2, SamplingParams(seed=0, top_logprobs=2))
    assert [s.text for s in window.run.samples] == ["Hello, world!", ", world!"]
    qtbot.waitUntil(window.banner.isVisible, timeout=TIMEOUT)
    assert "buffers server-sent events" in window.banner.label.text()


def test_a_server_that_is_down_is_a_banner(qtbot, window: MainWindow) -> None:
    with FakeServer() as fake:
        url = fake.url
    window.connect_server(url, None, False)
    qtbot.waitUntil(window.banner.isVisible, timeout=TIMEOUT)
    assert "connection refused" in window.banner.label.text()
    assert window.model.info.server is None  # the loaded model stays


def test_best_of_n_from_llama_server_screenshot(qtbot, window: MainWindow, llama_server_url: str,
                                               tmp_path: Path) -> None:
    window.resize(1440, 900)
    connect(qtbot, window, llama_server_url)
    generate(qtbot, window, 4, SamplingParams(temperature=0.9, seed=5, max_tokens=40,
                                              top_logprobs=5))
    assert len(window.run.samples) == 4 and all(s.tokens for s in window.run.samples)
    assert {s.seed for s in window.run.samples} == {5, 6, 7, 8}
    view = window.best_of_n_view._panels[1].text_view
    view.show_popup_for(2)
    out = Path(os.environ.get("PLAYGROUND_SCREENSHOT_DIR", tmp_path)) / "best_of_n_server.png"
    assert window.grab().save(str(out))
    assert out.stat().st_size > 10_000

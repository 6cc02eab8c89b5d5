"""A chat template that renders forever stops with a message, and the window goes on working."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models

from playground import chat
from playground.sampling import SamplingParams
from playground.ui.main_window import MainWindow

FOREVER = ("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
           "{{ messages[0]['content'] }}")


def test_a_template_without_end_leaves_the_window_usable(qtbot, window: MainWindow,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(chat, "RENDER_SECONDS", 1.5)
    looping = tiny_models.write_tiny_llama(tmp_path / "looping.gguf", chat_template=FOREVER)
    window.load_model(looping, 0)
    qtbot.waitUntil(lambda: Path(window.model.info.path) == looping.resolve(), timeout=60_000)
    window.prompt_panel.set_values("hello", chat=True, system="")
    window.sampling_panel.set_params(SamplingParams(seed=1, max_tokens=4))
    window.generate()
    qtbot.waitUntil(lambda: window.banner.isVisible()
                    and "chat template" in window.banner.label.text(), timeout=30_000)
    assert "stopped" in window.banner.label.text()
    assert window.prompt_panel.generate_button.isEnabled()
    # The same model in raw mode, no template involved, generates as usual.
    window.prompt_panel.set_values("hello", chat=False, system="")
    window.generate()
    qtbot.waitUntil(lambda: window.run is not None and window.run.finished
                    and window.prompt_panel.generate_button.isEnabled(), timeout=60_000)
    assert window.run.samples[0].tokens

"""User preferences and window state, kept apart, in one INI file in the data dir.

The file lives in `paths.data_dir()`, which PLAYGROUND_DATA_DIR moves: tests never touch the
user's real settings. Each preference is declared once below with its type and default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from playground import paths
from playground.errors import PlaygroundError
from playground.sampling import SamplingParams

MAX_RECENT = 8


@dataclass
class Preferences:
    """What the user chose last time; restored at start."""

    last_model: str = ""
    """Path of the last model loaded; empty for the embedded default."""
    recent_models: list[str] = field(default_factory=list)
    gpu_layers: int = 0
    params: SamplingParams = field(default_factory=SamplingParams)
    seed_locked: bool = False
    n: int = 1
    chat: bool = True
    system: str = ""
    prompt: str = "Why is the sky blue? Answer in two sentences."
    annotator: str = ""
    """The name saved with the labels the user gives; empty for the login name."""


class Settings:
    def __init__(self) -> None:
        self._q = QSettings(str(paths.data_dir() / "settings.ini"), QSettings.Format.IniFormat)

    def preferences(self) -> Preferences:
        defaults = Preferences()
        values: dict[str, Any] = {}
        for f in fields(Preferences):
            raw = self._q.value(f"preferences/{f.name}")
            if raw is None:
                continue
            try:
                value = _decode(f.name, json.loads(raw))
            except (ValueError, TypeError, PlaygroundError):
                continue  # a damaged or outdated entry: keep its default
            if isinstance(value, type(getattr(defaults, f.name))):
                values[f.name] = value
        return Preferences(**values)

    def save_preferences(self, prefs: Preferences) -> None:
        for f in fields(Preferences):
            value = getattr(prefs, f.name)
            if isinstance(value, SamplingParams):
                value = value.to_json()
            self._q.setValue(f"preferences/{f.name}", json.dumps(value))
        self._q.sync()

    def remember_model(self, prefs: Preferences, path: str) -> None:
        recent = [p for p in prefs.recent_models if p != path]
        prefs.recent_models = [path, *recent][:MAX_RECENT]
        prefs.last_model = path

    # Window state: geometry and splitters, restored as they were.
    def window_state(self, key: str) -> QByteArray | None:
        value = self._q.value(f"window/{key}")
        return value if isinstance(value, QByteArray) else None

    def save_window_state(self, key: str, state: QByteArray) -> None:
        self._q.setValue(f"window/{key}", state)


def _decode(name: str, value: Any) -> Any:
    if name == "params":
        value = dict(value)
        value["stop"] = tuple(value.get("stop", ()))
        return SamplingParams(**value).validate()
    return value

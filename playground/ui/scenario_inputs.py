"""The numbers of a demonstration's scenario: N, temperature, max tokens and a seed, in one row.

Every demonstration view shows the ones it uses, with the same ranges everywhere, and reads
them back with one `params()`: the scenario's `SamplingParams` with the boxes' values in it.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from playground.sampling import SamplingParams
from playground.ui.colors import SAMPLE_COLORS

MAX_TOKENS = 2048
MAX_N = len(SAMPLE_COLORS)
"""The views tell samples apart by colour: no more samples than colours."""
RANDOM_SEED = -1
"""The seed box's value meaning "draw a new seed every run"."""


class ScenarioInputs(QWidget):
    """Temperature and max tokens; N when `n_label` is given; a seed box when `seed` is True."""

    def __init__(self, n_label: str | None = None, *, seed: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._params = SamplingParams()
        self.n = QSpinBox()
        # Every demonstration with an N compares its samples: one is not a comparison.
        self.n.setRange(2, MAX_N)
        self.n.setToolTip("How many samples to compare")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setToolTip("Higher is more random; 0 always takes the most likely token")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, MAX_TOKENS)
        self.max_tokens.setToolTip("Each answer stops after this many tokens")
        self.seed = QSpinBox()
        self.seed.setRange(RANDOM_SEED, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("The seed of the first sample; \"random\" draws a new one each time")

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        boxes = [(n_label, self.n), ("Temperature", self.temperature),
                 ("Max tokens", self.max_tokens), ("Seed" if seed else None, self.seed)]
        for label, box in boxes:
            if label is None:
                box.hide()
                continue
            layout.addWidget(QLabel(label))
            layout.addWidget(box)
            layout.addSpacing(12)
        layout.addStretch(1)
        self._has_seed = seed

    def add(self, widget: QWidget) -> None:
        """Put a view's own input at the end of the row."""
        layout = self.layout()
        layout.insertWidget(layout.count() - 1, widget)

    def set_params(self, params: SamplingParams, n: int = 2) -> None:
        """Show a scenario's settings (`Scenario.params(profile)`); the others are kept for
        `params()`."""
        self._params = params
        self.n.setValue(n)
        self.temperature.setValue(params.temperature)
        self.max_tokens.setValue(params.max_tokens)
        self.seed.setValue(RANDOM_SEED if params.seed is None else params.seed)

    def params(self) -> tuple[SamplingParams, int]:
        """The scenario's parameters with the boxes' values, checked, and N."""
        values = {"temperature": self.temperature.value(), "max_tokens": self.max_tokens.value()}
        if self._has_seed:
            seed = self.seed.value()
            values["seed"] = None if seed == RANDOM_SEED else seed
        return replace(self._params, **values).validate(), self.n.value()

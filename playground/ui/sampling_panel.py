"""Sampling controls with plain-language tooltips, presets, the seed lock and N."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from playground.engine import MAX_SAMPLES
from playground.sampling import MAX_SEED, PRESETS, SAMPLER_ORDERS, SamplingParams

TIPS = {
    "temperature": "How adventurous the choice of each token is. 0 always takes the most likely "
    "token; 1 samples the model's own probabilities; above 1 flattens them, so unlikely tokens "
    "come up more often.",
    "top_k": "Only the k most likely tokens may be chosen. 0 turns this off.",
    "top_p": "Nucleus sampling: only the most likely tokens whose probabilities add up to p may "
    "be chosen. 1 turns this off.",
    "min_p": "Drop tokens less likely than this fraction of the most likely one. 0 turns this "
    "off.",
    "repeat_penalty": "Makes tokens that appeared recently less likely. 1 turns this off.",
    "max_tokens": "Stop after this many new tokens.",
    "stop": "Stop when the text contains one of these. Separate several with commas; write a "
    "line break as \\n.",
    "seed": "The random seed. Locked, the same seed and settings give exactly the same text "
    "again. Unlocked, every run draws a new seed (shown here afterwards, so you can lock it).",
    "n": "How many samples to generate side by side from the same prompt (best-of-N). They "
    "are decoded together, and sample i uses seed + i.",
    "top_logprobs": "How many alternative tokens to record for every position.",
    "sampler_order": "When temperature applies. First (Hugging Face, OpenAI, and this app "
    "until now): it reshapes the distribution, then top-k, top-p and min-p cut it. Last "
    "(llama.cpp): they cut the model's own distribution, and temperature reshapes only what "
    "they kept, so a high temperature cannot let more tokens in.",
}
ORDER_NAMES = {"temperature-first": "Temperature first", "temperature-last": "Temperature last "
               "(llama.cpp)"}


class SamplingPanel(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sampling", parent)
        presets = QHBoxLayout()
        for name, params in PRESETS.items():
            button = QPushButton(name)
            button.setToolTip(_preset_tip(name, params))
            button.clicked.connect(lambda _=False, p=params: self.apply_preset(p))
            presets.addWidget(button)

        self.temperature = _double(0, 5, 0.05, 2, "temperature")
        self.top_k = _int(0, 100_000, "top_k", special="off")
        self.top_p = _double(0.01, 1, 0.01, 2, "top_p")
        self.min_p = _double(0, 1, 0.01, 2, "min_p", special="off")
        self.repeat_penalty = _double(0.5, 3, 0.05, 2, "repeat_penalty")
        self.sampler_order = QComboBox()
        for order in SAMPLER_ORDERS:
            self.sampler_order.addItem(ORDER_NAMES[order], order)
        self.sampler_order.setToolTip(TIPS["sampler_order"])
        self.max_tokens = _int(1, 16_384, "max_tokens")
        self.stop = QLineEdit()
        self.stop.setPlaceholderText("e.g. \\n\\n")
        self.stop.setToolTip(TIPS["stop"])
        self.seed = _int(0, MAX_SEED, "seed")
        self.seed_lock = QToolButton()
        self.seed_lock.setCheckable(True)
        self.seed_lock.setToolTip(TIPS["seed"])
        self.seed_lock.toggled.connect(self._show_lock)
        self._show_lock(False)
        self.n = _int(1, MAX_SAMPLES, "n")
        self.top_logprobs = _int(1, 50, "top_logprobs")

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.seed_lock)
        form = QFormLayout()
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Top-p", self.top_p)
        form.addRow("Min-p", self.min_p)
        form.addRow("Repetition penalty", self.repeat_penalty)
        form.addRow("Order", self.sampler_order)
        form.addRow("Max new tokens", self.max_tokens)
        form.addRow("Stop strings", self.stop)
        form.addRow("Seed", seed_row)
        form.addRow("Samples (N)", self.n)
        form.addRow("Alternatives", self.top_logprobs)
        layout = QVBoxLayout(self)
        layout.addLayout(presets)
        layout.addLayout(form)

    def params(self) -> SamplingParams:
        """The chosen parameters, checked by the same `validate` as every request (the boxes'
        ranges keep them valid); the seed is None (a fresh one) unless it is locked."""
        return SamplingParams(
            temperature=self.temperature.value(),
            top_k=self.top_k.value(),
            top_p=self.top_p.value(),
            min_p=self.min_p.value(),
            repeat_penalty=self.repeat_penalty.value(),
            seed=self.seed.value() if self.seed_lock.isChecked() else None,
            max_tokens=self.max_tokens.value(),
            stop=self._stops(),
            top_logprobs=self.top_logprobs.value(),
            sampler_order=self.sampler_order.currentData(),
        ).validate()

    def set_params(self, params: SamplingParams) -> None:
        self.temperature.setValue(params.temperature)
        self.top_k.setValue(params.top_k)
        self.top_p.setValue(params.top_p)
        self.min_p.setValue(params.min_p)
        self.repeat_penalty.setValue(params.repeat_penalty)
        self.max_tokens.setValue(params.max_tokens)
        self.stop.setText(",".join(s.replace("\n", "\\n").replace("\t", "\\t")
                                   for s in params.stop))
        self.top_logprobs.setValue(max(1, params.top_logprobs))
        self.sampler_order.setCurrentIndex(self.sampler_order.findData(params.sampler_order))
        if params.seed is not None:
            self.seed.setValue(params.seed)

    def apply_preset(self, preset: SamplingParams) -> None:
        """Take the preset's sampling filters; keep length, stops, seed, alternatives, order."""
        mine = self.params()
        self.set_params(replace(preset, max_tokens=mine.max_tokens, stop=mine.stop,
                                top_logprobs=mine.top_logprobs, seed=mine.seed,
                                sampler_order=mine.sampler_order))

    def show_seed(self, seed: int) -> None:
        """Show the seed a run used, so that locking it repeats that run."""
        self.seed.setValue(seed)

    def _stops(self) -> tuple[str, ...]:
        parts = (p.replace("\\n", "\n").replace("\\t", "\t") for p in self.stop.text().split(","))
        return tuple(p for p in parts if p)

    def _show_lock(self, locked: bool) -> None:
        self.seed_lock.setText("Locked" if locked else "New each run")


def _preset_tip(name: str, p: SamplingParams) -> str:
    return (f"{name}: temperature {p.temperature}, top-k {p.top_k or 'off'}, top-p {p.top_p}, "
            f"min-p {p.min_p or 'off'}")


def _double(lo: float, hi: float, step: float, decimals: int, tip: str,
            special: str = "") -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setToolTip(TIPS[tip])
    box.setSpecialValueText(special)
    return box


def _int(lo: int, hi: int, tip: str, special: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setToolTip(TIPS[tip])
    box.setSpecialValueText(special)
    return box

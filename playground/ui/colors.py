"""The app's colours: the probability heat-map scale and one colour per sample."""

from __future__ import annotations

import itertools

from PySide6.QtGui import QColor

# Light backgrounds keep black text readable: a token the model was sure of is barely tinted,
# an unlikely one stands out. Stops are (probability, colour); between them colours blend.
PROBABILITY_STOPS: tuple[tuple[float, QColor], ...] = (
    (0.0, QColor("#f4a3a3")),   # red: the model found this token unlikely
    (0.25, QColor("#f8c99b")),  # orange
    (0.5, QColor("#fbe7a1")),   # yellow
    (0.75, QColor("#d9efc2")),  # pale green
    (1.0, QColor("#eef6ea")),   # near white: the model was sure
)

# Okabe-Ito, distinguishable with colour-vision deficiencies, then a few more.
SAMPLE_COLORS: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
    "#882255", "#44AA99", "#117733", "#999933", "#AA4499", "#332288", "#DDCC77", "#88CCEE",
)


def probability_color(p: float) -> QColor:
    """Background colour of a token whose raw probability is `p`."""
    p = min(max(p, 0.0), 1.0)
    for (p0, c0), (p1, c1) in itertools.pairwise(PROBABILITY_STOPS):
        if p <= p1:
            t = (p - p0) / (p1 - p0)
            return QColor.fromRgbF(
                c0.redF() + t * (c1.redF() - c0.redF()),
                c0.greenF() + t * (c1.greenF() - c0.greenF()),
                c0.blueF() + t * (c1.blueF() - c0.blueF()),
            )
    return QColor(PROBABILITY_STOPS[-1][1])


def sample_color(index: int) -> QColor:
    return QColor(SAMPLE_COLORS[index % len(SAMPLE_COLORS)])

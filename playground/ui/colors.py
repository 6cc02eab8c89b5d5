"""The app's colours: the probability heat-map scale, one colour per sample, and every colour
that means something (good, bad, flagged, the winner...). Views take them from here, so that
one meaning has one colour everywhere; only neutral chrome (text greys, borders) stays local."""

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

# What an outcome means. GOOD and BAD are Okabe-Ito green and vermillion, told apart also with
# colour-vision deficiencies; FAIR is between them.
GOOD = QColor("#009E73")
"""Valid; agrees with the most common answer."""
FAIR = QColor("#E69F00")
"""Between the two: valid only after repair."""
BAD = QColor("#D55E00")
"""Invalid; disagrees with the most common answer."""
BAD_ROW = QColor("#fdecea")
"""The background of a table row whose outcome is bad."""
FLAGGED = QColor("#f7b6ae")
"""The background of a sentence that the other answers do not support."""
WARNING_BACKGROUND, WARNING_BORDER = QColor("#fff4e0"), QColor("#f0c987")
"""A box that points out a problem (mistakes the model repeats)."""
WARNING_TEXT = QColor("#b35c00")
"""A word that points out a disagreement."""
DIFFERS = QColor("#fde2b8")
"""A ranking chip where two rankings put different samples."""
SAME = QColor("#eef1f5")
"""A ranking chip where they agree."""
ERROR_TEXT = QColor("#8a1c12")
"""A one-line error shown in place."""
WINNER = QColor("#c98a00")
"""The best-ranked sample: its badge and frame."""
WINNER_BACKGROUND = QColor("#fffaf0")
CHOSEN = QColor("#0072B2")
"""The token the model drew, among its alternatives; the token under the pointer."""
STARRED, UNSTARRED = QColor("#d99a00"), QColor("#c4c8ce")
INTERRUPTED, RUNNING = QColor("#b45309"), QColor("#1f6feb")
"""A stored run's status."""

# Series in charts.
ENTROPY = QColor("#6a51a3")
KEPT = QColor("#3a8f5c")
"""How many tokens the sampling filters kept; the kept share in the sampling lab."""
PER_WORD, PER_CHARACTER = QColor("#1f6feb"), QColor("#e8833a")
TOKEN_CHIPS = (QColor("#dbe8ff"), QColor("#ffe3c2"))
"""Alternating backgrounds that show where one token ends and the next begins."""


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

"""What every demonstration's view provides to the Demos tab (see demos_tab.py).

A view holds the demonstration's inputs (filled from a scenario, editable), turns them into a
`Job` that runs on the engine's thread (the work itself is a `playground.scenarios` runner), and
shows the job's result. Its `sections` are the parts that presentation mode reveals one step at
a time, in order; the first is the inputs.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QWidget

from playground.scenarios import Scenario
from playground.ui.worker import Job


class DemoView(QWidget):
    demo = ""
    """The demonstration's name in `playground.scenarios.DEMOS`."""

    job_requested = Signal(object)
    """A Job the view wants run on its own (e.g. a branch after a click), besides `job()`."""

    def set_scenario(self, scenario: Scenario, profile: str) -> None:
        """Fill the inputs from `scenario` with the settings for `profile` and clear results."""
        raise NotImplementedError

    def job(self) -> Job:
        """The work for the inputs as they are; raise InvalidRequestError for bad input."""
        raise NotImplementedError

    def show_result(self, result: Any) -> None:
        """Show what a job of this view returned (from `job()` or `job_requested`)."""
        raise NotImplementedError

    def sections(self) -> list[QWidget]:
        """The view's parts in reveal order, one per scenario step."""
        raise NotImplementedError


def caption(text: str) -> QLabel:
    """A section's heading: a short plain sentence saying what the section shows."""
    label = QLabel(text)
    label.setObjectName("caption")
    label.setWordWrap(True)
    return label


def note(text: str = "") -> QLabel:
    """A line of secondary text under a section: figures, or what to look for."""
    label = QLabel(text)
    label.setObjectName("note")
    label.setWordWrap(True)
    return label

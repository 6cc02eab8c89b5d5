"""Which view shows each demonstration of the registry (`playground.demos.DEMOS`): the UI's
one line per demonstration."""

from __future__ import annotations

from playground.ui.base_instruct_view import BaseInstructView
from playground.ui.demo_view import DemoView
from playground.ui.hallucination_view import HallucinationView
from playground.ui.host_nondeterminism_view import HostNondeterminismView
from playground.ui.inconsistency_view import InconsistencyView
from playground.ui.languages_view import LanguagesView
from playground.ui.robustness_view import RobustnessView
from playground.ui.structured_view import StructuredView

VIEWS: dict[str, type[DemoView]] = {
    view.demo: view
    for view in (
        InconsistencyView,
        HallucinationView,
        RobustnessView,
        StructuredView,
        LanguagesView,
        BaseInstructView,
        HostNondeterminismView,
    )
}
"""Every demonstration's view class, by the demonstration's name (`DemoView.demo`)."""

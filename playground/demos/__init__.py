"""The demonstrations: one module each (its algorithm, runner, result and CLI summary), listed
here in the order the app shows them. The CLI and the Demos tab read this registry and know no
demonstration by name; a new one is its module plus one line below (and its view in the UI).

What they share (the `Demo` entry, its `DemoRequest`, the ready scenarios) is in `scenario`.
"""

from __future__ import annotations

from playground.demos import (
    base_instruct,
    hallucination,
    host_nondeterminism,
    inconsistency,
    robustness,
    structured,
    tokens,
)
from playground.demos.scenario import Demo

DEMOS: dict[str, Demo] = {
    demo.name: demo
    for demo in (
        inconsistency.DEMO,
        hallucination.DEMO,
        robustness.DEMO,
        structured.DEMO,
        tokens.DEMO,
        base_instruct.DEMO,
        host_nondeterminism.DEMO,
    )
}
"""Every demonstration by name, in the order the app lists them."""

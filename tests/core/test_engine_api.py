"""The engine interface: the local engine has all of it, and callers ask its capabilities."""

from __future__ import annotations

from dataclasses import replace

import pytest

from playground.demos.hallucination import score_claim
from playground.demos.structured import run_structured
from playground.engine import LocalEngine
from playground.engine_api import Engine
from playground.errors import UnsupportedModelError
from playground.sampling import SamplingParams


def test_the_local_engine_has_every_member_of_the_interface(tiny_engine: LocalEngine):
    members = {name for name in dir(Engine) if not name.startswith("_")}
    members |= set(Engine.__annotations__)
    missing = sorted(name for name in members if not hasattr(tiny_engine, name))
    assert not missing
    assert tiny_engine.capabilities.to_json() == {
        "max_alternatives": 100, "max_samples": 32, "exact_entropy": True,
        "teacher_forcing": True, "grammar": True, "hidden_states": True,
        "reproducible_seed": True}


def test_a_missing_capability_is_named_before_any_work(tiny_engine: LocalEngine,
                                                       monkeypatch: pytest.MonkeyPatch):
    full = LocalEngine.capabilities
    monkeypatch.setattr(tiny_engine, "capabilities", replace(full, grammar=False))
    with pytest.raises(UnsupportedModelError, match=r"^the structured-output demonstration needs "
                       r"grammar, which this engine does not offer$"):
        run_structured(tiny_engine, "hi", {"type": "boolean"}, SamplingParams(seed=1), 2,
                       chat=False)
    monkeypatch.setattr(tiny_engine, "capabilities", replace(full, teacher_forcing=False))
    with pytest.raises(UnsupportedModelError, match="needs teacher forcing"):
        score_claim(tiny_engine, tiny_engine.tokenize("the"), " cat")
    monkeypatch.setattr(tiny_engine, "capabilities", full)
    assert len(score_claim(tiny_engine, tiny_engine.tokenize("the"), " cat")) >= 1

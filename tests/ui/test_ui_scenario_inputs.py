"""The demonstrations' one row of numbers: a scenario's settings go in and come back out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from playground.demos.scenario import scenarios
from playground.errors import InvalidRequestError
from playground.ui.scenario_inputs import MAX_N, RANDOM_SEED, ScenarioInputs


@pytest.mark.parametrize("profile", ["small", "medium"])
def test_every_scenario_round_trips(qtbot, profile: str):
    inputs = ScenarioInputs("N", seed=True)
    qtbot.addWidget(inputs)
    for scenario in scenarios():
        params, n = scenario.params(profile)
        inputs.set_params(params, max(n, 2))
        assert inputs.params() == (params, max(n, 2)), scenario.name


def test_the_boxes_change_only_their_own_parameters(qtbot):
    inputs = ScenarioInputs()
    qtbot.addWidget(inputs)
    params, _n = next(s for s in scenarios() if s.demo == "inconsistency").params("small")
    inputs.set_params(params)
    inputs.temperature.setValue(1.5)
    inputs.max_tokens.setValue(7)
    inputs.seed.setValue(99)  # not shown: the scenario's seed stays
    assert inputs.params()[0] == replace(params, temperature=1.5, max_tokens=7)
    assert inputs.n.isHidden() and inputs.seed.isHidden()


def test_seed_box_random_means_a_new_seed(qtbot):
    inputs = ScenarioInputs("Runs", seed=True)
    qtbot.addWidget(inputs)
    params, n = next(s for s in scenarios() if s.demo == "inconsistency").params("small")
    inputs.set_params(replace(params, seed=None), n)
    assert inputs.seed.value() == RANDOM_SEED and inputs.seed.text() == "random"
    assert inputs.params()[0].seed is None
    inputs.seed.setValue(1234)
    assert inputs.params()[0].seed == 1234


def test_one_set_of_ranges(qtbot):
    inputs = ScenarioInputs("N")
    qtbot.addWidget(inputs)
    assert (inputs.n.minimum(), inputs.n.maximum()) == (2, MAX_N)
    assert (inputs.temperature.minimum(), inputs.temperature.maximum()) == (0.0, 2.0)
    assert (inputs.max_tokens.minimum(), inputs.max_tokens.maximum()) == (1, 2048)
    params, _n = scenarios()[0].params("small")
    inputs.set_params(replace(params, top_p=0.0))  # out of range: params() says so
    with pytest.raises(InvalidRequestError):
        inputs.params()

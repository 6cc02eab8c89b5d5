"""The base-against-instruct view, run end to end on two tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models

from playground.demos.scenario import find_scenario
from playground.errors import InvalidRequestError
from playground.ui.base_instruct_view import BaseInstructView


def _quiet(_done: int, _total: int) -> None:
    pass


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    return tiny_models.write_tiny_llama(tmp_path / "base.gguf", chat_template=None)


@pytest.fixture
def view(qtbot) -> BaseInstructView:
    widget = BaseInstructView()
    qtbot.addWidget(widget)
    return widget


def test_both_runs_are_shown(view: BaseInstructView, base_path: Path,
                             tiny_model_path: Path) -> None:
    scenario = find_scenario("base-vs-instruct-capital")
    view.set_scenario(scenario, "small")
    assert len(view.sections()) == len(scenario.steps)
    view.base_model.set_path(base_path)
    view.instruct_model.set_path(tiny_model_path)
    view.inputs.max_tokens.setValue(6)

    result = view.job().work(None, _quiet, lambda: False)
    view.show_result(result)

    assert not result.base.chat
    assert result.instruct.chat
    assert result.base.prompt == result.instruct.prompt == scenario.prompt
    for side, run in ((view.base, result.base), (view.instruct, result.instruct)):
        tokens = run.samples[0].tokens
        assert tokens
        assert [t.id for t in side.text.tokens] == [t.id for t in tokens]
        assert len(side.chart.values()) == len(tokens)
        assert Path(run.model.path).stem in side.title.text()
        assert f"{len(tokens)} tokens" in side.ending.text()


def test_an_instruct_model_needs_a_chat_template(view: BaseInstructView,
                                                 base_path: Path) -> None:
    view.set_scenario(find_scenario("base-vs-instruct-capital"), "small")
    view.base_model.set_path(base_path)
    view.instruct_model.set_path(base_path)
    view.inputs.max_tokens.setValue(2)
    job = view.job()
    assert not job.needs_engine
    with pytest.raises(InvalidRequestError) as raised:
        job.work(None, _quiet, lambda: False)
    assert "\n" not in str(raised.value)
    assert "chat template" in str(raised.value)


def test_a_missing_model_file_is_refused(view: BaseInstructView, tmp_path: Path) -> None:
    view.set_scenario(find_scenario("base-vs-instruct-capital"), "small")
    view.base_model.set_path(tmp_path / "nowhere.gguf")
    with pytest.raises(InvalidRequestError):
        view.job()

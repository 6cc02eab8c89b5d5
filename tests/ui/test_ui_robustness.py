"""The robustness view against real tiny-model runs: one table row per variant, the agreement
marks and the summary as the result has them."""

from __future__ import annotations

import math

import pytest

from playground.demos.robustness import RobustnessResult
from playground.demos.scenario import find_scenario
from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.ui.robustness_view import RobustnessView

SCENARIO = find_scenario("robustness-red-planet")


@pytest.fixture
def view(qtbot) -> RobustnessView:
    widget = RobustnessView()
    qtbot.addWidget(widget)
    widget.resize(1100, 800)
    widget.set_scenario(SCENARIO, "small")
    widget.inputs.max_tokens.setValue(4)
    return widget


def _run(view: RobustnessView, engine: Engine) -> RobustnessResult:
    result = view.job().work(engine, lambda done, total: None, lambda: False)
    view.show_result(result)
    return result


def test_inputs_come_from_the_scenario(view: RobustnessView):
    assert len(view.sections()) == len(SCENARIO.steps)
    assert view.question.toPlainText() == SCENARIO.prompt
    assert view.options.toPlainText().splitlines() == SCENARIO.extra["options"]
    assert view.user_text.text() == SCENARIO.extra["variant"]
    params, _n = SCENARIO.params("small")
    assert view.inputs.temperature.value() == params.temperature


@pytest.mark.parametrize("with_options", [True, False])
def test_table_and_summary_show_the_result(view: RobustnessView, tiny_engine: Engine,
                                           with_options: bool):
    if not with_options:
        view.options.clear()
    result = _run(view, tiny_engine)
    kinds = [v.kind for v in result.variants]
    assert kinds[-1] == "user"
    assert ("reordered" in kinds) == with_options
    # The user's wording lists the options like every other variant.
    options = SCENARIO.extra["options"]
    assert all(o in result.variants[-1].text for o in options) == with_options

    table = view.table
    assert table.rowCount() == len(result.variants)
    marks = [table.item(row, 4).text() == "✓" for row in range(table.rowCount())]
    assert marks == list(result.agreement.agrees)
    for row, (run, answer) in enumerate(zip(result.runs, result.agreement.answers, strict=True)):
        assert table.item(row, 1).toolTip() == result.variants[row].text
        assert table.item(row, 2).toolTip() == run.samples[0].text
        shown = table.item(row, 3).text()
        assert (shown == "—") if answer is None else shown.startswith(answer)

    summary = view.summary.text()
    if result.agreement.answer is None:
        assert not any(marks)
    else:
        agreeing = sum(marks)
        assert f"{agreeing} of {len(marks)} variants" in summary
        assert f"({agreeing / len(marks):.0%})" in summary
        assert f"({result.agreement.share:.0%})" in summary

    heights = view.bars.opts["height"]
    means = result.mean_logprobs()
    assert len(heights) == len(means)
    assert all(h == m for h, m in zip(heights, means, strict=True) if math.isfinite(m))


@pytest.mark.parametrize(("field", "text"), [("question", "  "),
                                             ("options", "a\nb\nc\nd\ne\nf")])
def test_bad_input_is_one_line(view: RobustnessView, field: str, text: str):
    getattr(view, field).setPlainText(text)
    with pytest.raises(InvalidRequestError) as error:
        view.job()
    assert "\n" not in str(error.value)

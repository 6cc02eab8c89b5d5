"""The structured-output view against real tiny-model runs: the counts shown are the result's,
and the same as recomputing them from the texts shown."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QTableWidget

from playground.demos.scenario import find_scenario
from playground.demos.structured import repair_json, validate_json, validity_counts
from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.ui.structured_view import FULL_TEXT, StructuredView

SCENARIO = find_scenario("structured-person")
# The tiny model writes noise: a schema this small lets the grammar finish within a few tokens.
SCHEMA = {"type": "boolean"}
N = 3


@pytest.fixture
def view(qtbot) -> StructuredView:
    widget = StructuredView()
    qtbot.addWidget(widget)
    widget.resize(1100, 900)
    widget.set_scenario(SCENARIO, "small")
    return widget


def _texts(table: QTableWidget, column: int) -> list[str]:
    return [table.item(row, column).data(FULL_TEXT) for row in range(table.rowCount())]


def _marks(table: QTableWidget, column: int) -> list[bool]:
    return [table.item(row, column).text() == "✓" for row in range(table.rowCount())]


def test_inputs_come_from_the_scenario(view: StructuredView):
    assert len(view.sections()) == len(SCENARIO.steps)
    assert view.prompt.toPlainText() == SCENARIO.prompt
    assert json.loads(view.schema.toPlainText()) == SCENARIO.extra["schema"]
    params, n = SCENARIO.params("small")
    assert view.inputs.n.value() == n
    assert view.inputs.max_tokens.value() == params.max_tokens


def test_counts_shown_match_the_texts_shown(view: StructuredView, tiny_engine: Engine):
    view.schema.setPlainText(json.dumps(SCHEMA))
    view.inputs.n.setValue(N)
    view.inputs.max_tokens.setValue(8)
    result = view.job().work(tiny_engine, lambda done, total: None, lambda: False)
    view.show_result(result)

    constrained = _texts(view.constrained.table, 1)
    assert constrained == [s.text for s in result.constrained.samples]
    assert all(validate_json(text, SCHEMA)[0] for text in constrained)
    assert _marks(view.constrained.table, 0) == [True] * N
    assert view.constrained.count.text() == f"{N} of {N} valid"
    assert view.constrained.table.isColumnHidden(2)

    free = _texts(view.free.table, 1)
    counts = validity_counts(free, SCHEMA)
    assert counts == result.free_counts
    assert view.free.count.text() == f"{counts.valid_raw} of {N} valid"
    assert _marks(view.free.table, 0) == [not reason for reason in counts.reasons]
    reasons = [view.free.table.item(row, 2).text() for row in range(N)]
    assert reasons == list(counts.reasons)

    invalid = [text for text, reason in zip(free, counts.reasons, strict=True) if reason]
    assert _texts(view.repairs, 0) == invalid
    repaired = [repair_json(text) for text in invalid]
    assert _texts(view.repairs, 2) == [r.text for r in repaired]
    assert _marks(view.repairs, 3) == [validate_json(r.text, SCHEMA)[0] for r in repaired]
    if invalid:
        assert view.repair_summary.text() == (
            f"{counts.valid_repaired} more valid after repair, {counts.invalid} still invalid")
    assert view.repeated.isHidden() == (counts.common_failure_count < 2)
    if counts.common_failure_count >= 2:
        assert f"{counts.common_failure_count} times: {counts.common_failure}" in (
            view.repeated.text())


@pytest.mark.parametrize("schema", ['{"type": "object",', "[1, 2]", '{"type": "colour"}'])
def test_a_broken_schema_is_one_line(view: StructuredView, schema: str):
    view.schema.setPlainText(schema)
    with pytest.raises(InvalidRequestError) as error:
        view.job()
    assert str(error.value) and "\n" not in str(error.value)

"""The same-seed-different-machine view: run through its job on the embedded model (where the
answers part without flash attention), and on the tiny model."""

from __future__ import annotations

import html
import math
import re

import pytest
from PySide6.QtGui import QTextDocument

from playground.demos.host_nondeterminism import SAFEGUARDS, Comparison
from playground.demos.scenario import find_scenario
from playground.errors import InvalidRequestError
from playground.records import Sample
from playground.ui.host_nondeterminism_view import ComparisonPanel, HostNondeterminismView

SCENARIO = "host-nondeterminism-sea"
_TINT = re.compile(r'<span style="background:#[0-9a-f]{6};">(.*?)</span>', re.S)


def _run_view(qtbot, engine, *, max_tokens: int,
              prompt: str | None = None) -> HostNondeterminismView:
    view = HostNondeterminismView()
    qtbot.addWidget(view)
    view.set_scenario(find_scenario(SCENARIO), "small")
    view.inputs.n.setValue(4)
    view.inputs.max_tokens.setValue(max_tokens)
    if prompt is not None:
        view.prompt_edit.setPlainText(prompt)
    result = view.job().work(engine, lambda d, t: None, lambda: False)
    view.show_result(result)
    return view


def _plain(rich: str) -> str:
    document = QTextDocument()
    document.setHtml(rich)
    return document.toPlainText()


def _tinted(rich: str) -> str:
    return "".join(html.unescape(part) for part in _TINT.findall(rich))


def _check_answers(panel: ComparisonPanel, comparison: Comparison) -> None:
    """Each answer is its tokens' text, tinted from where the two part."""
    parting = comparison.parting
    for label, sample in ((panel.alone, comparison.ours_alone),
                          (panel.batched, comparison.ours_batched)):
        texts = [t.text for t in sample.tokens]
        ellipsis = "…" if sample.finish_reason == "length" else ""
        assert _plain(label.text()) == "".join(texts) + ellipsis
        assert _tinted(label.text()) == ("".join(texts[parting.position:]) if parting else "")


def _percent(sample: Sample, position: int) -> str:
    return f"{math.exp(sample.tokens[position].logprob):.1%}"


def test_the_view_shows_where_the_answers_part(qtbot, embedded_engine) -> None:
    view = _run_view(qtbot, embedded_engine, max_tokens=16)
    scenario = find_scenario(SCENARIO)
    assert len(view.sections()) == len(scenario.steps)
    assert view.without.caption.text() == scenario.steps[1]
    result = view.result

    without = result.without
    parting = without.parting
    assert parting is not None
    _check_answers(view.without, without)
    assert f"token {parting.position + 1}" in view.without.headline.text()
    assert view.without.batched_label.text() == "In a batch of 5"
    assert f"{without.largest_difference:.3g} nats" in view.without.note.text()
    table = view.without.fork
    assert not table.isHidden() and table.rowCount() == 2
    cells = [[table.item(r, c).text() for c in range(4)] for r in range(2)]
    alone, batched = without.ours_alone, without.ours_batched
    assert cells[0][:3] == [repr(parting.alone.text), "alone",
                            _percent(alone, parting.position)]
    assert cells[1][0] == repr(parting.batched.text)
    assert cells[1][3] == _percent(batched, parting.position)

    with_flash = result.with_flash
    assert with_flash.identical
    _check_answers(view.with_flash, with_flash)
    assert view.with_flash.headline.text().startswith("Identical, token for token")
    assert view.with_flash.fork.isHidden()
    assert all(html.escape(line) in view.safeguards.text() for line in SAFEGUARDS)

    view.set_scenario(scenario, "small")  # a new scenario clears the results
    assert view.result is None and view.without.alone.text() == ""


def test_runs_that_do_not_part_show_no_fork(qtbot, tiny_engine) -> None:
    view = _run_view(qtbot, tiny_engine, max_tokens=8, prompt="once upon")
    for panel, comparison in ((view.without, view.result.without),
                              (view.with_flash, view.result.with_flash)):
        _check_answers(panel, comparison)
        if comparison.parting is None:
            assert panel.fork.isHidden()
            expected = ("Identical" if comparison.identical
                        else "The same tokens, but not the same numbers.")
            assert panel.headline.text().startswith(expected)


def test_an_empty_prompt_is_refused(qtbot) -> None:
    view = HostNondeterminismView()
    qtbot.addWidget(view)
    view.set_scenario(find_scenario(SCENARIO), "small")
    view.prompt_edit.setPlainText("  ")
    with pytest.raises(InvalidRequestError):
        view.job()

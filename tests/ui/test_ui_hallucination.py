"""The hallucination view against the tiny model: flagged sentences, forced branches, a claim."""

from __future__ import annotations

import copy
import math

import pytest
from PySide6.QtWidgets import QTreeWidgetItemIterator

from playground.demos.hallucination import ConsistencyResult, sentence_support
from playground.demos.scenario import find_scenario
from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.ui.colors import FLAGGED
from playground.ui.hallucination_view import (
    BranchResult,
    ClaimResult,
    HallucinationResult,
    HallucinationView,
)

SCENARIO = "hallucination-selfcheck"


def _no_progress(_done: int, _total: int) -> None:
    pass


def _never() -> bool:
    return False


@pytest.fixture
def view(qtbot) -> HallucinationView:
    widget = HallucinationView()
    qtbot.addWidget(widget)
    widget.resize(1100, 800)
    widget.set_scenario(find_scenario(SCENARIO), "small")
    widget.inputs.n.setValue(3)
    widget.inputs.max_tokens.setValue(16)
    return widget


@pytest.fixture
def result(view: HallucinationView, tiny_engine: Engine) -> HallucinationResult:
    result = view.job().work(tiny_engine, _no_progress, _never)
    view.show_result(result)
    return result


def _tree_items(view: HallucinationView) -> list:
    items, it = [], QTreeWidgetItemIterator(view.tree)
    while it.value():
        items.append(it.value())
        it += 1
    return items


def test_one_section_per_step_and_bad_input(view: HallucinationView):
    assert len(view.sections()) == len(find_scenario(SCENARIO).steps)
    view.question.setPlainText("  ")
    with pytest.raises(InvalidRequestError):
        view.job()


def test_flagged_sentences_are_highlighted(view: HallucinationView, result):
    consistency = result.consistency
    assert consistency.judge is not None  # the tiny vocabulary has " yes" and " no"
    expected = [[s.index for s in row if s.flagged] for row in consistency.overlap]
    assert view.answers.flagged_shown() == expected
    formats = view.answers.sentence_formats()
    for row, judged, shown in zip(consistency.overlap, consistency.judge, formats, strict=True):
        assert sorted(shown) == [s.index for s in row]
        for support in row:
            tip = shown[support.index].toolTip()
            assert f"{support.support:.0%}" in tip
            assert f"{judged[support.index]:.0%}" in tip
            assert all(word in tip for word in support.unsupported)
    flagged = sum(len(row) for row in expected)
    total = sum(len(row) for row in consistency.overlap)
    assert view.answers_note.text().startswith(f"{flagged} of {total} sentences flagged")


def test_supported_sentences_are_not_highlighted(view: HallucinationView, result):
    """Random tiny-model text flags nearly everything: answers with a shared sentence and an
    invented one show that only the invented one is marked."""
    texts = ["Ada Lovelace was a mathematician. She flew to Mars in a balloon.",
             "Ada Lovelace was a mathematician. She wrote notes on the engine.",
             "Ada Lovelace was a mathematician. She wrote the first program for an engine."]
    run = copy.deepcopy(result.consistency.run)
    for sample, text in zip(run.samples, texts, strict=True):
        sample.text = text
    overlap = sentence_support(texts)
    view.show_result(HallucinationResult(ConsistencyResult(run, overlap, None),
                                         result.snowball))
    expected = [[s.index for s in row if s.flagged] for row in overlap]
    assert view.answers.flagged_shown() == expected
    assert any(expected) and not all(len(e) == len(row) for e, row in zip(expected, overlap,
                                                                         strict=True))
    shown = view.answers.sentence_formats()
    assert shown[0][0].background().color() != FLAGGED
    assert "not asked" in shown[0][0].toolTip()


def test_the_scenario_branch_is_the_first_child(view: HallucinationView, result,
                                                tiny_engine: Engine):
    snowball = result.snowball
    root = view.tree.topLevelItem(0)
    assert view.tree.topLevelItemCount() == 1 and root.childCount() == 1
    assert view.branches[0].sample is snowball.run.samples[0]
    assert view.branches[1] is snowball.branch
    forced = tiny_engine.tokenize(view.forced_text.text(), add_special=False)
    position = snowball.branch.position
    tokens = snowball.branch.sample.tokens
    assert [r.id for r in tokens[position:position + len(forced)]] == forced
    assert view.tree.currentItem() is root.child(0)
    assert [r.id for r in view.branch_view.tokens] == [r.id for r in tokens]


def test_clicking_an_alternative_grows_the_tree(view: HallucinationView, result, qtbot,
                                               tiny_engine: Engine):
    source = view.current_branch
    parent = view.branches[source].sample.tokens
    position = 2
    token_id = next(alt.id for alt in parent[position].top if alt.id != parent[position].id)
    before = len(_tree_items(view))
    with qtbot.waitSignal(view.job_requested) as requested:
        view.branch_view.alternative_clicked.emit(position, token_id)
    branch = requested.args[0].work(tiny_engine, _no_progress, _never)
    assert isinstance(branch, BranchResult)
    view.show_result(branch)

    new = view.branches[-1]
    assert new is branch.branch and new.parent == source and new.position == position
    assert new.sample.tokens[position].id == token_id
    assert [r.id for r in new.sample.tokens[:position]] == [r.id for r in parent[:position]]
    assert len(_tree_items(view)) == before + 1
    assert view.tree.currentItem().parent() is _tree_items(view)[source]
    assert [r.id for r in view.branch_view.tokens] == [r.id for r in new.sample.tokens]
    # Clicking the token a branch already has forces nothing.
    with qtbot.assertNotEmitted(view.job_requested):
        view.branch_view.alternative_clicked.emit(position, token_id)


def test_the_claim_is_scored_token_by_token(view: HallucinationView, result, qtbot,
                                            tiny_engine: Engine):
    claim = view.claim.toPlainText()
    ids = tiny_engine.tokenize(claim, add_special=False)
    assert [r.id for r in view.claim_view.tokens] == ids
    assert [r.id for r in result.snowball.claim] == ids

    view.claim.setPlainText(" Sydney is the capital.")
    with qtbot.waitSignal(view.job_requested) as requested:
        view.score_button.click()
    scored = requested.args[0].work(tiny_engine, _no_progress, _never)
    assert isinstance(scored, ClaimResult)
    view.show_result(scored)
    ids = tiny_engine.tokenize(" Sydney is the capital.", add_special=False)
    prompt = tiny_engine.prompt_tokens(view.snowball_prompt.toPlainText(), chat=True)
    expected = tiny_engine.teacher_force(prompt, ids)
    assert [r.id for r in view.claim_view.tokens] == ids
    assert [r.logprob for r in view.claim_view.tokens] == pytest.approx(
        [r.logprob for r in expected], abs=1e-4)
    assert all(math.isnan(r.sampling_logprob) for r in view.claim_view.tokens)
    assert "mean log-probability" in view.claim_note.text()

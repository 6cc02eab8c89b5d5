"""The inconsistency demonstration's view against the tiny model, and the divergence tree's
layout on a constructed tree."""

from __future__ import annotations

import itertools
import math

import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QFont

from playground.demos.inconsistency import (
    InconsistencyResult,
    TreeNode,
    distinct_texts,
    divergence_tree,
)
from playground.demos.scenario import find_scenario
from playground.errors import InvalidRequestError
from playground.records import Sample, TokenRecord
from playground.ui.divergence_tree import DivergenceTree, place_tree
from playground.ui.inconsistency_view import InconsistencyView

SCENARIO = "inconsistency-scientist"


def _leaves(node: TreeNode) -> list[TreeNode]:
    return [node] if not node.children else [
        leaf for child in node.children for leaf in _leaves(child)]


def _run_view(
    qtbot, engine, seed: int | None = None
) -> tuple[InconsistencyView, InconsistencyResult]:
    view = InconsistencyView()
    qtbot.addWidget(view)
    view.set_scenario(find_scenario(SCENARIO), "small")
    view.inputs.n.setValue(4)
    view.inputs.max_tokens.setValue(6)
    if seed is not None:
        view.inputs.seed.setValue(seed)
    result = view.job().work(engine, lambda d, t: None, lambda: False)
    view.show_result(result)
    return view, result


def test_view_shows_both_halves_and_the_tree(qtbot, tiny_engine) -> None:
    view, result = _run_view(qtbot, tiny_engine, seed=1234)
    scenario = find_scenario(SCENARIO)
    assert len(view.sections()) == len(scenario.steps)
    assert view.free_caption.text() == scenario.steps[1]

    free, locked = result.free.samples, result.locked.samples
    assert len(free) == len(locked) == 4
    for label, seed_label, sample in zip(view.free_list.answers, view.free_list.seeds, free,
                                         strict=True):
        assert label.text().removesuffix("…") == sample.text.strip()
        assert seed_label.text() == f"seed {sample.seed}"
    assert [s.seed for s in free] == [1234, 1235, 1236, 1237]
    distinct = distinct_texts(result.free)
    expected = "1 answer" if distinct == 1 else f"{distinct} different answers"
    assert view.free_summary.text().startswith(f"4 runs, {expected}")

    assert {s.text for s in locked} == {free[0].text}
    assert {label.text() for label in view.locked_list.answers} == {
        view.free_list.answers[0].text()}
    assert {label.text() for label in view.locked_list.seeds} == {"seed 1234"}
    assert distinct_texts(result.locked) == 1
    assert view.locked_summary.text().startswith("4 runs, 1 answer")
    assert "1234" in view.seed_note.text()

    leaves = _leaves(result.tree)
    assert len(view.tree.leaves()) == len(leaves)
    assert [b.node for b in view.tree.leaves()] == leaves
    ended = sorted(s for b in view.tree.boxes for s in b.node.ended)
    assert ended == list(range(4))


def test_random_seed_is_drawn_and_shown(qtbot, tiny_engine) -> None:
    view, result = _run_view(qtbot, tiny_engine)
    assert view.inputs.seed.specialValueText() == view.inputs.seed.text()  # still "random"
    assert str(result.free.params.seed) in view.seed_note.text()

    view.set_scenario(find_scenario(SCENARIO), "small")
    assert view.free_list.answers == [] and view.tree.boxes == []


def test_empty_prompt_is_refused(qtbot) -> None:
    view = InconsistencyView()
    qtbot.addWidget(view)
    view.set_scenario(find_scenario(SCENARIO), "small")
    view.prompt_edit.setPlainText("   ")
    with pytest.raises(InvalidRequestError):
        view.job()


# ---------------------------------------------------------------- tree layout


_IDS: dict[str, int] = {}
"""Token ids by text, so that equal texts share a node."""


def _sample(index: int, texts: list[str], prob: float) -> Sample:
    tokens = [
        TokenRecord(index, pos, _IDS.setdefault(t, len(_IDS)), t.encode(), t, math.log(prob),
                    math.log(prob), 1, 0.0, ())
        for pos, t in enumerate(texts)
    ]
    return Sample(index, seed=index, tokens=tokens, text="".join(texts))


LONG = " and then a very long ending that cannot possibly fit in two lines of a box" * 4


def _tree() -> TreeNode:
    return divergence_tree([
        _sample(0, ["Marie", " Curie", " found", " radium."], 0.5),
        _sample(1, ["Marie", " Curie", " won", " twice."], 0.25),
        _sample(2, ["Isaac", " Newton", LONG], 0.125),
        _sample(3, ["Marie", " Curie", " found", " radium."], 0.5),
    ])


def test_tree_layout_reads_left_to_right_without_overlaps(qtbot) -> None:
    tree = _tree()
    boxes = place_tree(tree, QFont(), 900)
    assert boxes[0].lines == ("(start)",) and boxes[0].parent is None
    assert len(boxes) == 1 + 2 + 2  # root, two first words, two endings of "Marie Curie"
    for box in boxes[1:]:
        parent = boxes[box.parent]
        assert box.node in parent.node.children
        assert box.rect.left() > parent.rect.right()
        assert box.label == f"{box.node.prob:.0%}"
        assert abs(parent.rect.center().y() - box.rect.center().y()) < 3 * box.rect.height()
    for a, b in itertools.combinations(boxes, 2):
        assert not a.rect.intersects(b.rect)
    leaves = [b for b in boxes if not b.node.children]
    assert len(leaves) == len(_leaves(tree)) == 3
    assert len({b.rect.right() for b in leaves}) == 1  # endings line up at the right edge
    assert max(b.rect.right() for b in boxes) <= 900

    newton = next(b for b in leaves if b.node.samples == (2,))
    assert len(newton.lines) == 2 and newton.lines[-1].endswith("…")
    assert newton.lines[0].startswith("Isaac Newton and then")
    curie = next(b for b in boxes if b.node.samples == (0, 1, 3))
    assert curie.lines == ("Marie Curie",)
    assert next(b for b in leaves if b.node.samples == (0, 3)).node.ended == (0, 3)


def test_tree_widget_tooltips_hold_the_full_text(qtbot) -> None:
    widget = DivergenceTree()
    qtbot.addWidget(widget)
    widget.resize(900, 300)
    widget.set_tree(_tree())
    newton = next(b for b in widget.leaves() if b.node.samples == (2,))
    tip = widget.tooltip_at(newton.rect.center())
    assert LONG.strip()[-30:] in tip and "Run 3 ends here." in tip
    assert widget.sizeHint().height() >= max(b.rect.bottom() for b in widget.boxes)
    assert widget.tooltip_at(QPointF(-5, -5)) == ""

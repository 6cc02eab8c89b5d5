"""Same input, different outputs: one prompt sampled N times with seeds seed..seed+N-1, then N
times with one seed, and the tree of where the free samples part ways."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from playground.demos.scenario import (
    Cancel,
    Demo,
    DemoRequest,
    Progress,
    counter,
    engine_of,
    generate,
    never,
    quiet,
    quoted,
    samples_json,
    start,
)
from playground.records import Run, Sample
from playground.sampling import SamplingParams

if TYPE_CHECKING:
    from playground.engine_api import Engine

# ================================================================ divergence tree


@dataclass(frozen=True)
class TreeNode:
    """A run of tokens that the same samples share, up to the next fork.

    Chains with a single continuation are merged into one node, so every node but the leaves
    ends at a fork (or where its samples end): the tree shows only the decisions that mattered.
    """

    start: int
    """Token position of the node's first token."""
    token_ids: tuple[int, ...]
    """The shared tokens; empty for a root whose samples part ways at the first token."""
    texts: tuple[str, ...]
    """Each token's `TokenRecord.text` (joined, they give the node's part of the samples' text)."""
    first_piece: str
    """The first token as shown at a fork: its text, or its bytes decoded when the token is only
    part of a UTF-8 character (its `text` is then empty). "" for an empty root."""
    probs: tuple[float, ...]
    """Each token's raw-model probability, taken from the lowest-index sample that took it."""
    samples: tuple[int, ...]
    """Sample indices passing through this node, ascending."""
    ended: tuple[int, ...]
    """The samples that end right after this node (they pass into no child)."""
    children: tuple[TreeNode, ...]
    """Largest group first, ties by the lowest sample index (as in `first_divergence`)."""

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def end(self) -> int:
        """Token position just after the node: where its fork is."""
        return self.start + len(self.token_ids)

    @property
    def prob(self) -> float:
        """Probability of the token that opened this branch (1 for an empty root)."""
        return self.probs[0] if self.probs else 1.0

    @property
    def chain_prob(self) -> float:
        """Probability of the whole run given what came before: the product of its tokens'."""
        return math.prod(self.probs)


def divergence_tree(samples: Sequence[Sample]) -> TreeNode:
    """Prefix-share the samples' token ids into a tree whose root holds their common prefix.

    A sample that ends while others go on is listed in its node's `ended`, and counts as a
    branch of its own at that fork, as in `playground.analysis.first_divergence`.
    """
    by_index = {s.index: s for s in samples}
    return _subtree(by_index, sorted(by_index), 0)


def _subtree(by_index: dict[int, Sample], members: list[int], start: int) -> TreeNode:
    position = start
    while True:
        ids = {
            by_index[m].tokens[position].id if position < len(by_index[m].tokens) else None
            for m in members
        }
        if len(ids) != 1 or None in ids:
            break
        position += 1
    records = by_index[members[0]].tokens[start:position] if members else []
    groups: dict[int, list[int]] = {}
    ended = []
    for m in members:
        tokens = by_index[m].tokens
        if position < len(tokens):
            groups.setdefault(tokens[position].id, []).append(m)
        else:
            ended.append(m)
    children = [_subtree(by_index, group, position) for group in groups.values()]
    children.sort(key=lambda c: (-len(c.samples), c.samples[0]))
    piece = ""
    if records:
        piece = records[0].text or records[0].bytes.decode("utf-8", "replace")
    return TreeNode(
        start=start,
        token_ids=tuple(r.id for r in records),
        texts=tuple(r.text for r in records),
        first_piece=piece,
        probs=tuple(math.exp(r.logprob) for r in records),
        samples=tuple(members),
        ended=tuple(ended),
        children=tuple(children),
    )


def tree_to_json(node: TreeNode) -> dict[str, Any]:
    return {
        "start": node.start,
        "text": node.text,
        "prob": node.prob,
        "samples": list(node.samples),
        "ended": list(node.ended),
        "children": [tree_to_json(c) for c in node.children],
    }


def distinct_texts(run: Run) -> int:
    return len({s.text for s in run.samples})


# ================================================================ the run


@dataclass
class InconsistencyResult:
    free: Run
    """Seeds unlocked: sample i used seed + i."""
    locked: Run
    """The seed locked: every sample used the same seed."""

    @property
    def tree(self) -> TreeNode:
        return divergence_tree(self.free.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.free.prompt,
            "params": self.free.params.to_json(),
            "free": {"distinct": distinct_texts(self.free), "samples": samples_json(self.free),
                     "tree": tree_to_json(self.tree)},
            "locked": {"distinct": distinct_texts(self.locked),
                       "samples": samples_json(self.locked)},
        }


def run_inconsistency(
    engine: Engine,
    prompt: str,
    params: SamplingParams,
    n: int,
    *,
    chat: bool = True,
    progress: Progress = quiet,
    cancel: Cancel = never,
) -> InconsistencyResult:
    """The same prompt N times with seeds seed..seed+N-1, then N times with one seed."""
    params = params.resolved()
    step = counter(progress, 2 * n)
    free = generate(engine, start(engine, prompt, params, n, chat), cancel, step)
    locked = start(engine, prompt, params, n, chat, same_seed=True)
    return InconsistencyResult(free, generate(engine, locked, cancel, step))


def run(request: DemoRequest) -> dict[str, Any]:
    return run_inconsistency(engine_of(request), request.prompt, request.params, request.n,
                             chat=request.scenario.chat, progress=request.progress,
                             cancel=request.cancel).to_json()


def summary(d: dict[str, Any]) -> Iterator[str]:
    for key, label in (("free", "Seed unlocked"), ("locked", "Seed locked")):
        part = d[key]
        answers = ("1 answer" if part["distinct"] == 1
                   else f"{part['distinct']} different answers")
        yield f"{label}: {len(part['samples'])} runs, {answers}"
        yield from (quoted(s["text"]) for s in part["samples"])


DEMO = Demo("inconsistency", "Same input, different outputs", run, summary)

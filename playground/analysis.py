"""Where N samples of one prompt part ways: the first fork and the whole prefix tree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from playground.records import Sample


@dataclass(frozen=True)
class Branch:
    """The samples that took one token at a fork."""

    token_id: int | None
    """None for samples that had already ended at this position."""
    text: str
    prob: float
    """The token's probability under the raw model distribution (0 for ended samples)."""
    samples: tuple[int, ...]


@dataclass(frozen=True)
class Divergence:
    """The first token position at which the samples stop agreeing."""

    position: int
    branches: tuple[Branch, ...]
    """Largest group first; ties by the lowest sample index."""


def first_divergence(samples: Sequence[Sample]) -> Divergence | None:
    """The first position where not every sample has the same token (a sample that has ended
    counts as its own branch). None when all samples are identical or there are fewer than 2."""
    if len(samples) < 2:
        return None
    length = max(len(s.tokens) for s in samples)
    for position in range(length):
        groups: dict[int | None, list[int]] = {}
        for s in samples:
            token = s.tokens[position].id if position < len(s.tokens) else None
            groups.setdefault(token, []).append(s.index)
        if len(groups) > 1:
            by_index = {s.index: s for s in samples}
            branches = []
            for token, members in groups.items():
                first = by_index[members[0]]
                if token is None:
                    branches.append(Branch(None, "", 0.0, tuple(members)))
                else:
                    record = first.tokens[position]
                    branches.append(
                        Branch(token, record.text or record.bytes.decode("utf-8", "replace"),
                               math.exp(record.logprob), tuple(members))
                    )
            branches.sort(key=lambda b: (-len(b.samples), b.samples[0]))
            return Divergence(position, tuple(branches))
    return None

"""Human preferences: what annotators chose between replies to one prompt.

The annotation loop's one data type. Imports (Label Studio, Argilla, JSONL) make `Preference`s,
the store keeps them with runs, agreement measures rankings against them, and reward training
fits a score head on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidRequestError
from .files import require_regular


@dataclass(frozen=True)
class Preference:
    """One pairwise judgement: `chosen` was preferred to `rejected` as a reply to `prompt`."""

    prompt: str
    chosen: str
    rejected: str
    annotator: str = ""


def read_preferences_jsonl(path: Path) -> list[Preference]:
    """A JSONL file of {"prompt", "chosen", "rejected"} objects (other keys are ignored)."""
    require_regular(path, "a label file")
    preferences = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                preferences.append(Preference(
                    str(row["prompt"]), str(row["chosen"]), str(row["rejected"]),
                    str(row.get("annotator", ""))))
            except (ValueError, KeyError, TypeError) as error:
                raise InvalidRequestError(
                    f"{path.name}, line {number}: not a {{prompt, chosen, rejected}} object "
                    f"({error})") from None
    return preferences

r"""What an Argilla 2.x server checks when a dataset is created from settings and records are added
to it: a copy of its rules, so that the tests need no Argilla server.

Copied from argilla-server 2.8.0 (the PyPI wheel; the same paths in argilla-io/argilla under
argilla-server/src/argilla_server/):
- api/schemas/v1/suggestions.py, SuggestionCreate: `agent` matches AGENT_REGEX and has 1 to 200
  characters; `validate_score`: one float or a list of at least one, each in [0, 1];
- validators/suggestions.py, SuggestionCreateValidator: a list value takes a list score of the
  same length, a single value a single score;
- validators/response_values.py, RankingQuestionResponseValueValidator (a suggestion's value goes
  through it): a list, every value an option of the question, no value twice;
- validators/records.py, RecordValidatorBase._validate_fields: fields not empty, a value (not
  None) for every required field, no field the dataset does not declare, text fields strings;
  `_validate_metadata`: with allow_extra_metadata any undeclared key is accepted;
- api/schemas/v1/questions.py: RankingQuestionSettingsCreate has 2 to 50 options
  (RANKING_OPTIONS_MIN_ITEMS, RANKING_OPTIONS_MAX_ITEMS), option values of 1 to 200 characters,
  texts of 1 to 500, question names of 1 to 200, no option value twice
  (UniqueValuesCheckerMixin);
- api/schemas/v1/fields.py: field names of 1 to 200 characters, titles of 1 to 500.
An earlier server (argilla-io/argilla at 0a7bd68) wrote the agent rule with a lookahead,
`^(?=.*[a-zA-Z0-9])[a-zA-Z0-9-_:\.\/\s]+$`; an agent must pass both.
"""

from __future__ import annotations

import math
import re
from typing import Any

AGENT_REGEX = r"^[a-zA-Z0-9-_:\.\/\s]*[a-zA-Z0-9][a-zA-Z0-9-_:\.\/\s]*$"
OLDER_AGENT_REGEX = r"^(?=.*[a-zA-Z0-9])[a-zA-Z0-9-_:\.\/\s]+$"


def settings_problems(settings: dict[str, Any]) -> list[str]:
    problems = []
    names = [f["name"] for f in settings["fields"]]
    if len(set(names)) != len(names):
        problems.append("two fields share a name")
    for f in settings["fields"]:
        if not 1 <= len(f["name"]) <= 200 or not 1 <= len(f.get("title") or f["name"]) <= 500:
            problems.append(f"field {f['name']!r}: name or title length")
        if f["settings"]["type"] != "text":
            problems.append(f"field {f['name']!r} is not a text field")
    for q in settings["questions"]:
        if not 1 <= len(q["name"]) <= 200:
            problems.append(f"question {q['name']!r}: name length")
        if q["settings"]["type"] == "ranking":
            options = q["settings"]["options"]
            if not 2 <= len(options) <= 50:
                problems.append(f"ranking {q['name']!r} has {len(options)} options, not 2 to 50")
            values = [o["value"] for o in options]
            if len(set(values)) != len(values):
                problems.append(f"ranking {q['name']!r} repeats an option")
            for o in options:
                if not 1 <= len(o["value"]) <= 200 or not 1 <= len(o["text"]) <= 500:
                    problems.append(f"ranking option {o['value']!r}: value or text length")
    return problems


def record_problems(settings: dict[str, Any], record: dict[str, Any]) -> list[str]:
    problems = []
    fields = record["fields"]
    if not (isinstance(fields, dict) and len(fields) >= 1):
        problems.append("fields cannot be empty")
        return problems
    declared = {f["name"]: f for f in settings["fields"]}
    for name, f in declared.items():
        if f["required"] and fields.get(name) is None:
            problems.append(f"missing required value for field: {name!r}")
        if fields.get(name) is not None and not isinstance(fields[name], str):
            problems.append(f"text field {name!r} value must be a string")
    extra = set(fields) - set(declared)
    if extra:
        problems.append(f"found fields values for non configured fields: {sorted(extra)}")
    if not settings["allow_extra_metadata"]:
        problems.append("the metadata needs allow_extra_metadata")
    questions = {q["name"]: q for q in settings["questions"]}
    for name, suggestion in record["suggestions"].items():
        question = questions.get(name)
        if question is None:
            problems.append(f"question {name!r} does not exist")
            continue
        found = _suggestion_problems(question, suggestion)
        problems += [f"suggestion {name!r}: {p}" for p in found]
    return problems


def _suggestion_problems(question: dict[str, Any], suggestion: dict[str, Any]) -> list[str]:
    problems = []
    agent = suggestion.get("agent")
    if agent is not None:
        if not 1 <= len(agent) <= 200:
            problems.append("agent length")
        for regex in (AGENT_REGEX, OLDER_AGENT_REGEX):
            if not re.match(regex, agent):
                problems.append(f"agent {agent!r} does not match {regex}")
    value, score = suggestion["value"], suggestion.get("score")
    scores = score if isinstance(score, list) else [] if score is None else [score]
    if isinstance(score, list) and len(score) < 1:
        problems.append("score needs at least one item")
    for s in scores:
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s) \
                or not 0 <= s <= 1:
            problems.append(f"score {s!r} is not a number in [0, 1]")
    if not isinstance(value, list) and isinstance(score, list):
        problems.append("a list of score values is not allowed for a single value")
    if isinstance(value, list) and score is not None and not isinstance(score, list):
        problems.append("a single score value is not allowed for a multiple items value")
    if isinstance(value, list) and isinstance(score, list) and len(value) != len(score):
        problems.append("number of items on value and score attributes doesn't match")
    if question["settings"]["type"] == "ranking":
        options = [o["value"] for o in question["settings"]["options"]]
        if not isinstance(value, list):
            problems.append("ranking question expects a list of values")
        else:
            unknown = sorted(set(value) - set(options))
            if unknown:
                problems.append(f"{unknown!r} are not valid values for ranking question")
            if len(set(value)) != len(value):
                problems.append("ranking question expects a list of unique values")
    return problems

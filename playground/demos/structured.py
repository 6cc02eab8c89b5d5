"""Structured output: N answers constrained by a JSON schema's grammar against N free ones with
the same seeds, how many of each are valid, and what repairing the free ones recovers."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

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
    start,
)
from playground.records import Run
from playground.sampling import SamplingParams

if TYPE_CHECKING:
    from playground.engine_api import Engine


# ================================================================ JSON validity and repair


def json_schema_grammar(schema: Mapping[str, Any]) -> str:
    """A GBNF grammar for `schema`, by llama-cpp-python's own converter, so that the grammar
    matches what llama.cpp's grammar sampler expects (root rule "root")."""
    return json_schema_to_gbnf(json.dumps(schema))


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate_json(text: str, schema: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether `text` is JSON that satisfies `schema`, and why not ("" when it does).

    The subset of JSON Schema checked: "type" (a name or a list of names: object, array,
    string, number, integer, boolean, null), "enum", "properties", "required",
    "additionalProperties": false, and "items" (one schema for every element). Other keywords
    are ignored, so a text may pass here and fail a full validator. The reason names the first
    failure with a JSON path ("$.age: expected integer, got string") and no character offsets,
    so that the same mistake in different samples gives the same reason.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return False, f"not JSON: {e.msg}"
    error = _check(value, schema, "$")
    return error is None, error or ""


def _type_name(value: Any) -> str:
    return next(
        name
        for name in ("boolean", "null", "integer", "number", "string", "array", "object")
        if _TYPES[name](value)
    )


def _check(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_TYPES[name](value) for name in names):
            return f"{path}: expected {' or '.join(names)}, got {_type_name(value)}"
    if "enum" in schema and not any(
        (value == option and type(value) is type(option)) or _same_number(value, option)
        for option in schema["enum"]
    ):
        return f"{path}: {json.dumps(value)} is not one of {json.dumps(schema['enum'])}"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{path}: missing required property {name!r}"
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                error = _check(item, properties[name], f"{path}.{name}")
                if error:
                    return error
            elif schema.get("additionalProperties") is False:
                return f"{path}: unexpected property {name!r}"
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            error = _check(item, schema["items"], f"{path}[{i}]")
            if error:
                return error
    return None


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


@dataclass(frozen=True)
class RepairResult:
    """A text after `repair_json`, and what was done to it, in order."""

    text: str
    changes: tuple[str, ...]
    """Human-readable steps; empty when the text was valid JSON already."""


_FENCE = re.compile(r"```[\w-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def repair_json(text: str) -> RepairResult:
    """Fix the mistakes models commonly make around JSON, without guessing at content.

    In order: take the inside of a ``` code fence; cut the first {...} or [...] out of
    surrounding prose; close a string, array or object left open (a cut-off generation),
    completing a dangling "key": with null; drop trailing commas. Nothing else is attempted
    (single quotes, comments, Python literals stay broken), so the result may still be invalid.
    """
    if _is_json(text):
        return RepairResult(text, ())
    changes: list[str] = []
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
        changes.append("removed the code fence")
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        end = _block_end(text, start)
        block = text[start:end]
        if text[:start].strip() or text[end:].strip():
            changes.append("extracted the JSON from the surrounding text")
        text = block.rstrip()
    else:
        text = text.strip()
    closed, closing = _close(text)
    if closing:
        changes.append(closing)
        text = closed
    without, removed = _drop_trailing_commas(text)
    if removed:
        changes.append(f"removed {removed} trailing comma{'s' if removed > 1 else ''}")
        text = without
    return RepairResult(text, tuple(changes))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _scan(text: str, start: int = 0):
    """Yield (index, char, in_string, escaped) over `text`, the string state being the one after
    `char` (a bracket never changes it, so for brackets it is also the state before)."""
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        yield i, c, in_string, escaped


def _block_end(text: str, start: int) -> int:
    """Index just past the bracket closing the one at `start`, or len(text) if it never does."""
    depth = 0
    for i, c, in_string, _ in _scan(text, start):
        if in_string:
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _close(text: str) -> tuple[str, str]:
    """`text` with whatever it leaves open closed, and a description ("" if nothing was)."""
    stack: list[str] = []
    in_string = escaped = False
    for _, c, in_string, escaped in _scan(text):  # noqa: B007 (both are read after the loop)
        if in_string:
            continue
        if c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]" and stack:
            stack.pop()
    added = ""
    what = []
    if in_string:
        if escaped:  # a cut-off escape such as "C:\ cannot be completed; drop it
            text = text[:-1]
        added += '"'
        what.append("a string")
    if (text + added).rstrip().endswith(":"):
        added += " null"
        what.append("a missing value (null)")
    if stack:
        added += "".join(reversed(stack))
        what.append(f"{len(stack)} bracket{'s' if len(stack) > 1 else ''}")
    if not added:
        return text, ""
    return text + added, "closed " + ", ".join(what)


def _drop_trailing_commas(text: str) -> tuple[str, int]:
    out = []
    removed = 0
    pending_comma = -1
    for _, c, in_string, _ in _scan(text):
        if not in_string and c in "}]" and pending_comma >= 0:
            del out[pending_comma]
            removed += 1
        if not in_string and c == ",":
            pending_comma = len(out)
        elif in_string or not c.isspace():
            pending_comma = -1
        out.append(c)
    return "".join(out), removed


@dataclass(frozen=True)
class ValidityCounts:
    """How many outputs were valid as generated, valid only after `repair_json`, or invalid."""

    valid_raw: int
    valid_repaired: int
    invalid: int
    reasons: tuple[str, ...]
    """Each text's failure reason as generated ("" when it was valid)."""
    common_failure: str | None
    """The most frequent failure as generated (ties: the first seen); None when none failed."""
    common_failure_count: int


_FAULTS = (
    ("removed the code fence", "inside a code fence"),
    ("extracted", "JSON inside other text"),
    ("closed", "cut off before the end"),
    ("removed", "a trailing comma"),
)
"""What went wrong, by the first change `repair_json` made (matched by its start, in order)."""


def _fault(change: str, reason: str) -> str:
    return next((fault for start, fault in _FAULTS if change.startswith(start)), reason)


def validity_counts(texts: Sequence[str], schema: Mapping[str, Any]) -> ValidityCounts:
    """Count valid outputs before and after repair, and find the failure a model repeats."""
    valid_raw = valid_repaired = 0
    reasons = []
    for text in texts:
        ok, reason = validate_json(text, schema)
        if ok:
            valid_raw += 1
        else:
            repaired = repair_json(text)
            if repaired.changes and reason.startswith("not JSON"):
                # "Expecting value" says little; what repair had to undo says what went wrong.
                reason = f"not JSON: {_fault(repaired.changes[0], reason)}"
            if validate_json(repaired.text, schema)[0]:
                valid_repaired += 1
        reasons.append(reason)
    failures = Counter(r for r in reasons if r)
    common, count = failures.most_common(1)[0] if failures else (None, 0)
    invalid = len(texts) - valid_raw - valid_repaired
    return ValidityCounts(valid_raw, valid_repaired, invalid, tuple(reasons), common, count)


# ================================================================ the run


@dataclass
class StructuredResult:
    schema: dict[str, Any]
    constrained: Run
    free: Run
    constrained_counts: ValidityCounts
    free_counts: ValidityCounts
    repairs: list[RepairResult | None]
    """For each unconstrained output that was invalid: what `repair_json` made of it."""

    def to_json(self) -> dict[str, Any]:
        def counts(c: ValidityCounts, run: Run) -> dict[str, Any]:
            return {"valid": c.valid_raw, "valid_after_repair": c.valid_repaired,
                    "invalid": c.invalid, "total": len(run.samples),
                    "common_failure": c.common_failure,
                    "common_failure_count": c.common_failure_count,
                    "outputs": [{"text": s.text, "error": reason or None}
                                for s, reason in zip(run.samples, c.reasons, strict=True)]}

        repairs = [
            None if r is None else {"text": r.text, "changes": list(r.changes),
                                    "valid": validate_json(r.text, self.schema)[0]}
            for r in self.repairs
        ]
        free = counts(self.free_counts, self.free)
        for output, repair in zip(free["outputs"], repairs, strict=True):
            output["repair"] = repair
        return {"schema": self.schema, "prompt": self.free.prompt,
                "params": self.free.params.to_json(),
                "constrained": counts(self.constrained_counts, self.constrained), "free": free}


def run_structured(
    engine: Engine,
    prompt: str,
    schema: dict[str, Any],
    params: SamplingParams,
    n: int,
    *,
    chat: bool = True,
    progress: Progress = quiet,
    cancel: Cancel = never,
) -> StructuredResult:
    """N samples constrained by the schema's grammar, then N free ones with the same seeds."""
    engine.capabilities.require("grammar", "the structured-output demonstration")
    grammar = json_schema_grammar(schema)
    params = params.resolved()
    step = counter(progress, 2 * n)
    constrained = generate(engine, start(engine, prompt, params, n, chat), cancel, step,
                           constraint=engine.grammar_constraint(grammar))
    free = generate(engine, start(engine, prompt, params, n, chat), cancel, step)
    free_counts = validity_counts([s.text for s in free.samples], schema)
    repairs = [repair_json(s.text) if reason else None
               for s, reason in zip(free.samples, free_counts.reasons, strict=True)]
    return StructuredResult(schema, constrained, free,
                            validity_counts([s.text for s in constrained.samples], schema),
                            free_counts, repairs)


def run(request: DemoRequest) -> dict[str, Any]:
    return run_structured(engine_of(request), request.prompt, request.scenario.extra["schema"],
                          request.params, request.n, chat=request.scenario.chat,
                          progress=request.progress, cancel=request.cancel).to_json()


def summary(d: dict[str, Any]) -> Iterator[str]:
    for key, label in (("constrained", "Constrained by the grammar"), ("free", "Unconstrained")):
        c = d[key]
        yield (f"{label}: {c['valid']} of {c['total']} valid, {c['valid_after_repair']} more "
               f"after repair")
    if d["free"]["common_failure_count"] >= 2:
        yield (f"Repeated failure ({d['free']['common_failure_count']}x): "
               f"{d['free']['common_failure']}")


DEMO = Demo("structured", "Structured output", run, summary)

"""Human preferences: what annotators chose between replies to one prompt.

The annotation loop's data types. Imports (Label Studio, Argilla, JSONL) and the app's own
"prefer" and drag-to-rank make `Label`s; the store keeps them beside the runs (linked to the run
and samples they judge, where the import can find them); agreement measures rankings against
them, and reward training fits a score head on the `Preference`s they imply.

A `Label` is one annotator's ranking of some replies, best first, with ties: a pairwise choice is
a ranking of two, a "prefer" in the app ranks one sample above all the others (which tie), and a
Label Studio or Argilla ranking orders them all. Every pair of replies that a label orders
strictly is one `Preference`; tied replies make none.

The three file formats, read from each tool's own documentation:
- Label Studio's JSON export: a list of tasks, each `{"data": {...}, "annotations": [{"result":
  [...], "completed_by": 3 or {"email": ...}, "created_at", "updated_at", "was_cancelled"}]}`
  (labelstud.io/guide/task_format). The tasks are the ones `export.py` writes: a pairwise task's
  result is `{"type": "pairwise", "value": {"selected": "left" | "right"}}`, left being
  `data.answer1` (the Pairwise tag, web/libs/editor/src/tags/control/Pairwise.js); a ranking
  task's is `{"type": "ranker", "value": {"ranker": {"rank": [item ids, best first]}}}`, keyed
  by the Ranker tag's name (labelstud.io/tags/ranker). Cancelled (skipped) annotations are not
  labels.
- Argilla 2's dataset export (`dataset.records.to_json`): a list of records, `{"id", "fields":
  {"prompt", "response_1", ...}, "metadata", "suggestions", "responses": {"ranking": [{"value":
  ["response_2", "response_1", ...], "user_id", "status"?}]}}` (argilla/src/argilla/records/
  _resource.py, `Record.to_dict`; `responses.py` turns the server's `[{"value", "rank"}]` into
  that list, which is also read, ties included). Draft and discarded responses are not labels.
  The export holds no time of a response: such labels get the time of the import.
- JSON Lines of `{"prompt", "chosen", "rejected"}`, with optional "annotator" and "created_at"
  (ISO 8601), the layout of TRL's preference datasets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequestError
from .files import require_regular

if TYPE_CHECKING:  # labels need nothing from the store but its methods
    from .store import Store

class LabelFileError(InvalidRequestError):
    """A label file that cannot be read, or holds something that is not a label of its format."""


@dataclass(frozen=True)
class Preference:
    """One pairwise judgement: `chosen` was preferred to `rejected` as a reply to `prompt`."""

    prompt: str
    chosen: str
    rejected: str
    annotator: str = ""
    created_at: datetime | None = None
    """When the annotator judged (UTC); None when unknown."""
    run_id: int | None = None
    """The run both replies are samples of, when the label is linked to one."""


@dataclass(frozen=True)
class Label:
    """One annotator's ranking of replies to one prompt: `ranks[i]` is the place of
    `responses[i]`, 1 the best; equal ranks are ties."""

    prompt: str
    responses: tuple[str, ...]
    ranks: tuple[int, ...]
    annotator: str
    created_at: datetime
    """When the annotator judged (UTC), or when it was imported if the file does not say."""
    source: str
    """Where it came from: "label-studio", "argilla", "jsonl" or "app"."""
    run_id: int | None = None
    """The run whose samples these replies are, once linked (see `link`)."""
    samples: tuple[int, ...] | None = None
    """The sample index of each response in that run (parallel to `responses`)."""
    origin: str = ""
    """Which judgement of its source this is (a Label Studio annotation, an Argilla response,
    the app's label of one run by one annotator): a label with the origin of a stored one
    replaces it, so importing a file again adds nothing and keeps the latest judgement."""
    hint: tuple[int | None, tuple[int | None, ...]] | None = None
    """What the file claims (a run id and sample indices, from this app's export): checked
    against the store by `link`, never trusted; not stored."""

    def __post_init__(self) -> None:
        if len(self.responses) != len(self.ranks) or len(self.responses) < 2:
            raise ValueError("a label ranks at least two responses, one rank each")
        if self.samples is not None and len(self.samples) != len(self.responses):
            raise ValueError("a label's samples must be parallel to its responses")

    def pairs(self) -> list[tuple[int, int]]:
        """(better, worse) positions in `responses` of every strictly ordered pair of different
        replies: two equal texts say nothing about which reply is better."""
        n = len(self.responses)
        return [(i, j) if self.ranks[i] < self.ranks[j] else (j, i)
                for i in range(n) for j in range(i + 1, n)
                if self.ranks[i] != self.ranks[j] and self.responses[i] != self.responses[j]]

    def preferences(self) -> list[Preference]:
        return [Preference(self.prompt, self.responses[a], self.responses[b], self.annotator,
                           self.created_at, self.run_id) for a, b in self.pairs()]


def pair_label(prompt: str, chosen: str, rejected: str, annotator: str, created_at: datetime,
               source: str, **links: Any) -> Label:
    return Label(prompt, (chosen, rejected), (1, 2), annotator, created_at, source, **links)


def ranking_label(prompt: str, ordered: Sequence[str], annotator: str, created_at: datetime,
                  source: str, **links: Any) -> Label:
    """A strict ranking: `ordered` is best first."""
    return Label(prompt, tuple(ordered), tuple(range(1, len(ordered) + 1)), annotator,
                 created_at, source, **links)


# ---------------------------------------------------------------------------------------------
# Reading label files


def read_labels(path: Path | str) -> list[Label]:
    """The labels in a Label Studio or Argilla JSON export, or a JSONL of preferences; the
    format is told from the content. Raises LabelFileError, naming the place, for anything
    else, and for a file without a single label."""
    path = Path(path)
    text = _read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            document = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise LabelFileError(f"{path.name} is not JSON (a Label Studio or Argilla export "
                                 "is one JSON list)") from None
        labels = _read_export(document, path.name)
    elif stripped.startswith("{"):
        labels = _read_jsonl(text, path.name)
    else:
        raise LabelFileError(f"{path.name} is neither a JSON export (Label Studio, Argilla) nor "
                             "JSON Lines of {prompt, chosen, rejected}")
    if not labels:
        raise LabelFileError(f"{path.name} holds no labels (no annotation was submitted)")
    return labels


def read_preferences(path: Path | str) -> list[Preference]:
    """Every pairwise preference that a label file (any format `read_labels` reads) implies."""
    return [p for label in read_labels(path) for p in label.preferences()]


def _read_text(path: Path) -> str:
    require_regular(path, "a label file")
    try:
        # A byte-order mark (some Windows tools write one) is not part of the JSON.
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except OSError as error:
        raise LabelFileError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise LabelFileError(f"{path.name} is not UTF-8 text") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _read_jsonl(text: str, name: str) -> list[Label]:
    now = datetime.now(UTC)
    labels = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        try:
            row = json.loads(line, parse_constant=_no_constant)
            if not isinstance(row, dict):
                raise TypeError("not an object")
            prompt, chosen, rejected = (_text(row[key], key) for key in
                                        ("prompt", "chosen", "rejected"))
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise LabelFileError(f"{where}: not a {{prompt, chosen, rejected}} object "
                                 f"({_why(error)})") from None
        if chosen == rejected:
            raise LabelFileError(f"{where}: chosen and rejected are the same reply, so the "
                                 "line prefers nothing")
        annotator = str(row.get("annotator") or "")
        created = row.get("created_at")
        # The same line imported again is the same judgement.
        digest = hashlib.sha256(json.dumps([prompt, chosen, rejected, annotator, str(created)])
                                .encode("utf-8", "surrogatepass")).hexdigest()
        labels.append(pair_label(prompt, chosen, rejected, annotator,
                                 _time(created, now, where), "jsonl", origin=f"line {digest}"))
    return labels


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{key} is not text")
    return value


def _why(error: Exception) -> str:
    return f"{error.args[0]} is missing" if isinstance(error, KeyError) else str(error)


def _time(value: Any, default: datetime, where: str) -> datetime:
    """An ISO 8601 time ("2021-03-09T22:16:08.728353Z"), as UTC; `default` when absent."""
    if value is None or value == "":
        return default
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise LabelFileError(f"{where}: {value!r} is not an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _read_export(document: Any, name: str) -> list[Label]:
    if not isinstance(document, list):
        raise LabelFileError(f"{name}: not a list of tasks or records")
    labels: list[Label] = []
    now = datetime.now(UTC)
    for number, item in enumerate(document, 1):
        if isinstance(item, dict) and "annotations" in item:
            labels.extend(_labelstudio_task(item, f"{name}, task {number}"))
        elif isinstance(item, dict) and "fields" in item:
            labels.extend(_argilla_record(item, f"{name}, record {number}", now))
        else:
            raise LabelFileError(f"{name}, item {number}: neither a Label Studio task (with "
                                 "annotations) nor an Argilla record (with fields)")
    return labels


def _labelstudio_task(task: dict[str, Any], where: str) -> list[Label]:
    data = task.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        raise LabelFileError(f"{where}: its data has no prompt (not a task this app exported)")
    annotations = task["annotations"]
    if not isinstance(annotations, list):
        raise LabelFileError(f"{where}: annotations is not a list")
    labels = []
    for number, annotation in enumerate(annotations, 1):
        place = f"{where}, annotation {number}"
        if not isinstance(annotation, dict) or not isinstance(annotation.get("result"), list):
            raise LabelFileError(f"{place}: not an annotation with a result list")
        if annotation.get("was_cancelled"):
            continue
        annotator = _labelstudio_annotator(annotation.get("completed_by"))
        moment = _time(annotation.get("updated_at") or annotation.get("created_at"),
                       datetime.now(UTC), place)
        known = task.get("id") is not None and annotation.get("id") is not None
        for k, result in enumerate(annotation["result"]):
            if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
                raise LabelFileError(f"{place}: a result without a value")
            kind = result.get("type")
            label = None
            if kind == "pairwise":
                label = _labelstudio_pair(data, result["value"], annotator, moment, place)
            elif kind == "ranker":
                label = _labelstudio_ranking(data, result, annotator, moment, place)
            if label is not None:
                origin = f"task {task['id']} annotation {annotation['id']} result {k}"
                labels.append(replace(label, origin=origin if known else ""))
    return labels


def _labelstudio_annotator(completed_by: Any) -> str:
    if isinstance(completed_by, dict):
        name = " ".join(str(completed_by.get(k) or "") for k in ("first_name", "last_name"))
        return str(completed_by.get("email") or name.strip() or
                   f"label-studio user {completed_by.get('id', '?')}")
    return f"label-studio user {completed_by}" if completed_by is not None else ""


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _labelstudio_pair(data: dict[str, Any], value: dict[str, Any], annotator: str,
                      moment: datetime, where: str) -> Label:
    left, right = data.get("answer1"), data.get("answer2")
    if not isinstance(left, str) or not isinstance(right, str):
        raise LabelFileError(f"{where}: a pairwise task needs data.answer1 and data.answer2")
    selected = value.get("selected")
    if selected not in ("left", "right"):
        raise LabelFileError(f"{where}: the pairwise choice is {selected!r}, not left or right")
    samples = (_int_or_none(data.get("sample1")), _int_or_none(data.get("sample2")))
    if selected == "right":
        left, right, samples = right, left, samples[::-1]
    return pair_label(data["prompt"], left, right, annotator, moment, "label-studio",
                      hint=(_int_or_none(data.get("run_id")), samples))


def _labelstudio_ranking(data: dict[str, Any], result: dict[str, Any], annotator: str,
                         moment: datetime, where: str) -> Label | None:
    items = data.get("items")
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("body"), str) for i in items):
        raise LabelFileError(f"{where}: a ranking task needs data.items with a body each")
    bodies = {str(item.get("id")): item["body"] for item in items}
    ranked = result["value"].get("ranker")
    if not isinstance(ranked, dict) or not ranked:
        raise LabelFileError(f"{where}: a ranker result without value.ranker")
    # Keyed by the Ranker's name ("rank" in our config); older versions used the List's.
    key = next((k for k in (result.get("from_name"), result.get("to_name")) if k in ranked),
               next(iter(ranked)))
    order = ranked[key]
    if not isinstance(order, list) or any(str(i) not in bodies for i in order) or \
            len(set(map(str, order))) != len(order):
        raise LabelFileError(f"{where}: the ranking lists an item the task does not have, or "
                             "one twice")
    if len(order) < 2:
        return None  # nothing was ordered
    samples = tuple(_sample_of_item(str(i)) for i in order)
    return ranking_label(data["prompt"], [bodies[str(i)] for i in order], annotator, moment,
                         "label-studio", hint=(_int_or_none(data.get("run_id")), samples))


def item_id(sample: int) -> str:
    """The id of a sample's item in a Label Studio ranking task that `export` writes."""
    return f"sample-{sample}"


def _sample_of_item(item: str) -> int | None:
    """The sample whose `item_id` that is, or None (a task this app did not write)."""
    prefix, _, number = item.partition("-")
    return int(number) if prefix == "sample" and number.isdigit() else None


def _argilla_record(record: dict[str, Any], where: str, now: datetime) -> list[Label]:
    fields = record["fields"]
    if not isinstance(fields, dict) or not isinstance(fields.get("prompt"), str):
        raise LabelFileError(f"{where}: its fields have no prompt (not a record this app "
                             "exported)")
    responses = record.get("responses") or {}
    if not isinstance(responses, dict):
        raise LabelFileError(f"{where}: responses is not an object of questions")
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    run_hint = _int_or_none(metadata.get("run_id"))
    labels = []
    for number, response in enumerate(responses.get("ranking") or [], 1):
        place = f"{where}, ranking response {number}"
        if not isinstance(response, dict) or "value" not in response:
            raise LabelFileError(f"{place}: not a response with a value")
        if response.get("status", "submitted") != "submitted":
            continue
        names, ranks = _argilla_ranks(response["value"], place)
        for option in names:
            if not isinstance(fields.get(option), str):
                raise LabelFileError(f"{place}: {option!r} is not a field of the record")
        if len(names) < 2:
            continue
        user = response.get("user_id")
        record_id = record.get("id")
        labels.append(Label(
            fields["prompt"], tuple(fields[o] for o in names), ranks,
            f"argilla user {user}" if user else "", now, "argilla",
            origin=f"record {record_id} user {user}" if user and record_id else "",
            hint=(run_hint, tuple(_sample_of_field(o) for o in names))))
    return labels


def _argilla_ranks(value: Any, where: str) -> tuple[list[str], tuple[int, ...]]:
    """Option names and their ranks, from the SDK's list (best first) or the server's
    [{"value", "rank"}] (ties share a rank)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        names, ranks = list(value), tuple(range(1, len(value) + 1))
    elif isinstance(value, list) and all(
            isinstance(v, dict) and isinstance(v.get("value"), str) and
            _int_or_none(v.get("rank")) is not None for v in value):
        ordered = sorted(value, key=lambda v: v["rank"])
        names, ranks = [v["value"] for v in ordered], tuple(v["rank"] for v in ordered)
    else:
        raise LabelFileError(f"{where}: a ranking value is a list of options (best first) or "
                             "of {value, rank}")
    if len(set(names)) != len(names):
        raise LabelFileError(f"{where}: the ranking names an option twice")
    return names, ranks


def field_name(sample: int) -> str:
    """The name of a sample's response field in an Argilla record that `export` writes."""
    return f"response_{sample + 1}"


def _sample_of_field(name: str) -> int | None:
    """The sample whose `field_name` that is, or None."""
    prefix, _, number = name.rpartition("_")
    return int(number) - 1 if prefix == "response" and number.isdigit() and int(number) else None


# ---------------------------------------------------------------------------------------------
# Labels and the store


def link(store: Store, label: Label, seen: dict[Any, Any] | None = None) -> Label:
    """The label linked to the run whose samples its replies are: the run the file names when
    its prompt and texts match, else the newest run with that prompt that has every reply among
    its samples; unchanged (run_id None) when there is none. `seen` caches what the store said,
    for the labels of one file (many labels judge the runs of one prompt)."""
    seen = {} if seen is None else seen
    run_hint, sample_hint = label.hint if label.hint is not None else (None, ())
    candidates = _cached(seen, ("prompt", label.prompt), store.runs_with_prompt, label.prompt)
    if run_hint in candidates:
        candidates = [run_hint, *(c for c in candidates if c != run_hint)]
    for run_id in candidates:
        texts = _cached(seen, ("texts", run_id), store.sample_texts, run_id)
        hints = sample_hint if run_id == run_hint else ()
        samples = _match(label.responses, texts, hints)
        if samples is not None:
            return replace(label, run_id=run_id, samples=samples, hint=None)
    return replace(label, hint=None)


def _cached(seen: dict[Any, Any], key: Any, fetch: Callable[[Any], Any], argument: Any) -> Any:
    if key not in seen:
        seen[key] = fetch(argument)
    return seen[key]


def _match(responses: Sequence[str], texts: Sequence[str],
           hints: Sequence[int | None]) -> tuple[int, ...] | None:
    """A distinct sample for each response with its text, preferring the hinted ones."""
    used: set[int] = set()
    found = []
    for i, response in enumerate(responses):
        hint = hints[i] if i < len(hints) else None
        if hint is not None and 0 <= hint < len(texts) and texts[hint] == response \
                and hint not in used:
            index = hint
        else:
            index = next((k for k, t in enumerate(texts) if t == response and k not in used), -1)
            if index < 0:
                return None
        used.add(index)
        found.append(index)
    return tuple(found)


@dataclass(frozen=True)
class ImportResult:
    read: int
    """Labels in the file."""
    added: int
    """Labels that were new (a label already in the history is not added twice)."""
    linked: int
    """Of the labels read, how many were matched to a run's samples."""
    run_ids: tuple[int, ...]
    """The runs the labels were linked to."""

    def to_json(self) -> dict[str, Any]:
        return {"read": self.read, "added": self.added, "linked": self.linked,
                "run_ids": list(self.run_ids)}


def import_labels(path: Path | str, store: Store) -> ImportResult:
    """Read a label file, link its labels to runs, and store them: all or nothing."""
    seen: dict[Any, Any] = {}
    labels = [link(store, label, seen) for label in read_labels(path)]
    added = store.add_labels(labels)
    runs = tuple(dict.fromkeys(label.run_id for label in labels if label.run_id is not None))
    return ImportResult(len(labels), added, sum(label.run_id is not None for label in labels),
                        runs)


def preferences_for_runs(store: Store, run_ids: Iterable[int]) -> list[Preference]:
    """Every pairwise preference that the stored labels of these runs imply (see
    `Label.pairs`), in the order the labels were stored."""
    return [p for label in store.labels(list(run_ids)) for p in label.preferences()]


def best_of_label(prompt: str, texts: Sequence[str], best: int, annotator: str,
                  run_id: int) -> Label:
    """The app's "prefer": sample `best` above every other sample of the run (they tie)."""
    return Label(prompt, tuple(texts), tuple(1 if i == best else 2 for i in range(len(texts))),
                 annotator, datetime.now(UTC), "app", run_id=run_id,
                 samples=tuple(range(len(texts))), origin=_app_origin(run_id, annotator))


def order_label(prompt: str, texts: Sequence[str], order: Sequence[int], annotator: str,
                run_id: int) -> Label:
    """The app's drag-to-rank: the samples in `order`, best first."""
    return ranking_label(prompt, [texts[i] for i in order], annotator, datetime.now(UTC), "app",
                         run_id=run_id, samples=tuple(order),
                         origin=_app_origin(run_id, annotator))


def _app_origin(run_id: int, annotator: str) -> str:
    # One judgement per run and annotator: a new "prefer" or ranking replaces the last.
    return f"run {run_id} by {annotator}"

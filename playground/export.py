"""Export runs for other tools, and import JSON Lines back into the history.

Every format carries what it takes to reproduce each sample: the model's identity (name, path,
sha256 of the file), the sampling parameters and the sample's own seed.

- "jsonl": one line per sample, for Hugging Face `datasets` (`load_dataset("json", ...)`),
  pandas and scripts; token-level data is optional. It is also the format `import_jsonl` reads.
- "csv": one row per sample, for spreadsheets.
- "labelstudio-pairwise": Label Studio tasks comparing two samples of a prompt.
- "labelstudio-ranking": Label Studio tasks ranking all N samples of a prompt.
- "argilla": Argilla (v2) records with the model's ranking as a suggestion.

Why the JSON Lines look the way they do: `datasets` reads a file in chunks of about 10 MB, takes
the column types from the first chunk and casts every later chunk to them. A column that is null,
an empty list, an int or a struct with fewer keys all through the first chunk fails to load once a
later chunk holds a string, a non-empty list, a float or more keys (checked with datasets 5.2;
huggingface/datasets#7222, #7092). So every line has the same keys, with the same types:
- nothing is null for being absent: an absent string is "" (system prompt, licence, sha256, the
  finish reason of a sample still generating), an absent run statistic is 0 with
  `stats.finished` false, an absent vote has kind "";
- numbers that can be fractional are always written as floats (`1.0`, never `1`);
- what varies in shape from run to run is a list that is never empty: `scores` always holds the
  three logprob scores, and each stored score and ranking adds an entry; the stop strings, which
  are often none at all, are one JSON text (`params.stop_json`);
- the one null left is a float that is not finite (JSON has no NaN or infinity): a logprob score
  of an empty sample is -inf and is written as null. `import_jsonl` reads a null ranking score of
  a logprob method back as -inf and every other null float as NaN.
One thing can still vary: with `include_tokens`, a run with `top_logprobs` 0 has empty lists of
alternatives, so a file whose first 10 MB has only such runs and later ones with alternatives
needs `load_dataset(..., chunksize=<file size>)`.

Round trip: `read_jsonl(export of runs with include_tokens=True)` gives Runs equal to the ones
exported, except that a system prompt or licence of "" comes back as None (the same thing to the
app), non-finite floats come back as above, and a vote's voters, unparsed samples and groups are
derived again from the per-sample answers exactly as `majority_vote` builds them. Run ids, creation
times, tags and stars are not part of a Run: the import gives the runs new ids.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from playground.errors import Cancelled, PlaygroundError
from playground.gguf_file import ModelInfo
from playground.records import Alternative, Run, RunStats, Sample, TokenRecord
from playground.sampling import SamplingParams
from playground.scoring import LOGPROB_SCORES, Answer, Ranking, Vote, vote_of

if TYPE_CHECKING:  # the store needs nothing from here; only the hints name it
    from playground.store import Store

JSONL_FORMAT = "sampling-playground.sample/1"
"""The value of every JSON line's "format" key; the number changes when the layout does."""


class ExportError(PlaygroundError):
    """An export or import failed: a file that cannot be written or read, a bad option."""


@dataclass(frozen=True)
class ExportFormat:
    key: str
    title: str
    """What a file dialog shows."""
    suffix: str


FORMATS: dict[str, ExportFormat] = {
    f.key: f
    for f in (
        ExportFormat("jsonl", "JSON Lines, one sample a line (Hugging Face datasets)", ".jsonl"),
        ExportFormat("csv", "CSV, one sample a row (spreadsheets)", ".csv"),
        ExportFormat("labelstudio-pairwise", "Label Studio tasks: compare two samples", ".json"),
        ExportFormat("labelstudio-ranking", "Label Studio tasks: rank all samples", ".json"),
        ExportFormat("argilla", "Argilla records with the model's ranking", ".json"),
    )
}

PAIR_MODES = ("best-vs-worst", "all-pairs")
"""How pairwise tasks pick their pairs: the best and the worst sample by a ranking, or every
pair of samples up to `max_pairs` per run."""


def export_runs(
    runs: Sequence[Run],
    run_ids: Sequence[int] | None,
    fmt: str,
    path: Path | str,
    *,
    include_tokens: bool = False,
    ranking: str = "mean-logprob",
    pair_mode: str = "best-vs-worst",
    max_pairs: int = 20,
    model_sha256: Sequence[str | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> int:
    """Write `runs` to `path` in format `fmt` (a key of FORMATS); returns the records written.

    `run_ids` are the runs' ids in the store, written with each record (their positions in
    `runs` when None). `model_sha256` gives each run's model file hash, as the store recorded it
    when the run was made (`export_stored` passes them); "" is written where it is unknown.
    `ranking` names the ranking that pairwise, ranking and Argilla exports
    follow: the run's own when it has one, else computed on a copy (the runs are not changed).
    `progress(done, total)` is called after each run; when `cancel()` returns True the export
    stops, the file is not created, and `Cancelled` is raised. The file appears only when
    complete (written beside it, then renamed).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if pair_mode not in PAIR_MODES:
        raise ExportError(f"unknown pair mode {pair_mode!r}; expected one of: "
                          f"{', '.join(PAIR_MODES)}")
    if max_pairs < 1:
        raise ExportError("max pairs must be at least 1")
    ids = list(run_ids) if run_ids is not None else list(range(len(runs)))
    hashes = list(model_sha256) if model_sha256 is not None else [None] * len(runs)
    if len(ids) != len(runs) or len(hashes) != len(runs):
        raise ExportError("run_ids and model_sha256 must give one value per run")
    if fmt in ("labelstudio-pairwise", "labelstudio-ranking", "argilla"):
        _check_ranking(runs, ranking)
    path = Path(path)
    items = [_Item(i, run, sha or "") for i, run, sha in zip(ids, runs, hashes, strict=True)]
    writer = _WRITERS[fmt]
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")

    def each() -> Iterator[_Item]:
        for done, item in enumerate(items):
            if cancel is not None and cancel():
                raise Cancelled("export cancelled; no file was written")
            yield item
            if progress is not None:
                progress(done + 1, len(items))

    options = _Options(include_tokens, ranking, pair_mode, max_pairs)
    try:
        # backslashreplace: a lone surrogate (not UTF-8) is written as a JSON escape instead.
        with temporary.open("w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            count = writer(f, items, each(), options)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count


def export_stored(store: Store, run_ids: Sequence[int], fmt: str, path: Path | str,
                  **options: Any) -> int:
    """`export_runs` for runs of a `playground.store.Store`, with the model hashes it recorded.

    Loads every run first (tokens included), so memory grows with the selection.
    """
    runs = [store.load(run_id) for run_id in run_ids]
    hashes = [store.summary(run_id).model_sha256 for run_id in run_ids]
    return export_runs(runs, run_ids, fmt, path, model_sha256=hashes, **options)


@dataclass(frozen=True)
class _Item:
    run_id: int
    run: Run
    sha256: str


@dataclass(frozen=True)
class _Options:
    include_tokens: bool
    ranking: str
    pair_mode: str
    max_pairs: int


def _check_ranking(runs: Sequence[Run], method: str) -> None:
    stored = {name for run in runs for s in run.samples for name in s.scores}
    ranked = {name for run in runs for name in run.rankings}
    if method in LOGPROB_SCORES or method == "vote" or method in stored | ranked:
        return
    known = ", ".join(sorted({*LOGPROB_SCORES, "vote", *stored}))
    raise ExportError(f"unknown ranking {method!r}; expected one of: {known}")


def _ranking_of(run: Run, method: str) -> Ranking:
    """The run's ranking by `method`, computed on a copy when the run has none yet."""
    if method in run.rankings:
        return run.rankings[method]
    return replace(run, rankings=dict(run.rankings)).rank(method)


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _num(value: float) -> float | None:
    """A float for JSON: always a float, null when not finite (JSON has no NaN or infinity)."""
    value = float(value)
    return value if math.isfinite(value) else None


def model_identity(run: Run, sha256: str = "") -> dict[str, Any]:
    """The model as every export names it: name, path, sha256 ("" when unknown), then the rest
    of ModelInfo, with None written as "" so that the column keeps one type."""
    info = asdict(run.model)
    identity = {"name": info.pop("name"), "path": info.pop("path"), "sha256": sha256}
    for key, value in info.items():
        identity[key] = "" if value is None and key == "license" else value
    return identity


def params_record(params: SamplingParams) -> dict[str, Any]:
    """The parameters with fractional ones always floats and the stop strings as JSON text."""
    return {
        "temperature": float(params.temperature),
        "top_k": params.top_k,
        "top_p": float(params.top_p),
        "min_p": float(params.min_p),
        "repeat_penalty": float(params.repeat_penalty),
        "repeat_last_n": params.repeat_last_n,
        "seed": params.seed,
        "max_tokens": params.max_tokens,
        "stop_json": json.dumps(list(params.stop), ensure_ascii=False),
        "top_logprobs": params.top_logprobs,
    }


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# JSON Lines


def sample_record(
    run: Run, run_id: int, sample: Sample, *, include_tokens: bool = False, sha256: str = ""
) -> dict[str, Any]:
    """One JSON line: a sample with everything needed to reproduce it (see the module doc)."""
    computed = {m: fn(sample.logprobs) for m, fn in LOGPROB_SCORES.items()}
    record: dict[str, Any] = {
        "format": JSONL_FORMAT,
        "run_id": run_id,
        "sample_index": sample.index,
        "n_samples": len(run.samples),
        "prompt": run.prompt,
        "chat": run.chat,
        "system": run.system or "",
        "response": sample.text,
        "finish_reason": sample.finish_reason or "",
        "seed": sample.seed,
        "n_tokens": len(sample.tokens),
        **{m.replace("-", "_"): _num(v) for m, v in computed.items()},
        "scores": _score_entries(run, sample, computed),
        "vote": _vote_record(run.vote, sample.index),
        "model": model_identity(run, sha256),
        "params": params_record(run.params),
        "prompt_token_ids": list(run.prompt_token_ids),
        "stats": _stats_record(run.stats),
    }
    if include_tokens:
        record["tokens"] = _tokens_record(sample.tokens)
    return record


def _score_entries(run: Run, sample: Sample, computed: dict[str, float]) -> list[dict[str, Any]]:
    """Computed logprob scores, then stored ones, then rankings by anything else (e.g. vote);
    each with the sample's place (1 = best, 0 = not ranked) and score in that ranking."""
    places = {
        method: {index: (place + 1, score)
                 for place, (index, score) in enumerate(zip(r.order, r.scores, strict=True))}
        for method, r in run.rankings.items()
    }
    entries: list[dict[str, Any]] = []

    def add(name: str, source: str, value: float) -> None:
        ranked = name not in seen and sample.index in places.get(name, {})
        place, score = places[name][sample.index] if ranked else (0, 0.0)
        seen.add(name)
        entries.append({"name": name, "source": source, "value": _num(value), "rank": place,
                        "rank_score": _num(score)})

    seen: set[str] = set()
    for name, value in computed.items():
        add(name, "computed", value)
    for name, value in sample.scores.items():
        add(name, "stored", value)
    for name in run.rankings:
        if name not in seen:
            add(name, "ranking", places[name].get(sample.index, (0, math.nan))[1])
    return entries


def _vote_record(vote: Vote | None, index: int) -> dict[str, Any]:
    answer = vote.answers[index] if vote is not None and index < len(vote.answers) else None
    return {
        "kind": vote.kind if vote else "",
        "answer": (vote.answer or "") if vote else "",
        "share": float(vote.share) if vote else 0.0,
        "sample_answer": {
            "kind": answer.kind if answer else "",
            "value": answer.value if answer else "",
            "raw": answer.raw if answer else "",
        },
    }


def _stats_record(stats: RunStats | None) -> dict[str, Any]:
    if stats is None:
        return {"finished": False, "prompt_tokens": 0, "new_tokens": 0, "seconds": 0.0,
                "tokens_per_second": 0.0}
    return {"finished": True, "prompt_tokens": stats.prompt_tokens,
            "new_tokens": stats.new_tokens, "seconds": float(stats.seconds),
            "tokens_per_second": float(stats.tokens_per_second)}


def _tokens_record(tokens: Sequence[TokenRecord]) -> dict[str, Any]:
    """Parallel arrays, one element per token: compact, and ready for numpy."""
    return {
        "ids": [t.id for t in tokens],
        "texts": [t.text for t in tokens],
        "bytes_hex": [t.bytes.hex() for t in tokens],
        "logprobs": [_num(t.logprob) for t in tokens],
        "sampling_logprobs": [_num(t.sampling_logprob) for t in tokens],
        "ranks": [t.rank for t in tokens],
        "entropies": [_num(t.entropy) for t in tokens],
        "top_ids": [[a.id for a in t.top] for t in tokens],
        "top_texts": [[a.text for a in t.top] for t in tokens],
        "top_logprobs": [[_num(a.logprob) for a in t.top] for t in tokens],
    }


def _write_jsonl(f: IO[str], items: list[_Item], each: Iterator[_Item],
                 options: _Options) -> int:
    count = 0
    for item in each:
        for sample in item.run.samples:
            f.write(_dump(sample_record(item.run, item.run_id, sample,
                                        include_tokens=options.include_tokens,
                                        sha256=item.sha256)))
            f.write("\n")
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# CSV


def _write_csv(f: IO[str], items: list[_Item], each: Iterator[_Item],
               options: _Options) -> int:
    stored = list(dict.fromkeys(name for item in items for s in item.run.samples
                                for name in s.scores))
    methods = list(dict.fromkeys(name for item in items for name in item.run.rankings))
    header = [
        "run_id", "sample_index", "n_samples", "prompt", "chat", "system", "response",
        "finish_reason", "seed", "n_tokens",
        *(m.replace("-", "_") for m in LOGPROB_SCORES),
        *(f"score:{name}" for name in stored),
        *(f"rank:{method}" for method in methods),
        "vote_answer", "model_name", "model_path", "model_sha256",
        "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
        "base_seed", "max_tokens", "stop", "top_logprobs", "finished", "seconds",
    ]
    out = csv.writer(f)
    # A byte-order mark makes spreadsheet programs read the file as UTF-8.
    f.write("\ufeff")
    out.writerow(header)
    count = 0
    for item in each:
        run_id, run = item.run_id, item.run
        places = {m: {i: p + 1 for p, i in enumerate(r.order)} for m, r in run.rankings.items()}
        p = run.params
        for s in run.samples:
            answer = run.vote.answers[s.index] if run.vote and s.index < len(run.vote.answers) \
                else None
            out.writerow([
                run_id, s.index, len(run.samples), run.prompt, run.chat, run.system or "",
                s.text, s.finish_reason or "", s.seed, len(s.tokens),
                *(_cell(fn(s.logprobs)) for fn in LOGPROB_SCORES.values()),
                *(_cell(s.scores[name]) if name in s.scores else "" for name in stored),
                *(places.get(m, {}).get(s.index, "") for m in methods),
                answer.value if answer else "", run.model.name, run.model.path,
                item.sha256,
                p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n,
                p.seed, p.max_tokens, json.dumps(list(p.stop), ensure_ascii=False),
                p.top_logprobs, run.finished, run.stats.seconds if run.stats else "",
            ])
            count += 1
    return count


def _cell(value: float) -> str | float:
    return value if math.isfinite(value) else ""


# ---------------------------------------------------------------------------------------------
# Label Studio
#
# The data keys follow Label Studio's own templates (HumanSignal/label-studio,
# label_studio/annotation_templates/generative-ai/):
# - human-feedback-collection/config.yml, "Human Preference collection for RLHF" (its preview
#   image is generative-pairwise-human-preference.png): <Text name="prompt" value="$prompt"/>,
#   <Pairwise name="comparison" toName="answer1,answer2"/>, <Text value="$answer1"/> and
#   <Text value="$answer2"/>, so a task is {"data": {"prompt", "answer1", "answer2"}}.
# - llm-ranker/config.yml, "LLM Ranker": <Text name="task" value="$task"/>, <Text name="prompt"
#   value="$prompt"/>, <List name="answers" value="$items"/> with <Ranker name="rank"
#   toName="answers"/>, items being {"id", "title", "body"} (llm-ranker/example.json).
# Other data keys (run, samples, seeds, model, parameters, the model's preference) ride along for
# reproduction and analysis; the templates ignore them.


def _task_common(item: _Item, ranking: Ranking) -> dict[str, Any]:
    run = item.run
    return {
        "system": run.system or "",
        "chat": run.chat,
        "run_id": item.run_id,
        "model": model_identity(run, item.sha256),
        "params": params_record(run.params),
        "ranking_method": ranking.method,
    }


def _pairs(run: Run, run_id: int, ranking: Ranking, options: _Options) -> list[tuple[int, int]]:
    n = len(run.samples)
    if n < 2:
        return []
    if options.pair_mode == "best-vs-worst":
        return [(ranking.order[0], ranking.order[-1])]
    pairs = list(itertools.combinations(range(n), 2))
    if len(pairs) > options.max_pairs:
        # Spread over all samples rather than the first few; seeded so exports are repeatable.
        pairs = sorted(random.Random(f"pairs:{run_id}").sample(pairs, options.max_pairs))
    return pairs


def _write_labelstudio_pairwise(f: IO[str], items: list[_Item], each: Iterator[_Item],
                                options: _Options) -> int:
    tasks = []
    for item in each:
        run_id, run = item.run_id, item.run
        ranking = _ranking_of(run, options.ranking)
        place = {index: p for p, index in enumerate(ranking.order)}
        score = dict(zip(ranking.order, ranking.scores, strict=True))
        for a, b in _pairs(run, run_id, ranking, options):
            # Which sample shows on the left is a seeded coin flip: always showing the model's
            # favourite first would bias the annotators.
            if random.Random(f"side:{run_id}:{a}:{b}").random() < 0.5:
                a, b = b, a
            left, right = run.samples[a], run.samples[b]
            tasks.append({"data": {
                "prompt": run.prompt,
                "answer1": left.text,
                "answer2": right.text,
                "sample1": a,
                "sample2": b,
                "seed1": left.seed,
                "seed2": right.seed,
                "score1": _num(score.get(a, math.nan)),
                "score2": _num(score.get(b, math.nan)),
                "model_prefers": "answer1" if place.get(a, 0) < place.get(b, 0) else "answer2",
                **_task_common(item, ranking),
            }})
    f.write(json.dumps(tasks, ensure_ascii=False, allow_nan=False, indent=1))
    return len(tasks)


def _write_labelstudio_ranking(f: IO[str], items: list[_Item], each: Iterator[_Item],
                               options: _Options) -> int:
    tasks = []
    for item in each:
        run = item.run
        ranking = _ranking_of(run, options.ranking)
        score = dict(zip(ranking.order, ranking.scores, strict=True))
        tasks.append({"data": {
            "task": f"Rank the {len(run.samples)} answers to the prompt, best first.",
            "prompt": run.prompt,
            # In sample order, not the model's: the annotator should not see its opinion.
            "items": [
                {"id": f"sample-{s.index}", "title": f"Sample {s.index + 1}", "body": s.text}
                for s in run.samples
            ],
            "seeds": {f"sample-{s.index}": s.seed for s in run.samples},
            "model_ranking": [f"sample-{i}" for i in ranking.order],
            "model_scores": {f"sample-{i}": _num(score[i]) for i in ranking.order},
            **_task_common(item, ranking),
        }})
    f.write(json.dumps(tasks, ensure_ascii=False, allow_nan=False, indent=1))
    return len(tasks)


# ---------------------------------------------------------------------------------------------
# Argilla
#
# The record layout is Argilla 2's own JSON export (argilla-io/argilla,
# argilla/src/argilla/records/_resource.py, Record.to_dict / from_dict, read back by
# `dataset.records.from_json`): {"id", "fields", "metadata", "suggestions": {question_name:
# {"value", "score", "agent"}}, "responses", "vectors"}. The dataset it goes into needs text
# fields "prompt" and "response_1".."response_N" and a RankingQuestion "ranking" whose values are
# those response names; a RankingQuestion suggestion's value is the option names best first and
# its score one float per option (argilla/src/argilla/suggestions.py). A score that is not finite
# (an empty sample's logprob score) is written as null.


def argilla_record(run: Run, run_id: int, ranking: Ranking, sha256: str = "") -> dict[str, Any]:
    responses = {f"response_{s.index + 1}": s.text for s in run.samples}
    return {
        "id": f"run-{run_id}",
        "fields": {"prompt": run.prompt, **responses},
        "metadata": {
            "run_id": run_id,
            "n_samples": len(run.samples),
            "system": run.system or "",
            "model_name": run.model.name,
            "model_path": run.model.path,
            "model_sha256": sha256,
            "params": json.dumps(params_record(run.params)),
            "seeds": json.dumps({f"response_{s.index + 1}": s.seed for s in run.samples}),
        },
        "suggestions": {
            "ranking": {
                "value": [f"response_{i + 1}" for i in ranking.order],
                "score": [_num(s) for s in ranking.scores],
                "agent": f"sampling-playground {ranking.method} ({run.model.name})",
            }
        },
        "responses": {},
        "vectors": {},
    }


def _write_argilla(f: IO[str], items: list[_Item], each: Iterator[_Item],
                   options: _Options) -> int:
    records = [argilla_record(item.run, item.run_id, _ranking_of(item.run, options.ranking),
                              item.sha256) for item in each]
    f.write(json.dumps(records, ensure_ascii=False, allow_nan=False, indent=1))
    return len(records)


_WRITERS: dict[str, Callable[[IO[str], list[_Item], Iterator[_Item], _Options], int]] = {
    "jsonl": _write_jsonl,
    "csv": _write_csv,
    "labelstudio-pairwise": _write_labelstudio_pairwise,
    "labelstudio-ranking": _write_labelstudio_ranking,
    "argilla": _write_argilla,
}


# ---------------------------------------------------------------------------------------------
# Import


def read_jsonl(path: Path | str) -> list[Run]:
    """The runs in a JSON Lines export, regrouped from its lines (in order of appearance).

    A run is the set of lines with the same run id and the same run-level fields; it must have
    one line for each of its samples.
    """
    path = Path(path)
    groups: dict[tuple, list[tuple[int, dict[str, Any]]]] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise ExportError(f"{path.name}, line {number}: not JSON") from None
                if not isinstance(record, dict) or not str(record.get("format", "")).startswith(
                    JSONL_FORMAT.split("/")[0]
                ):
                    raise ExportError(
                        f"{path.name}, line {number}: not a Sampling Playground sample"
                    )
                try:
                    key = _run_key(record)
                except (KeyError, TypeError):
                    raise ExportError(f"{path.name}, line {number}: a field is missing") from None
                groups.setdefault(key, []).append((number, record))
    except OSError as error:
        raise ExportError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path.name} is not UTF-8 text") from None
    runs = []
    for lines in groups.values():
        try:
            runs.append(_run_from_lines([record for _, record in lines]))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            first = lines[0][0]
            why = str(error) if isinstance(error, _ImportProblem) else "a field is missing or wrong"
            raise ExportError(f"{path.name}, run starting at line {first}: {why}") from None
    return runs


def import_jsonl(path: Path | str, store: Store) -> list[int]:
    """Add the runs of a JSON Lines export to `store`; returns their new ids.

    Nothing is added when the file has a problem: it is read whole before the first run is
    stored.
    """
    return [store.save(run) for run in read_jsonl(path)]


class _ImportProblem(ValueError):
    pass


def _run_key(r: dict[str, Any]) -> tuple:
    return (
        r["run_id"], r["n_samples"], r["prompt"], r["chat"], r["system"],
        json.dumps(r["model"], sort_keys=True), json.dumps(r["params"], sort_keys=True),
        tuple(r["prompt_token_ids"]), json.dumps(r["stats"], sort_keys=True),
    )


def _run_from_lines(lines: list[dict[str, Any]]) -> Run:
    first = lines[0]
    n = first["n_samples"]
    by_index = {}
    for r in lines:
        if r["sample_index"] in by_index:
            raise _ImportProblem(f"sample {r['sample_index']} appears twice")
        by_index[r["sample_index"]] = r
    missing = sorted(set(range(n)) - set(by_index))
    if missing or len(by_index) != n:
        raise _ImportProblem(
            f"it has {n} samples but lines for samples {', '.join(map(str, missing))} are missing"
        )
    records = [by_index[i] for i in range(n)]
    samples = [_sample_from_line(r) for r in records]
    rankings: dict[str, list[tuple[int, int, float]]] = {}
    for r in records:
        seen: set[str] = set()
        for entry in r["scores"]:
            name = entry["name"]
            if entry["rank"] > 0 and name not in seen:
                rankings.setdefault(name, []).append(
                    (entry["rank"], r["sample_index"], _float_back(entry["rank_score"], name))
                )
            seen.add(name)
    stats = first["stats"]
    return Run(
        model=_model_back(first["model"]),
        params=_params_back(first["params"]),
        prompt=first["prompt"],
        prompt_token_ids=list(first["prompt_token_ids"]),
        chat=first["chat"],
        system=first["system"] or None,
        samples=samples,
        stats=RunStats(stats["prompt_tokens"], stats["new_tokens"], stats["seconds"])
        if stats["finished"] else None,
        rankings={
            name: Ranking(name, tuple(i for _, i, _ in sorted(places)),
                          tuple(s for _, _, s in sorted(places)))
            for name, places in rankings.items()
        },
        vote=_vote_back(records),
    )


def _sample_from_line(r: dict[str, Any]) -> Sample:
    index = r["sample_index"]
    tokens = _tokens_back(index, r["tokens"]) if "tokens" in r else []
    return Sample(
        index=index,
        seed=r["seed"],
        tokens=tokens,
        text=r["response"],
        finish_reason=r["finish_reason"] or None,
        scores={e["name"]: _float_back(e["value"]) for e in r["scores"]
                if e["source"] == "stored"},
    )


def _float_back(value: float | None, method: str | None = None) -> float:
    """A float from JSON: null is -inf for a logprob method's score (an empty sample's), else
    NaN."""
    if value is not None:
        return float(value)
    return -math.inf if method in LOGPROB_SCORES else math.nan


def _tokens_back(index: int, t: dict[str, Any]) -> list[TokenRecord]:
    return [
        TokenRecord(
            sample=index, position=i, id=t["ids"][i], bytes=bytes.fromhex(t["bytes_hex"][i]),
            text=t["texts"][i], logprob=_float_back(t["logprobs"][i]),
            sampling_logprob=_float_back(t["sampling_logprobs"][i]), rank=t["ranks"][i],
            entropy=_float_back(t["entropies"][i]),
            top=tuple(
                Alternative(a, text, _float_back(lp))
                for a, text, lp in zip(t["top_ids"][i], t["top_texts"][i], t["top_logprobs"][i],
                                       strict=True)
            ),
        )
        for i in range(len(t["ids"]))
    ]


def _model_back(m: dict[str, Any]) -> ModelInfo:
    values = {f.name: m.get(f.name) for f in fields(ModelInfo)}
    values["license"] = values["license"] or None
    return ModelInfo(**values)


def _params_back(p: dict[str, Any]) -> SamplingParams:
    known = {f.name for f in fields(SamplingParams)}
    values = {k: v for k, v in p.items() if k in known}
    values["stop"] = tuple(json.loads(p["stop_json"]))
    return SamplingParams(**values)


def _vote_back(records: list[dict[str, Any]]) -> Vote | None:
    """The vote, rebuilt from each sample's answer the way `majority_vote` groups them."""
    kind = records[0]["vote"]["kind"]
    if not kind:
        return None
    answers = tuple(
        Answer(a["kind"], a["value"], a["raw"]) if a["kind"] else None
        for a in (r["vote"]["sample_answer"] for r in records)
    )
    return vote_of(answers, kind)

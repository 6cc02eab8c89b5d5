"""Export runs for other tools, and import JSON Lines back into the history.

Every format carries what it takes to reproduce each sample: the model's identity (name, path,
sha256 of the file), the sampling parameters and the sample's own seed.

- "jsonl": one line per sample, for Hugging Face `datasets` (`load_dataset("json", ...)`),
  pandas and scripts; token-level data is optional. It is also the format `import_jsonl` reads.
- "csv": one row per sample, for spreadsheets.
- "labelstudio-pairwise": Label Studio tasks comparing two samples of a prompt.
- "labelstudio-ranking": Label Studio tasks ranking all N samples of a prompt.
- "argilla": Argilla (v2) records with the model's ranking as a suggestion.
The Label Studio formats write their labeling config beside the tasks, and Argilla its dataset
settings beside the records (`sidecar_path`). A score given by a reward model names it (file,
sha256, kind, rubric) in every format.

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
times, tags and stars are not part of a Run: the import gives the runs new ids. An export without
`include_tokens` comes back without tokens, and each sample keeps the logprob scores its line
carries (in `Sample.scores`, under their method names), so that it ranks and exports again as
it did.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from playground.errors import Cancelled, PlaygroundError
from playground.files import FileKindError, output_file
from playground.gguf_file import ModelInfo
from playground.labels import field_name, item_id
from playground.records import (
    Alternative,
    RewardModelIdentity,
    Run,
    RunStats,
    Sample,
    TokenRecord,
    float_from_json,
    json_float,
)
from playground.sampling import SamplingParams
from playground.scoring import LOGPROB_SCORES, Answer, Ranking, Vote, vote_of

if TYPE_CHECKING:  # the store needs nothing from here; only the hints name it
    from playground.store import Store

JSONL_FORMAT = "sampling-playground.sample/2"
"""The value of every JSON line's "format" key; the number changes when the layout does.
Version 2 added each score's `reward_model`; version 1 files still import."""


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


def sidecar_path(path: Path | str, fmt: str) -> Path | None:
    """The file that goes beside an export of format `fmt` to `path`, or None: the Argilla
    dataset settings (`NAME.settings.json`), the Label Studio labeling config
    (`NAME.label_config.xml`)."""
    suffix = _SIDECAR_SUFFIX.get(fmt)
    path = Path(path)
    if suffix is None or (path.exists() and not path.is_file()):
        return None  # a stream (a FIFO, /dev/stdout) has no folder to put it beside
    return path.with_name(path.stem + suffix)


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
    stops, the file is not created, and `Cancelled` is raised. A regular file appears only
    when complete, after its sidecar (see `sidecar_path`); a FIFO, a device or a symlink is
    written through (see `files.output_file`), without a sidecar.
    Raises ExportError when the runs do not make a single record of the format: a pairwise
    export without one run of two samples, an Argilla export of runs with different numbers of
    samples or of one sample.
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
    items = [_Item(i, run, sha or "") for i, run, sha in zip(ids, runs, hashes, strict=True)]
    _check_shape(fmt, items)
    path = Path(path)
    writer = _WRITERS[fmt]
    sidecar = sidecar_path(path, fmt)

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
        with output_file(path, encoding="utf-8", errors="backslashreplace", newline="") as f:
            count = writer(f, items, each(), options)
            if sidecar is not None:
                _write_whole(sidecar, _SIDECARS[fmt](items))
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from None
    return count


def _write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` so that the file appears only when complete."""
    try:
        with output_file(path, encoding="utf-8") as f:
            f.write(text)
    except FileKindError as error:
        raise ExportError(str(error)) from None
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from None


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


def _check_shape(fmt: str, items: list[_Item]) -> None:
    """Refuse, before anything is written, runs that would make no valid record."""
    if not items:
        raise ExportError("no runs to export")
    if fmt == "labelstudio-pairwise" and not any(len(i.run.samples) >= 2 for i in items):
        raise ExportError(f"no pairs to compare: {_runs_named(items)} "
                          f"{'has' if len(items) == 1 else 'have'} fewer than 2 samples, and "
                          "a pair needs 2 samples of one run")
    if fmt == "argilla":
        # An Argilla dataset has one set of fields and a RankingQuestion needs 2 options at
        # least; a submitted ranking must place every option, so no record can lack one.
        small = [i for i in items if len(i.run.samples) < 2]
        if small:
            raise ExportError(f"nothing to rank in {_runs_named(small)}: an Argilla ranking "
                              "needs at least 2 samples")
        sizes: dict[int, list[_Item]] = {}
        for item in items:
            sizes.setdefault(len(item.run.samples), []).append(item)
        if len(sizes) > 1:
            groups = "; ".join(f"{n} samples: {_runs_named(group)}"
                               for n, group in sorted(sizes.items()))
            raise ExportError("an Argilla dataset has one field per response, so its runs need "
                              f"the same number of samples; export these separately ({groups})")


def _runs_named(items: list[_Item]) -> str:
    ids = [str(i.run_id) for i in items]
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"run{'s' if len(ids) > 1 else ''} {shown}"


def _ranking_of(run: Run, method: str) -> Ranking:
    """The run's ranking by `method`, computed on a copy when the run has none yet."""
    if method in run.rankings:
        return run.rankings[method]
    return replace(run, rankings=dict(run.rankings)).rank(method)


# ---------------------------------------------------------------------------------------------
# Shared pieces


def model_identity(run: Run, sha256: str = "") -> dict[str, Any]:
    """The model as every export names it: name, path, sha256 ("" when unknown), then the rest
    of ModelInfo, with None (no license, not on a server) written as "" so that the column
    keeps one type."""
    info = asdict(run.model)
    identity = {"name": info.pop("name"), "path": info.pop("path"), "sha256": sha256}
    for key, value in info.items():
        identity[key] = "" if value is None and key in ("license", "server") else value
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
        "sampler_order": params.sampler_order,
    }


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# JSON Lines


def sample_record(
    run: Run, run_id: int, sample: Sample, *, include_tokens: bool = False, sha256: str = ""
) -> dict[str, Any]:
    """One JSON line: a sample with everything needed to reproduce it (see the module doc)."""
    computed = sample.logprob_scores()
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
        **{m.replace("-", "_"): json_float(v) for m, v in computed.items()},
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
    each with the sample's place (1 = best, 0 = not ranked) and score in that ranking, and the
    reward model that gave it (every field "" for a score no reward model gave)."""
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
        identity = run.reward_models.get(name)
        entries.append({"name": name, "source": source, "value": json_float(value), "rank": place,
                        "rank_score": json_float(score),
                        "reward_model": identity.to_json() if identity else _NO_REWARD_MODEL})

    seen: set[str] = set()
    for name, value in computed.items():
        add(name, "computed", value)
    for name, value in sample.scores.items():
        if name not in computed:  # a logprob score kept by an import is written once
            add(name, "stored", value)
    for name in run.rankings:
        if name not in seen:
            add(name, "ranking", places[name].get(sample.index, (0, math.nan))[1])
    return entries


_NO_REWARD_MODEL = {f.name: "" for f in fields(RewardModelIdentity)}


def reward_models_record(run: Run) -> dict[str, dict[str, str]]:
    """Which reward model gave each stored score, by score name, for the formats that carry it
    as one object (Label Studio, Argilla metadata)."""
    return {name: identity.to_json() for name, identity in run.reward_models.items()}


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
        "logprobs": [json_float(t.logprob) for t in tokens],
        "sampling_logprobs": [json_float(t.sampling_logprob) for t in tokens],
        "ranks": [t.rank for t in tokens],
        "entropies": [json_float(t.entropy) for t in tokens],
        "kept": [t.kept for t in tokens],
        "top_ids": [[a.id for a in t.top] for t in tokens],
        "top_texts": [[a.text for a in t.top] for t in tokens],
        "top_logprobs": [[json_float(a.logprob) for a in t.top] for t in tokens],
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
                                for name in s.scores if name not in LOGPROB_SCORES))
    judged = list(dict.fromkeys(name for item in items for name in item.run.reward_models))
    methods = list(dict.fromkeys(name for item in items for name in item.run.rankings))
    header = [
        "run_id", "sample_index", "n_samples", "prompt", "chat", "system", "response",
        "finish_reason", "seed", "n_tokens",
        *(m.replace("-", "_") for m in LOGPROB_SCORES),
        *(f"score:{name}" for name in stored),
        *(f"reward_model:{name}" for name in judged),
        *(f"rank:{method}" for method in methods),
        "vote_answer", "model_name", "model_path", "model_sha256",
        "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
        "base_seed", "max_tokens", "stop", "top_logprobs", "sampler_order", "finished",
        "seconds",
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
                *(_cell(v) for v in s.logprob_scores().values()),
                *(_cell(s.scores[name]) if name in s.scores else "" for name in stored),
                *(_dump(run.reward_models[name].to_json()) if name in run.reward_models else ""
                  for name in judged),
                *(places.get(m, {}).get(s.index, "") for m in methods),
                answer.value if answer else "", run.model.name, run.model.path,
                item.sha256,
                p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n,
                p.seed, p.max_tokens, json.dumps(list(p.stop), ensure_ascii=False),
                p.top_logprobs, p.sampler_order, run.finished,
                run.stats.seconds if run.stats else "",
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
# Other data keys (run, samples, seeds, model, parameters, reward models, the model's preference)
# ride along for reproduction and analysis; the templates ignore them. Each export ships its
# labeling config beside the tasks (`sidecar_path`): the template's tags, without its styling.

LABELSTUDIO_PAIRWISE_CONFIG = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Which answer is better? Click it."/>
  <Pairwise name="comparison" toName="answer1,answer2"/>
  <Text name="answer1" value="$answer1"/>
  <Text name="answer2" value="$answer2"/>
</View>
"""
LABELSTUDIO_RANKING_CONFIG = """<View>
  <Header value="Task"/>
  <Text name="task" value="$task"/>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <List name="answers" value="$items" title="Answers"/>
  <Ranker name="rank" toName="answers"/>
</View>
"""


def _task_common(item: _Item, ranking: Ranking) -> dict[str, Any]:
    run = item.run
    return {
        "system": run.system or "",
        "chat": run.chat,
        "run_id": item.run_id,
        "model": model_identity(run, item.sha256),
        "params": params_record(run.params),
        "ranking_method": ranking.method,
        "reward_models": reward_models_record(run),
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
                "score1": json_float(score.get(a, math.nan)),
                "score2": json_float(score.get(b, math.nan)),
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
                {"id": item_id(s.index), "title": f"Sample {s.index + 1}", "body": s.text}
                for s in run.samples
            ],
            "seeds": {item_id(s.index): s.seed for s in run.samples},
            "model_ranking": [item_id(i) for i in ranking.order],
            "model_scores": {item_id(i): json_float(score[i]) for i in ranking.order},
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
# {"value", "score", "agent"}}, "responses", "vectors"}. The dataset settings go beside it, in
# the form `rg.Settings.from_json` reads (argilla/src/argilla/settings/_resource.py, serialize):
# text fields "prompt" and "response_1".."response_N", all required, and a RankingQuestion
# "ranking" whose options are those response names; so all the runs of one export have N
# samples (see `_check_shape`).
#
# What the server accepts (argilla-server 2.8: api/schemas/v1/suggestions.py SuggestionCreate,
# validators/suggestions.py, validators/records.py, api/schemas/v1/questions.py): a suggestion's
# agent matches `^[a-zA-Z0-9-_:\.\/\s]*[a-zA-Z0-9][a-zA-Z0-9-_:\.\/\s]*$` and is at most 200
# characters (letters, digits and - _ : . / and spaces, at least one letter or digit); a
# ranking suggestion's value lists options of the question, each once, and its score is one float
# in [0, 1] per item; a record has a value for every required field and no other field; a
# RankingQuestion has 2 to 50 options. Ranking scores (log-probabilities, rewards) are mapped into
# [0, 1] by `unit_scores`; the raw ones ride along in the metadata.

ARGILLA_QUESTION = "ranking"
_AGENT_CHARACTER = re.compile(r"[^a-zA-Z0-9\-_:./ ]")
_AGENT_MAX_LENGTH = 200


def unit_scores(scores: Sequence[float]) -> list[float]:
    """Scores mapped into [0, 1], higher still better: unchanged when all already lie there
    (vote shares, probabilities), else (s - min) / (max - min) over the finite ones, with -inf
    and NaN (an empty or unscored sample) at 0, +inf at 1, and all-equal scores at 1."""
    if all(0.0 <= s <= 1.0 for s in scores):  # False for NaN
        return [float(s) for s in scores]
    finite = [s for s in scores if math.isfinite(s)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)

    def unit(s: float) -> float:
        if math.isnan(s) or s == -math.inf:
            return 0.0
        if s == math.inf or high == low:
            return 1.0
        return (s - low) / (high - low)

    return [unit(s) for s in scores]


def argilla_agent(method: str, model_name: str) -> str:
    """Who made the suggestion, in the characters Argilla allows."""
    agent = _AGENT_CHARACTER.sub("-", f"sampling-playground {method} {model_name}")
    return agent[:_AGENT_MAX_LENGTH]


def argilla_record(run: Run, run_id: int, ranking: Ranking, sha256: str = "") -> dict[str, Any]:
    responses = {field_name(s.index): s.text for s in run.samples}
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
            "seeds": json.dumps({field_name(s.index): s.seed for s in run.samples}),
            "ranking_method": ranking.method,
            # The ranking's own scores, best first (null where not finite).
            "ranking_scores": json.dumps([json_float(s) for s in ranking.scores]),
            "reward_models": json.dumps(reward_models_record(run)),
        },
        "suggestions": {
            ARGILLA_QUESTION: {
                "value": [field_name(i) for i in ranking.order],
                "score": unit_scores(ranking.scores),
                "agent": argilla_agent(ranking.method, run.model.name),
            }
        },
        "responses": {},
        "vectors": {},
    }


def argilla_settings(n_samples: int) -> dict[str, Any]:
    """The dataset the records go into, as `rg.Settings.from_json` reads it."""

    def text_field(name: str, title: str) -> dict[str, Any]:
        return {"name": name, "title": title, "required": True, "description": None,
                "settings": {"type": "text", "use_markdown": False}}

    names = [field_name(i) for i in range(n_samples)]
    return {
        "guidelines": "Rank the responses to the prompt, best first. The suggestion is the "
                      "model's own ranking (see each record's ranking_method).",
        "questions": [{
            "name": ARGILLA_QUESTION, "title": "Rank the responses, best first",
            "description": None, "required": True,
            "settings": {"type": "ranking", "options": [
                {"value": name, "text": f"Response {i + 1}", "description": None}
                for i, name in enumerate(names)]},
        }],
        "fields": [text_field("prompt", "Prompt"),
                   *(text_field(name, f"Response {i + 1}") for i, name in enumerate(names))],
        "vectors": [],
        "metadata": [],
        "allow_extra_metadata": True,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def _write_argilla(f: IO[str], items: list[_Item], each: Iterator[_Item],
                   options: _Options) -> int:
    records = [argilla_record(item.run, item.run_id, _ranking_of(item.run, options.ranking),
                              item.sha256) for item in each]
    f.write(json.dumps(records, ensure_ascii=False, allow_nan=False, indent=1))
    return len(records)


_SIDECAR_SUFFIX = {
    "argilla": ".settings.json",
    "labelstudio-pairwise": ".label_config.xml",
    "labelstudio-ranking": ".label_config.xml",
}
_SIDECARS: dict[str, Callable[[list[_Item]], str]] = {
    "argilla": lambda items: json.dumps(argilla_settings(len(items[0].run.samples)), indent=1),
    "labelstudio-pairwise": lambda items: LABELSTUDIO_PAIRWISE_CONFIG,
    "labelstudio-ranking": lambda items: LABELSTUDIO_RANKING_CONFIG,
}


_WRITERS: dict[str, Callable[[IO[str], list[_Item], Iterator[_Item], _Options], int]] = {
    "jsonl": _write_jsonl,
    "csv": _write_csv,
    "labelstudio-pairwise": _write_labelstudio_pairwise,
    "labelstudio-ranking": _write_labelstudio_ranking,
    "argilla": _write_argilla,
}


# ---------------------------------------------------------------------------------------------
# Import
#
# A file is checked line by line against the layout `sample_record` writes (`_LINE`): every key
# with its JSON type, integers within what the store holds, text that is valid Unicode. A line
# that does not fit is refused with its number and the first thing wrong, and nothing is
# imported: the whole file is read and checked before one transaction stores every run.


def read_jsonl(path: Path | str) -> list[Run]:
    """The runs in a JSON Lines export, regrouped from its lines (in order of appearance).

    A run is the set of lines with the same run id and the same run-level fields; it must have
    one line for each of its samples. Raises ExportError (with the line and the reason) for a
    file that is empty or holds anything else.
    """
    path = Path(path)
    groups: dict[tuple, list[tuple[int, dict[str, Any]]]] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                record = _parse_line(line, f"{path.name}, line {number}")
                groups.setdefault(_run_key(record), []).append((number, record))
    except OSError as error:
        raise ExportError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path.name} is not UTF-8 text") from None
    if not groups:
        raise ExportError(f"{path.name} has no samples to import (it is empty)")
    runs = []
    for lines in groups.values():
        try:
            runs.append(_run_from_lines(lines))
        except _ImportProblem as problem:
            raise ExportError(f"{path.name}, {problem}") from None
    return runs


def import_jsonl(path: Path | str, store: Store) -> list[int]:
    """Add the runs of a JSON Lines export to `store`; returns their new ids.

    All or nothing: the file is read and checked whole, then every run is stored in one
    transaction.
    """
    return store.save_all(read_jsonl(path))


class _ImportProblem(ValueError):
    """What is wrong with a line (or a run), starting with where: "line 3: ..."."""


def _parse_line(line: str, where: str) -> dict[str, Any]:
    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        record = json.loads(line, parse_constant=no_constant)
    except RecursionError:
        raise ExportError(f"{where}: not a Sampling Playground sample (nested too deeply)") \
            from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity
        why = str(error) if "is not JSON" in str(error) else "not JSON"
        raise ExportError(f"{where}: {why}") from None
    if not isinstance(record, dict) or not isinstance(record.get("format"), str) or \
            not record["format"].startswith(JSONL_FORMAT.split("/")[0] + "/"):
        raise ExportError(f"{where}: not a Sampling Playground sample")
    try:
        _check(record, _LINE, "")
    except _ImportProblem as problem:
        raise ExportError(f"{where}: {problem}") from None
    return record


# Types a value must have: the JSON type, and for numbers the range the store can hold.
_STR = "text"
_TOKEN_STR = "token text"  # may hold a lone surrogate (a token that ends inside a character)
_INT = "an integer"
_ID = "a token id"
_FLOAT = "a number or null"
_BOOL = "true or false"
_INT64 = 2**63
_INT32 = 2**31


def _optional(schema: Any) -> tuple[str, Any]:
    return ("optional", schema)


_TOKENS = {
    "ids": [_ID], "texts": [_TOKEN_STR], "bytes_hex": [_STR], "logprobs": [_FLOAT],
    "sampling_logprobs": [_FLOAT], "ranks": [_ID], "entropies": [_FLOAT], "top_ids": [[_ID]],
    "top_texts": [[_TOKEN_STR]], "top_logprobs": [[_FLOAT]],
    "kept": _optional([_ID]),  # files of earlier versions have none: kept 0, not recorded
}
_MODEL_TYPES = {"str": _STR, "int": _INT, "bool": _BOOL}  # ModelInfo's annotations, as text
_LINE: dict[str, Any] = {
    "format": _STR, "run_id": _INT, "sample_index": _INT, "n_samples": _INT, "prompt": _STR,
    "chat": _BOOL, "system": _STR, "response": _STR, "finish_reason": _STR, "seed": _INT,
    "n_tokens": _INT, "scores": [{"name": _STR, "source": _STR, "value": _FLOAT, "rank": _INT,
                "rank_score": _FLOAT,
                "reward_model": _optional({f.name: _STR for f in fields(RewardModelIdentity)})}],
    "vote": {"kind": _STR, "answer": _STR, "share": _FLOAT,
             "sample_answer": {"kind": _STR, "value": _STR, "raw": _STR}},
    # Fields added to ModelInfo since a file was written read None.
    "model": {"name": _STR, "path": _STR, **{
        f.name: _optional(_MODEL_TYPES.get(str(f.type), _STR))
        for f in fields(ModelInfo) if f.name not in ("name", "path")}},
    "params": {"temperature": _FLOAT, "top_k": _INT, "top_p": _FLOAT, "min_p": _FLOAT,
               "repeat_penalty": _FLOAT, "repeat_last_n": _INT, "seed": _INT,
               "max_tokens": _INT, "stop_json": _STR, "top_logprobs": _INT,
               "sampler_order": _optional(_STR)},
    "prompt_token_ids": [_ID],
    "stats": {"finished": _BOOL, "prompt_tokens": _INT, "new_tokens": _INT,
              "seconds": _FLOAT},
    "tokens": _optional(_TOKENS),
}
_JSON_TYPE = {dict: "an object", list: "a list", str: "text", bool: "true or false",
              int: "an integer", float: "a number", type(None): "null"}


def _check(value: Any, schema: Any, where: str) -> None:
    """Raise _ImportProblem naming the first place (e.g. "scores[2].value") where `value` does
    not fit `schema`: a dict of keys (extra keys are ignored), a one-item list (every item), or
    one of the type names above."""
    if isinstance(schema, tuple):
        schema = schema[1]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise _ImportProblem(f"{where or 'the line'} should be an object, not "
                                 f"{_JSON_TYPE[type(value)]}")
        for key, inner in schema.items():
            place = f"{where}.{key}" if where else key
            if key in value:
                _check(value[key], inner, place)
            elif not isinstance(inner, tuple):
                raise _ImportProblem(f"{place} is missing")
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise _ImportProblem(f"{where} should be a list, not {_JSON_TYPE[type(value)]}")
        for i, item in enumerate(value):
            _check(item, schema[0], f"{where}[{i}]")
        return
    _check_scalar(value, schema, where)


def _check_scalar(value: Any, schema: str, where: str) -> None:
    kind = type(value)
    if schema in (_STR, _TOKEN_STR):
        ok = kind is str
        if ok and schema == _STR and _has_lone_surrogate(value):
            raise _ImportProblem(f"{where} is not valid Unicode (a lone surrogate)")
    elif schema == _FLOAT:
        ok = kind in (int, float, type(None))
    elif schema == _BOOL:
        ok = kind is bool
    else:
        ok = kind is int
        low, high = (0, _INT32) if schema == _ID else (-_INT64, _INT64)
        if ok and not low <= value < high:
            raise _ImportProblem(f"{where} is out of range ({value})")
    if not ok:
        raise _ImportProblem(f"{where} should be {schema}, not {_JSON_TYPE[kind]}")


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _run_key(r: dict[str, Any]) -> tuple:
    return (
        r["run_id"], r["n_samples"], r["prompt"], r["chat"], r["system"],
        json.dumps(r["model"], sort_keys=True), json.dumps(r["params"], sort_keys=True),
        tuple(r["prompt_token_ids"]), json.dumps(r["stats"], sort_keys=True),
    )


def _run_from_lines(lines: list[tuple[int, dict[str, Any]]]) -> Run:
    first_line, first = lines[0]
    n = first["n_samples"]
    by_index: dict[int, tuple[int, dict[str, Any]]] = {}
    for number, r in lines:
        index = r["sample_index"]
        if not 0 <= index < n:
            raise _ImportProblem(f"line {number}: sample_index {index} is not in 0..{n - 1} "
                                 f"(n_samples is {n})")
        if index in by_index:
            raise _ImportProblem(f"line {number}: sample {index} appears twice")
        by_index[index] = (number, r)
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise _ImportProblem(
            f"run starting at line {first_line}: it has {n} samples but lines for samples "
            f"{', '.join(map(str, missing))} are missing"
        )
    numbered = [by_index[i] for i in range(n)]
    records = [r for _, r in numbered]
    samples = [_sample_from_line(number, r) for number, r in numbered]
    rankings: dict[str, list[tuple[int, int, float]]] = {}
    reward_models: dict[str, RewardModelIdentity] = {}
    for r in records:
        seen: set[str] = set()
        for entry in r["scores"]:
            name = entry["name"]
            if entry["rank"] > 0 and name not in seen:
                rankings.setdefault(name, []).append(
                    (entry["rank"], r["sample_index"], _float_back(entry["rank_score"], name))
                )
            seen.add(name)
            identity = entry.get("reward_model", _NO_REWARD_MODEL)
            if identity["kind"]:
                reward_models[name] = RewardModelIdentity(**identity)
    for name, places in rankings.items():
        if sorted(place for place, _, _ in places) != list(range(1, len(places) + 1)):
            raise _ImportProblem(f"run starting at line {first_line}: its places in the "
                                 f"{name} ranking are not 1 to {len(places)}")
    stats = first["stats"]
    return Run(
        model=ModelInfo.from_json(first["model"]),
        params=_params_back(first_line, first["params"]),
        prompt=first["prompt"],
        prompt_token_ids=list(first["prompt_token_ids"]),
        chat=first["chat"],
        system=first["system"] or None,
        samples=samples,
        stats=RunStats(stats["prompt_tokens"], stats["new_tokens"], float(stats["seconds"]))
        if stats["finished"] else None,
        rankings={
            name: Ranking(name, tuple(i for _, i, _ in sorted(places)),
                          tuple(s for _, _, s in sorted(places)))
            for name, places in rankings.items()
        },
        vote=_vote_back(records),
        reward_models=reward_models,
    )


def _sample_from_line(number: int, r: dict[str, Any]) -> Sample:
    index = r["sample_index"]
    has_tokens = "tokens" in r
    tokens = _tokens_back(number, index, r["tokens"]) if has_tokens else []
    # Without token data the logprob scores cannot be computed again: the file's are kept.
    kept = ("stored",) if has_tokens else ("stored", "computed")
    return Sample(
        index=index,
        seed=r["seed"],
        tokens=tokens,
        text=r["response"],
        finish_reason=r["finish_reason"] or None,
        scores={e["name"]: _float_back(e["value"], e["name"]) for e in r["scores"]
                if e["source"] in kept},
    )


def _float_back(value: float | None, method: str | None = None) -> float:
    """null is -inf for a logprob method's score (an empty sample's), else NaN."""
    return float_from_json(value, -math.inf if method in LOGPROB_SCORES else math.nan)


def _tokens_back(number: int, index: int, t: dict[str, Any]) -> list[TokenRecord]:
    n = len(t["ids"])
    for key, values in t.items():
        if key in _TOKENS and len(values) != n:
            raise _ImportProblem(f"line {number}: tokens.{key} has {len(values)} items, "
                                 f"tokens.ids {n}")
    for i in range(n):
        if not len(t["top_ids"][i]) == len(t["top_texts"][i]) == len(t["top_logprobs"][i]):
            raise _ImportProblem(f"line {number}: the alternatives of token {i} have lists of "
                                 "different lengths")
    try:
        token_bytes = [bytes.fromhex(h) for h in t["bytes_hex"]]
    except ValueError:
        raise _ImportProblem(f"line {number}: tokens.bytes_hex holds something that is not "
                             "hexadecimal") from None
    return [
        TokenRecord(
            sample=index, position=i, id=t["ids"][i], bytes=token_bytes[i],
            text=t["texts"][i], logprob=_float_back(t["logprobs"][i]),
            sampling_logprob=_float_back(t["sampling_logprobs"][i]), rank=t["ranks"][i],
            entropy=_float_back(t["entropies"][i]), kept=t["kept"][i] if "kept" in t else 0,
            top=tuple(
                Alternative(a, text, _float_back(lp))
                for a, text, lp in zip(t["top_ids"][i], t["top_texts"][i], t["top_logprobs"][i],
                                       strict=True)
            ),
        )
        for i in range(n)
    ]


def _params_back(number: int, p: dict[str, Any]) -> SamplingParams:
    try:
        stop = json.loads(p["stop_json"])
    except (ValueError, RecursionError):
        stop = None
    if not isinstance(stop, list) or not all(isinstance(x, str) for x in stop):
        raise _ImportProblem(f"line {number}: params.stop_json should be a JSON list of texts")
    try:
        return SamplingParams.from_json({**p, "stop": stop}).validate()
    except PlaygroundError as error:
        raise _ImportProblem(f"line {number}: params: {error}") from None


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

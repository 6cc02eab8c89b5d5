"""Exports: JSON Lines that round-trip and load in `datasets`, CSV, Label Studio and Argilla."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from playground.errors import Cancelled
from playground.export import (
    FORMATS,
    JSONL_FORMAT,
    ExportError,
    export_runs,
    export_stored,
    import_jsonl,
    read_jsonl,
)
from playground.records import Run
from playground.store import Store

try:  # tests/ is on sys.path under pytest's default (prepend) import mode
    import store_writer as sw
except ImportError:  # pragma: no cover - e.g. if tests/ becomes a package
    from tests import store_writer as sw


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(folder))
    return folder


def varied_runs() -> list[Run]:
    """Runs that differ in every way that could change a JSON line's shape."""
    plain = sw.synthetic_run(3, [12, 0, 7], system=None, seed=1)  # empty sample, no system
    plain.params = replace(plain.params, stop=(), temperature=1)  # int temperature on purpose

    ranked = sw.synthetic_run(4, 9, seed=2, prompt="6 x 7? answer is B 🙂")
    for i, sample in enumerate(ranked.samples):
        sample.scores["reward"] = 0.5 - 0.25 * i
    ranked.samples[0].scores["judge"] = 3  # an int score: written as a float
    for method in ("mean-logprob", "vote", "reward", "sum-logprob"):
        ranked.rank(method)

    unfinished = sw.start_run(2, top_logprobs=0, system="सिस्टम", seed=3)
    for event in sw.synthetic_events(unfinished, [5, 3], seed=3, end=False):
        unfinished.add(event)
    unfinished.samples[0].finish_reason = "interrupted"
    unfinished.rank("normalized-logprob")  # samples still growing: ranked anyway
    return [plain, ranked, unfinished]


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_round_trip_is_exact(tmp_path: Path) -> None:
    runs = varied_runs()
    path = tmp_path / "runs.jsonl"
    assert export_runs(runs, [11, 12, 13], "jsonl", path, include_tokens=True) == 9
    back = read_jsonl(path)
    assert back == runs


def test_jsonl_round_trip_of_non_finite_scores(tmp_path: Path) -> None:
    run = sw.synthetic_run(3, [4, 0, 2])  # the empty sample's logprob scores are -inf
    run.samples[1].scores["reward"] = math.nan
    run.rank("mean-logprob")
    run.rank("reward")
    path = tmp_path / "runs.jsonl"
    export_runs([run], None, "jsonl", path, include_tokens=True)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert repr(read_jsonl(path)) == repr([run])  # repr compares NaN as equal


def test_import_into_the_store(tmp_path: Path) -> None:
    runs = varied_runs()
    path = tmp_path / "runs.jsonl"
    export_runs(runs, None, "jsonl", path, include_tokens=True)
    with Store() as store:
        ids = import_jsonl(path, store)
        # A stored run that nobody is writing is interrupted where it was not finished.
        runs[2].samples[1].finish_reason = "interrupted"
        assert [store.load(i) for i in ids] == runs
        assert [s.status for s in store.list_runs()] == ["interrupted", "finished", "finished"]


def test_jsonl_from_the_store_carries_the_model_hash(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF weights")
    with Store() as store:
        run_id = store.save(sw.synthetic_run(2, 3, model=sw.model_info(str(model))))
        path = tmp_path / "runs.jsonl"
        export_stored(store, [run_id], "jsonl", path)
        sha = store.summary(run_id).model_sha256
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sha and [line["model"]["sha256"] for line in lines] == [sha, sha]
    assert [line["run_id"] for line in lines] == [run_id, run_id]


def json_shapes(value: Any, path: str, shapes: dict[str, set[str]],
                keys: dict[str, set[frozenset[str]]]) -> None:
    if isinstance(value, dict):
        shapes.setdefault(path, set()).add("object")
        keys.setdefault(path, set()).add(frozenset(value))
        for key, item in value.items():
            json_shapes(item, f"{path}.{key}", shapes, keys)
    elif isinstance(value, list):
        shapes.setdefault(path, set()).add("array")
        for item in value:
            json_shapes(item, f"{path}[]", shapes, keys)
    else:
        kind = {bool: "bool", int: "int", float: "float", str: "string", type(None): "null"}
        shapes.setdefault(path, set()).add(kind[type(value)])


def assert_strict_json_lines(path: Path) -> list[dict[str, Any]]:
    """What Arrow (and so `datasets`) needs to read every chunk of the file with one schema:
    the same keys on every line and in every object at the same place, one JSON type per
    place, floats always floats, null only for a float (a non-finite one)."""

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    lines = [json.loads(line, parse_constant=no_constants)
             for line in path.read_text(encoding="utf-8").splitlines()]
    shapes: dict[str, set[str]] = {}
    keys: dict[str, set[frozenset[str]]] = {}
    for line in lines:
        json_shapes(line, "", shapes, keys)
    for place, key_sets in keys.items():
        assert len(key_sets) == 1, f"{place or 'line'} has different keys on different lines"
    for place, types in shapes.items():
        assert types - {"null"}, f"{place} is always null"
        assert len(types - {"null"}) == 1, f"{place} has types {sorted(types)}"
        if "null" in types:
            assert types == {"null", "float"}, f"{place} is sometimes null"
    return lines


@pytest.mark.parametrize("include_tokens", [False, True])
def test_jsonl_has_one_schema_for_every_line(tmp_path: Path, include_tokens: bool) -> None:
    runs = [*varied_runs(), sw.synthetic_run(2, 3, seed=4)]
    path = tmp_path / "runs.jsonl"
    export_runs(runs, None, "jsonl", path, include_tokens=include_tokens)
    lines = assert_strict_json_lines(path)
    first = lines[0]
    assert first["format"] == JSONL_FORMAT
    assert {"prompt", "response", "model", "params", "seed", "finish_reason", "scores",
            "run_id", "sample_index"} <= set(first)
    assert set(first["model"]) >= {"name", "path", "sha256"}
    assert ("tokens" in first) == include_tokens
    assert [line["seed"] for line in lines[:3]] == [s.seed for s in runs[0].samples]
    assert lines[0]["params"]["temperature"] == 1.0
    assert isinstance(lines[0]["params"]["temperature"], float)


def test_jsonl_loads_in_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    # The first run has no system prompt, no stop strings, no vote and no stored scores; the
    # later ones do. A tiny chunk size makes datasets read them in separate chunks and cast
    # each to the first one's types, as it does every 10 MB of a large file.
    runs = [sw.synthetic_run(3, 4, system=None, seed=5), *varied_runs()]
    runs[0].params = replace(runs[0].params, stop=())
    path = tmp_path / "runs.jsonl"
    export_runs(runs, None, "jsonl", path, include_tokens=True)
    dataset = datasets.load_dataset("json", data_files=str(path), split="train",
                                    chunksize=2048, cache_dir=str(tmp_path / "cache"))
    assert dataset.num_rows == sum(len(r.samples) for r in runs)
    assert dataset[0]["prompt"] == runs[0].prompt
    assert dataset[3]["system"] == ""
    assert dataset.features["mean_logprob"].dtype == "float64"
    assert dataset.features["params"]["temperature"].dtype == "float64"


# ---------------------------------------------------------------- CSV


def test_csv_has_one_row_per_sample(tmp_path: Path) -> None:
    runs = varied_runs()
    path = tmp_path / "runs.csv"
    assert export_runs(runs, [1, 2, 3], "csv", path) == 9
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    ranked = [r for r in rows if r["run_id"] == "2"]
    assert [r["response"] for r in ranked] == [s.text for s in runs[1].samples]
    assert [r["seed"] for r in ranked] == [str(s.seed) for s in runs[1].samples]
    assert ranked[0]["score:reward"] == "0.5" and rows[0]["score:reward"] == ""
    assert ranked[0]["rank:reward"] == "1"
    assert ranked[0]["model_name"] == "Synthetic 7B" and ranked[0]["temperature"] == "0.7"
    assert rows[1]["mean_logprob"] == ""  # the empty sample: -inf is left blank
    assert ranked[0]["prompt"] == "6 x 7? answer is B 🙂"


# ---------------------------------------------------------------- Label Studio


def test_labelstudio_pairwise_best_vs_worst(tmp_path: Path) -> None:
    runs = varied_runs()
    path = tmp_path / "pairs.json"
    assert export_runs(runs, [1, 2, 3], "labelstudio-pairwise", path, ranking="reward") == 3
    tasks = json.loads(path.read_text(encoding="utf-8"))
    # Variables of Label Studio's "Human Preference collection for RLHF" template.
    for task in tasks:
        data = task["data"]
        assert {"prompt", "answer1", "answer2"} <= set(data)
        assert all(isinstance(data[k], str) for k in ("prompt", "answer1", "answer2"))
        assert {"name", "path", "sha256"} <= set(data["model"]) and "seed" in data["params"]
    data = tasks[1]["data"]
    ranking = runs[1].rankings["reward"]
    assert {data["sample1"], data["sample2"]} == {ranking.order[0], ranking.order[-1]}
    preferred = data["sample1"] if data["model_prefers"] == "answer1" else data["sample2"]
    assert preferred == ranking.order[0]
    left = runs[1].samples[data["sample1"]]
    assert (data["answer1"], data["seed1"]) == (left.text, left.seed)


def test_labelstudio_all_pairs_up_to_a_cap(tmp_path: Path) -> None:
    run = sw.synthetic_run(6, 3)
    path = tmp_path / "pairs.json"
    assert export_runs([run], None, "labelstudio-pairwise", path, pair_mode="all-pairs",
                       max_pairs=100) == 15
    assert export_runs([run], None, "labelstudio-pairwise", path, pair_mode="all-pairs",
                       max_pairs=4) == 4
    first = path.read_text()
    export_runs([run], None, "labelstudio-pairwise", path, pair_mode="all-pairs", max_pairs=4)
    assert path.read_text() == first  # repeatable
    assert not run.rankings  # ranked on a copy


def test_labelstudio_ranking_task(tmp_path: Path) -> None:
    runs = varied_runs()
    path = tmp_path / "rank.json"
    assert export_runs(runs, None, "labelstudio-ranking", path) == 3
    tasks = json.loads(path.read_text(encoding="utf-8"))
    # Variables of Label Studio's "LLM Ranker" template: $task, $prompt and $items.
    data = tasks[1]["data"]
    assert {"task", "prompt", "items"} <= set(data)
    assert [item["body"] for item in data["items"]] == [s.text for s in runs[1].samples]
    assert all(set(item) == {"id", "title", "body"} for item in data["items"])
    assert data["model_ranking"] == [f"sample-{i}" for i in runs[1].rankings["mean-logprob"].order]
    assert data["seeds"] == {f"sample-{s.index}": s.seed for s in runs[1].samples}


# ---------------------------------------------------------------- Argilla


def test_argilla_records(tmp_path: Path) -> None:
    runs = varied_runs()
    path = tmp_path / "argilla.json"
    assert export_runs(runs, [7, 8, 9], "argilla", path, ranking="vote") == 3
    records = json.loads(path.read_text(encoding="utf-8"))
    record = records[1]
    assert set(record) >= {"id", "fields", "metadata", "suggestions", "responses", "vectors"}
    assert record["fields"]["prompt"] == runs[1].prompt
    assert [record["fields"][f"response_{i + 1}"] for i in range(4)] == [
        s.text for s in runs[1].samples]
    suggestion = record["suggestions"]["ranking"]
    vote = runs[1].rankings["vote"]
    assert suggestion["value"] == [f"response_{i + 1}" for i in vote.order]
    assert suggestion["score"] == list(vote.scores)
    assert "vote" in suggestion["agent"] and runs[1].model.name in suggestion["agent"]
    metadata = record["metadata"]
    assert metadata["run_id"] == 8 and metadata["model_name"] == runs[1].model.name
    assert json.loads(metadata["seeds"])["response_1"] == runs[1].samples[0].seed
    assert json.loads(metadata["params"])["seed"] == runs[1].params.seed


# ---------------------------------------------------------------- progress, cancel, errors


def test_progress_and_cancel(tmp_path: Path) -> None:
    runs = varied_runs()
    calls: list[tuple[int, int]] = []
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "runs.jsonl"
    export_runs(runs, None, "jsonl", path, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    path.unlink()
    with pytest.raises(Cancelled):
        export_runs(runs, None, "jsonl", path, cancel=lambda: len(calls) > 3,
                    progress=lambda d, t: calls.append((d, t)))
    assert calls[3:] == [(4 - 3, 3)]  # cancelled after the first run
    assert list(folder.iterdir()) == []  # nothing written, nothing left behind


def test_every_format_is_exported(tmp_path: Path) -> None:
    runs = varied_runs()
    for key, fmt in FORMATS.items():
        path = tmp_path / f"out{fmt.suffix}"
        assert export_runs(runs, None, key, path) > 0
        assert path.stat().st_size > 0


def test_bad_options_and_files_give_one_line_errors(tmp_path: Path) -> None:
    runs = varied_runs()
    with pytest.raises(ExportError, match="unknown export format"):
        export_runs(runs, None, "xml", tmp_path / "x")
    with pytest.raises(ExportError, match="unknown ranking"):
        export_runs(runs, None, "argilla", tmp_path / "x", ranking="vibes")
    with pytest.raises(ExportError, match="cannot write"):
        export_runs(runs, None, "jsonl", tmp_path / "missing" / "x.jsonl")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "something else"}\n')
    with pytest.raises(ExportError, match="line 1: not a Sampling Playground sample"):
        read_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(ExportError, match="line 1: not JSON"):
        read_jsonl(bad)
    good = tmp_path / "good.jsonl"
    export_runs(runs[1:2], None, "jsonl", good)
    lines = good.read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join(lines[:2] + lines[3:]) + "\n", encoding="utf-8")
    with pytest.raises(ExportError, match="samples 2 are missing") as raised:
        read_jsonl(bad)
    assert "\n" not in str(raised.value)

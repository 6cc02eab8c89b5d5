"""Exports: JSON Lines that round-trip and load in `datasets`, CSV, Label Studio and Argilla."""

from __future__ import annotations

import csv
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import argilla_rules
import pytest
import store_writer as sw

from playground.errors import Cancelled
from playground.export import (
    FORMATS,
    JSONL_FORMAT,
    ExportError,
    export_runs,
    export_stored,
    import_jsonl,
    read_jsonl,
    sidecar_path,
    unit_scores,
)
from playground.records import RewardModelIdentity, Run
from playground.store import Store


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
    ranked.params = replace(ranked.params, sampler_order="temperature-last")
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


def same_size_runs() -> list[Run]:
    """Runs of 4 samples, scored in every way: logprobs (an empty sample: -inf), a reward model
    (negative scores, one NaN), vote; a model name with characters Argilla refuses in agents."""
    plain = sw.synthetic_run(4, [12, 0, 7, 3], system=None, seed=1,
                             model=replace(sw.model_info(), name="SmolLM2 (135M) Instruct ü"))
    ranked = sw.synthetic_run(4, 9, seed=2, prompt="6 x 7? answer is B 🙂")
    ranked.params = replace(ranked.params, sampler_order="temperature-last")
    for i, sample in enumerate(ranked.samples):
        sample.scores["reward"] = -3.5 - 0.25 * i
    ranked.samples[2].scores["reward"] = math.nan
    ranked.reward_models["reward"] = REWARD_MODEL
    for method in ("mean-logprob", "vote", "reward"):
        ranked.rank(method)
    return [plain, ranked]


REWARD_MODEL = RewardModelIdentity("judge", "/models/judge.gguf", "ab" * 32, "Judge 1B",
                                   "Is it right? Answer yes or no.")


@pytest.mark.parametrize("ranking", ["mean-logprob", "sum-logprob", "vote", "reward"])
def test_argilla_records_pass_the_server_rules(tmp_path: Path, ranking: str) -> None:
    runs = same_size_runs()
    if ranking == "reward":
        runs = runs[1:]
    path = tmp_path / "argilla.json"
    assert export_runs(runs, [7, 8][-len(runs):], "argilla", path, ranking=ranking) == len(runs)
    records = json.loads(path.read_text(encoding="utf-8"))
    settings_path = sidecar_path(path, "argilla")
    assert settings_path == tmp_path / "argilla.settings.json"
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    assert argilla_rules.settings_problems(settings) == []
    for record in records:
        assert argilla_rules.record_problems(settings, record) == []


def test_argilla_scores_are_normalised_and_the_raw_ones_kept(tmp_path: Path) -> None:
    runs = same_size_runs()[1:]
    path = tmp_path / "argilla.json"
    export_runs(runs, [8], "argilla", path, ranking="reward")
    record = json.loads(path.read_text(encoding="utf-8"))[0]
    reward = runs[0].rankings["reward"]
    suggestion = record["suggestions"]["ranking"]
    assert suggestion["value"] == [f"response_{i + 1}" for i in reward.order]
    raw = json.loads(record["metadata"]["ranking_scores"])
    assert raw == [s if math.isfinite(s) else None for s in reward.scores]
    # Min-max over the finite scores: the order is kept, the best is 1, the worst finite 0,
    # the unscored (NaN) sample 0.
    finite = [s for s in reward.scores if math.isfinite(s)]
    expected = [(s - min(finite)) / (max(finite) - min(finite)) if math.isfinite(s) else 0.0
                for s in reward.scores]
    assert suggestion["score"] == pytest.approx(expected)
    assert suggestion["score"][0] == 1.0
    assert unit_scores([0.5, 0.25, 1.0]) == [0.5, 0.25, 1.0]  # vote shares stay as they are
    assert unit_scores([-1.0, -1.0]) == [1.0, 1.0]
    assert unit_scores([-2.0, -math.inf, -1.0]) == [0.0, 0.0, 1.0]
    assert json.loads(record["metadata"]["reward_models"]) == {"reward": REWARD_MODEL.to_json()}


def test_argilla_agent_and_layout(tmp_path: Path) -> None:
    runs = same_size_runs()
    path = tmp_path / "argilla.json"
    assert export_runs(runs, [7, 8], "argilla", path, ranking="vote") == 2
    record = json.loads(path.read_text(encoding="utf-8"))[1]
    assert set(record) >= {"id", "fields", "metadata", "suggestions", "responses", "vectors"}
    assert record["fields"]["prompt"] == runs[1].prompt
    assert [record["fields"][f"response_{i + 1}"] for i in range(4)] == [
        s.text for s in runs[1].samples]
    vote = runs[1].rankings["vote"]
    assert record["suggestions"]["ranking"]["value"] == [f"response_{i + 1}" for i in vote.order]
    metadata = record["metadata"]
    assert metadata["run_id"] == 8 and metadata["model_name"] == runs[1].model.name
    assert json.loads(metadata["seeds"])["response_1"] == runs[1].samples[0].seed
    assert json.loads(metadata["params"])["seed"] == runs[1].params.seed
    first = json.loads(path.read_text(encoding="utf-8"))[0]
    assert first["suggestions"]["ranking"]["agent"] == (
        "sampling-playground vote SmolLM2 -135M- Instruct -")


def test_argilla_refuses_runs_that_make_no_valid_record(tmp_path: Path) -> None:
    path = tmp_path / "argilla.json"
    with pytest.raises(ExportError, match=r"same number of samples.*3 samples: run 1; "
                                          r"4 samples: run 2"):
        export_runs([sw.synthetic_run(3, 2), sw.synthetic_run(4, 2)], [1, 2], "argilla", path)
    with pytest.raises(ExportError, match=r"nothing to rank in run 5: .* at least 2 samples"):
        export_runs([sw.synthetic_run(1, 2)], [5], "argilla", path)
    assert not path.exists() and not sidecar_path(path, "argilla").exists()


# ---------------------------------------------------------------- Label Studio configs


LABEL_STUDIO_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@pytest.mark.parametrize("fmt", ["labelstudio-pairwise", "labelstudio-ranking"])
def test_labelstudio_config_beside_the_tasks_names_only_task_data(tmp_path: Path,
                                                                  fmt: str) -> None:
    runs = [*varied_runs(), sw.synthetic_run(1, 3)]  # one of a single sample: no pair
    path = tmp_path / "tasks.json"
    assert export_runs(runs, None, fmt, path) > 0
    config_path = sidecar_path(path, fmt)
    assert config_path == tmp_path / "tasks.label_config.xml"
    root = ET.fromstring(config_path.read_text(encoding="utf-8"))  # well-formed XML
    variables = {match for element in root.iter() for value in element.attrib.values()
                 for match in LABEL_STUDIO_VARIABLE.findall(value)}
    assert variables  # the config reads the tasks
    names = {element.get("name") for element in root.iter() if element.get("name")}
    for element in root.iter():  # every toName points at a tag of the config
        for target in filter(None, (element.get("toName") or "").split(",")):
            assert target in names
    tasks = json.loads(path.read_text(encoding="utf-8"))
    for task in tasks:
        assert variables <= set(task["data"]), f"{variables - set(task['data'])} missing"


def test_pairwise_export_without_pairs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    runs = [sw.synthetic_run(1, 3), sw.synthetic_run(1, 2)]
    with pytest.raises(ExportError, match="no pairs to compare: runs 4, 5 have fewer than 2"):
        export_runs(runs, [4, 5], "labelstudio-pairwise", path)
    assert not path.exists() and not sidecar_path(path, "labelstudio-pairwise").exists()


# ---------------------------------------------------------------- reward model identity


def test_every_format_carries_the_reward_model(tmp_path: Path) -> None:
    run = same_size_runs()[1]
    identity = REWARD_MODEL.to_json()
    for key, fmt in FORMATS.items():
        path = tmp_path / f"out-{key}{fmt.suffix}"
        export_runs([run], [3], key, path, ranking="reward")
        text = path.read_text(encoding="utf-8-sig")
        if key == "jsonl":
            for line in text.splitlines():
                entries = {e["name"]: e["reward_model"] for e in json.loads(line)["scores"]}
                assert entries["reward"] == identity
                assert entries["mean-logprob"] == dict.fromkeys(identity, "")
        elif key == "csv":
            rows = list(csv.DictReader(text.splitlines()))
            assert {json.dumps(json.loads(r["reward_model:reward"]))
                    for r in rows} == {json.dumps(identity)}
        elif key == "argilla":
            metadata = json.loads(text)[0]["metadata"]
            assert json.loads(metadata["reward_models"]) == {"reward": identity}
        else:
            for task in json.loads(text):
                assert task["data"]["reward_models"] == {"reward": identity}
    back = read_jsonl(tmp_path / "out-jsonl.jsonl")
    assert back[0].reward_models == {"reward": REWARD_MODEL}


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
    for key, fmt in FORMATS.items():
        runs = same_size_runs() if key == "argilla" else varied_runs()
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
    (tmp_path / "blocked.settings.json").mkdir()  # the sidecar cannot be written
    with pytest.raises(ExportError, match=r"cannot write .*blocked\.settings\.json"):
        export_runs(same_size_runs(), None, "argilla", tmp_path / "blocked.json")
    assert not (tmp_path / "blocked.json").exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []

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


# ---------------------------------------------------------------- import


def test_import_without_tokens_keeps_the_scores_the_file_carries(tmp_path: Path) -> None:
    runs = varied_runs()
    runs[1].reward_models["reward"] = REWARD_MODEL
    path = tmp_path / "runs.jsonl"
    export_runs(runs, None, "jsonl", path)  # the README's example: no --tokens
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with Store() as store:
        ids = import_jsonl(path, store)
        back = [store.load(i) for i in ids]
    for run, again in zip(runs, back, strict=True):
        assert again.reward_models == run.reward_models
        assert again.rankings == run.rankings
        for sample, kept in zip(run.samples, again.samples, strict=True):
            assert kept.tokens == []
            # repr compares NaN and -inf too; an int score comes back a float.
            assert repr(kept.all_scores()) == repr(
                {k: float(v) for k, v in sample.all_scores().items()})
    # Exported again, the lines carry the same scores as the first export.
    again_path = tmp_path / "again.jsonl"
    export_runs(back, None, "jsonl", again_path)
    again_lines = [json.loads(line) for line in again_path.read_text(encoding="utf-8").splitlines()]
    for first, second in zip(lines, again_lines, strict=True):
        for key in ("mean_logprob", "sum_logprob", "normalized_logprob", "scores"):
            assert second[key] == first[key], key
    # A ranking by a kept logprob score follows the kept values.
    fresh = replace(back[1], rankings={})
    assert fresh.rank("sum-logprob") == runs[1].rankings["sum-logprob"]


def good_line(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "one.jsonl"
    export_runs([sw.synthetic_run(1, 3, seed=7)], None, "jsonl", path, include_tokens=True)
    return json.loads(path.read_text(encoding="utf-8"))


def bad_lines(good: dict[str, Any]) -> list[tuple[str, str]]:
    """(file text, what the message must say) for files that are no valid export."""
    def changed(path: str, value: Any) -> str:
        line = json.loads(json.dumps(good))
        *parents, last = path.split(".")
        target = line
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is KeyError:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        return json.dumps(line) + "\n"  # ASCII: a lone surrogate is an escape

    cases = [
        ("", "has no samples to import"),
        ("\n\n  \n", "has no samples to import"),
        ("[" * 100_000 + "\n", "line 1: not a Sampling Playground sample (nested too deeply)"),
        ("[1, 2]\n", "line 1: not a Sampling Playground sample"),
        ('"text"\n', "line 1: not a Sampling Playground sample"),
        ('{"format": 5}\n', "line 1: not a Sampling Playground sample"),
        ("\n" + json.dumps(good).replace('"sample_index": 0', '"sample_index": NaN', 1) + "\n",
         "line 2: NaN is not JSON"),
        (json.dumps(good).replace('"sample_index": 0', '"sample_index": -Infinity', 1) + "\n",
         "line 1: -Infinity is not JSON"),
        (b"\xff\xfe".decode("latin-1"), "is not UTF-8 text"),
        (changed("scores", 5), "line 1: scores should be a list, not an integer"),
        (changed("scores.0", "x"), "line 1: scores[0] should be an object, not text"),
        (changed("scores.0.value", "high"), "scores[0].value should be a number or null"),
        (changed("model", []), "line 1: model should be an object, not a list"),
        (changed("model.name", None), "model.name should be text, not null"),
        (changed("params.temperature", "hot"), "params.temperature should be a number"),
        (changed("params.top_k", 1.5), "params.top_k should be an integer, not a number"),
        (changed("params.top_k", True), "params.top_k should be an integer, not true or false"),
        (changed("params.stop_json", "[1]"), "params.stop_json should be a JSON list of texts"),
        (changed("params.top_p", 7), "line 1: params: top-p must be a number in (0, 1]"),
        (changed("chat", "yes"), "chat should be true or false, not text"),
        (changed("prompt", "\ud800"), "prompt is not valid Unicode"),
        (changed("seed", 2**70), "seed is out of range"),
        (changed("prompt_token_ids.0", -1), "prompt_token_ids[0] is out of range"),
        (changed("tokens.ids.0", 2**40), "tokens.ids[0] is out of range"),
        (changed("tokens.ids", [1]), "tokens.texts has 3 items, tokens.ids 1"),
        (changed("tokens.bytes_hex.0", "zz"), "not hexadecimal"),
        (changed("tokens", []), "tokens should be an object, not a list"),
        (changed("stats", {"finished": True}), "stats.prompt_tokens is missing"),
        (changed("vote.sample_answer", KeyError), "vote.sample_answer is missing"),
        (changed("sample_index", 3), "line 1: sample_index 3 is not in 0..0"),
        (changed("n_samples", 2), "it has 2 samples but lines for samples 1 are missing"),
        (changed("response", KeyError), "line 1: response is missing"),
    ]
    return cases


def test_bad_imports_are_refused_with_the_line_and_the_reason(tmp_path: Path) -> None:
    good = good_line(tmp_path)
    path = tmp_path / "bad.jsonl"
    with Store() as store:
        store.save(sw.synthetic_run(2, 2))
        before = [s.id for s in store.list_runs()]
        for text, expected in bad_lines(good):
            path.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
            with pytest.raises(ExportError) as raised:
                import_jsonl(path, store)
            message = str(raised.value)
            assert expected in message, (text[:80], message)
            assert "\n" not in message and message.startswith("bad.jsonl")
            assert [s.id for s in store.list_runs()] == before


def test_an_import_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = varied_runs()
    path = tmp_path / "runs.jsonl"
    export_runs(runs, None, "jsonl", path, include_tokens=True)
    # A bad last line: nothing is read into the store.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text(encoding="utf-8") + "{}\n", encoding="utf-8")
    with Store() as store:
        with pytest.raises(ExportError, match="line 10"):
            import_jsonl(bad, store)
        assert store.list_runs() == []
        # The store failing on the third run leaves none of the first two either.
        import playground.store as store_module

        real = store_module._insert_run
        calls = []

        def failing(conn, run, sha256, created):
            calls.append(run)
            if len(calls) == 3:
                raise store_module.sqlite3.OperationalError("disk I/O error")
            return real(conn, run, sha256, created)

        monkeypatch.setattr(store_module, "_insert_run", failing)
        with pytest.raises(store_module.StoreError, match="disk I/O error"):
            import_jsonl(path, store)
        assert len(calls) == 3 and store.list_runs() == []
        monkeypatch.setattr(store_module, "_insert_run", real)
        assert len(import_jsonl(path, store)) == 3

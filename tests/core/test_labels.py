"""Labels in: Label Studio, Argilla and JSONL files round-trip into the store, linked to runs.

The annotated files are built as each tool writes them, from its documentation:
- Label Studio's JSON export (labelstud.io/guide/task_format): the tasks this app exported,
  each given "annotations" with the keys of the documented example (id, result, was_cancelled,
  ground_truth, created_at, updated_at, lead_time, result_count, task, completed_by); a pairwise
  result's value is {"selected": "left" | "right"} (web/libs/editor/src/tags/control/
  Pairwise.js), a ranker's {"ranker": {"rank": [ids]}} (labelstud.io/tags/ranker, "Example
  results").
- Argilla 2's `dataset.records.to_json` (argilla/src/argilla/records/_resource.py,
  Record.to_dict): the records this app exported, with "responses": {"ranking": [{"value":
  [options, best first], "user_id": uuid, "status"}]} and "_server_id".
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import store_writer as sw

from playground import cli
from playground import store as store_module
from playground.agreement import agreement
from playground.export import export_stored
from playground.labels import (
    Label,
    LabelFileError,
    best_of_label,
    import_labels,
    order_label,
    pair_label,
    preferences_for_runs,
    ranking_label,
    read_labels,
    read_preferences,
)
from playground.records import (
    RewardModelIdentity,
    Run,
    RunEnd,
    RunStats,
    SampleEnd,
    TokenRecord,
)
from playground.scoring import kendall_tau, kendall_tau_b
from playground.store import Store


def distinct_run(n: int, seed: int, prompt: str = "What is 6 x 7?") -> Run:
    run = sw.synthetic_run(n, [5 + i for i in range(n)], seed=seed, prompt=prompt)
    assert len({s.text for s in run.samples}) == n
    return run


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "history.sqlite") as s:
        yield s


def labelstudio_export(tasks: list[dict[str, Any]], results: list[list[dict[str, Any]]],
                       *, completed_by: Any = 7) -> list[dict[str, Any]]:
    """The tasks as Label Studio exports them once annotated: one annotation per task."""
    out = []
    for number, (task, result) in enumerate(zip(tasks, results, strict=True), 1):
        out.append({
            "id": number, "created_at": "2026-11-30T09:00:00.000000Z",
            "updated_at": "2026-11-30T10:15:08.746926Z", "project": 83, "data": task["data"],
            "annotations": [{
                "id": 1000 + number, "result": result, "was_cancelled": False,
                "ground_truth": False, "created_at": "2026-11-30T10:15:08.728353Z",
                "updated_at": "2026-11-30T10:15:08.728378Z", "lead_time": 4.288,
                "result_count": 0, "task": number, "completed_by": completed_by,
            }],
            "predictions": [], "meta": {}, "inner_id": number,
        })
    return out


def pairwise_result(selected: str) -> list[dict[str, Any]]:
    return [{"value": {"selected": selected}, "id": "Dx_aB91ISN", "from_name": "comparison",
             "to_name": "answer1", "type": "pairwise", "origin": "manual"}]


def ranker_result(ids: list[str]) -> list[dict[str, Any]]:
    return [{"value": {"ranker": {"rank": ids}}, "id": "PpwBv_NMxd", "from_name": "rank",
             "to_name": "answers", "type": "ranker", "origin": "manual"}]


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def test_labelstudio_pairwise_round_trip(store: Store, tmp_path: Path) -> None:
    runs = [distinct_run(3, 1), distinct_run(4, 2, prompt="Name a colour.")]
    ids = store.save_all(runs)
    exported = tmp_path / "pairs.json"
    export_stored(store, ids, "labelstudio-pairwise", exported, pair_mode="all-pairs")
    tasks = json.loads(exported.read_text(encoding="utf-8"))
    choices = ["left" if k % 3 else "right" for k in range(len(tasks))]
    annotated = write_json(tmp_path / "annotated.json", labelstudio_export(
        tasks, [pairwise_result(c) for c in choices],
        completed_by={"id": 7, "email": "ada@example.org", "first_name": "Ada",
                      "last_name": "Lovelace"}))

    result = import_labels(annotated, store)
    assert (result.read, result.added, result.linked) == (len(tasks), len(tasks), len(tasks))
    assert set(result.run_ids) == set(ids)
    labels = store.labels()
    assert len(labels) == len(tasks)
    for task, choice, label in zip(tasks, choices, labels, strict=True):
        data = task["data"]
        left, right = ("1", "2") if choice == "left" else ("2", "1")
        assert label.responses == (data[f"answer{left}"], data[f"answer{right}"])
        assert label.ranks == (1, 2)
        assert label.run_id == ids[[r.prompt for r in runs].index(data["prompt"])]
        assert label.samples == (data[f"sample{left}"], data[f"sample{right}"])
        run = store.load(label.run_id)
        assert [run.samples[i].text for i in label.samples] == list(label.responses)
        assert label.annotator == "ada@example.org" and label.source == "label-studio"
        assert label.created_at.isoformat() == "2026-11-30T10:15:08.728378+00:00"

    # The same file again adds nothing: each annotation is stored once.
    assert import_labels(annotated, store).added == 0
    assert len(store.labels()) == len(tasks)
    preferences = preferences_for_runs(store, [ids[0]])
    assert len(preferences) == 3  # all 3 pairs of a 3-sample run
    assert all(p.run_id == ids[0] and p.chosen != p.rejected for p in preferences)


def test_labelstudio_ranking_round_trip(store: Store, tmp_path: Path) -> None:
    ids = store.save_all([distinct_run(4, 3)])
    exported = tmp_path / "rank.json"
    export_stored(store, ids, "labelstudio-ranking", exported)
    tasks = json.loads(exported.read_text(encoding="utf-8"))
    order = ["sample-2", "sample-0", "sample-3", "sample-1"]
    annotated = labelstudio_export(tasks, [ranker_result(order)])
    # A second annotator skipped the task: a cancelled annotation is no label.
    annotated[0]["annotations"].append({**annotated[0]["annotations"][0], "id": 2000,
                                        "was_cancelled": True, "completed_by": 8})
    path = write_json(tmp_path / "annotated.json", annotated)

    (label,) = read_labels(path)
    assert label.annotator == "label-studio user 7"
    assert import_labels(path, store).linked == 1
    (stored,) = store.labels(ids)
    run = store.load(ids[0])
    assert stored.samples == (2, 0, 3, 1) and stored.ranks == (1, 2, 3, 4)
    assert stored.responses == tuple(run.samples[i].text for i in (2, 0, 3, 1))
    assert len(preferences_for_runs(store, ids)) == 6


def test_argilla_round_trip(store: Store, tmp_path: Path) -> None:
    runs = [distinct_run(3, 4), distinct_run(3, 5, prompt="Say hi.")]
    ids = store.save_all(runs)
    exported = tmp_path / "records.json"
    export_stored(store, ids, "argilla", exported)
    records = json.loads(exported.read_text(encoding="utf-8"))
    alice, bob = "6b8d2bd2-2f2b-4c35-9c7c-2a5a2f39c1a1", "0f7d3d1e-8a1b-4d0e-b7f4-63ad1e2c7e55"
    records[0]["responses"] = {"ranking": [
        {"value": ["response_3", "response_1", "response_2"], "user_id": alice,
         "status": "submitted"},
        # A draft is not a judgement yet.
        {"value": ["response_1", "response_2", "response_3"], "user_id": bob, "status": "draft"},
    ]}
    # The server's own layout, with a tie, as Argilla's API and 1.x exports give it.
    records[1]["responses"] = {"ranking": [{"value": [
        {"value": "response_2", "rank": 1}, {"value": "response_1", "rank": 2},
        {"value": "response_3", "rank": 2}], "user_id": bob}]}
    for record in records:
        record["_server_id"] = "2b4f6c8e-0000-4000-8000-00000000000" + record["id"][-1]
        record["status"] = "completed"
    path = write_json(tmp_path / "annotated.json", records)

    result = import_labels(path, store)
    assert (result.read, result.linked) == (2, 2)
    first, second = store.labels()
    assert first.run_id == ids[0] and first.samples == (2, 0, 1)
    assert first.responses == tuple(runs[0].samples[i].text for i in (2, 0, 1))
    assert first.annotator == f"argilla user {alice}"
    assert second.run_id == ids[1] and second.samples == (1, 0, 2)
    assert second.ranks == (1, 2, 2)
    # The tie makes no preference: 3 + 2 pairs in all.
    assert len(preferences_for_runs(store, ids)) == 5
    assert import_labels(path, store).added == 0


def test_jsonl_preferences_link_where_their_texts_match(store: Store, tmp_path: Path) -> None:
    run = distinct_run(3, 6)
    (run_id,) = store.save_all([run])
    texts = [s.text for s in run.samples]
    lines = [
        {"prompt": run.prompt, "chosen": texts[1], "rejected": texts[0], "annotator": "kim",
         "created_at": "2026-11-29T08:00:00+01:00"},
        {"prompt": run.prompt, "chosen": "not a sample", "rejected": texts[0]},
        {"prompt": "another prompt", "chosen": "a", "rejected": "b", "extra": 1},
    ]
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = import_labels(path, store)
    assert (result.read, result.added, result.linked, result.run_ids) == (3, 3, 1, (run_id,))
    linked, *unlinked = store.labels()
    assert linked.samples == (1, 0) and linked.annotator == "kim"
    assert linked.created_at.isoformat() == "2026-11-29T07:00:00+00:00"
    assert all(label.run_id is None and label.samples is None for label in unlinked)
    assert [(p.chosen, p.rejected) for p in preferences_for_runs(store, [run_id])] == \
        [(texts[1], texts[0])]
    assert import_labels(path, store).added == 0


def test_app_labels_replace_the_annotators_last_one(store: Store) -> None:
    run = distinct_run(3, 7)
    (run_id,) = store.save_all([run])
    texts = [s.text for s in run.samples]
    assert store.add_labels([best_of_label(run.prompt, texts, 2, "me", run_id)]) == 1
    assert store.add_labels([order_label(run.prompt, texts, [1, 2, 0], "me", run_id)]) == 0
    assert store.add_labels([best_of_label(run.prompt, texts, 0, "you", run_id)]) == 1
    mine, yours = store.labels([run_id])
    assert mine.samples == (1, 2, 0) and mine.ranks == (1, 2, 3)
    assert yours.ranks == (1, 2, 2) and yours.samples == (0, 1, 2)
    assert store.labelled_runs() == [run_id]
    # A deleted run takes its samples, not the labels: their texts are their own.
    store.delete(run_id)
    assert [label.run_id for label in store.labels()] == [None, None]
    assert store.labelled_runs() == []


@pytest.mark.parametrize(("document", "message"), [
    ("not json at all", "neither a JSON export"),
    ("[1, 2", "is not JSON"),
    ("[]", "holds no labels"),
    ('[{"data": {"prompt": "p", "answer1": "a", "answer2": "b"}, "annotations": [{"result": '
     '[{"type": "pairwise", "value": {"selected": "up"}}]}]}]', "task 1, annotation 1: the "
     "pairwise choice is 'up'"),
    ('[{"data": {"prompt": "p", "items": [{"id": "sample-0", "body": "a"}]}, "annotations": '
     '[{"result": [{"type": "ranker", "from_name": "rank", "value": {"ranker": {"rank": '
     '["sample-0", "sample-9"]}}}]}]}]', "lists an item the task does not have"),
    ('[{"fields": {"prompt": "p", "response_1": "a"}, "responses": {"ranking": [{"value": '
     '["response_1", "response_7"], "user_id": "u"}]}}]', "'response_7' is not a field"),
    ('[{"id": 3}]', "item 1: neither a Label Studio task"),
    ('{"prompt": "p", "chosen": "a"}\n', "line 1: not a {prompt, chosen, rejected} object "
     "(rejected is missing)"),
    ('{"prompt": "p", "chosen": "a", "rejected": 3}\n', "rejected is not text"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a", '
     '"rejected": "a"}\n', "line 2: chosen and rejected are the same reply"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "created_at": "yesterday"}',
     "line 1: 'yesterday' is not an ISO 8601 time"),
])
def test_bad_label_files_get_one_line(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(LabelFileError) as caught:
        read_labels(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_byte_order_mark_is_not_part_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text('\ufeff{"prompt": "p", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    assert [(p.chosen, p.rejected) for p in read_preferences(path)] == [("a", "b")]


def test_a_failed_import_stores_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": 1}\n',
                    encoding="utf-8")
    with pytest.raises(LabelFileError, match="line 2"):
        import_labels(path, store)
    assert store.labels() == []


def test_schema_2_history_migrates_without_loss(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "history.sqlite"
    run = distinct_run(3, 8)
    run.samples[0].scores["reward"] = 0.5
    with monkeypatch.context() as patch:  # the app as it was before labels
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
        patch.setattr(store_module, "SCHEMA_VERSION", 2)
        with Store(path) as old:
            run_id = old.save(run)
            old.add_tags(run_id, "kept")
            before = old.load(run_id)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert "labels" not in {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    with Store(path) as migrated:
        assert migrated.load(run_id) == before
        assert migrated.tags(run_id) == ["kept"]
        assert migrated.labels() == []
        texts = [s.text for s in run.samples]
        migrated.add_labels([best_of_label(run.prompt, texts, 1, "me", run_id)])
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    with Store(path) as reopened:
        (label,) = reopened.labels([run_id])
        assert isinstance(label, Label) and label.ranks == (2, 1, 2)


# ---------------------------------------------------------------- agreement


def constructed_run() -> Run:
    """Four samples whose scores are set by hand (see the table in the test below)."""
    texts = ["The answer is 42.", "42", "The answer is 41.", "It is 42, I think."]
    logprobs = [[-0.1, -0.2, -0.3], [-1.0], [-0.5, -0.5, -0.5, -0.5], [-0.05, -2.0]]
    run = sw.start_run(4, prompt="What is 6 x 7?")
    for sample, text, lps in zip(run.samples, texts, logprobs, strict=True):
        for k, lp in enumerate(lps):
            run.add(TokenRecord(sample=sample.index, position=k, id=k, bytes=b"t",
                                text=text if k == 0 else "", logprob=lp, sampling_logprob=lp,
                                rank=1, entropy=0.0, top=()))
        run.add(SampleEnd(sample.index, "stop", text, len(lps)))
        sample.scores["reward"] = [0.9, 0.1, 0.5, 0.4][sample.index]
    run.reward_models["reward"] = RewardModelIdentity("score-head", "/m/rm.gguf", "ab" * 32,
                                                      "Tiny RM")
    run.add(RunEnd(RunStats(5, 10, 1.0)))
    return run


def test_agreement_equals_a_hand_computation(store: Store, tmp_path: Path) -> None:
    run = constructed_run()
    run_id = store.save(run)
    t = [s.text for s in run.samples]
    now = datetime.now(UTC)
    store.add_labels([
        pair_label(run.prompt, t[3], t[1], "a", now, "jsonl", run_id=run_id, samples=(3, 1)),
        ranking_label(run.prompt, [t[1], t[0], t[3], t[2]], "b", now, "argilla", run_id=run_id,
                      samples=(1, 0, 3, 2)),
        best_of_label(run.prompt, t, 0, "c", run_id),
        pair_label(run.prompt, "not", "linked", "d", now, "jsonl"),  # no run: not measured
    ])
    result = agreement(store)
    assert [r.run_id for r in result.runs] == [run_id] and result.runs[0].labels == 3
    figures = {m.title: result.overall[m.key] for m in result.methods}
    # By hand. Scores of samples 0..3 -- mean: -0.2, -1.0, -0.5, -1.025; sum: -0.6, -1.0, -2.0,
    # -2.05; normalised (sum / ((5 + n) / 6) ** 0.6): -0.505, -1.0, -1.568, -1.869; vote
    # (answer 42 by samples 0, 1, 3): 0.75, 0.75, 0.25, 0.75; reward: 0.9, 0.1, 0.5, 0.4.
    # The 10 human pairs (better, worse): (3,1); (1,0) (1,3) (1,2) (0,3) (0,2) (3,2); (0,1)
    # (0,2) (0,3). Agreeing -- mean: 0 + 0,1,0,1,1,0 + 1,1,1 = 6; sum and normalised: 0 +
    # 0,1,1,1,1,0 + 3 = 7; vote (a tie is 1/2): .5 + .5,.5,1,.5,1,1 + .5,1,.5 = 7; reward:
    # 1 + 0,0,0,1,1,0 + 3 = 6.
    assert {title: (f.pairs, f.agreed) for title, f in figures.items()} == {
        "mean logprob": (10, 6.0), "sum logprob": (10, 7.0), "normalised logprob": (10, 7.0),
        "majority vote": (10, 7.0), "Tiny RM (score-head)": (10, 6.0)}
    assert figures["mean logprob"].pair_accuracy == pytest.approx(0.6)
    # Kendall tau-b of the ranking (1 > 0 > 3 > 2) and of the prefer (0 > the rest, tied):
    # mean: 3 concordant, 3 discordant -> 0; prefer: 3 / sqrt((6 - 3) * 6) = 0.7071.
    # vote: 3 / sqrt(6 * (6 - 3)) = 0.7071; prefer: 1 / sqrt((6 - 3) * (6 - 3)) = 1/3.
    assert figures["mean logprob"].taus == pytest.approx([0.0, 3 / math.sqrt(18)])
    assert figures["majority vote"].taus == pytest.approx([3 / math.sqrt(18), 1 / 3])
    assert figures["majority vote"].kendall_tau == pytest.approx((3 / math.sqrt(18) + 1 / 3) / 2)
    document = result.to_json()
    json.dumps(document, allow_nan=False)
    assert document["runs"][0]["methods"]["mean-logprob"]["pair_accuracy"] == pytest.approx(0.6)
    reward = next(m for m in document["methods"] if m["reward_model"])
    assert reward["reward_model"]["name"] == "Tiny RM"


def test_kendall_tau_b_of_strict_orders_matches_the_pair_count() -> None:
    rng = random.Random(5)
    for _ in range(50):
        n = rng.randint(2, 9)
        human, model = rng.sample(range(n), n), rng.sample(range(n), n)
        # kendall_tau counts discordant pairs of two orders, best first.
        expected = kendall_tau(sorted(range(n), key=lambda i: -human[i]),
                               sorted(range(n), key=lambda i: -model[i]))
        assert kendall_tau_b(human, model) == pytest.approx(expected)
    assert kendall_tau_b([1, 1, 1], [3, 2, 1]) is None


def test_cli_imports_labels_and_prints_agreement(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "history.sqlite"
    with Store(db) as s:
        run = constructed_run()
        run_id = s.save(run)
        other = s.save(distinct_run(2, 9))
    t = [sample.text for sample in run.samples]
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": run.prompt, "chosen": t[3], "rejected": t[1]}) + "\n",
                    encoding="utf-8")
    assert cli.main(["labels", "import", str(path), "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"read": 1, "added": 1, "linked": 1,
                                                   "run_ids": [run_id]}
    assert cli.main(["agreement", "--runs", f"{run_id},{other}", "--db", str(db), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in document["runs"]] == [run_id, other]
    # The one pair (3 over 1): mean logprob disagrees (-1.025 < -1.0), the reward agrees.
    mean = document["overall"]["mean-logprob"]
    assert (mean["pairs"], mean["pair_accuracy"], mean["kendall_tau"]) == (1, 0.0, None)
    assert document["overall"]["reward-model-1"]["pair_accuracy"] == 1.0
    assert cli.main(["agreement", "--db", str(db)]) == 0
    assert "mean logprob" in capsys.readouterr().out
    assert cli.main(["labels", "import", str(tmp_path / "missing.json"), "--db", str(db)]) == 1
    assert capsys.readouterr().err.startswith("playground: cannot read")
    assert cli.main(["agreement", "--runs", "999", "--db", str(db)]) == 1
    assert "no run #999" in capsys.readouterr().err

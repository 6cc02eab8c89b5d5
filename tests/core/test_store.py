"""The experiment store: exact round trips, writing as it goes, crashes, damage and concurrency."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import store_writer as sw

from playground import store as store_module
from playground.records import RewardModelIdentity, Run, RunEnd, SampleEnd, TokenRecord
from playground.store import (
    INTERRUPTED,
    SCHEMA_VERSION,
    Store,
    StoreDamagedError,
    StoreError,
    decode_tokens,
    encode_tokens,
    open_store,
)

TESTS = Path(__file__).resolve().parents[1]
"""The tests folder, where the shared helpers live."""


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def store(data_dir: Path) -> Store:
    with Store() as s:
        yield s


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ranked_run(n_samples: int = 4, n_tokens: int | list[int] = 30, **options: object) -> Run:
    run = sw.synthetic_run(n_samples, n_tokens, **options)
    for i, sample in enumerate(run.samples):
        sample.scores["reward"] = 0.25 * i - 0.5
    for method in ("mean-logprob", "sum-logprob", "vote", "reward"):
        run.rank(method)
    return run


def chunk_count(path: Path, run_id: int) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT count(*) FROM token_chunks WHERE run_id = ?", (run_id,)
        ).fetchone()[0]


# ---------------------------------------------------------------- round trips


def test_store_lives_in_the_data_dir(store: Store, data_dir: Path) -> None:
    assert store.path == data_dir / "history.sqlite"
    assert store.path.exists()


def test_saved_run_comes_back_equal(store: Store) -> None:
    run = ranked_run(n_tokens=[30, 0, 17, 45])  # an empty sample too
    run_id = store.save(run)
    back = store.load(run_id)
    assert back == run
    assert back.vote == run.vote and back.rankings == run.rankings
    assert store.status(run_id) == "finished"


def test_written_run_comes_back_equal_and_finished(store: Store) -> None:
    run = sw.start_run(5)
    events = sw.synthetic_events(run, [40, 12, 0, 33, 7], seed=3)
    with store.begin(run) as writer:
        assert store.status(writer.run_id) == "running"
        for event in events:
            run.add(event)
            writer.add(event)
    assert store.load(writer.run_id) == run
    summary = store.summary(writer.run_id)
    assert summary.status == "finished"
    assert summary.samples_done == 5 and summary.n_samples == 5
    assert summary.model_name == run.model.name and summary.model_sha256 is None


def test_scores_rankings_and_vote_saved_after_the_run(store: Store) -> None:
    run = sw.synthetic_run(3, 10)
    run_id = store.save(run)
    run.samples[1].scores["reward"] = 0.75
    run.rank("vote")
    run.rank("normalized-logprob")
    store.save_scores(run_id, run)
    assert store.load(run_id) == run


def test_non_finite_numbers_survive(store: Store) -> None:
    run = sw.synthetic_run(2, 5)
    run.samples[0].scores["reward"] = math.nan
    run.samples[1].scores["reward"] = -math.inf
    run.rank("reward")
    back = store.load(store.save(run))
    # NaN != NaN, so compare the way it shows: repr keeps every float exactly.
    assert repr(back) == repr(run)


def test_token_blob_round_trip_keeps_odd_positions_and_texts() -> None:
    tokens = sw.synthetic_run(1, 20).samples[0].tokens
    shuffled = [replace(t, position=p, text=t.text + "\udcff") for t, p in
                zip(tokens, [5, 3, *range(100, 118)], strict=True)]
    assert decode_tokens(encode_tokens(shuffled), 0) == shuffled
    assert decode_tokens(encode_tokens([]), 0) == []


def test_sample_end_keeps_only_its_tokens(store: Store) -> None:
    """A stop string's tokens are dropped by SampleEnd.n_tokens; the store drops them too."""
    run = sw.start_run(1)
    events = [e for e in sw.synthetic_events(run, 10) if isinstance(e, TokenRecord)]
    clock = FakeClock()
    with store.begin(run, clock=clock) as writer:
        for event in events:
            clock.now += 0.3  # flushes a chunk every few tokens
            run.add(event)
            writer.add(event)
        end = SampleEnd(0, "stop", "cut", 6)
        run.add(end)
        writer.add(end)
        assert chunk_count(store.path, writer.run_id) == 0
    back = store.load(writer.run_id)
    assert back.samples == run.samples
    assert len(back.samples[0].tokens) == 6 and back.samples[0].text == "cut"


# ---------------------------------------------------------------- writing as it goes


def test_streaming_tokens_reach_the_disk_every_second(store: Store, data_dir: Path) -> None:
    run = sw.start_run(2)
    tokens = [e for e in sw.synthetic_events(run, 20, end=False)]
    clock = FakeClock()
    writer = store.begin(run, clock=clock)
    reader = Store(data_dir / "history.sqlite")  # another connection, as the GUI's would be
    for event in tokens[:7]:
        clock.now += 0.125  # 0.875 s in all: nothing written yet
        writer.add(event)
    assert chunk_count(store.path, writer.run_id) == 0
    clock.now += 0.125
    writer.add(tokens[7])
    assert chunk_count(store.path, writer.run_id) == 2  # one chunk per streaming sample
    live = reader.load(writer.run_id)
    assert [len(s.tokens) for s in live.samples] == [4, 4]
    assert [s.finish_reason for s in live.samples] == [None, None]  # still running here
    assert reader.status(writer.run_id) == "running"
    assert live.samples[0].tokens == [t for t in tokens[:8] if t.sample == 0]
    assert live.samples[0].text == "".join(t.text for t in live.samples[0].tokens)

    for event in tokens[8:13]:
        writer.add(event)
    writer.close()  # generation failed: what came is written, the run is interrupted
    cut = reader.load(writer.run_id)
    assert [len(s.tokens) for s in cut.samples] == [7, 6]
    assert [s.finish_reason for s in cut.samples] == [INTERRUPTED, INTERRUPTED]
    assert cut.stats is None
    assert reader.status(writer.run_id) == INTERRUPTED
    reader.close()


def test_a_load_sees_one_snapshot(store: Store) -> None:
    """A sample that ends between two reads of one load is seen whole, never half."""
    run = sw.start_run(1)
    tokens = [e for e in sw.synthetic_events(run, 6) if isinstance(e, TokenRecord)]
    writer = store.begin(run)
    for token in tokens:
        writer.add(token)
    writer.flush()
    reader = Store(store.path)
    fired = []

    def end_the_sample_meanwhile(statement: str) -> None:
        if "FROM token_chunks" in statement and not fired:
            fired.append(statement)
            writer.add(SampleEnd(0, "stop", "done", 6))

    reader._conn.set_trace_callback(end_the_sample_meanwhile)  # white box: between two SELECTs
    seen = reader.load(writer.run_id)
    reader._conn.set_trace_callback(None)
    assert fired
    assert seen.samples[0].tokens == tokens and seen.samples[0].finish_reason is None
    assert reader.load(writer.run_id).samples[0].finish_reason == "stop"
    writer.close()
    reader.close()


def test_closed_writer_refuses_events(store: Store) -> None:
    run = sw.start_run(1)
    writer = store.begin(run)
    writer.close()
    with pytest.raises(StoreError):
        writer.add(RunEnd(sw.RunStats(1, 0, 0.0)))


def test_writer_dropped_without_close_releases_the_run(store: Store) -> None:
    writer = store.begin(sw.start_run(1))
    run_id = writer.run_id
    del writer
    assert store.status(run_id) == INTERRUPTED


def test_killed_writer_leaves_finished_samples_intact(data_dir: Path) -> None:
    path = data_dir / "history.sqlite"
    Store(path).close()
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "store_writer.py"), str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        run_id = int(process.stdout.readline())
        reader = Store(path)
        deadline = time.monotonic() + 60
        while True:  # until samples 0 and 1 are done and some of sample 2 is on disk
            seen = reader.load(run_id)
            if seen.samples[1].finish_reason and seen.samples[2].tokens:
                break
            assert process.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer wrote nothing in time"
            time.sleep(0.05)
        reader.close()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()

    store, message = open_store(path)
    assert message is None
    expected, events = sw.killed_run_events()
    for event in events:
        expected.add(event)
    back = store.load(run_id)
    assert store.status(run_id) == INTERRUPTED and back.stats is None
    assert back.samples[:2] == expected.samples[:2]
    streamed = back.samples[2]
    assert 0 < len(streamed.tokens) < len(expected.samples[2].tokens)
    assert streamed.tokens == expected.samples[2].tokens[: len(streamed.tokens)]
    assert streamed.finish_reason == INTERRUPTED
    assert streamed.text == "".join(t.text for t in streamed.tokens)
    store.close()


def test_reading_while_another_thread_writes(data_dir: Path) -> None:
    path = data_dir / "history.sqlite"
    writer_store, reader = Store(path), Store(path)
    run = sw.start_run(4)
    events = sw.synthetic_events(run, [300, 250, 120, 300], seed=9)
    writer = writer_store.begin(run, flush_interval=0.005)
    failures: list[BaseException] = []

    def generate() -> None:
        try:
            for event in events:
                writer.add(event)
                if isinstance(event, TokenRecord) and event.position % 50 == 0:
                    time.sleep(0.01)
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    final = sw.start_run(4)
    for event in events:
        final.add(event)
    worker = threading.Thread(target=generate)
    worker.start()
    seen_partial = False
    while worker.is_alive():
        listed = reader.list_runs()
        assert [s.id for s in listed] == [writer.run_id]
        live = reader.load(writer.run_id)
        for sample, done in zip(live.samples, final.samples, strict=True):
            # Each read is one snapshot: a sample is either done, whole, or a prefix so far.
            if sample.finish_reason is not None:
                assert sample == done
            else:
                assert sample.tokens == done.tokens[: len(sample.tokens)]
        seen_partial |= 0 < sum(len(s.tokens) for s in live.samples) < 970
    worker.join()
    assert not failures
    assert seen_partial
    assert reader.load(writer.run_id) == final
    reader.close()
    writer_store.close()


# ---------------------------------------------------------------- size


def test_large_run_is_compact(store: Store) -> None:
    """32 samples x 2048 tokens with 10 alternatives each, random numbers.

    What cannot shrink, at float64 (the only width that gives the app's floats back exactly):
    per token 3 floats (logprob, sampling logprob, entropy) and 10 alternative logprobs = 104 B,
    plus id, rank and 10 alternative references at 4 B = 48 B: 152 B x 65,536 tokens = 10.0 MB.
    Token bytes and texts, the per-sample table of alternative texts and SQLite's pages add the
    rest; the bound is twice the fixed part, 20 MB (JSON of the same run is over 100 MB).
    """
    run = sw.synthetic_run(32, 2048, seed=7)
    run_id = store.save(run)
    store.close()
    size = sum(p.stat().st_size for p in store.path.parent.glob("history.sqlite*"))
    print(f"\n32 x 2048 tokens, top-10: {size / 1e6:.2f} MB ({size / 65536:.0f} B per token)")
    assert size < 20e6
    with Store(store.path) as again:
        assert again.load(run_id) == run


# ---------------------------------------------------------------- text


def test_unicode_nul_and_very_long_samples(store: Store) -> None:
    prompt = "नमस्ते दुनिया 🙂🎉 e\u0301\x00 end"
    run = sw.synthetic_run(2, [20000, 3], prompt=prompt, system="सिस्टम 🤖\x00")
    assert any(b"\x00" in t.bytes for t in run.samples[0].tokens)
    run_id = store.save(run)
    back = store.load(run_id)
    assert back == run
    assert back.prompt == prompt and len(back.samples[0].tokens) == 20000
    store.add_tags(run_id, "हिंदी", "🙂 emoji")
    assert [s.id for s in store.list_runs("दुनिया")] == [run_id]
    assert [s.id for s in store.list_runs("🙂 EMO")] == [run_id]
    assert store.tags(run_id) == sorted(["हिंदी", "🙂 emoji"])


# ---------------------------------------------------------------- listing and organising


def test_list_search_star_tag_delete(store: Store) -> None:
    first = store.save(sw.synthetic_run(1, 3, prompt="Capital of France?"))
    second = store.save(sw.synthetic_run(1, 3, prompt="Ünïcode PROMPT"))
    other_model = replace(sw.model_info("/models/qwen.gguf"), name="Qwen3 0.6B")
    third = store.save(sw.synthetic_run(1, 3, prompt="hello", model=other_model))

    assert [s.id for s in store.list_runs()] == [third, second, first]  # newest first
    assert [s.id for s in store.list_runs("france")] == [first]
    assert [s.id for s in store.list_runs("ünïcode prompt")] == [second]
    assert [s.id for s in store.list_runs("qwen")] == [third]
    assert [s.id for s in store.list_runs(limit=1, offset=1)] == [second]

    store.set_starred(first)
    store.add_tags(first, " geography ", "easy")
    store.add_tags(second, "easy")
    assert [s.id for s in store.list_runs(starred_only=True)] == [first]
    assert [s.id for s in store.list_runs(tag="easy")] == [second, first]
    assert [s.id for s in store.list_runs("geog")] == [first]  # search matches tags too
    assert store.summary(first).tags == ("easy", "geography")
    assert store.tags() == ["easy", "geography"]
    store.remove_tags(first, "easy")
    assert store.summary(first).tags == ("geography",)
    store.set_starred(first, False)
    assert store.list_runs(starred_only=True) == []

    store.delete(second)
    assert [s.id for s in store.list_runs()] == [third, first]
    assert store.tags() == ["geography"]
    with pytest.raises(StoreError, match="no run #"):
        store.load(second)
    with pytest.raises(StoreError):
        store.add_tags(first, "   ")


def test_delete_refuses_a_run_being_written(store: Store) -> None:
    with store.begin(sw.start_run(1)) as writer, pytest.raises(StoreError, match="still"):
        store.delete(writer.run_id)


def test_duplicate_gives_what_it_takes_to_run_again(store: Store) -> None:
    run = sw.synthetic_run(3, 4, prompt="again?", system=None)
    request = store.duplicate(store.save(run))
    assert (request.prompt, request.chat, request.system, request.n) == ("again?", True, None, 3)
    assert request.params == run.params and request.params.stop == ("\n\n",)
    assert request.model_path == run.model.path


def test_model_hash_is_computed_once_per_file_version(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    expected = hashlib.sha256(model.read_bytes()).hexdigest()
    run_id = store.save(sw.synthetic_run(1, 2, model=sw.model_info(str(model))))
    assert store.summary(run_id).model_sha256 == expected

    def no_hashing(*args: object) -> None:
        raise AssertionError("hashed again")

    with monkeypatch.context() as m:
        m.setattr(store_module.hashlib, "file_digest", no_hashing)
        assert store.model_sha256(model) == expected  # from the cache
    model.write_bytes(b"GGUF changed")
    os.utime(model, ns=(1, 1))
    assert store.model_sha256(model) == hashlib.sha256(b"GGUF changed").hexdigest()
    assert store.model_sha256(tmp_path / "missing.gguf") is None


# ---------------------------------------------------------------- schema and damage


def test_schema_is_versioned_and_migrations_apply_in_order(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = data_dir / "history.sqlite"
    with Store(path) as s:
        run_id = s.save(sw.synthetic_run(1, 2))
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3

    def add_notes(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, add_notes])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 4)
    with Store(path) as s:
        assert s.load(run_id).prompt
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
        assert conn.execute("SELECT notes FROM runs").fetchone() == ("",)


def write_schema_1_history(path: Path, run: Run) -> None:
    """A history as version 1 of the app left it: its schema, and one run in its columns."""
    with closing(sqlite3.connect(path)) as conn:
        store_module.MIGRATIONS[0](conn)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO runs (id, created_at, finished_at, model_name, model_path, model_json,"
            " params_json, prompt, chat, system, prompt_token_ids, n_samples, stats_json,"
            " rankings_json) VALUES (1, 1.0, 2.0, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            (run.model.name, run.model.path, json.dumps(asdict(run.model)),
             json.dumps(run.params.to_json()), run.prompt, run.system,
             np.asarray(run.prompt_token_ids, "<i4").tobytes(), len(run.samples),
             json.dumps({"prompt_tokens": 3, "new_tokens": 4, "seconds": 0.5}),
             json.dumps({"reward": {"method": "reward", "order": [1, 0], "scores": [2.0, 1.0]}})),
        )
        for sample in run.samples:
            conn.execute(
                "INSERT INTO samples (run_id, idx, seed, text, finish_reason, scores_json,"
                " n_tokens, tokens) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                (sample.index, sample.seed, sample.text, sample.finish_reason,
                 json.dumps(sample.scores), len(sample.tokens),
                 store_module.encode_tokens(sample.tokens)),
            )
        conn.commit()


def test_a_schema_1_history_opens_and_migrates(data_dir: Path) -> None:
    path = data_dir / "history.sqlite"
    run = sw.synthetic_run(2, 3)
    run.samples[0].scores["reward"], run.samples[1].scores["reward"] = 1.0, 2.0
    write_schema_1_history(path, run)
    with Store(path) as s:
        old = s.load(1)
        assert old.samples == run.samples and old.reward_models == {}
        assert old.rankings["reward"].order == (1, 0)
        # Scores given now record their reward model, in the migrated file.
        identity = RewardModelIdentity("reranker", "/m/rr.gguf", "cd" * 32, "RR", "")
        old.reward_models["reward"] = identity
        s.save_scores(1, old)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with Store(path) as s:
        assert s.load(1).reward_models == {"reward": identity}
        assert s.load(1).samples == run.samples


def test_reward_models_round_trip_through_the_store(data_dir: Path) -> None:
    run = sw.synthetic_run(3, 2)
    judge = RewardModelIdentity("judge", "/m/judge.gguf", "", "Judge", "Is it kind? yes or no")
    run.reward_models["judge"] = judge
    with Store() as s:
        assert s.load(s.save(run)).reward_models == {"judge": judge}


def test_a_newer_schema_is_refused(data_dir: Path) -> None:
    path = data_dir / "history.sqlite"
    Store(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    with pytest.raises(StoreError, match="newer version"):
        Store(path)


def assert_set_aside(path: Path, damaged: bytes, message: str | None, store: Store) -> None:
    assert message is not None and "\n" not in message
    assert "damaged" in message and "new, empty history" in message
    kept = [p for p in path.parent.iterdir() if p.name.startswith("history.sqlite.damaged-")]
    assert len(kept) == 1 and kept[0].name in message
    assert kept[0].read_bytes() == damaged  # kept as it was
    assert store.list_runs() == []
    run = sw.synthetic_run(2, 5)
    assert store.load(store.save(run)) == run


def test_random_bytes_are_set_aside(data_dir: Path) -> None:
    path = data_dir / "history.sqlite"
    damaged = os.urandom(50_000)
    path.write_bytes(damaged)
    with pytest.raises(StoreDamagedError) as raised:
        Store(path)
    assert "not an SQLite database" in str(raised.value) and "\n" not in str(raised.value)
    assert path.read_bytes() == damaged  # Store() alone changes nothing
    store, message = open_store(path)
    assert_set_aside(path, damaged, message, store)
    store.close()


def test_truncated_database_is_set_aside(data_dir: Path) -> None:
    path = data_dir / "history.sqlite"
    with Store(path) as s:
        s.save(sw.synthetic_run(4, 500))
    whole = path.read_bytes()
    assert not Path(f"{path}-wal").exists()
    damaged = whole[: len(whole) // 2]
    path.write_bytes(damaged)
    store, message = open_store(path)
    assert "truncated" in message
    assert_set_aside(path, damaged, message, store)
    store.close()


def test_setting_aside_never_overwrites(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = data_dir / "history.sqlite"
    monkeypatch.setattr(store_module, "datetime", _FrozenDatetime)
    contents = []
    for i in range(3):
        path.write_bytes(b"not a database %d" % i)
        contents.append(path.read_bytes())
        store, _ = open_store(path)
        store.close()
        path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    kept = sorted(p.read_bytes() for p in data_dir.glob("history.sqlite.damaged-*"))
    assert kept == sorted(contents)


class _FrozenDatetime(store_module.datetime):
    @classmethod
    def now(cls, tz: object = None) -> _FrozenDatetime:
        return cls(2030, 1, 2, 3, 4, 5)


# ---------------------------------------------------------------- a real run


def test_a_real_run_of_the_tiny_model(store: Store, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    try:
        import tiny_models
    except ImportError:  # pragma: no cover
        from tests import tiny_models
    from playground.engine import load
    from playground.sampling import SamplingParams

    path = tiny_models.write_tiny_llama(tmp_path / "tiny.gguf")
    with load(path, n_ctx=256) as engine:
        run = engine.start_run("hello", SamplingParams(seed=1, max_tokens=8), n=2)
        with store.begin(run) as writer:
            for event in engine.generate(run):
                run.add(event)
                writer.add(event)
    run.rank("mean-logprob")
    store.save_scores(writer.run_id, run)
    assert store.load(writer.run_id) == run
    assert store.summary(writer.run_id).model_sha256 == hashlib.sha256(
        path.read_bytes()).hexdigest()

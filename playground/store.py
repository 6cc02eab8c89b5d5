"""The experiment store: every run, with all its tokens, in one SQLite file that survives a crash.

The file is `data_dir() / "history.sqlite"` (an explicit path moves it). It is opened in WAL mode,
so a window can list and reopen runs while a worker thread or another process writes one.

Writing as it goes: `Store.begin(run)` returns a `RunWriter` that takes the engine's events. A
sample is written whole when its `SampleEnd` arrives; tokens of samples still being generated are
appended as small chunks at least once a second (checked on every `add`, on a monotonic clock),
and every write is committed with `synchronous=FULL`, so a crash, a kill or a power loss loses at
most the last second of tokens. `RunEnd` marks the run finished.

A run that never got its `RunEnd` and has no open writer in this process is "interrupted": its
finished samples come back intact, and a sample that was cut off comes back with the tokens that
reached the disk and `finish_reason` "interrupted" (not None, which means "still generating", so
that the GUI can tell a dead run from a live one). Only writers of this process are known: a run
that another process is generating right now also lists as "interrupted" until it finishes.

Token data is stored compactly, one blob per sample (see `encode_tokens`): float64 for every
logprob and entropy (the app shows Python floats, and float64 is the only width that gives them
back bit for bit, so a reopened run equals the one that was shown), int32 for ids and ranks, and
the alternatives' texts through a per-blob table of distinct (id, text) pairs, since a tokenizer
gives the same text for the same id over and over. 32 samples x 2048 tokens with 10 alternatives
take about 12 MB (tests/core/test_store.py measures it).

The schema is versioned with `PRAGMA user_version`: `MIGRATIONS[i]` takes the file from version i
to version i + 1, so adding a version is appending one function. Version 2 added which reward
model gave each stored score (`Run.reward_models`), version 3 the human labels
(`playground.labels.Label`).

A file that is not an SQLite database, or a truncated one, is never written to: `Store()` raises
`StoreDamagedError`. `open_store()` also runs SQLite's quick check, which finds damage anywhere in
the file; it moves a damaged file aside (to `history.sqlite.damaged-<time>`, never overwriting
anything), copies every run that can still be read into a new history that takes its place, and
returns a one-line message to show. A path that is not a regular file (a device, a FIFO, a
directory) is refused, never opened as a database or renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from playground.errors import PlaygroundError
from playground.files import require_regular
from playground.gguf_file import ModelInfo
from playground.labels import Label
from playground.paths import data_dir
from playground.records import (
    Alternative,
    Event,
    RewardModelIdentity,
    Run,
    RunEnd,
    RunStats,
    Sample,
    SampleEnd,
    TokenRecord,
)
from playground.sampling import SamplingParams
from playground.scoring import Answer, Ranking, Vote

DB_NAME = "history.sqlite"
FLUSH_INTERVAL = 1.0
"""Seconds between two writes of streaming tokens: at most this much is lost in a crash."""
INTERRUPTED = "interrupted"
"""The finish reason of a sample that was cut off, and the status of its run."""
MAX_TAG_LENGTH = 100
_BUSY_TIMEOUT = 10.0


class StoreError(PlaygroundError):
    """The history cannot do what was asked: an unknown run, a bad tag, an unreadable file."""


class StoreDamagedError(StoreError):
    """The history file is not a usable SQLite database (random bytes, truncated, ...)."""


def default_path() -> Path:
    return data_dir() / DB_NAME


# ---------------------------------------------------------------------------------------------
# Schema


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,        -- unix time
            finished_at REAL,                -- NULL until RunEnd
            model_name TEXT NOT NULL,
            model_path TEXT NOT NULL,
            model_sha256 TEXT,               -- NULL when the file could not be read
            model_json TEXT NOT NULL,        -- the whole ModelInfo
            params_json TEXT NOT NULL,       -- SamplingParams.to_json()
            prompt TEXT NOT NULL,
            chat INTEGER NOT NULL,
            system TEXT,
            prompt_token_ids BLOB NOT NULL,  -- int32 little-endian
            n_samples INTEGER NOT NULL,
            stats_json TEXT,                 -- RunStats, NULL until RunEnd
            rankings_json TEXT NOT NULL DEFAULT '{}',
            vote_json TEXT,
            starred INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX runs_by_time ON runs (created_at)",
        """CREATE TABLE samples (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            text TEXT NOT NULL DEFAULT '',
            finish_reason TEXT,              -- NULL until its SampleEnd
            scores_json TEXT NOT NULL DEFAULT '{}',
            n_tokens INTEGER NOT NULL DEFAULT 0,
            tokens BLOB,                     -- encode_tokens(), once the sample is finished
            PRIMARY KEY (run_id, idx)
        )""",
        """CREATE TABLE token_chunks (       -- tokens of a sample still streaming
            run_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            tokens BLOB NOT NULL,
            PRIMARY KEY (run_id, idx, chunk),
            FOREIGN KEY (run_id, idx) REFERENCES samples (run_id, idx) ON DELETE CASCADE
        )""",
        """CREATE TABLE tags (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (run_id, tag)
        )""",
        "CREATE INDEX tags_by_tag ON tags (tag)",
        """CREATE TABLE file_hashes (        -- sha256 of model files, by what the file looked like
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        )""",
    ]
    for statement in statements:
        conn.execute(statement)


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    # Which reward model gave each stored score: {score name: RewardModelIdentity fields}.
    conn.execute("ALTER TABLE runs ADD COLUMN reward_models_json TEXT NOT NULL DEFAULT '{}'")


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    # Human labels (playground.labels.Label): kept when their run is deleted, since the texts
    # they rank are their own; the link to the run is then forgotten.
    conn.execute("""CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,  -- NULL: matched to no run
        prompt TEXT NOT NULL,
        responses_json TEXT NOT NULL,    -- [[text, rank, sample index or null], ...]
        annotator TEXT NOT NULL,
        created_at REAL NOT NULL,        -- unix time of the judgement (or of its import)
        source TEXT NOT NULL,            -- 'label-studio', 'argilla', 'jsonl' or 'app'
        origin TEXT NOT NULL DEFAULT ''  -- which judgement of the source it is ('' unknown)
    )""")
    conn.execute("CREATE INDEX labels_by_run ON labels (run_id)")
    conn.execute("CREATE UNIQUE INDEX labels_by_origin ON labels (source, origin)"
                 " WHERE origin != ''")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_to_1, _migrate_to_2, _migrate_to_3]
"""MIGRATIONS[i] takes a file from schema version i to i + 1, inside one transaction."""
SCHEMA_VERSION = len(MIGRATIONS)


# ---------------------------------------------------------------------------------------------
# Token blobs

_BLOB_MAGIC = b"PGT2"
_BLOB_HEADERS = {b"PGT1": struct.Struct("<4sqq16Q"), b"PGT2": struct.Struct("<4sqq17Q")}
"""By magic: the header of each blob format. PGT2 added `kept` (PGT1 blobs read as kept 0)."""


def encode_tokens(tokens: Sequence[TokenRecord]) -> bytes:
    """The tokens of one sample (or of one streamed chunk of it) as one compact blob.

    Sections, each a little-endian array: ids int32; logprob, sampling_logprob, entropy float64;
    rank int32; the token bytes as lengths int32 + one joined blob; the texts likewise (UTF-8);
    per token the number of alternatives int32, then for every alternative an index int32 into
    a table of distinct (id, text) pairs and its logprob float64; the table's ids int32 and texts
    (lengths + joined UTF-8); the positions int32, left empty when they simply count up from
    the first one (always, for the engine's runs); and kept int32.
    """
    n = len(tokens)
    start = tokens[0].position if tokens else 0
    pairs: dict[tuple[int, str], int] = {}
    refs: list[int] = []
    top_logprobs: list[float] = []
    for t in tokens:
        for alt in t.top:
            refs.append(pairs.setdefault((alt.id, alt.text), len(pairs)))
            top_logprobs.append(alt.logprob)
    positions = [t.position for t in tokens]
    counting = positions == list(range(start, start + n))
    token_bytes = [t.bytes for t in tokens]
    token_texts = [_utf8(t.text) for t in tokens]
    alt_texts = [_utf8(text) for _, text in pairs]
    sections = [
        _array([t.id for t in tokens], "<i4"),
        _array([t.logprob for t in tokens], "<f8"),
        _array([t.sampling_logprob for t in tokens], "<f8"),
        _array([t.entropy for t in tokens], "<f8"),
        _array([t.rank for t in tokens], "<i4"),
        _array([len(b) for b in token_bytes], "<i4"),
        b"".join(token_bytes),
        _array([len(b) for b in token_texts], "<i4"),
        b"".join(token_texts),
        _array([len(t.top) for t in tokens], "<i4"),
        _array(refs, "<i4"),
        _array(top_logprobs, "<f8"),
        _array([token_id for token_id, _ in pairs], "<i4"),
        _array([len(b) for b in alt_texts], "<i4"),
        b"".join(alt_texts),
        b"" if counting else _array(positions, "<i4"),
        _array([t.kept for t in tokens], "<i4"),
    ]
    header = _BLOB_HEADERS[_BLOB_MAGIC].pack(_BLOB_MAGIC, n, start, *(len(s) for s in sections))
    return header + b"".join(sections)


def decode_tokens(blob: bytes, sample: int) -> list[TokenRecord]:
    """The inverse of `encode_tokens`; `sample` is the index the records belong to."""
    header = _BLOB_HEADERS.get(bytes(blob[:4]))
    if header is None:
        raise StoreDamagedError("a sample's token data is damaged (unknown format)")
    _, n, start, *lengths = header.unpack_from(blob)
    sections = []
    offset = header.size
    for length in lengths:
        sections.append(blob[offset : offset + length])
        offset += length
    (ids, logprobs, sampling, entropies, ranks, byte_lens, byte_blob, text_lens, text_blob,
     counts, refs, top_lps, alt_ids, alt_lens, alt_blob, positions, *kept) = sections
    kept_l = _list(kept[0], "<i4") if kept else [0] * n
    ids_l = _list(ids, "<i4")
    logprobs_l = _list(logprobs, "<f8")
    sampling_l = _list(sampling, "<f8")
    entropies_l = _list(entropies, "<f8")
    ranks_l = _list(ranks, "<i4")
    token_bytes = _split(byte_blob, _list(byte_lens, "<i4"))
    texts = [_text(b) for b in _split(text_blob, _list(text_lens, "<i4"))]
    alt_texts = [_text(b) for b in _split(alt_blob, _list(alt_lens, "<i4"))]
    alt_ids_l = _list(alt_ids, "<i4")
    refs_l = _list(refs, "<i4")
    top_lps_l = _list(top_lps, "<f8")
    positions_l = _list(positions, "<i4") if positions else range(start, start + n)
    records = []
    k = 0
    for i, count in enumerate(_list(counts, "<i4")):
        top = tuple(
            Alternative(alt_ids_l[r], alt_texts[r], lp)
            for r, lp in zip(refs_l[k : k + count], top_lps_l[k : k + count], strict=True)
        )
        k += count
        records.append(TokenRecord(
            sample=sample, position=positions_l[i], id=ids_l[i], bytes=token_bytes[i],
            text=texts[i], logprob=logprobs_l[i], sampling_logprob=sampling_l[i],
            rank=ranks_l[i], entropy=entropies_l[i], top=top, kept=kept_l[i],
        ))
    return records


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate in a text must come back, not fail the whole run.
    return text.encode("utf-8", "surrogatepass")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _array(values: Sequence[float] | Sequence[int], dtype: str) -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


def _list(data: bytes, dtype: str) -> list:
    return np.frombuffer(data, dtype=dtype).tolist()


def _split(blob: bytes, lengths: list[int]) -> list[bytes]:
    out = []
    offset = 0
    for length in lengths:
        out.append(blob[offset : offset + length])
        offset += length
    return out


# ---------------------------------------------------------------------------------------------
# JSON of the run-level objects (Python's json keeps NaN and infinities, and floats exactly)


def _params_json(params: SamplingParams) -> str:
    return json.dumps(params.to_json())


def _stats_json(stats: RunStats | None) -> str | None:
    if stats is None:
        return None
    return json.dumps({"prompt_tokens": stats.prompt_tokens, "new_tokens": stats.new_tokens,
                       "seconds": stats.seconds})


def _rankings_json(rankings: dict[str, Ranking]) -> str:
    return json.dumps({
        method: {"method": r.method, "order": list(r.order), "scores": list(r.scores)}
        for method, r in rankings.items()
    })


def _rankings_from_json(text: str) -> dict[str, Ranking]:
    return {
        method: Ranking(r["method"], tuple(r["order"]), tuple(float(s) for s in r["scores"]))
        for method, r in json.loads(text).items()
    }


def _reward_models_json(identities: dict[str, RewardModelIdentity]) -> str:
    return json.dumps({name: identity.to_json() for name, identity in identities.items()})


def _reward_models_from_json(text: str) -> dict[str, RewardModelIdentity]:
    return {name: RewardModelIdentity.from_json(fields)
            for name, fields in json.loads(text).items()}


def _vote_json(vote: Vote | None) -> str | None:
    if vote is None:
        return None
    return json.dumps({
        "answer": vote.answer,
        "kind": vote.kind,
        "share": vote.share,
        "voters": list(vote.voters),
        "unparsed": list(vote.unparsed),
        "groups": [[answer, list(voters)] for answer, voters in vote.groups],
        "answers": [None if a is None else [a.kind, a.value, a.raw] for a in vote.answers],
    })


def _vote_from_json(text: str | None) -> Vote | None:
    if text is None:
        return None
    v = json.loads(text)
    return Vote(
        answer=v["answer"],
        kind=v["kind"],
        share=v["share"],
        voters=tuple(v["voters"]),
        unparsed=tuple(v["unparsed"]),
        groups=tuple((answer, tuple(voters)) for answer, voters in v["groups"]),
        answers=tuple(None if a is None else Answer(*a) for a in v["answers"]),
    )


def _ids_blob(ids: Sequence[int]) -> bytes:
    return _array(list(ids), "<i4")


# ---------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True)
class RunSummary:
    """One line of the history list: enough to show and filter runs without loading tokens."""

    id: int
    created_at: datetime
    """When the run started, timezone-aware (UTC)."""
    status: str
    """"finished", "running" (a writer of this process is open on it) or "interrupted"."""
    model_name: str
    model_path: str
    model_sha256: str | None
    prompt: str
    chat: bool
    system: str | None
    n_samples: int
    samples_done: int
    """Samples that got their SampleEnd."""
    starred: bool
    tags: tuple[str, ...]


@dataclass(frozen=True)
class RunRequest:
    """What it takes to run a stored run again ("duplicate")."""

    prompt: str
    chat: bool
    system: str | None
    params: SamplingParams
    """With the run's seed: running it again repeats it. Replace the seed by None for new ones."""
    n: int
    model_path: str


# ---------------------------------------------------------------------------------------------
# Opening

_OPEN_WRITERS: set[tuple[str, int]] = set()
"""(resolved database path, run id) of every RunWriter open in this process."""
_OPEN_WRITERS_LOCK = threading.Lock()


def open_store(path: Path | str | None = None) -> tuple[Store, str | None]:
    """Open the history, checking it whole and recovering a damaged file instead of failing.

    Returns the store and, when the file had to be set aside, a one-line message for the user.
    SQLite's quick check reads every page, so damage anywhere is found here and not in the
    middle of a later run (after which no run could be saved). The damaged file (and its -wal
    and -shm companions) is renamed, never modified, so that nothing is lost for good; every
    run that can still be read from it is copied into a fresh history that takes its place.
    """
    path = Path(path) if path is not None else default_path()
    try:
        store = Store(path)
    except StoreDamagedError as error:
        damaged = str(error)
    else:
        problem = store.check()
        if problem is None:
            return store, None
        store.close()
        damaged = f"The history file {path.name} is damaged: {problem}."
    real = Path(os.path.realpath(path))  # through a symlink: the file itself is set aside
    kept = _set_aside(real)
    try:
        recovered = _recover(kept, real)
    except (OSError, sqlite3.Error):  # no room for the copy, say: start empty, as before
        recovered = 0
    saved = ("a new, empty history was started (no run in it could be read)" if recovered == 0
             else f"the {recovered} run{'s' * (recovered != 1)} that could still be read "
                  "went into a new history")
    return Store(path), f"{damaged.rstrip('.')}: it was kept as {kept}, and {saved}."


def _set_aside(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = path.with_name(f"{path.name}.damaged-{stamp}")
    target = base
    n = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        target = base.with_name(f"{base.name}-{n}")
        n += 1
    # A stale WAL next to a new database would be replayed into it, so it moves too.
    for suffix in ("-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            os.rename(companion, f"{target}{suffix}")
    os.rename(path, target)
    return target


def _recover(damaged: Path, path: Path) -> int:
    """Copy every run that can be read from the `damaged` file (untouched: a copy is read) into
    a new history at `path`; returns how many runs it holds.

    Table by table, rows are read in rowid order; a read that fails on a damaged page skips
    ahead to the next rowid that reads. A run is kept only if it loads back whole, with all its
    samples."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".recovering-") as folder:
        copy = Path(folder) / DB_NAME
        for suffix in ("", "-wal"):
            if Path(f"{damaged}{suffix}").exists():
                shutil.copyfile(f"{damaged}{suffix}", f"{copy}{suffix}")
        fresh = Path(folder) / f"{DB_NAME}.new"
        Store(fresh).close()
        target = _connect(fresh)
        try:
            source = sqlite3.connect(copy)
            try:
                tables = [row[0] for row in target.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")]
                target.execute("PRAGMA foreign_keys = OFF")
                with _transaction(target):
                    for table in tables:
                        columns = [row[1] for row in target.execute(f"PRAGMA table_info({table})")]
                        marks = ", ".join("?" * len(columns))
                        target.executemany(
                            f"INSERT OR IGNORE INTO {table} VALUES ({marks})",
                            _readable_rows(source, table, columns))
                    for orphans in (
                        "DELETE FROM samples WHERE run_id NOT IN (SELECT id FROM runs)",
                        "DELETE FROM token_chunks WHERE NOT EXISTS (SELECT 1 FROM samples s"
                        " WHERE s.run_id = token_chunks.run_id AND s.idx = token_chunks.idx)",
                        "DELETE FROM tags WHERE run_id NOT IN (SELECT id FROM runs)",
                        "UPDATE labels SET run_id = NULL WHERE run_id NOT IN"
                        " (SELECT id FROM runs)",
                    ):
                        target.execute(orphans)
            finally:
                source.close()
            target.execute("PRAGMA foreign_keys = ON")
        finally:
            target.close()
        with Store(fresh) as store:
            for (run_id,) in store._conn.execute("SELECT id FROM runs").fetchall():
                try:
                    whole = len(store.load(run_id).samples) == store.summary(run_id).n_samples
                except Exception:  # any damage inside a row: the run is not recovered
                    whole = False
                if not whole:
                    store.delete(run_id)
            (count,) = store._conn.execute("SELECT count(*) FROM runs").fetchone()
        os.rename(fresh, path)
        return count


def _readable_rows(conn: sqlite3.Connection, table: str, columns: list[str]) -> Iterator[tuple]:
    """The rows of `table` that SQLite can still read, skipping damaged pages."""
    names = ", ".join(columns)
    after: int | None = None
    while True:
        query = f"SELECT rowid, {names} FROM {table} NOT INDEXED"
        args: tuple = ()
        if after is not None:
            query += " WHERE rowid > ?"
            args = (after,)
        try:
            for rowid, *row in conn.execute(query + " ORDER BY rowid", args):
                yield tuple(row)
                after = rowid
            return
        except sqlite3.DatabaseError:
            after = _next_readable(conn, table, -(2**63) if after is None else after)
            if after is None:
                return


def _next_readable(conn: sqlite3.Connection, table: str, failed: int) -> int | None:
    """A rowid after `failed` from which rows read again (None: none does), found by doubling
    the step until a read succeeds and then halving back towards the damaged page."""

    def reads(after: int) -> bool:
        try:
            conn.execute(f"SELECT rowid FROM {table} NOT INDEXED WHERE rowid > ? ORDER BY rowid"
                         " LIMIT 1", (after,)).fetchall()
            return True
        except sqlite3.DatabaseError:
            return False

    step = 1
    while not reads(failed + step):
        step *= 2
        if failed + step >= 2**63 - 1:
            return None
    good, bad = failed + step, failed + step // 2
    while good - bad > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if reads(middle) else (good, middle)
    return good


def _header_problem(path: Path) -> str | None:
    """Why the file cannot be an SQLite database, judged from its 100-byte header, or None.

    SQLite itself opens a truncated file without complaint and fails only on the first read of
    a missing page, perhaps in the middle of a run; checking the size recorded in the header
    catches it up front.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None  # SQLite makes a new database of an empty file
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except OSError as error:
        raise StoreError(f"cannot read the history file {path}: {error.strerror}") from None
    if not header.startswith(b"SQLite format 3\x00"):
        return "it is not an SQLite database"
    if len(header) < 100:
        return "it is truncated"
    (page_size,) = struct.unpack_from(">H", header, 16)
    page_size = 65536 if page_size == 1 else page_size
    change_counter, pages = struct.unpack_from(">II", header, 24)
    (valid_for,) = struct.unpack_from(">I", header, 92)
    wal = Path(f"{path}-wal")
    # With a WAL present, a checkpoint cut short can leave the file short but the WAL whole.
    wal_pending = wal.exists() and wal.stat().st_size > 0
    if pages and valid_for == change_counter and not wal_pending and size < pages * page_size:
        return f"it is truncated ({size:,} of {pages * page_size:,} bytes)"
    return None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA foreign_keys = ON")
    # FULL: a commit is on disk when it returns, so a power loss too loses only the last second.
    conn.execute("PRAGMA synchronous = FULL")
    conn.create_function("casefold", 1, _casefold, deterministic=True)
    return conn


def _casefold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---------------------------------------------------------------------------------------------
# The store


class Store:
    """The history of runs in one SQLite file. See the module docstring.

    A Store may be used from several threads (calls are serialised by a lock); a RunWriter has
    its own connection, so a worker thread can write a run while the GUI thread reads.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        require_regular(self.path, "the history file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._key = os.path.realpath(self.path)
        self._lock = threading.RLock()
        problem = _header_problem(self.path)
        if problem:
            raise StoreDamagedError(f"The history file {self.path.name} is damaged: {problem}.")
        try:
            self._conn = _connect(self.path)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the history file {self.path}: {error}") from None
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._migrate()
            self._conn.execute("SELECT count(*) FROM runs").fetchone()
        except sqlite3.DatabaseError as error:
            self._conn.close()
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise StoreError(
                    f"the history file {self.path.name} is locked by another program"
                ) from None
            raise StoreDamagedError(
                f"The history file {self.path.name} is damaged: {error}."
            ) from None

    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise StoreError(
                f"{self.path.name} was written by a newer version of the app "
                f"(schema {version}; this version reads up to {SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        with _transaction(self._conn) as conn:
            # Read again under the write lock: another process may have migrated meanwhile.
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            for target in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target - 1](conn)
                conn.execute(f"PRAGMA user_version = {target}")

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        # One read transaction, so that several SELECTs see one snapshot: a sample that a
        # writer finishes meanwhile is seen either streaming (chunks) or done (its blob).
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    yield self._conn
                finally:
                    self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as error:
                raise _store_error(self.path, error) from None
            except OverflowError:  # a run id or a limit beyond SQLite's 64-bit integers
                raise StoreError(_TOO_LARGE) from None

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with _transaction(self._conn) as conn:
                    yield conn
            except sqlite3.DatabaseError as error:
                raise _store_error(self.path, error) from None
            except OverflowError:
                raise StoreError(_TOO_LARGE) from None

    # -- writing runs --------------------------------------------------------------------------

    def begin(
        self,
        run: Run,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> RunWriter:
        """Record `run` (as it is now) and return the writer that takes its events.

        Computes the model file's sha256 if it is not cached yet: seconds for a large model, once.
        """
        sha256 = self.model_sha256(run.model.path)
        return RunWriter(self.path, run, sha256, flush_interval=flush_interval, clock=clock)

    def save(self, run: Run) -> int:
        """Store a whole run at once (a run generated without a writer)."""
        return self.save_all([run])[0]

    def save_all(self, runs: Sequence[Run]) -> list[int]:
        """Store whole runs in one transaction, all or none (an import); returns their ids."""
        hashes = [self.model_sha256(run.model.path) for run in runs]
        ids = []
        with self._writing() as conn:
            for run, sha256 in zip(runs, hashes, strict=True):
                run_id = _insert_run(conn, run, sha256, time.time())
                if run.stats is not None:
                    conn.execute(
                        "UPDATE runs SET finished_at = ?, stats_json = ? WHERE id = ?",
                        (time.time(), _stats_json(run.stats), run_id),
                    )
                ids.append(run_id)
        return ids

    def save_scores(self, run_id: int, run: Run) -> None:
        """Write what was computed after generation: `Sample.scores`, `rankings`, `vote` and
        `reward_models`."""
        with self._writing() as conn:
            self._require(conn, run_id)
            conn.executemany(
                "UPDATE samples SET scores_json = ? WHERE run_id = ? AND idx = ?",
                [(json.dumps(s.scores), run_id, s.index) for s in run.samples],
            )
            conn.execute(
                "UPDATE runs SET rankings_json = ?, vote_json = ?, reward_models_json = ?"
                " WHERE id = ?",
                (_rankings_json(run.rankings), _vote_json(run.vote),
                 _reward_models_json(run.reward_models), run_id),
            )

    # -- reading runs --------------------------------------------------------------------------

    def load(self, run_id: int) -> Run:
        """The run as it was recorded, equal to the `Run` that was written.

        Samples of an interrupted run that never ended come back with the tokens that reached
        the disk and finish_reason "interrupted"; while the run is still running, None.
        """
        with self._reading() as conn:
            row = conn.execute(
                "SELECT model_json, params_json, prompt, prompt_token_ids, chat, system,"
                " stats_json, rankings_json, vote_json, reward_models_json FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise StoreError(f"there is no run #{run_id} in the history")
            (model_json, params_json, prompt, ids_blob, chat, system, stats_json,
             rankings_json, vote_json, reward_models_json) = row
            running = self._is_open(run_id)
            samples = []
            for idx, seed, text, reason, scores_json, blob in conn.execute(
                "SELECT idx, seed, text, finish_reason, scores_json, tokens FROM samples"
                " WHERE run_id = ? ORDER BY idx",
                (run_id,),
            ):
                if reason is not None:
                    tokens = decode_tokens(blob, idx) if blob is not None else []
                else:
                    tokens = []
                    for (chunk,) in conn.execute(
                        "SELECT tokens FROM token_chunks WHERE run_id = ? AND idx = ?"
                        " ORDER BY chunk",
                        (run_id, idx),
                    ):
                        tokens.extend(decode_tokens(chunk, idx))
                    # Run.add builds a streaming sample's text from its tokens; so does this.
                    text = "".join(t.text for t in tokens)
                    reason = None if running or stats_json is not None else INTERRUPTED
                samples.append(Sample(idx, seed, tokens, text, reason, json.loads(scores_json)))
        stats = None
        if stats_json is not None:
            s = json.loads(stats_json)
            stats = RunStats(s["prompt_tokens"], s["new_tokens"], s["seconds"])
        return Run(
            model=ModelInfo.from_json(json.loads(model_json)),
            params=SamplingParams.from_json(json.loads(params_json)),
            prompt=prompt,
            prompt_token_ids=_list(ids_blob, "<i4"),
            chat=bool(chat),
            system=system,
            samples=samples,
            stats=stats,
            rankings=_rankings_from_json(rankings_json),
            vote=_vote_from_json(vote_json),
            reward_models=_reward_models_from_json(reward_models_json),
        )

    def status(self, run_id: int) -> str:
        return self.summary(run_id).status

    def summary(self, run_id: int) -> RunSummary:
        found = self._summaries("WHERE r.id = ?", [run_id], "")
        if not found:
            raise StoreError(f"there is no run #{run_id} in the history")
        return found[0]

    def list_runs(
        self,
        search: str = "",
        *,
        starred_only: bool = False,
        tag: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunSummary]:
        """Runs newest first. `search` matches, ignoring case, part of the prompt, the model's
        name or a tag; `tag` keeps only runs with exactly that tag."""
        where, args = [], []
        if search:
            where.append(
                "(instr(casefold(r.prompt), casefold(?)) OR instr(casefold(r.model_name),"
                " casefold(?)) OR EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.id AND"
                " instr(casefold(t.tag), casefold(?))))"
            )
            args += [search, search, search]
        if starred_only:
            where.append("r.starred")
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.id AND t.tag = ?)")
            args.append(tag)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        page = ""
        if limit is not None or offset:
            page = "LIMIT ? OFFSET ?"
            args += [-1 if limit is None else limit, offset]
        return self._summaries(clause, args, page)

    def _summaries(self, where: str, args: list[Any], page: str) -> list[RunSummary]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT r.id, r.created_at, r.finished_at, r.model_name, r.model_path,"
                " r.model_sha256, r.prompt, r.chat, r.system, r.n_samples, r.starred,"
                " (SELECT count(*) FROM samples s WHERE s.run_id = r.id"
                "  AND s.finish_reason IS NOT NULL)"
                f" FROM runs r {where} ORDER BY r.created_at DESC, r.id DESC {page}",
                args,
            ).fetchall()
            tags: dict[int, list[str]] = {}
            ids = [row[0] for row in rows]
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                for run_id, tag in conn.execute(
                    f"SELECT run_id, tag FROM tags WHERE run_id IN ({marks}) ORDER BY tag", part
                ):
                    tags.setdefault(run_id, []).append(tag)
        return [
            RunSummary(
                id=run_id,
                created_at=datetime.fromtimestamp(created, UTC),
                status=self._status(run_id, finished),
                model_name=model_name,
                model_path=model_path,
                model_sha256=sha256,
                prompt=prompt,
                chat=bool(chat),
                system=system,
                n_samples=n_samples,
                samples_done=done,
                starred=bool(starred),
                tags=tuple(tags.get(run_id, ())),
            )
            for (run_id, created, finished, model_name, model_path, sha256, prompt, chat,
                 system, n_samples, starred, done) in rows
        ]

    def _status(self, run_id: int, finished_at: float | None) -> str:
        if finished_at is not None:
            return "finished"
        return "running" if self._is_open(run_id) else INTERRUPTED

    def _is_open(self, run_id: int) -> bool:
        with _OPEN_WRITERS_LOCK:
            return (self._key, run_id) in _OPEN_WRITERS

    def duplicate(self, run_id: int) -> RunRequest:
        """The prompt, mode, system prompt and parameters of a run, to run it again."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT prompt, chat, system, params_json, n_samples, model_path FROM runs"
                " WHERE id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"there is no run #{run_id} in the history")
        prompt, chat, system, params_json, n, model_path = row
        params = SamplingParams.from_json(json.loads(params_json))
        return RunRequest(prompt, bool(chat), system, params, n, model_path)

    # -- organising ----------------------------------------------------------------------------

    def delete(self, run_id: int) -> None:
        if self._is_open(run_id):
            raise StoreError(f"run #{run_id} is still being generated; stop it first")
        with self._writing() as conn:
            self._require(conn, run_id)
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def set_starred(self, run_id: int, starred: bool = True) -> None:
        with self._writing() as conn:
            self._require(conn, run_id)
            conn.execute("UPDATE runs SET starred = ? WHERE id = ?", (int(starred), run_id))

    def add_tags(self, run_id: int, *tags: str) -> None:
        clean = [_clean_tag(tag) for tag in tags]
        with self._writing() as conn:
            self._require(conn, run_id)
            conn.executemany(
                "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
                [(run_id, tag) for tag in clean],
            )

    def remove_tags(self, run_id: int, *tags: str) -> None:
        with self._writing() as conn:
            self._require(conn, run_id)
            conn.executemany(
                "DELETE FROM tags WHERE run_id = ? AND tag = ?",
                [(run_id, tag.strip()) for tag in tags],
            )

    def tags(self, run_id: int | None = None) -> list[str]:
        """The tags of one run, or every tag in use (for completion), sorted."""
        with self._reading() as conn:
            if run_id is None:
                rows = conn.execute("SELECT DISTINCT tag FROM tags ORDER BY tag")
            else:
                rows = conn.execute(
                    "SELECT tag FROM tags WHERE run_id = ? ORDER BY tag", (run_id,)
                )
            return [tag for (tag,) in rows]

    @staticmethod
    def _require(conn: sqlite3.Connection, run_id: int) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise StoreError(f"there is no run #{run_id} in the history")

    # -- labels --------------------------------------------------------------------------------

    def runs_with_prompt(self, prompt: str) -> list[int]:
        """Ids of the runs with exactly this prompt, newest first."""
        with self._reading() as conn:
            return [run_id for (run_id,) in conn.execute(
                "SELECT id FROM runs WHERE prompt = ? ORDER BY created_at DESC, id DESC",
                (prompt,))]

    def sample_texts(self, run_id: int) -> list[str]:
        """The texts of a run's finished samples, by index ("" for one still streaming)."""
        with self._reading() as conn:
            rows = conn.execute("SELECT idx, text FROM samples WHERE run_id = ? ORDER BY idx",
                                (run_id,)).fetchall()
        texts = [""] * (rows[-1][0] + 1 if rows else 0)
        for idx, text in rows:
            texts[idx] = text
        return texts

    def add_labels(self, labels: Sequence[Label]) -> int:
        """Store labels in one transaction, all or none; returns how many were new. A label
        with the source and origin of a stored one replaces it (see `Label.origin`)."""
        with self._writing() as conn:
            new = 0
            for label in labels:
                if label.run_id is not None:
                    self._require(conn, label.run_id)
                samples = label.samples or (None,) * len(label.responses)
                replaced = conn.execute(
                    "DELETE FROM labels WHERE source = ? AND origin = ? AND origin != ''",
                    (label.source, label.origin)).rowcount
                new += replaced == 0
                conn.execute(
                    "INSERT INTO labels (run_id, prompt, responses_json, annotator, created_at,"
                    " source, origin) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (label.run_id, label.prompt,
                     json.dumps([[text, rank, sample] for text, rank, sample
                                 in zip(label.responses, label.ranks, samples, strict=True)]),
                     label.annotator, label.created_at.timestamp(), label.source, label.origin))
        return new

    def labels(self, run_ids: Sequence[int] | None = None) -> list[Label]:
        """The stored labels, oldest first: of these runs, or all of them."""
        query = ("SELECT run_id, prompt, responses_json, annotator, created_at, source, origin"
                 " FROM labels")
        with self._reading() as conn:
            if run_ids is None:
                rows = conn.execute(query + " ORDER BY created_at, id").fetchall()
            else:
                for run_id in run_ids:
                    self._require(conn, run_id)
                marks = ",".join("?" * len(run_ids))
                rows = conn.execute(query + f" WHERE run_id IN ({marks}) ORDER BY created_at, id",
                                    list(run_ids)).fetchall()
        labels = []
        for run_id, prompt, responses_json, annotator, created, source, origin in rows:
            entries = json.loads(responses_json)
            labels.append(Label(
                prompt, tuple(e[0] for e in entries), tuple(e[1] for e in entries), annotator,
                datetime.fromtimestamp(created, UTC), source, run_id=run_id,
                samples=tuple(e[2] for e in entries) if run_id is not None else None,
                origin=origin))
        return labels

    def labelled_runs(self) -> list[int]:
        """Ids of the runs that have labels, oldest first."""
        with self._reading() as conn:
            return [run_id for (run_id,) in conn.execute(
                "SELECT DISTINCT l.run_id FROM labels l JOIN runs r ON r.id = l.run_id"
                " ORDER BY r.created_at, r.id")]

    # -- model files ---------------------------------------------------------------------------

    def model_sha256(self, path: str | Path) -> str | None:
        """The file's sha256, cached by (path, size, mtime); None if it cannot be read."""
        path = str(path)
        try:
            stat = os.stat(path)
        except OSError:
            return None
        with self._reading() as conn:
            row = conn.execute(
                "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
                (path, stat.st_size, stat.st_mtime_ns),
            ).fetchone()
        if row is not None:
            return row[0]
        try:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            return None
        with self._writing() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, sha256)"
                " VALUES (?, ?, ?, ?)",
                (path, stat.st_size, stat.st_mtime_ns, digest),
            )
        return digest

    def check(self) -> str | None:
        """SQLite's own quick integrity check (reads the whole file): None when it is sound,
        else the problems in one line."""
        with self._lock:
            try:
                problems = [row[0] for row in self._conn.execute("PRAGMA quick_check(5)")]
            except sqlite3.DatabaseError as error:  # damage that stops the check itself
                return str(error)
        if problems == ["ok"]:
            return None
        # One line: the first problem SQLite names, and how many more it found (up to 5).
        lines = [line for row in problems for line in row.splitlines()
                 if line.strip() and not line.startswith("*** in database")]
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        return (lines[0] if lines else "the integrity check failed") + more


_TOO_LARGE = "a number is larger than the history can hold (at most 2**63 - 1)"


def _store_error(path: Path, error: sqlite3.DatabaseError) -> StoreError:
    message = str(error)
    if "malformed" in message or "not a database" in message:
        return StoreDamagedError(f"The history file {path.name} is damaged: {message}.")
    return StoreError(f"the history file {path.name} could not be used: {message}")


def _clean_tag(tag: str) -> str:
    clean = tag.strip()
    if not clean:
        raise StoreError("a tag cannot be empty")
    if len(clean) > MAX_TAG_LENGTH:
        raise StoreError(f"a tag is at most {MAX_TAG_LENGTH} characters")
    return clean


def _insert_run(conn: sqlite3.Connection, run: Run, sha256: str | None, created: float) -> int:
    """Insert the run and its samples as they are now; returns the new run's id."""
    cursor = conn.execute(
        "INSERT INTO runs (created_at, model_name, model_path, model_sha256, model_json,"
        " params_json, prompt, chat, system, prompt_token_ids, n_samples, rankings_json,"
        " vote_json, reward_models_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (created, run.model.name, run.model.path, sha256, json.dumps(asdict(run.model)),
         _params_json(run.params), run.prompt, int(run.chat), run.system,
         _ids_blob(run.prompt_token_ids), len(run.samples), _rankings_json(run.rankings),
         _vote_json(run.vote), _reward_models_json(run.reward_models)),
    )
    run_id = cursor.lastrowid
    assert run_id is not None
    for sample in run.samples:
        finished = sample.finish_reason is not None
        conn.execute(
            "INSERT INTO samples (run_id, idx, seed, text, finish_reason, scores_json, n_tokens,"
            " tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, sample.index, sample.seed, sample.text if finished else "",
             sample.finish_reason, json.dumps(sample.scores), len(sample.tokens),
             encode_tokens(sample.tokens) if finished else None),
        )
        if not finished and sample.tokens:
            conn.execute(
                "INSERT INTO token_chunks (run_id, idx, chunk, tokens) VALUES (?, ?, 0, ?)",
                (run_id, sample.index, encode_tokens(sample.tokens)),
            )
    return run_id


# ---------------------------------------------------------------------------------------------
# Writing as it goes


class RunWriter:
    """Takes a run's events and records them as they come. Made by `Store.begin`.

    It has its own connection, so it may be handed to the worker thread that generates (used by
    one thread at a time). Close it when generation ends for any reason; after `RunEnd` it
    closes itself. A writer dropped without closing releases the run when collected.
    """

    def __init__(
        self,
        path: Path,
        run: Run,
        sha256: str | None,
        *,
        flush_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self._path = path
        self._conn = _connect(path)
        self._clock = clock
        self._interval = flush_interval
        # Tokens of unfinished samples: all of them (SampleEnd keeps a prefix), and how many
        # of them are already on disk, in how many chunks.
        self._streams: dict[int, list[TokenRecord]] = {}
        self._flushed: dict[int, int] = {}
        self._chunks: dict[int, int] = {}
        for sample in run.samples:
            if sample.finish_reason is None:
                self._streams[sample.index] = list(sample.tokens)
                self._flushed[sample.index] = len(sample.tokens)
                self._chunks[sample.index] = 1 if sample.tokens else 0
        with self._writing() as conn:
            self.run_id = _insert_run(conn, run, sha256, time.time())
        self._key = (os.path.realpath(path), self.run_id)
        with _OPEN_WRITERS_LOCK:
            _OPEN_WRITERS.add(self._key)
        self._closed = False
        self._release = weakref.finalize(self, _release_writer, self._key, self._conn)
        self._last_flush = clock()

    def add(self, event: Event) -> None:
        """Record one engine event; writes streamed tokens if the last write is a second old."""
        if self._closed:
            raise StoreError("this run's recording is already closed")
        if isinstance(event, TokenRecord):
            self._streams[event.sample].append(event)
        elif isinstance(event, SampleEnd):
            self._end_sample(event)
        elif isinstance(event, RunEnd):
            self._end_run(event)
            return
        if self._clock() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        """Write the streamed tokens not yet on disk, as one chunk per sample."""
        rows = []
        for index, tokens in self._streams.items():
            done = self._flushed[index]
            if len(tokens) > done:
                rows.append((self.run_id, index, self._chunks[index],
                             encode_tokens(tokens[done:])))
                self._flushed[index] = len(tokens)
                self._chunks[index] += 1
        if rows:
            with self._writing() as conn:
                conn.executemany(
                    "INSERT INTO token_chunks (run_id, idx, chunk, tokens) VALUES (?, ?, ?, ?)",
                    rows,
                )
        self._last_flush = self._clock()

    def _end_sample(self, event: SampleEnd) -> None:
        tokens = self._streams.pop(event.sample)[: event.n_tokens]
        del self._flushed[event.sample], self._chunks[event.sample]
        with self._writing() as conn:
            conn.execute(
                "UPDATE samples SET text = ?, finish_reason = ?, n_tokens = ?, tokens = ?"
                " WHERE run_id = ? AND idx = ?",
                (event.text, event.finish_reason, len(tokens), encode_tokens(tokens),
                 self.run_id, event.sample),
            )
            conn.execute(
                "DELETE FROM token_chunks WHERE run_id = ? AND idx = ?",
                (self.run_id, event.sample),
            )

    def _end_run(self, event: RunEnd) -> None:
        self.flush()
        with self._writing() as conn:
            conn.execute(
                "UPDATE runs SET finished_at = ?, stats_json = ? WHERE id = ?",
                (time.time(), _stats_json(event.stats), self.run_id),
            )
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        try:
            with _transaction(self._conn) as conn:
                yield conn
        except sqlite3.DatabaseError as error:
            raise _store_error(self._path, error) from None

    def close(self) -> None:
        """Write what is left and let go of the run (which lists as interrupted if unfinished)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release_writer(key: tuple[str, int], conn: sqlite3.Connection) -> None:
    with _OPEN_WRITERS_LOCK:
        _OPEN_WRITERS.discard(key)
    conn.close()

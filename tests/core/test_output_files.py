"""Outputs written to paths that are not regular files: written through where a Unix user expects
it (a FIFO, a character device, /dev/stdout, a symlink), refused otherwise, never replaced."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import store_writer as sw
import tiny_models

from playground.export import export_runs
from playground.files import FileKindError, output_file
from playground.reward import pack_reward_model
from playground.store import Store

RUNS = [sw.synthetic_run(2, 6, seed=1), sw.synthetic_run(3, 4, seed=2)]


def expected_jsonl(tmp_path: Path) -> bytes:
    plain = tmp_path / "plain.jsonl"
    export_runs(RUNS, None, "jsonl", plain)
    return plain.read_bytes()


def test_a_fifo_is_written_through(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    export_runs(RUNS, None, "jsonl", fifo)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert received == [expected_jsonl(tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "plain.jsonl"]


def test_a_character_device_is_written_through(tmp_path: Path) -> None:
    export_runs(RUNS, None, "csv", Path("/dev/null"))
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_symlink_stays_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "data" / "runs.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    export_runs(RUNS, None, "jsonl", link)
    assert link.is_symlink() and link.resolve() == target
    assert target.read_bytes() == expected_jsonl(tmp_path)


def test_dev_stdout_in_a_real_process(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    with Store(db) as store:
        for run in RUNS:
            store.save(run)
    result = subprocess.run(
        [sys.executable, "-m", "playground", "export", "1", "2", "-f", "jsonl", "-o",
         "/dev/stdout", "--db", str(db)],
        capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b"\n") == 5  # one line per sample
    assert b"wrote 5 records" in result.stderr


def test_a_regular_file_is_replaced_whole_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("old\n")
    path.chmod(0o640)
    export_runs(RUNS, None, "jsonl", path)
    assert path.read_bytes() == expected_jsonl(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with pytest.raises(RuntimeError), output_file(path, encoding="utf-8") as f:
        f.write("half")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == expected_jsonl(tmp_path)  # a failed write changes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.jsonl", "runs.jsonl"]


@pytest.mark.parametrize("kind", ["directory", "symlink to a directory", "block device",
                                  "socket"])
def test_other_kinds_are_refused_and_left_alone(kind: str, tmp_path: Path) -> None:
    if kind == "directory":
        path = tmp_path / "folder"
        path.mkdir()
    elif kind == "symlink to a directory":
        (tmp_path / "folder").mkdir()
        path = tmp_path / "link"
        path.symlink_to(tmp_path / "folder")
    elif kind == "block device":
        blocks = [p for p in Path("/dev").iterdir()
                  if p.exists() and stat.S_ISBLK(p.stat().st_mode)]
        if not blocks:
            pytest.skip("no block device here")
        path = blocks[0]
    else:
        import socket

        path = tmp_path / "socket"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    before = path.lstat()
    with pytest.raises(FileKindError) as error:
        export_runs(RUNS, None, "jsonl", path)
    assert "\n" not in str(error.value) and "cannot write" in str(error.value)
    after = path.lstat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_reward_pack_writes_through_a_symlink_and_refuses_a_device(tmp_path: Path) -> None:
    backbone = tiny_models.write_tiny_llama(tmp_path / "backbone.gguf")
    head = tmp_path / "head.npy"
    np.save(head, np.ones(tiny_models.N_EMBD, dtype=np.float32))
    target = tmp_path / "out" / "rm.gguf"
    target.parent.mkdir()
    link = tmp_path / "rm.gguf"
    link.symlink_to(target)
    pack_reward_model(backbone, head, link)
    assert link.is_symlink() and target.read_bytes()[:4] == b"GGUF"
    with pytest.raises(FileKindError, match="character device"):
        pack_reward_model(backbone, head, Path("/dev/null"))
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)

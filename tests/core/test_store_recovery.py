"""A history damaged anywhere: found at open, set aside byte for byte, and every run that can
still be read copied into a fresh file that later runs are saved to. Damaged files are made by
overwriting pages of a real history."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest
import store_writer as sw

from playground.files import FileKindError
from playground.records import Run
from playground.store import Store, StoreDamagedError, open_store

PAGE = 4096
N_RUNS = 12


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[int, Run]]:
    """The bytes of a history of runs small and large (tokens spill into overflow pages), and
    the runs by id."""
    path = tmp_path_factory.mktemp("history") / "history.sqlite"
    runs = {}
    with Store(path) as store:
        for i in range(N_RUNS):
            run = sw.synthetic_run(1 + i % 4, [5, 40, 300][i % 3], seed=i)
            runs[store.save(run)] = run
        store.add_tags(1, "kept")
    assert not Path(f"{path}-wal").exists()
    return path.read_bytes(), runs


def damaged_copy(folder: Path, whole: bytes, pages: list[int], seed: int) -> Path:
    data = bytearray(whole)
    rng = random.Random(seed)
    for page in pages:
        data[page * PAGE : (page + 1) * PAGE] = rng.randbytes(PAGE)
    path = folder / "history.sqlite"
    path.write_bytes(bytes(data))
    return path


def test_the_history_spans_many_pages(history: tuple[bytes, dict[int, Run]]) -> None:
    assert len(history[0]) // PAGE > 40


@pytest.mark.parametrize("where", [0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 0.999, "two", "ten"])
def test_damage_anywhere_is_found_and_recovered(where: float | str, tmp_path: Path,
                                                history: tuple[bytes, dict[int, Run]]) -> None:
    whole, runs = history
    n_pages = len(whole) // PAGE
    pages = {"two": [n_pages // 3, 2 * n_pages // 3],
             "ten": random.Random(1).sample(range(1, n_pages), 10)}.get(where)
    if pages is None:
        pages = [max(1, int(n_pages * where))]
    path = damaged_copy(tmp_path, whole, pages, seed=len(pages))
    damaged = path.read_bytes()

    store, message = open_store(path)
    assert message is not None and "\n" not in message and "damaged" in message
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("history.sqlite.damaged-")]
    assert len(kept) == 1 and str(kept[0]) in message
    assert kept[0].read_bytes() == damaged  # the original, byte for byte
    assert store.check() is None
    recovered = {s.id: store.load(s.id) for s in store.list_runs()}
    assert all(recovered[i] == runs[i] for i in recovered)  # what comes back is whole and right
    if len(pages) == 1:  # one bad page costs a few runs at most
        assert len(recovered) >= N_RUNS - 4, message
    assert f"{len(recovered)} run" in message or not recovered
    # Later runs are saved, and the next open finds nothing wrong.
    new = sw.synthetic_run(2, 10, seed=99)
    assert store.load(store.save(new)) == new
    store.close()
    again, notice = open_store(path)
    assert notice is None and len(again.list_runs()) == len(recovered) + 1
    again.close()


def test_before_the_fix_damage_blocked_every_later_run(tmp_path: Path,
                                                      history: tuple[bytes, dict[int, Run]]):
    """The damage that SQLite only reports on reading the page: a plain Store opens the file
    and then fails, which is why open_store checks the whole file."""
    whole, _ = history
    path = damaged_copy(tmp_path, whole, [len(whole) // PAGE // 2], seed=0)
    with Store(path) as plain, pytest.raises(StoreDamagedError, match="malformed"):
        for summary in plain.list_runs():
            plain.load(summary.id)
    store, message = open_store(path)
    assert message is not None
    store.save(sw.synthetic_run(1, 5))
    store.close()


def test_a_damaged_history_behind_a_symlink(tmp_path: Path,
                                            history: tuple[bytes, dict[int, Run]]) -> None:
    whole, _ = history
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    path = damaged_copy(real_dir, whole, [len(whole) // PAGE // 2], seed=0)
    link = tmp_path / "history.sqlite"
    link.symlink_to(path)
    store, message = open_store(link)
    store.close()
    assert message is not None
    assert link.is_symlink() and link.resolve() == path  # the link is still the link
    assert any(p.name.startswith("history.sqlite.damaged-") for p in real_dir.iterdir())


@pytest.mark.parametrize("kind", ["char device", "fifo", "directory"])
def test_a_path_that_is_not_a_file_is_refused_and_left_alone(kind: str, tmp_path: Path) -> None:
    if kind == "char device":
        path = Path("/dev/null")
    elif kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    else:
        path = tmp_path / "folder"
        path.mkdir()
    mode = path.stat().st_mode
    with pytest.raises(FileKindError) as error:
        open_store(path)
    assert "not a regular file" in str(error.value) and "\n" not in str(error.value)
    assert path.stat().st_mode == mode and stat.S_IFMT(mode) != stat.S_IFREG
    assert not list(path.parent.glob(f"{path.name}.damaged-*"))

"""Catalog downloads against a local server laid out like the Hugging Face Hub (HF_ENDPOINT)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from local_hub import COMMIT, LocalHub, closed_port, isolate_hub_client

from playground import cli, paths
from playground.catalog import CatalogModel, catalog_model, catalog_models, discover
from playground.download import CHUNK, download, is_downloaded, partial_path, partial_size
from playground.errors import Cancelled, DownloadError
from playground.units import human_size

REPO = "test-org/tiny-GGUF"
BIG = os.urandom(2 * CHUNK + 12345)


@pytest.fixture(autouse=True)
def hub_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_hub_client(monkeypatch, tmp_path)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    server = LocalHub()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    yield server
    server.close()


def entry(content: bytes, *, file: str = "tiny.gguf", sha256: str | None = None,
          revision: str | None = COMMIT) -> CatalogModel:
    return CatalogModel(id="tiny", name="Tiny", role="generator", source="huggingface",
                        license="MIT", file=file, size_bytes=len(content),
                        sha256=sha256 or hashlib.sha256(content).hexdigest(), repo=REPO,
                        revision=revision)


def files_under(folder: Path) -> list[Path]:
    """The files in the folder, but for the downloads' empty lock files."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not (p.suffix == ".lock" and p.stat().st_size == 0))


def test_a_download_lands_in_the_models_folder_checked(hub, tiny_model_path, isolated_data_dir):
    content = tiny_model_path.read_bytes()
    hub.add(REPO, "tiny.gguf", content)
    model = entry(content)
    seen: list[tuple[int, int]] = []

    result = download(model, lambda done, total: seen.append((done, total)))

    assert result.path == paths.user_models_dir() / "tiny.gguf"
    assert result.path.read_bytes() == content
    assert (result.commit, result.resumed_from, result.fetched_bytes) == (COMMIT, 0, len(content))
    assert seen[-1] == (len(content), len(content))
    assert files_under(isolated_data_dir) == [result.path]  # no partial left behind
    assert [(r.server, r.method, r.path, r.range) for r in hub.requests] == [
        ("hub", "HEAD", f"/{REPO}/resolve/{COMMIT}/tiny.gguf", None),
        ("cdn", "GET", f"/blobs/{model.sha256}", None),
    ]
    assert is_downloaded(model)
    # The chooser's discovery reads it as the model it is.
    found = {m.path: m for m in discover()}[result.path]
    assert found.source == "user" and found.info is not None and found.info.parameters > 0


def test_a_file_stored_on_xet_comes_through_resolve_over_plain_http(hub):
    hub.add(REPO, "tiny.gguf", b"bytes stored on Xet")
    hub.xet = True

    result = download(entry(b"bytes stored on Xet"))

    assert result.path.read_bytes() == b"bytes stored on Xet"
    resolve = f"/{REPO}/resolve/{COMMIT}/tiny.gguf"
    assert [(r.server, r.method, r.path) for r in hub.requests] == [
        ("hub", "HEAD", resolve), ("hub", "GET", resolve),
        ("cdn", "GET", f"/blobs/{result.sha256}")]


def test_a_cut_connection_resumes_with_a_range_request(hub):
    model = entry(BIG)
    hub.add(REPO, "tiny.gguf", BIG)
    hub.cut_after = CHUNK + CHUNK // 2  # once, in the middle of the second chunk

    result = download(model)

    assert result.path.read_bytes() == BIG
    first, second = hub.gets()
    assert first.range is None
    # What had reached the disk (the whole first chunk) is not fetched again.
    assert second.range == f"bytes={CHUNK}-"


def test_a_cancelled_download_resumes_where_it_stopped(hub):
    model = entry(BIG)
    hub.add(REPO, "tiny.gguf", BIG)
    seen: list[int] = []

    with pytest.raises(Cancelled):
        download(model, lambda done, total: seen.append(done), cancelled=lambda: bool(seen))
    assert partial_size(model) == CHUNK
    assert partial_path(model).read_bytes() == BIG[:CHUNK]
    assert not is_downloaded(model)

    result = download(model)

    assert hub.gets()[-1].range == f"bytes={CHUNK}-"
    assert (result.resumed_from, result.fetched_bytes) == (CHUNK, len(BIG) - CHUNK)
    assert result.path.read_bytes() == BIG
    assert not partial_path(model).exists()


@pytest.mark.parametrize("kept", [0, CHUNK], ids=["before the headers", "mid-file"])
def test_cancel_on_a_stalled_line_stops_at_once_and_resume_goes_on(hub, kept):
    model = entry(BIG)
    hub.add(REPO, "tiny.gguf", BIG)
    if kept:
        hub.stall_after = kept + 1000  # a chunk reaches the disk, then nothing more comes
    else:
        hub.stall_headers = True
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            download(model, cancelled=cancel.is_set)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not (hub.gets() and partial_size(model) == kept) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # the read is blocked on the stalled line by now
    start = time.monotonic()
    cancel.set()
    thread.join(30)
    took = time.monotonic() - start

    # huggingface_hub's http_get took 10.6 s here: its 10 s read timeout, then a retry.
    assert took < 3, f"the cancel took {took:.1f} s"
    assert [type(error) for error in outcome] == [Cancelled]
    assert partial_path(model).read_bytes() == BIG[:kept]
    result = download(model)
    assert hub.gets()[-1].range == (f"bytes={kept}-" if kept else None)
    assert result.path.read_bytes() == BIG


def test_a_server_that_ignores_the_range_sends_it_all_again(hub):
    model = entry(BIG)
    hub.add(REPO, "tiny.gguf", BIG)
    seen: list[int] = []
    with pytest.raises(Cancelled):
        download(model, lambda done, total: seen.append(done), cancelled=lambda: bool(seen))
    hub.ignore_range = True

    result = download(model)

    assert hub.gets()[-1].range == f"bytes={CHUNK}-"  # asked, and got the whole file
    assert result.path.read_bytes() == BIG


def test_a_connection_that_keeps_breaking_keeps_what_arrived(hub):
    model = entry(BIG)
    hub.add(REPO, "tiny.gguf", BIG)
    seen: list[int] = []
    with pytest.raises(Cancelled):
        download(model, lambda done, total: seen.append(done), cancelled=lambda: bool(seen))
    hub.cut_after, hub.cuts = CHUNK // 2, 99  # never a whole chunk again

    stopped = f"stopped at {human_size(CHUNK)} of {human_size(len(BIG))}"
    with pytest.raises(DownloadError, match=rf"^the download of tiny.gguf {stopped} \(.*\); "
                                            "what arrived is kept"):
        download(model)

    assert len(hub.gets()) == 1 + 6  # huggingface_hub tried five times more
    assert partial_path(model).read_bytes() == BIG[:CHUNK]


def test_one_download_of_a_model_at_a_time(hub):
    import filelock

    model = entry(b"content")
    with filelock.FileLock(partial_path(model).with_suffix(".lock")), \
            pytest.raises(DownloadError, match="tiny is being downloaded already"):
        download(model)
    assert hub.requests == []


def test_a_checksum_mismatch_is_rejected_and_nothing_half_written_remains(hub,
                                                                         isolated_data_dir):
    model = entry(BIG)
    hub.add(REPO, "tiny.gguf", BIG)
    hub.corrupt = True  # one byte flipped in transit; the headers still claim the right sha256

    with pytest.raises(DownloadError, match=r"arrived with sha256 \w+…, not the catalog's .* "
                                            r"and was deleted"):
        download(model)

    assert len(hub.gets()) == 1  # it was all downloaded, then rejected
    assert files_under(isolated_data_dir) == []


def test_a_file_that_is_not_the_catalogs_is_refused_before_it_is_downloaded(hub,
                                                                            isolated_data_dir):
    model = catalog_model("qwen2.5-0.5b-instruct")  # the real catalog's entry
    assert model.repo and model.file
    hub.add(model.repo, model.file, b"not the 491 MB of Qwen", commit=model.revision or COMMIT)

    with pytest.raises(DownloadError, match=r"is not the catalog's \(size 22, sha256 \w{64}; "
                                            r"the catalog has 491400032 and"):
        download(model)

    assert hub.gets() == []
    assert files_under(isolated_data_dir) == []


@pytest.mark.parametrize(("repo", "revision", "message"), [
    (REPO, COMMIT, f"{REPO} has no file missing.gguf at revision {COMMIT}"),
    ("test-org/nothing-here", COMMIT, "has no repository test-org/nothing-here (or it is private)"),
    (REPO, "f" * 40, f"{REPO} has no revision {'f' * 40}"),
])
def test_a_missing_file_repository_or_revision_is_named(hub, repo, revision, message):
    hub.add(REPO, "tiny.gguf", b"other")
    model = CatalogModel(id="x", name="X", role="generator", source="huggingface", license="",
                         file="missing.gguf", size_bytes=5, sha256="0" * 64, repo=repo,
                         revision=revision)
    with pytest.raises(DownloadError, match=re.escape(message)):
        download(model)
    assert hub.gets() == []


def test_the_hub_down_is_said(monkeypatch, isolated_data_dir):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(DownloadError, match=f"cannot reach the Hub at {re.escape(endpoint)}: "):
        download(entry(b"content"))
    assert files_under(isolated_data_dir) == []


def test_a_file_already_in_the_models_folder_is_checked_not_replaced(hub):
    model = entry(b"the right bytes")
    target = paths.user_models_dir() / "tiny.gguf"
    target.write_bytes(b"the right bytes")
    assert download(model).fetched_bytes == 0
    target.write_bytes(b"a user's own file")

    with pytest.raises(DownloadError, match="is there and is not the catalog's tiny"):
        download(model)

    assert target.read_bytes() == b"a user's own file"
    assert hub.requests == []


def test_the_catalog_says_where_each_download_comes_from():
    models = catalog_models()
    assert len({m.id for m in models}) == len(models)
    downloadable = [m for m in models if m.downloadable]
    assert len(downloadable) >= 5
    raw = {e["id"]: e for e in json.loads(paths.catalog_file().read_text())["models"]}
    for m in downloadable:
        assert raw[m.id]["url"] == f"https://huggingface.co/{m.repo}/resolve/main/{m.file}"
        assert re.fullmatch(r"[0-9a-f]{64}", m.sha256 or "")
    # bge-reranker's sha256 is unknown, so it is not downloaded unchecked.
    assert not catalog_model("bge-reranker-v2-m3").downloadable


# -- the command line ------------------------------------------------------------------------

@pytest.fixture
def test_catalog(tmp_path, monkeypatch, tiny_model_path):
    content = tiny_model_path.read_bytes()
    model = entry(content).to_json() | {"id": "tiny"}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"version": 1, "models": [model]}))
    monkeypatch.setattr(paths, "catalog_file", lambda: path)
    return content


def test_cli_downloads_with_progress_on_stderr_and_a_json_result(hub, test_catalog, capsys):
    hub.add(REPO, "tiny.gguf", test_catalog)

    assert cli.main(["models", "--download", "tiny", "--json"]) == 0

    out, err = capsys.readouterr()
    result = json.loads(out)["download"]
    assert Path(result["path"]).read_bytes() == test_catalog
    assert result["sha256"] == hashlib.sha256(test_catalog).hexdigest()
    assert result["commit"] == COMMIT
    assert err.strip().endswith("(100%)") and "tiny: " in err


@pytest.mark.parametrize(("args", "message"), [
    (["--download", "no-such-model"], "no model 'no-such-model' in the catalog; downloadable: "),
    (["--download", "smollm2-135m-instruct"], "it is installed from PyPI by dev.py"),
])
def test_cli_refuses_what_it_cannot_download_in_one_line(hub, capsys, args, message):
    assert cli.main(["models", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_says_a_404_in_one_line(hub, test_catalog, capsys):
    hub.add(REPO, "other.gguf", b"another file of the repository")
    assert cli.main(["models", "--download", "tiny"]) == 1
    err = capsys.readouterr().err
    assert err == f"playground: {REPO} has no file tiny.gguf at revision {COMMIT}\n"


def test_cli_lists_the_catalog_models_not_downloaded_yet(test_catalog, capsys):
    assert cli.main(["models"]) == 0
    assert "\n  tiny " in capsys.readouterr().out
    (paths.user_models_dir() / "tiny.gguf").write_bytes(test_catalog)
    assert cli.main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "[user]" in listing and "\n  tiny " not in listing

"""The catalog's models from the Hugging Face Hub, checked against the catalog's sha256.

A download is written to `downloads/` in the data folder and moved into the models folder only
once its sha256 is the catalog's; a file with another checksum is deleted, so the models folder
holds only checked files. What a cancelled or broken-off download wrote stays in `downloads/`,
and the next download of that model resumes from it (an HTTP Range request).

huggingface_hub does the Hub's part. `get_hf_file_metadata` resolves the file at the catalog's
revision: HEAD /resolve, the Hub's redirect to its CDN, and the headers X-Repo-Commit,
X-Linked-Etag and X-Linked-Size. `_stream` fetches the bytes as its `http_get` does (a Range
request from a given offset, again when the connection breaks, up to five times in a row), with
a Cancel that acts at once, even on a stalled line. `hf_hub_download` is not used: it deletes
its partial file on any failure, so a cancelled download could not resume. HF_ENDPOINT points
downloads at another Hub (a mirror, or the tests' local one); a token from `hf auth login` or
HF_TOKEN is sent to the Hub and never to its CDN.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playground import __version__, paths
from playground.catalog import CatalogModel
from playground.errors import Cancelled, DownloadError
from playground.units import human_size

Progress = Callable[[int, int], None]
"""progress(bytes on disk, size of the file)"""
IsCancelled = Callable[[], bool]

LIBRARY = "sampling-playground"
CHUNK = 1 << 20
"""Bytes between two progress reports (and two looks at Cancel) of a download, and of the
checksum. huggingface_hub's own 10 MB would be 10 s on a slow line."""
TRIES = 5
"""Times a download starts again from what reached the disk when its connection breaks before
another chunk arrived (huggingface_hub's number)."""
RETRY_PAUSE = 1.0
"""Seconds between two tries (huggingface_hub's)."""
POLL = 0.05
"""Seconds between two looks at Cancel while a download waits for bytes: at most this long, and
a stalled line cannot hold a Cancel, or quitting, any longer."""
RESUMES = "Download cancelled; the next download resumes from where it was."
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Downloaded:
    model_id: str
    path: Path
    sha256: str
    size_bytes: int
    commit: str | None
    """The commit the Hub served the file from; None when nothing was fetched."""
    resumed_from: int
    """Bytes an earlier download had left, that this one did not fetch again."""
    fetched_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.model_id, "path": str(self.path), "sha256": self.sha256,
                "size_bytes": self.size_bytes, "commit": self.commit,
                "resumed_from": self.resumed_from, "fetched_bytes": self.fetched_bytes}


def target_path(model: CatalogModel) -> Path:
    """Where the checked file goes: the models folder in the data folder."""
    assert model.file is not None
    return paths.user_models_dir() / model.file


def partial_path(model: CatalogModel) -> Path:
    """Where the download is written until it is checked. The checksum is in the name, so what
    another version of the file left is never resumed."""
    assert model.file is not None and model.sha256 is not None
    return paths.data_dir() / "downloads" / f"{model.file}.{model.sha256[:12]}.part"


def partial_size(model: CatalogModel) -> int:
    """Bytes an unfinished download of the model left (0: none)."""
    with contextlib.suppress(OSError):
        return partial_path(model).stat().st_size
    return 0


def is_downloaded(model: CatalogModel) -> bool:
    """Whether the model's file is in the models folder. Only checked files are moved there, so
    its size is enough to tell; `download` checks the sha256 of a file it finds there."""
    if not model.downloadable:
        return False
    target = target_path(model)
    return target.is_file() and target.stat().st_size == model.size_bytes


def download(model: CatalogModel, progress: Progress | None = None,
             cancelled: IsCancelled | None = None) -> Downloaded:
    """Download the model's GGUF into the models folder, resuming what an earlier download left,
    and check its sha256. Raises Cancelled once `cancelled()` turns True (what was written is
    kept for the next download) and DownloadError, whose message says what to do, for the rest.
    """
    progress = progress or (lambda done, total: None)
    cancelled = cancelled or (lambda: False)
    if not model.downloadable:
        why = ("it is installed from PyPI by dev.py" if model.source == "pypi"
               else "it has no single GGUF on the Hub" if model.file is None
               else "the catalog has no sha256 to check it against")
        raise DownloadError(f"{model.id} cannot be downloaded: {why}")
    assert model.size_bytes is not None and model.sha256 is not None
    target = target_path(model)
    if target.exists():
        if _sha256(target, cancelled) != model.sha256:
            raise DownloadError(f"{target} is there and is not the catalog's {model.id} (its "
                                "sha256 differs): move it away to download")
        return Downloaded(model.id, target, model.sha256, model.size_bytes, None, 0, 0)
    partial = partial_path(model)
    partial.parent.mkdir(exist_ok=True)
    with _only_download(model, partial):
        have = partial_size(model)
        if have > model.size_bytes:  # not a prefix of this file
            partial.unlink()
            have = 0
        commit = None
        if have < model.size_bytes:
            commit = _fetch(model, partial, have, progress, cancelled)
        progress(model.size_bytes, model.size_bytes)
        digest = _sha256(partial, cancelled)
        if digest != model.sha256:
            partial.unlink()
            raise DownloadError(f"{model.file} arrived with sha256 {digest[:16]}…, not the "
                                f"catalog's {model.sha256[:16]}…, and was deleted")
        try:
            os.replace(partial, target)
        except OSError as error:  # e.g. a models folder linked to another disk
            raise DownloadError(f"cannot move the checked {partial} to {target}: "
                                f"{error.strerror}") from None
    return Downloaded(model.id, target, digest, model.size_bytes, commit, have,
                      model.size_bytes - have)


@contextlib.contextmanager
def _only_download(model: CatalogModel, partial: Path) -> Iterator[None]:
    """Hold the partial file's lock: two downloads of one model (the app's and the command
    line's) would append to the same file. The empty lock file stays beside it."""
    import filelock

    try:
        with filelock.FileLock(partial.with_suffix(".lock"), timeout=0):
            yield
    except filelock.Timeout:
        raise DownloadError(f"{model.id} is being downloaded already (by this app or another "
                            "playground)") from None


def _fetch(model: CatalogModel, partial: Path, have: int, progress: Progress,
           cancelled: IsCancelled) -> str | None:
    """Append the rest of the file to `partial`; return the commit the Hub served it from."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    assert model.repo and model.file and model.size_bytes
    # Read at each download, not when huggingface_hub was imported.
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    revision = model.revision or "main"
    url = hf_hub_url(model.repo, model.file, revision=revision, endpoint=endpoint)
    with _hub_errors(model, endpoint, revision, partial):
        meta = get_hf_file_metadata(url, library_name=LIBRARY, library_version=__version__)
        etag = meta.etag if meta.etag and SHA256.fullmatch(meta.etag) else None
        if meta.size not in (None, model.size_bytes) or etag not in (None, model.sha256):
            raise DownloadError(
                f"the Hub's {model.file} at {revision} is not the catalog's (size {meta.size}, "
                f"sha256 {etag}; the catalog has {model.size_bytes} and {model.sha256}): "
                "nothing was downloaded")
        free = shutil.disk_usage(partial.parent).free
        if free < model.size_bytes - have:
            raise DownloadError(f"{model.file} needs {human_size(model.size_bytes - have)} "
                                f"and {partial.parent} has {human_size(free)} free")
        # As huggingface_hub does without hf_xet: a Xet-stored file comes through /resolve
        # again (the Hub redirects it to its Xet bridge), any other from the CDN's signed URL,
        # which gets no token.
        source = url if meta.xet_file_data is not None else meta.location
        headers = build_hf_headers(library_name=LIBRARY, library_version=__version__)
        if urlsplit(source).netloc != urlsplit(url).netloc:
            headers.pop("authorization", None)
        _stream(source, headers, partial, have, model.size_bytes, progress, cancelled)
    return meta.commit_hash


def _stream(source: str, headers: dict[str, str], partial: Path, have: int, size: int,
            progress: Progress, cancelled: IsCancelled) -> None:
    """Append the file's bytes from `have` on to `partial`, a whole CHUNK at a time, as
    huggingface_hub's `http_get` does, which waits out its 10 s read timeout on a stalled line
    (and then tries again) before it looks at Cancel."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    tries = TRIES
    with partial.open("ab") as file, _Cutter(cancelled) as cutter:
        while True:
            if cancelled():
                raise Cancelled(RESUMES)
            ranged = {**headers, "Range": f"bytes={have}-"} if have else headers
            try:
                with http_stream_backoff("GET", source, headers=ranged,
                                         timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT,
                                         retry_on_exceptions=(), retry_on_status_codes=(408, 429),
                                         extensions={"trace": cutter.trace}) as response:
                    cutter.watch(response.extensions.get("network_stream"))  # a pooled one
                    hf_raise_for_status(response)
                    if have and response.status_code == 200:  # the server ignored the Range
                        file.truncate(0)
                        have = 0
                    for chunk in response.iter_bytes(CHUNK):
                        if cancelled():
                            raise Cancelled(RESUMES)
                        file.write(chunk)
                        have += len(chunk)
                        tries = TRIES
                        progress(have, size)
                break
            except httpx2.TransportError as error:
                if cancelled():  # the connection was cut by the cancel
                    raise Cancelled(RESUMES) from None
                retried = (httpx2.ConnectError, httpx2.TimeoutException,
                           httpx2.RemoteProtocolError)
                if tries == 0 or not isinstance(error, retried):
                    raise
                tries -= 1
                cutter.cut.wait(RETRY_PAUSE)
    if have != size:
        raise OSError(f"the server sent {have} bytes of {size}")  # _hub_errors says it


class _Cutter:
    """Cuts a download's connections once it is cancelled, from a thread of its own that looks
    at Cancel every POLL s: shutting a socket down wakes a read blocked on it at once (closing
    it would not), and the read ends as a broken connection."""

    def __init__(self, cancelled: IsCancelled) -> None:
        self._cancelled = cancelled
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self.cut = threading.Event()
        """Set once the download was cancelled."""
        self._thread = threading.Thread(target=self._watch, name="download cancel", daemon=True)

    def __enter__(self) -> _Cutter:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace extension: each new connection, before its request waits for the
        response, so that a server that stalls before its headers is cut too."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.watch(info["return_value"])

    def watch(self, stream: Any) -> None:
        """Cut this connection (an httpcore network stream) on cancel."""
        if stream is not None:
            self._sockets.append(stream.get_extra_info("socket"))

    def _watch(self) -> None:
        while not self._done.wait(POLL):
            if self._cancelled():
                self.cut.set()
                while self._sockets:  # until the download ends: one may open meanwhile
                    with contextlib.suppress(OSError):  # closed already
                        self._sockets.pop().shutdown(socket.SHUT_RDWR)


def _sha256(path: Path, cancelled: IsCancelled) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            if cancelled():
                raise Cancelled()
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _hub_errors(model: CatalogModel, endpoint: str, revision: str,
                partial: Path) -> Iterator[None]:
    """huggingface_hub's and the network's errors as one line that says what to do."""
    import httpx2
    from huggingface_hub import errors as hub

    kept = "what arrived is kept and the next download resumes from it"
    try:
        yield
    except hub.GatedRepoError:
        raise DownloadError(f"{model.repo} is gated: accept its terms on the Hub and log in "
                            "(`hf auth login`) to download it") from None
    except hub.RepositoryNotFoundError:
        raise DownloadError(f"the Hub at {endpoint} has no repository {model.repo} (or it is "
                            "private)") from None
    except hub.RevisionNotFoundError:
        raise DownloadError(f"{model.repo} has no revision {revision}") from None
    except hub.RemoteEntryNotFoundError:
        raise DownloadError(f"{model.repo} has no file {model.file} at revision "
                            f"{revision}") from None
    except hub.HfHubHTTPError as error:
        status = error.response.status_code
        said = error.server_message or error.response.reason_phrase
        raise DownloadError(f"the Hub at {endpoint} answered {status} for {model.file}: "
                            f"{_one_line(said)}") from None
    except hub.FileMetadataError as error:
        raise DownloadError(_one_line(str(error))) from None
    except hub.OfflineModeIsEnabled:
        raise DownloadError("HF_HUB_OFFLINE is set: unset it to download") from None
    except httpx2.ConnectError as error:
        raise DownloadError(f"cannot reach the Hub at {endpoint}: {_one_line(str(error))}") \
            from None
    except httpx2.TransportError as error:  # a timeout, or a connection that broke for good
        done = partial_size(model)
        raise DownloadError(f"the download of {model.file} stopped at {human_size(done)} of "
                            f"{human_size(model.size_bytes or 0)} ({_one_line(str(error))}); "
                            f"{kept}") from None
    except OSError as error:
        if error.errno is not None:  # the disk's, not the download's
            raise DownloadError(f"cannot write {partial}: {error.strerror}") from None
        # _stream's check that the server sent the whole file
        raise DownloadError(f"the download of {model.file} ended at "
                            f"{human_size(partial_size(model))} of "
                            f"{human_size(model.size_bytes or 0)}; {kept}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "no message"

"""A local HTTP server laid out like the Hugging Face Hub, for the download tests (HF_ENDPOINT).

Two servers, as on the Hub: the Hub answers HEAD/GET /{repo}/resolve/{revision}/{file} with a
302 to its CDN and the headers huggingface_hub reads from that redirect (X-Repo-Commit,
X-Linked-Etag: the sha256 of an LFS file, X-Linked-Size, ETag), or with the Hub's errors (401
RepoNotFound, 404 RevisionNotFound / EntryNotFound, with X-Error-Code). The CDN, on another port
(so another origin, which huggingface_hub does not send a token to), serves the bytes with Range
requests. Faults are set on the hub between requests: `cut_after` bytes (the connection closes
mid-body, `cuts` times), `corrupt` (one byte flipped, the headers still claim the true sha256),
`ignore_range` (a 200 with the whole file, as some proxies answer a Range request),
`xet` (Xet-stored files), `chunk_delay` (seconds between 256 KiB pieces, a slow line),
`stall_after` bytes (then nothing more, the connection held open until `close`: a stalled line,
once), `stall_headers` (as much, before the headers). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PIECE = 1 << 18


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None


@dataclass
class LocalHub:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    """(repo, file name) -> content, at the revisions "main" and the repo's commit."""
    commits: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    cuts: int = 1
    corrupt: bool = False
    ignore_range: bool = False
    xet: bool = False
    """Say that files are stored on Xet (X-Xet-Hash), as most of the Hub's large files are."""
    chunk_delay: float = 0.0
    stall_after: int | None = None
    stall_headers: bool = False
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._closing = threading.Event()
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, name))
                         for name in ("hub", "cdn")]
        for server in self._servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_port}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_port}"

    def add(self, repo: str, name: str, content: bytes, commit: str = COMMIT) -> str:
        """Serve `content` as `name` in `repo` at `commit` (and "main"); returns its sha256."""
        self.files[(repo, name)] = content
        self.commits[repo] = commit
        sha = hashlib.sha256(content).hexdigest()
        self._blobs[sha] = content
        return sha

    def gets(self) -> list[Request]:
        return [r for r in self.requests if r.server == "cdn" and r.method == "GET"]

    def close(self) -> None:
        self._closing.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    # -- what the servers answer ------------------------------------------------------------

    def resolve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = handler.path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return _error(handler, 404, "RepoNotFound", "Repository not found")
        repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        commit = self.commits.get(repo)
        if commit is None:
            # The Hub answers 401 for a missing repository, as for a private one.
            return _error(handler, 401, "RepoNotFound", "Repository not found")
        if revision not in ("main", commit):
            return _error(handler, 404, "RevisionNotFound", "Invalid rev id")
        content = self.files.get((repo, name))
        if content is None:
            return _error(handler, 404, "EntryNotFound", "Entry not found",
                          {"X-Repo-Commit": commit})
        sha = hashlib.sha256(content).hexdigest()
        handler.send_response(302)
        handler.send_header("Location", f"{self.cdn}/blobs/{sha}")
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("X-Linked-Etag", f'"{sha}"')
        handler.send_header("X-Linked-Size", str(len(content)))
        handler.send_header("ETag", '"a-git-sha1-of-the-lfs-pointer-file"')
        if self.xet:
            handler.send_header("X-Xet-Hash", "ab" * 32)
            handler.send_header("X-Xet-Refresh-Route",
                                f"/api/models/{repo}/xet-read-token/{commit}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def blob(self, handler: BaseHTTPRequestHandler) -> None:
        content = self._blobs.get(handler.path.removeprefix("/blobs/"))
        if content is None:
            return _error(handler, 404, None, "no such blob")
        if self.stall_headers:
            self.stall_headers = False
            self._closing.wait()
            return
        if self.corrupt:
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        start = 0
        asked = handler.headers.get("Range")
        if asked and not self.ignore_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(content) - start))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if handler.command == "HEAD":
            return
        body = content[start:]
        if self.cut_after is not None:
            body = body[:self.cut_after]
            self.cuts -= 1
            self.cut_after = self.cut_after if self.cuts > 0 else None
            handler.close_connection = True
        stalled = self.stall_after is not None
        if stalled:
            body, self.stall_after = body[:self.stall_after], None
        for offset in range(0, len(body), PIECE):
            time.sleep(self.chunk_delay)
            try:
                handler.wfile.write(body[offset:offset + PIECE])
                handler.wfile.flush()
            except OSError:  # the client went away (a cancel)
                return
        if stalled:
            self._closing.wait()  # send nothing more, and keep the connection open
            return
        if handler.close_connection:
            handler.connection.shutdown(socket.SHUT_RDWR)


def _error(handler: BaseHTTPRequestHandler, status: int, code: str | None, message: str,
           headers: dict[str, str] | None = None) -> None:
    body = f'{{"error": "{message}"}}'.encode()
    handler.send_response(status)
    if code:
        handler.send_header("X-Error-Code", code)
    handler.send_header("X-Error-Message", message)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _handler(hub: LocalHub, name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            hub.requests.append(Request(name, self.command, self.path, self.headers.get("Range")))
            (hub.resolve if name == "hub" else hub.blob)(self)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet tests

    return Handler


def closed_port() -> int:
    """A port nothing listens on (the server is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def isolate_hub_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token of this machine's user, and no telemetry. huggingface_hub reads its settings
    once, on import, so they are set on its constants."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf" / "tokens"))
    # Else it asks the Hub (the local one) for its list of AI agents once a day.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

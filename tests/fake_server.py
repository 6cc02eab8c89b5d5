"""A small fake model server for the remote engine's fault tests: llama-server's native
`/completion` (or only the OpenAI endpoints), streaming a scripted sample, and misbehaving on
demand. The real llama-server is in tests/core/test_remote_server.py; this one exists for what
a real server does not do on cue (drop a connection, stall, buffer, ignore the seed)."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The scripted sample: (text, logprob, alternatives after it as (text, logprob)).
SCRIPT = [
    ("Hello", -0.1, [(" Hi", -2.6), (" Hey", -3.4)]),
    (",", -0.5, [("!", -1.2), (" there", -2.0)]),
    (" world", -0.3, [(" friend", -1.6), (" all", -2.9)]),
    ("!", -0.2, [(".", -1.9), ("?", -3.1)]),
]
EOG_ID = 2


@dataclass
class Behaviour:
    native: bool = True
    """Serve llama-server's /props, /tokenize and /completion; else only the OpenAI API."""
    drop_after: int | None = None
    """Cut the connection after this many events."""
    faults_from: int = 0
    """Drop and buffer only from this generation request on (0 is the first; the seed check
    makes two)."""
    stall: float = 0.0
    """Seconds to wait before answering anything."""
    status: tuple[int, str] | None = None
    """Answer every generation request with this status and JSON error message."""
    models_status: tuple[int, str] | None = None
    malformed: bool = False
    """Send an event that is not JSON."""
    buffer: float | None = None
    """Hold the whole stream this many seconds, then send it in one write (a buffering proxy)."""
    ignore_seed: bool = False
    """Each request gets another sample, whatever its seed."""
    no_logprobs: bool = False
    """Send the text without logprobs (a server that ignores the request for them)."""
    reward: str | None = None
    """'rerank', 'score' or 'pooling': which reward endpoint exists."""
    api_key: str | None = None
    """Demand this Bearer token."""


@dataclass
class FakeServer:
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def __enter__(self) -> FakeServer:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def generation_requests(self) -> list[dict[str, Any]]:
        return [body for path, body, _ in self.requests
                if path in ("/completion", "/v1/completions", "/v1/chat/completions")]



class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.counter = itertools.count()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        key = self.server.fake.behaviour.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._reply(401, {"error": {"message": "Invalid API Key", "code": 401}})
            return False
        return True

    def do_GET(self) -> None:
        b = self.server.fake.behaviour
        self.server.fake.requests.append((self.path, {}, dict(self.headers)))
        time.sleep(b.stall)
        if not self._authorised():
            return
        if self.path == "/v1/models":
            if b.models_status:
                self._reply(b.models_status[0], {"error": b.models_status[1]})
            elif b.malformed:
                body = b'{"data": [{"id": "fake'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self._reply(200, {"object": "list", "data": [
                    {"id": "fake-model", "meta": {"n_ctx": 512, "n_vocab": 100}}]})
        elif self.path == "/props" and b.native:
            self._reply(200, {"default_generation_settings": {"n_ctx": 512},
                              "chat_template": "{% for m in messages %}<{{ m.role }}>"
                                               "{{ m.content }}{% endfor %}<assistant>",
                              "bos_token": "", "eos_token": "</s>"})
        else:
            self._reply(404, {"error": {"message": "File Not Found", "code": 404}})

    def do_POST(self) -> None:
        b = self.server.fake.behaviour
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.fake.requests.append((self.path, body, dict(self.headers)))
        time.sleep(b.stall)
        if not self._authorised():
            return
        path = self.path
        if path == "/tokenize" and b.native:
            self._reply(200, {"tokens": [ord(c) for c in body["content"]]})
        elif (path == "/completion" and b.native) or path in (
                "/v1/completions", "/v1/chat/completions"):
            if b.status:
                self._reply(b.status[0], {"error": {"message": b.status[1]}})
            else:
                # The client cuts a stream once it has what it needs.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._stream(path, body, next(self.server.counter))
        elif path in ("/rerank", "/v1/rerank") and b.reward == "rerank":
            docs = body["documents"]
            self._reply(200, {"results": sorted(
                ({"index": i, "relevance_score": len(d) / 10} for i, d in
                 enumerate(docs)), key=lambda r: -r["relevance_score"])})
        elif path == "/score" and b.reward == "score":
            self._reply(200, {"data": [{"index": i, "score": len(d) / 10}
                                       for i, d in enumerate(body["text_2"])]})
        elif path == "/pooling" and b.reward == "pooling":
            self._reply(200, {"data": [{"index": i, "data": [len(d) / 10]}
                                       for i, d in enumerate(body["input"])]})
        else:
            self._reply(404, {"error": {"message": "File Not Found", "code": 404}})

    def _stream(self, path: str, body: dict[str, Any], request_number: int) -> None:
        b = self.server.fake.behaviour
        n = int(body.get("n", 1))
        shift = request_number if b.ignore_seed else int(body.get("seed", 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = []
        for choice in range(n):
            script = SCRIPT[(shift + choice) % 2:]  # another seed, another sample
            events += [_event(path, choice, i, step, b.no_logprobs)
                       for i, step in enumerate(script)]
            events.append(_end(path, choice, len(script)))
        if b.malformed:
            events.insert(1, "data: {not json\n\n")
        if path != "/completion":
            events.append("data: [DONE]\n\n")
        if b.buffer is not None and request_number >= b.faults_from:
            time.sleep(b.buffer)
            self._chunk("".join(events))
        else:
            for i, event in enumerate(events):
                if b.drop_after is not None and i == b.drop_after and \
                        request_number >= b.faults_from:
                    self.wfile.flush()
                    self.connection.shutdown(2)  # no last chunk: a dropped connection
                    return
                self._chunk(event)
                time.sleep(0.01)
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _entry(index: int, text: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    alternatives = sorted([(text, logprob), *top], key=lambda a: -a[1])
    return {"id": 10 + index, "token": text, "bytes": list(text.encode()), "logprob": logprob,
            "top_logprobs": [{"id": 10 + index if t == text else 100 + j, "token": t,
                              "bytes": list(t.encode()), "logprob": lp}
                             for j, (t, lp) in enumerate(alternatives)]}


def _event(path: str, choice: int, index: int, step: tuple, no_logprobs: bool) -> str:
    text, logprob, top = step
    entry = _entry(index, text, logprob, top)
    if no_logprobs:
        return f"data: {json.dumps({'choices': [{'index': choice, 'text': text}]})}\n\n"
    if path == "/completion":
        data: dict[str, Any] = {"index": choice, "content": text, "tokens": [entry["id"]],
                                "stop": False, "completion_probabilities": [entry]}
    elif path == "/v1/completions":  # the legacy logprobs format, as vLLM sends it
        data = {"choices": [{"index": choice, "text": text, "finish_reason": None, "logprobs": {
            "tokens": [text], "token_logprobs": [logprob],
            "top_logprobs": [{t["token"]: t["logprob"] for t in entry["top_logprobs"]}]}}]}
    else:
        # OpenAI's chat format: no token ids, anywhere.
        top = [{k: a[k] for k in ("token", "bytes", "logprob")} for a in entry["top_logprobs"]]
        content = {"token": text, "bytes": entry["bytes"], "logprob": logprob, "top_logprobs": top}
        data = {"choices": [{"index": choice, "delta": {"content": text},
                             "finish_reason": None, "logprobs": {"content": [content]}}]}
    return f"data: {json.dumps(data)}\n\n"


def _end(path: str, choice: int, n_tokens: int) -> str:
    if path == "/completion":
        eog = {"id": EOG_ID, "token": "", "bytes": [], "logprob": math.log(0.9),
               "top_logprobs": [{"id": EOG_ID, "token": "", "bytes": [],
                                 "logprob": math.log(0.9)}]}
        token = {"index": choice, "content": "", "stop": False, "completion_probabilities": [eog]}
        last = {"index": choice, "content": "", "stop": True, "stop_type": "eos",
                "tokens_evaluated": 7, "tokens_predicted": n_tokens + 1}
        return f"data: {json.dumps(token)}\n\ndata: {json.dumps(last)}\n\n"
    last = {"choices": [{"index": choice, "finish_reason": "stop"}]}
    return f"data: {json.dumps(last)}\n\n"

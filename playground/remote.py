"""The remote engine: the same event stream as `LocalEngine`, from a model server over HTTP.

It speaks two dialects and probes which one a server has when it connects:
- llama-server's native `/completion`, with `n_probs` (any k, token ids and bytes), `/tokenize`
  and the model's chat template from `/props`. The prompt is rendered here, exactly as the local
  engine renders it, and sent as token ids, so a greedy run gives the local engine's tokens.
- any OpenAI-compatible server (vLLM, Ollama, ...): `/v1/completions` for raw text and
  `/v1/chat/completions` for chat, with `logprobs` / `top_logprobs` (most cap these at 20).
Both are streamed over SSE. Sample i of a run is its own request with seed + i, all N in flight
together and cancelled together; a server seen to ignore `seed` gets one request with `n`
instead, since its seeds cannot be kept anyway (and that is said, in `notices`).

A server gives only the top k of each distribution, so the entropy is a lower bound
(`Capabilities.exact_entropy` is False), and there is no teacher forcing, grammar or hidden
state. `sampling_logprob` is NaN: the server does not say what distribution it drew from.

Stop strings are applied here, as the local engine applies them, and the end-of-generation
token is dropped from the record, so a run reads the same whichever engine made it.

HTTP goes through the standard library (`http.client`): one connection per request, so the
streams of one run can be read on their own threads and cut from this one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import queue
import socket
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from playground.chat import chat_messages, render_chat
from playground.engine import MAX_SAMPLES, _Sequence
from playground.engine_api import Capabilities
from playground.errors import (
    InvalidRequestError,
    ResourceError,
    ServerError,
    StreamInterrupted,
    UnsupportedModelError,
)
from playground.gguf_file import ModelInfo
from playground.records import Alternative, Event, Run, RunEnd, RunStats, TokenRecord
from playground.sampling import MAX_ALTERNATIVES, SAMPLER_ORDERS, Constraint, SamplingParams

DEFAULT_TIMEOUT = 60.0
"""Seconds a server may stay silent (to connect, or between two events of a stream)."""
OPENAI_MAX_ALTERNATIVES = 20
"""OpenAI's limit on top_logprobs, which vLLM (--max-logprobs) and most servers copy."""
ENTROPY_ALTERNATIVES = 20
"""Alternatives asked of llama-server at least, for a tighter entropy bound."""
POLL_SECONDS = 0.05
"""How often a waiting run checks its cancel flag."""
MERGED_NOTICE = (
    "llama-server sends a token that ends inside a character only with the token that "
    "completes it, and without its own logprobs: such a record holds both tokens' bytes, so the "
    "text is right but a sample has fewer records than tokens (and its logprob scores miss "
    "theirs)")
"""Said once an engine has seen it (characters of CJK, Hindi, Arabic, emoji often split)."""
LLAMA_SAMPLERS = {"temperature": "temperature", "top-k": "top_k", "top-p": "top_p",
                  "min-p": "min_p"}
"""The sampling steps by llama-server's names for them (its `samplers` list)."""
BUFFERED_SECONDS = 0.5
"""A stream silent this long and then delivered in one burst went through a buffering proxy."""


def _strip_credentials(parts: urllib.parse.SplitResult) -> tuple[str, str | None]:
    """(the URL without user:password@ and a trailing /, the password or None)."""
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 address
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/"), \
        password


class Server:
    """Where a server is and how to ask it: JSON requests and SSE streams, every failure a
    one-line ServerError."""

    def __init__(self, url: str, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        text = url.strip()
        if "://" not in text:
            text = "http://" + text
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(f"not a server URL: {url!r} (e.g. http://127.0.0.1:8080)")
        try:
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError:
            raise InvalidRequestError(f"not a server URL: {url!r} (a bad port)") from None
        self.url, password = _strip_credentials(parts)
        """The URL as recorded and shown: never with credentials."""
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        # "http://host/v1" is how OpenAI clients are configured: the paths here carry the /v1.
        self._prefix = parts.path.rstrip("/").removesuffix("/v1")
        self.api_key = api_key or password
        self.timeout = timeout

    def connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def send(self, conn: http.client.HTTPConnection, method: str, path: str,
             body: dict[str, Any] | None = None, *, stream: bool = False
             ) -> http.client.HTTPResponse:
        """Send a request and return the response, or raise a ServerError for a failure to
        connect, a timeout, or an error status (with the server's own message)."""
        headers = self._headers(body is not None)
        if stream:
            headers["Accept"] = "text/event-stream"
            headers["Cache-Control"] = "no-cache"
        data = None if body is None else json.dumps(body).encode()
        with self._answering(method, path):
            conn.request(method, self._prefix + path, data, headers)
            response = conn.getresponse()
            if response.status >= 400:
                raise _StatusError(response.status,
                                   f"{self.url} answered {method} {path} with {response.status} "
                                   f"{response.reason}: {_error_message(response.read())}")
        return response

    @contextlib.contextmanager
    def _answering(self, method: str, path: str) -> Iterator[None]:
        """Turn a connection that fails inside into the ServerError that says so."""
        try:
            yield
        except OSError as error:
            raise self.failure(error, f"{method} {path}") from None
        except http.client.HTTPException as error:
            raise ServerError(f"{self.url} broke off its answer to {method} {path} "
                              f"({type(error).__name__})") from None

    def failure(self, error: OSError, what: str) -> ServerError:
        if isinstance(error, TimeoutError):
            return ServerError(f"{self.url} did not answer {what} within {self.timeout:g} s "
                               "(the server is too slow or stuck; a longer --timeout may help)")
        if isinstance(error, ConnectionRefusedError):
            return ServerError(f"cannot reach {self.url}: connection refused (is the server "
                               "running, on that port?)")
        if isinstance(error, socket.gaierror):
            return ServerError(f"cannot reach {self.url}: unknown host {self._host}")
        if isinstance(error, ssl.SSLError):
            return ServerError(f"cannot reach {self.url}: TLS failed ({error.reason})")
        reason = error.strerror or type(error).__name__
        return ServerError(f"cannot reach {self.url} for {what}: {reason}")

    def first_model(self) -> dict[str, Any]:
        """The first model that /v1/models lists (with its "id"), or a ServerError."""
        models = self.json("GET", "/v1/models")
        listed = models.get("data") if isinstance(models, dict) else None
        if not listed or not isinstance(listed, list) or not isinstance(listed[0], dict) \
                or "id" not in listed[0]:
            raise ServerError(f"{self.url}/v1/models lists no model")
        return listed[0]

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request, its JSON answer."""
        conn = self.connection()
        try:
            response = self.send(conn, method, path, body)
            with self._answering(method, path):
                raw = response.read()
        finally:
            conn.close()
        return _parse_json(raw, f"{self.url}'s answer to {method} {path}")

    def has(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any | None:
        """The JSON answer, or None where the server has no such endpoint (404, 405, 501)."""
        try:
            return self.json(method, path, body)
        except _StatusError as error:
            if error.status in (404, 405, 501):
                return None
            raise


class _StatusError(ServerError):
    """An error status, which `Server.has` tells apart from other failures."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error_message(raw: bytes) -> str:
    """The server's own message in one line: {"error": {"message"}}, {"error": "..."},
    {"detail": ...} (vLLM, FastAPI) or the first line of the text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return _message_of(data, text)


def _message_of(data: Any, text: str) -> str:
    """The message of a parsed error answer (see `_error_message`), else `text`, in one line."""
    if isinstance(data, dict):
        found = data.get("error", data.get("detail", data.get("message")))
        if isinstance(found, dict):
            found = found.get("message", found)
        if found:
            text = found if isinstance(found, str) else json.dumps(found)
    line = " ".join(text.split())
    return (line[:300] + "...") if len(line) > 300 else (line or "(no message)")


def _parse_json(raw: bytes | str, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as error:
        shown = raw[:60].decode("utf-8", "replace") if isinstance(raw, bytes) else raw[:60]
        raise ServerError(f"{what} is not valid JSON ({error}): {shown!r}") from None


# ---------------------------------------------------------------------------------------------
# Server-sent events


def sse_events(server: Server, response: http.client.HTTPResponse,
               what: str) -> Iterator[dict[str, Any]]:
    """The JSON of each `data:` event until `[DONE]` or the end of the stream (whether the last
    event came is the caller's to tell). A connection that breaks is StreamInterrupted; an error
    event is a ServerError with the server's message."""
    data: list[str] = []
    while True:
        try:
            line = response.readline()
        except TimeoutError as error:
            raise server.failure(error, what) from None
        except (OSError, http.client.HTTPException, ValueError):
            raise StreamInterrupted(f"the connection to {server.url} dropped during {what}") \
                from None
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if text.startswith("data:"):
            data.append(text[5:].removeprefix(" "))
            continue
        if text or not data:
            continue  # "event:", "id:", comments (": ping") and blank keep-alives
        payload = "\n".join(data)
        data = []
        if payload.strip() == "[DONE]":
            return
        event = _parse_json(payload, f"an event of {server.url}'s stream for {what}")
        if isinstance(event, dict) and "error" in event:
            raise ServerError(f"{server.url} stopped {what}: "
                              f"{_message_of(event, json.dumps(event))}")
        if not isinstance(event, dict):
            raise ServerError(f"an event of {server.url}'s stream for {what} is not an object")
        yield event


# ---------------------------------------------------------------------------------------------
# What one streamed token looks like, in any dialect


def text_id(data: bytes) -> int:
    """A stand-in id for a token the server names by its text only (OpenAI dialect): below 0,
    so never a vocabulary id, and the same for the same bytes, so that the chosen token is
    told apart from its alternatives."""
    return -1 - (zlib.crc32(data) & 0x7FFFFFFF)


@dataclass(frozen=True)
class _Token:
    id: int
    """The vocabulary id, or `text_id` of its bytes where the server gives no ids."""
    bytes: bytes
    logprob: float
    top: tuple[Alternative, ...]
    """As many as the server gave, most likely first."""


def _token_bytes(entry: dict[str, Any]) -> bytes:
    raw = entry.get("bytes")
    if isinstance(raw, list):
        return bytes(raw)
    text = str(entry.get("token", ""))
    if text.startswith("bytes:"):  # vLLM's spelling of a token that is not whole UTF-8
        return text[6:].encode("latin-1", "backslashreplace").decode("unicode_escape").encode(
            "latin-1")
    return text.encode("utf-8")


def _id(entry: dict[str, Any]) -> int:
    return int(entry["id"]) if "id" in entry else text_id(_token_bytes(entry))


def _alternatives(entries: list[dict[str, Any]]) -> tuple[Alternative, ...]:
    alts = [Alternative(_id(a), str(a.get("token", "")), float(a["logprob"])) for a in entries]
    return tuple(sorted(alts, key=lambda a: -a.logprob))


def _tokens_of(logprobs: Any) -> list[_Token]:
    """The tokens of one chunk's `logprobs` or `completion_probabilities`: the content format
    (llama-server, OpenAI chat) or the legacy completions one (tokens / token_logprobs /
    top_logprobs as {text: logprob}, vLLM's /v1/completions)."""
    if isinstance(logprobs, dict) and "content" in logprobs:
        logprobs = logprobs["content"]
    try:
        if isinstance(logprobs, list):
            return [_Token(_id(e), _token_bytes(e), float(e["logprob"]),
                           _alternatives(e.get("top_logprobs") or [])) for e in logprobs]
        if isinstance(logprobs, dict) and "token_logprobs" in logprobs:
            tops = logprobs.get("top_logprobs") or [{}] * len(logprobs["tokens"])
            return [
                _Token(_id({"token": t}), _token_bytes({"token": t}), float(lp),
                       _alternatives([{"token": k, "logprob": v} for k, v in (top or {}).items()]))
                for t, lp, top in zip(logprobs["tokens"], logprobs["token_logprobs"], tops,
                                      strict=True)
            ]
    except (KeyError, TypeError, ValueError) as error:
        raise ServerError(f"the server's logprobs are not in a known format ({error!r})") \
            from None
    return []


def entropy_lower_bound(logprobs: list[float]) -> float:
    """A lower bound of the entropy from the top k logprobs only: their own terms, plus the
    mass they leave over at no more than the smallest one's surprise (every other token is at
    most that likely). Exact when the k cover the distribution."""
    probs = [math.exp(lp) for lp in logprobs if math.isfinite(lp)]
    if not probs:
        return math.nan
    known = sum(-p * math.log(p) for p in probs if p > 0)
    rest = max(0.0, 1.0 - sum(probs))
    return known + (rest * -math.log(min(probs)) if rest > 0 else 0.0)


# ---------------------------------------------------------------------------------------------
# The engine


@dataclass
class _Stream:
    """One sample's request in flight: its text state, and the token held back until the next
    event tells whether it was the end-of-generation token (which the record leaves out)."""

    seq: _Sequence
    held: _Token | None = None
    done: bool = False
    prompt_tokens: int = 0
    decoded: int = 0
    """Tokens the server says it has generated (llama-server's tokens_predicted)."""
    merged: int = 0
    """Tokens it sent only inside the next one's record (see MERGED_NOTICE)."""


@dataclass
class _Request:
    """One HTTP stream feeding samples `first`.. (one each, or all N with `n`)."""

    first: int
    body: dict[str, Any]
    path: str
    conn: http.client.HTTPConnection | None = None
    stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Cut the stream from another thread: the reader wakes and ends."""
        self.stopped.set()
        conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):  # already closed
                conn.sock.shutdown(socket.SHUT_RDWR)


class RemoteEngine:
    """A model on a server; see the module docstring. Use it on one thread, like LocalEngine
    (the streams it reads run on threads of their own)."""

    def __init__(self, url: str, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, check_seed: bool = True) -> None:
        self.server = Server(url, api_key, timeout)
        self.notices: list[str] = []
        self.decode_threads: int | None = None  # the server's own affair
        """What the user should know about this server (an ignored seed, a buffering proxy)."""
        model = self.server.first_model()
        self.model_id = str(model["id"])
        props = self.server.has("GET", "/props")
        self.native = isinstance(props, dict) and "default_generation_settings" in props
        """llama-server: /completion with n_probs and token ids, /tokenize, its template."""
        meta = model.get("meta") or {}
        settings = props.get("default_generation_settings", {}) if self.native else {}
        self.n_ctx = int(settings.get("n_ctx") or meta.get("n_ctx") or
                         model.get("max_model_len") or 0)
        """0 where the server does not say; it then refuses a prompt that is too long itself."""
        self.n_vocab = int(meta.get("n_vocab") or 0)
        self.chat_template: str | None = (props.get("chat_template") or None) if self.native \
            else None
        self._bos_text = str(props.get("bos_token") or "") if self.native else ""
        self._eos_text = str(props.get("eos_token") or "") if self.native else ""
        self.memory_bytes = int(meta.get("size") or 0)
        self.layers_offloaded = 0
        self.path = Path(self.server.url)
        self.info = ModelInfo(
            path=self.server.url, name=self.model_id, architecture="remote",
            parameters=int(meta.get("n_params") or 0), quantization="",
            file_size=int(meta.get("size") or 0),
            context_length=int(meta.get("n_ctx_train") or model.get("max_model_len") or 0),
            vocab_size=self.n_vocab, layers=0, embedding_length=int(meta.get("n_embd") or 0),
            has_chat_template=self.chat_template is not None or not self.native, license=None,
            kind="model", server=self.server.url)
        self._capabilities = Capabilities(
            max_alternatives=MAX_ALTERNATIVES if self.native else OPENAI_MAX_ALTERNATIVES,
            max_samples=MAX_SAMPLES, exact_entropy=False, teacher_forcing=False, grammar=False,
            hidden_states=False)
        if check_seed:
            self._check_seed()

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def close(self) -> None:
        """Nothing is held between requests."""

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens ----------------------------------------------------------------------------

    def _require_native(self, what: str) -> None:
        if not self.native:
            raise UnsupportedModelError(f"{what} needs the server's tokenizer, which "
                                        f"{self.server.url} does not offer (llama-server does)")

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Token ids of `text`, special markers parsed, by the server's own tokenizer."""
        self._require_native("tokenizing")
        reply = self.server.json("POST", "/tokenize", {
            "content": text, "add_special": add_special, "parse_special": True})
        return [int(t) for t in reply["tokens"]]

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The token's text as UTF-8: the server detokenizes to text, so a token that is part
        of a character comes back replaced (streamed records carry their exact bytes)."""
        return self.detokenize([token]).encode("utf-8")

    def detokenize(self, tokens: list[int]) -> str:
        self._require_native("detokenizing")
        return str(self.server.json("POST", "/detokenize", {"tokens": tokens})["content"])

    def is_end_of_generation(self, token: int) -> bool:
        raise UnsupportedModelError(f"{self.server.url} does not say which tokens end "
                                    "generation")

    def prompt_tokens(self, prompt: str, *, chat: bool, system: str | None = None) -> list[int]:
        """As the local engine makes them: the model's template rendered here in the sandbox,
        then the server's tokenizer. [] for a server without one (it renders the template)."""
        if not self.native:
            return []
        if not chat:
            return self.tokenize(prompt)
        text = render_chat(self.chat_template, chat_messages(prompt, system),
                           bos_token=self._bos_text, eos_token=self._eos_text)
        tokens = self.tokenize(text)
        if self._bos_text and len(tokens) > 1 and tokens[0] == tokens[1] and \
                tokens[:1] == self.tokenize(self._bos_text, add_special=False):
            del tokens[0]  # the template wrote BOS and tokenize added another
        return tokens

    def grammar_constraint(self, gbnf: str) -> Callable[[], Constraint]:
        self._capabilities.require("grammar", "a grammar")
        raise AssertionError("unreachable")

    def next_logits(self, tokens: list[int]) -> np.ndarray:
        self._capabilities.require("exact_entropy", "the sampling lab, which reshapes the whole "
                                   "distribution,")
        raise AssertionError("unreachable")

    def teacher_force(self, prompt: list[int], tokens: list[int],
                      top_logprobs: int = 0) -> list[TokenRecord]:
        self._capabilities.require("teacher_forcing", "scoring a given continuation")
        raise AssertionError("unreachable")

    def forget_prompt(self) -> None:
        """The server keeps its own prompt cache; nothing here to forget."""

    # -- generation ------------------------------------------------------------------------

    def start_run(self, prompt: str, params: SamplingParams, n: int = 1, *, chat: bool = True,
                  system: str | None = None, same_seed: bool = False) -> Run:
        params = params.validate().resolved()
        if not 1 <= n <= MAX_SAMPLES:
            raise InvalidRequestError(f"N must be between 1 and {MAX_SAMPLES}, not {n}")
        if not prompt:
            raise InvalidRequestError("the prompt is empty")
        if not self.native and params.sampler_order != "temperature-first":
            raise InvalidRequestError(
                f"{self.server.url} is an OpenAI-compatible server, whose order of the sampling "
                "filters is its own: the temperature-last order needs llama-server or a local "
                "model")
        limit = self._capabilities.max_alternatives
        if params.top_logprobs > limit:
            raise InvalidRequestError(f"{self.server.url} gives at most {limit} alternatives "
                                      f"per token, not {params.top_logprobs}")
        tokens = self.prompt_tokens(prompt, chat=chat, system=system)
        if self.n_ctx and len(tokens) + params.max_tokens > self.n_ctx:
            raise ResourceError(
                f"the prompt is {len(tokens):,} tokens; with {params.max_tokens:,} new tokens it "
                f"needs {len(tokens) + params.max_tokens:,} but the server's context holds "
                f"{self.n_ctx:,}")
        return Run.start(self.info, params, prompt, tokens, n, chat=chat, system=system,
                         same_seed=same_seed)

    def run(self, prompt: str, params: SamplingParams, n: int = 1, **kwargs: Any) -> Run:
        run = self.start_run(prompt, params, n, **kwargs)
        for event in self.generate(run):
            run.add(event)
        return run

    def generate(self, run: Run, cancel: Callable[[], bool] | None = None,
                 constraint: Callable[[], Constraint] | None = None) -> Iterator[Event]:
        """Stream the run's samples, all N requests in flight at once. `cancel` is polled every
        50 ms: when it returns True every stream is cut and its sample ends 'cancelled'. A
        connection that drops ends its sample 'interrupted' (the others go on), and then the
        run raises StreamInterrupted instead of ending: it stays in the history, interrupted."""
        if constraint is not None:
            self._capabilities.require("grammar", "a grammar")
        params = run.params
        seeds = [s.seed for s in run.samples]
        if not self._capabilities.reproducible_seed and len(set(seeds)) > 1:
            requests = [self._request(run, seeds[0], len(seeds), 0)]
        else:
            requests = [self._request(run, seed, 1, i) for i, seed in enumerate(seeds)]
        return self._streamed(run, params, requests, cancel or (lambda: False))

    def _request(self, run: Run, seed: int, n: int, first: int) -> _Request:
        p = run.params
        body: dict[str, Any] = {
            "temperature": p.temperature, "top_k": p.top_k, "top_p": p.top_p, "min_p": p.min_p,
            "seed": seed, "stream": True}
        if n > 1:
            body["n"] = n
        if p.repeat_penalty != 1.0:
            body["repeat_penalty" if self.native else "repetition_penalty"] = p.repeat_penalty
            body["repeat_last_n"] = p.repeat_last_n
        if self.native:
            body.update(prompt=run.prompt_token_ids, n_predict=p.max_tokens,
                        n_probs=max(p.top_logprobs, ENTROPY_ALTERNATIVES), cache_prompt=True,
                        # The run's order of the filters, in llama.cpp's names.
                        samplers=["penalties", *(LLAMA_SAMPLERS[step]
                                                 for step in SAMPLER_ORDERS[p.sampler_order])])
            return _Request(first, body, "/completion")
        k = max(p.top_logprobs, 1)
        body.update(model=self.model_id, max_tokens=p.max_tokens)
        if run.chat:
            body.update(messages=chat_messages(run.prompt, run.system), logprobs=True,
                        top_logprobs=k)
            return _Request(first, body, "/v1/chat/completions")
        body.update(prompt=run.prompt, logprobs=k)
        return _Request(first, body, "/v1/completions")

    def _streamed(self, run: Run, params: SamplingParams, requests: list[_Request],
                  cancelled: Callable[[], bool]) -> Iterator[Event]:
        started = time.perf_counter()
        streams = [_Stream(_Sequence(i, None)) for i in range(len(run.samples))]
        inbox: queue.Queue[tuple[_Request, Any]] = queue.Queue()
        for r in requests:
            threading.Thread(target=self._read, args=(r, inbox), daemon=True,
                             name=f"stream {r.first}").start()
        stops = [s.encode("utf-8") for s in params.stop]
        open_requests = len(requests)
        interrupted: list[StreamInterrupted] = []
        new_tokens = 0
        try:
            while open_requests:
                if cancelled():
                    for stream in streams:
                        yield from self._finish(stream, stops, params, "cancelled", False)
                    break
                try:
                    request, item = inbox.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                mine = streams[request.first:request.first + request.body.get("n", 1)]
                if item is None or isinstance(item, BaseException):
                    open_requests -= 1
                    yield from self._closed(request, item, mine, stops, params, interrupted)
                    continue
                for event in self._events(request, item, streams, stops, params):
                    new_tokens += isinstance(event, TokenRecord)
                    yield event
                if all(s.done for s in mine):
                    request.stop()
        finally:
            for r in requests:
                r.stop()
        if any(s.merged for s in streams) and MERGED_NOTICE not in self.notices:
            self.notices.append(MERGED_NOTICE)
        if interrupted:
            raise StreamInterrupted(f"{interrupted[0]}; the samples so far are kept, and the "
                                    "run is marked interrupted")
        prompt_tokens = max(s.prompt_tokens for s in streams)
        yield RunEnd(RunStats(prompt_tokens or len(run.prompt_token_ids), new_tokens,
                              time.perf_counter() - started))

    def _closed(self, request: _Request, item: BaseException | None, mine: list[_Stream],
                stops: list[bytes], params: SamplingParams,
                interrupted: list[StreamInterrupted]) -> Iterator[Event]:
        """A request's stream ended (`item` None) or failed. A stream cut here is no news; a
        dropped connection, or one closed before the last event, interrupts its samples; any
        other failure ends the run."""
        if request.stopped.is_set():
            return
        if isinstance(item, StreamInterrupted):
            interrupted.append(item)
            for stream in mine:
                yield from self._finish(stream, stops, params, "interrupted", False)
        elif item is not None:
            raise item
        elif not all(s.done for s in mine):  # closed before its last event: cut off too
            interrupted.append(StreamInterrupted(
                f"the connection to {self.server.url} dropped during POST {request.path}"))
            for stream in mine:
                yield from self._finish(stream, stops, params, "interrupted", False)

    def _read(self, request: _Request, inbox: queue.Queue) -> None:
        """A stream's thread: hand every event to the run, then None (or the error)."""
        what = f"POST {request.path}"
        arrivals: list[float] = []
        begun = time.monotonic()
        try:
            request.conn = self.server.connection()
            if request.stopped.is_set():
                raise StreamInterrupted("stopped")
            response = self.server.send(request.conn, "POST", request.path, request.body,
                                        stream=True)
            for event in sse_events(self.server, response, what):
                if request.stopped.is_set():
                    break
                arrivals.append(time.monotonic())
                inbox.put((request, event))
            self._check_buffering(begun, arrivals)
            inbox.put((request, None))
        except BaseException as error:  # handed to the run's thread, which raises it
            inbox.put((request, error))
        finally:
            if request.conn is not None:
                request.conn.close()

    def _check_buffering(self, begun: float, arrivals: list[float]) -> None:
        if len(arrivals) < 4:
            return
        waited, burst = arrivals[0] - begun, arrivals[-1] - arrivals[0]
        if waited > BUFFERED_SECONDS and burst < 0.05 * waited:
            notice = (f"{self.server.url} delivered each stream in one burst at its end: a proxy "
                      "on the way buffers server-sent events, so tokens cannot show as they are "
                      "made (turn its buffering off, e.g. nginx `proxy_buffering off`)")
            if notice not in self.notices:
                self.notices.append(notice)

    def _events(self, request: _Request, chunk: dict[str, Any], streams: list[_Stream],
                stops: list[bytes], params: SamplingParams) -> Iterator[Event]:
        """The records and ends one event of a stream makes: (choice, logprobs, text, end)."""
        if self.native:
            parts = [(int(chunk.get("index", 0)), chunk.get("completion_probabilities"),
                      chunk.get("content", ""), _native_end(chunk))]
        else:
            parts = [(int(c.get("index", 0)), c.get("logprobs"),
                      c.get("text", (c.get("delta") or {}).get("content") or ""),
                      c.get("finish_reason")) for c in chunk.get("choices") or []]
        usage = chunk.get("usage") or {}
        for index, logprobs, text, end in parts:
            if not 0 <= request.first + index < len(streams):
                raise ServerError(f"{self.server.url} sent a sample this run did not ask for")
            stream = streams[request.first + index]
            if stream.done:
                continue
            stream.prompt_tokens = int(chunk.get("tokens_evaluated") or
                                       usage.get("prompt_tokens") or stream.prompt_tokens)
            tokens = _tokens_of(logprobs)
            decoded = chunk.get("tokens_predicted")
            if isinstance(decoded, int):
                if tokens:
                    stream.merged += max(0, decoded - stream.decoded - len(tokens))
                stream.decoded = max(stream.decoded, decoded)
            if text and not tokens:
                raise ServerError(f"{self.server.url} sent text without logprobs, which the "
                                  "token views need (does it support logprobs?)")
            for token in tokens:
                if stream.held is not None:
                    yield from self._emit(stream, stops, params)
                    if stream.done:
                        break
                stream.held = token
            if end is not None:
                # llama-server says "eos" when its last token ended generation; an OpenAI
                # "stop" (we send no stop strings) means the same, and that token is empty.
                eog = chunk.get("stop_type") == "eos" if self.native else end == "stop"
                yield from self._finish(stream, stops, params,
                                        "length" if end == "length" else "stop", eog)

    def _emit(self, stream: _Stream, stops: list[bytes],
              params: SamplingParams) -> Iterator[Event]:
        """The held token as a record, and the sample's end where it completes a stop string
        or the length (the stream is then cut)."""
        token, stream.held = stream.held, None
        assert token is not None
        yield self._record(stream.seq, token, params.top_logprobs)
        end = stream.seq.finished(stops, params.max_tokens)
        if end is not None:
            stream.done = True
            yield end

    def _finish(self, stream: _Stream, stops: list[bytes], params: SamplingParams,
                reason: str, end_of_generation: bool) -> Iterator[Event]:
        """End a sample, its held token first unless that was the end-of-generation token."""
        if stream.done:
            return
        held = stream.held
        if held is not None and (end_of_generation if self.native else
                                 end_of_generation and held.bytes == b""):
            stream.held = None
        if stream.held is not None:
            yield from self._emit(stream, stops, params)
        if not stream.done:
            stream.done = True
            yield stream.seq.end(reason)

    def _record(self, seq: _Sequence, token: _Token, k: int) -> TokenRecord:
        top = token.top
        rank = 1 + sum(1 for a in top if a.logprob > token.logprob)
        if top and all(a.id != token.id for a in top):
            rank = max(rank, len(top) + 1)  # below every alternative given: at least that
        return TokenRecord(
            sample=seq.index,
            position=len(seq.starts),
            id=token.id,
            bytes=token.bytes,
            text=seq.push(token.bytes),
            logprob=token.logprob,
            sampling_logprob=math.nan,
            rank=rank,
            entropy=entropy_lower_bound([a.logprob for a in top]),
            top=top[:k],
        )

    # -- the seed -------------------------------------------------------------------------

    def _check_seed(self) -> None:
        """Ask twice with one seed at temperature 1: a server that ignores `seed` answers
        differently, and its runs cannot be repeated (said in `notices` and capabilities)."""
        params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=1234,
                                max_tokens=8, top_logprobs=1)
        # Chat for an OpenAI-compatible server: some serve only /v1/chat/completions.
        first, second = (self.run("Once upon a time", params, chat=not self.native)
                         for _ in range(2))
        if first.samples[0].text != second.samples[0].text:
            self._capabilities = replace(self._capabilities, reproducible_seed=False)
            self.notices.append(
                f"{self.server.url} ignores the seed: one seed gave two different samples, so "
                "its runs cannot be repeated, and best-of-N asks it for N samples in one "
                "request (`n`)")


def _native_end(chunk: dict[str, Any]) -> str | None:
    """llama-server's last event: 'stop' (end of generation), 'length', or None until then."""
    if not chunk.get("stop"):
        return None
    return "length" if chunk.get("stop_type") == "limit" else "stop"

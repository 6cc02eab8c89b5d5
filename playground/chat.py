"""Render a model's own chat template, which is untrusted code from the GGUF file.

A chat template is Jinja that runs on the user's machine (CVE-2024-34359): it is rendered only
in jinja2's immutable sandbox, which blocks attribute access to Python internals and mutation.

The sandbox does not bound time or memory: nested loops render forever, and `'x' * 10**10` or a
string doubled in a loop takes gigabytes. So templates render in a child process (one, started on
first use and kept), with a memory limit, an output cap and a deadline; a child that misses the
deadline is killed and the next render starts a new one. Only the template, the messages and
the text cross the pipe, so a render costs about a millisecond more than in process (the child
also keeps compiled templates, which a render in process compiled again every time).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from datetime import datetime
from typing import IO, Any

from playground.errors import InvalidRequestError

RENDER_SECONDS = 5.0
"""A render taking longer is stopped (a normal template takes well under a millisecond)."""
MAX_OUTPUT_CHARS = 8_000_000
"""A longer rendered prompt is refused: it is more than any model's context holds."""
MEMORY_LIMIT = 1 << 30
"""Bytes of address space the rendering child may use (where the OS lets it be limited)."""


def chat_messages(user: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": user}]


def render_chat(
    template: str | None,
    messages: list[dict[str, str]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for `messages`, as the model was trained to see it."""
    if not template:
        raise InvalidRequestError("this model has no chat template: use raw mode")
    request = {"template": template, "messages": messages, "bos_token": bos_token,
               "eos_token": eos_token, "add_generation_prompt": add_generation_prompt}
    reply = _RENDERER.ask(request)
    if "error" in reply:
        raise InvalidRequestError(f"the model's chat template failed: {reply['error']}")
    return reply["text"]


class _Renderer:
    """The child process that renders, and the one lock that serialises its use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str] = queue.Queue()

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(request) + "\n"  # ASCII: lone surrogates travel as escapes
        with self._lock:
            try:
                child = self._started()
            except OSError as error:
                return {"error": f"the renderer could not start: {error.strerror or error}"}
            try:
                assert child.stdin is not None
                child.stdin.write(line)
                child.stdin.flush()
                reply = self._replies.get(timeout=RENDER_SECONDS)
            except queue.Empty:
                self._stop()
                return {"error": f"rendering took more than {RENDER_SECONDS:g} s and was "
                                 "stopped (a loop without end?)"}
            except OSError:
                reply = ""
            if not reply:  # the child died: out of memory, killed, or it could not start
                self._stop()
                return {"error": "the renderer ended before it answered (out of memory?)"}
            return json.loads(reply)

    def _started(self) -> subprocess.Popen[str]:
        if self._child is None or self._child.poll() is not None:
            self._replies = queue.Queue()
            self._child = subprocess.Popen(
                _child_command(),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, encoding="ascii", env=_child_environment(),
            )
            threading.Thread(target=_forward, args=(self._child.stdout, self._replies),
                             daemon=True, name="chat-template-replies").start()
        return self._child

    def _stop(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.wait()
            for pipe in (self._child.stdin, self._child.stdout):
                if pipe is not None:
                    pipe.close()
            self._child = None


def _forward(stream: IO[str], replies: queue.Queue[str]) -> None:
    """Hand the child's reply lines to `ask`; an empty line means the child is gone."""
    try:
        for line in stream:
            replies.put(line)
    except (OSError, ValueError):  # the pipe was closed under us
        pass
    replies.put("")


SERVE_FLAG = "--serve-chat-templates"
"""What a frozen app's executable is started with to be the rendering child (packaging/entry.py):
it is no Python interpreter that could run `-c`."""


def _child_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, SERVE_FLAG]
    return [sys.executable, "-c", "from playground.chat import serve; serve()"]


def _child_environment() -> dict[str, str]:
    # The child must import this module as the parent did, also from a source tree.
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


_RENDERER = _Renderer()


# ---------------------------------------------------------------------------------------------
# The child


def serve() -> None:
    """The child's loop: one JSON request per line in, one JSON reply per line out."""
    _limit_memory()
    templates: dict[str, Any] = {}
    env = _environment()
    for line in sys.stdin:
        try:
            reply = {"text": _render(env, templates, json.loads(line))}
        except MemoryError:
            templates.clear()
            reply = {"error": f"it needed more than {MEMORY_LIMIT >> 20} MiB of memory"}
        except Exception as error:  # a template can raise anything; it must not end the child
            reply = {"error": _describe(error)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _render(env: Any, templates: dict[str, Any], request: dict[str, Any]) -> str:
    source = request.pop("template")
    template = templates.get(source)
    if template is None:
        if len(templates) > 16:
            templates.clear()
        template = templates[source] = env.from_string(source)
    parts, size = [], 0
    for part in template.generate(**request):
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise _TooLong(f"its output is longer than {MAX_OUTPUT_CHARS:,} characters")
        parts.append(part)
    return "".join(parts)


class _TooLong(Exception):
    pass


def _describe(error: Exception) -> str:
    import jinja2

    if isinstance(error, jinja2.TemplateError | _TooLong):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _limit_memory() -> None:
    try:
        import resource
    except ImportError:  # Windows: the deadline still holds
        return
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit is already in place
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _raise(message: str) -> None:
    import jinja2

    raise jinja2.TemplateError(message)


def _environment() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # The same options Hugging Face transformers uses, so templates render as their authors saw.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env

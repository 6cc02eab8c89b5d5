"""Render a model's own chat template, which is untrusted code from the GGUF file.

A chat template is Jinja that runs on the user's machine (CVE-2024-34359): it is rendered only
in jinja2's immutable sandbox, which blocks attribute access to Python internals and mutation.
"""

from __future__ import annotations

from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from playground.errors import InvalidRequestError


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    # The same options Hugging Face transformers uses, so templates render as their authors saw.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_ENV = _environment()


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
    try:
        return _ENV.from_string(template).render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except jinja2.TemplateError as error:
        raise InvalidRequestError(f"the model's chat template failed: {error}") from None
    except Exception as error:  # a template can raise anything; it must not crash the app
        raise InvalidRequestError(
            f"the model's chat template failed: {type(error).__name__}: {error}"
        ) from None

"""Chat templates are untrusted code: they render in a sandbox."""

from __future__ import annotations

import re
import time

import pytest

from playground import chat
from playground.chat import chat_messages, render_chat
from playground.errors import InvalidRequestError


def test_chatml_renders_like_transformers() -> None:
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    text = render_chat(template, chat_messages("Hi", system="Be brief."))
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}",
        "{% set x = messages.append({'role': 'x'}) %}",
    ],
)
def test_template_cannot_escape_the_sandbox(attack: str) -> None:
    with pytest.raises(InvalidRequestError) as error:
        render_chat(attack, chat_messages("hi"))
    assert "chat template" in str(error.value)


def test_template_raise_exception_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequestError, match="roles must alternate"):
        render_chat("{{ raise_exception('roles must alternate') }}", chat_messages("hi"))


def test_no_template_asks_for_raw_mode() -> None:
    with pytest.raises(InvalidRequestError, match="raw mode"):
        render_chat(None, chat_messages("hi"))


# ---------------------------------------------------------------- bounds of time and size

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat, "RENDER_SECONDS", 1.5)


@pytest.mark.parametrize(("template", "why"), [
    ("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
     "stopped"),
    ("{% for m in messages %}{% for a in range(99999) %}{% for b in range(99999) %}{{ '' }}"
     "{% endfor %}{% endfor %}{% endfor %}", "stopped"),
    ("{{ 'x' * 10**10 }}", "memory"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}"
     "{% endfor %}{{ ns.x }}", "memory|stopped"),  # which limit comes first: the machine's speed
    ("{{ range(99999)|list * 99999 }}", "memory"),
    ("{% for i in range(99999) %}{{ 'y' * 1000 }}{% endfor %}", "longer than"),
    ("{{ messages[0]['content'] * 100000 }}", "longer than"),
])
def test_rendering_is_bounded_in_time_and_size(template: str, why: str, quick: None) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidRequestError) as error:
        render_chat(template, chat_messages("a long enough message " * 10))
    assert time.monotonic() - started < 15
    message = str(error.value)
    assert message.startswith("the model's chat template failed") and re.search(why, message)
    assert "\n" not in message
    # and the next render works as before
    assert render_chat(CHATML, chat_messages("Hi")).endswith("<|im_start|>assistant\n")


def test_renders_are_the_sandboxed_jinja_output() -> None:
    """The child renders exactly what jinja2's sandbox renders in process (lone surrogates,
    NUL and non-ASCII text included)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    for text in ["Hi", "caf\u00e9 \u4f60\u597d \U0001f600", "a\x00b", "lone \ud800 half", ""]:
        messages = chat_messages(text, system="sys")
        expected = env.from_string(CHATML).render(messages=messages, add_generation_prompt=True,
                                                  bos_token="", eos_token="")
        assert render_chat(CHATML, messages) == expected


def test_a_killed_renderer_is_replaced() -> None:
    render_chat(CHATML, chat_messages("warm up"))
    child = chat._RENDERER._child
    assert child is not None
    child.kill()
    child.wait()
    assert render_chat(CHATML, chat_messages("Hi")).startswith("<|im_start|>user\nHi")

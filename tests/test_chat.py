"""Chat templates are untrusted code: they render in a sandbox."""

from __future__ import annotations

import pytest

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

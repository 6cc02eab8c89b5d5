"""What rendering chat templates in a child process costs: the embedded model's template,
rendered the way it was before (compiled and rendered in process, every time) and the way it
is now (sent to the child, which keeps compiled templates), plus the child's start.

Run: PYTHONPATH=. python bench/chat_template.py
"""

from __future__ import annotations

import statistics
import time

from playground import paths
from playground.chat import _environment, chat_messages, render_chat
from playground.gguf_file import read_header

ROUNDS = 300


def main() -> None:
    template = read_header(paths.embedded_model_path()).metadata["tokenizer.chat_template"]
    messages = chat_messages("Why is the sky blue? " * 20, system="You are helpful.")
    env = _environment()

    def in_process() -> str:
        return env.from_string(template).render(messages=messages, bos_token="", eos_token="",
                                                add_generation_prompt=True)

    started = time.perf_counter()
    child_text = render_chat(template, messages)
    first = time.perf_counter() - started
    assert child_text == in_process()
    for name, render in (("in process, as before", in_process),
                         ("in the child, now", lambda: render_chat(template, messages))):
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            render()
            times.append(time.perf_counter() - started)
        times.sort()
        print(f"{name:24} median {statistics.median(times) * 1e3:7.3f} ms   "
              f"p95 {times[int(ROUNDS * 0.95)] * 1e3:7.3f} ms")
    print(f"first render, which starts the child: {first * 1e3:.0f} ms")


if __name__ == "__main__":
    main()

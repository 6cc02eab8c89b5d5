"""What every demonstration shares: its registry entry, its request, the ready scenarios, and
the helpers its runner uses.

Each demonstration has ready scenarios in `resources/demos/` (prompts and the settings that show
the effect with the embedded 135M model, profile "small", and with a typical 1B-3B model,
profile "medium"). A demonstration's runner takes explicit arguments, so that the GUI can run
what the user edited and the CLI what its flags say; both start from a `Scenario`. Every runner
takes `progress(done, total)` and `cancel()`, and a cancelled run raises `Cancelled`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playground import paths
from playground.errors import Cancelled, InvalidRequestError
from playground.gguf_file import ModelInfo
from playground.records import Run, SampleEnd, json_float
from playground.sampling import Constraint, SamplingParams
from playground.scoring import mean_logprob

if TYPE_CHECKING:
    from playground.engine_api import Engine

SCENARIO_DIR = paths.resource_dir("demos")

PROFILES = ("small", "medium")
MEDIUM_PARAMETERS = 700e6
"""Models from this size on get a scenario's "medium" settings (written for 1B-3B models)."""

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


def never() -> bool:
    return False


def quiet(_done: int, _total: int) -> None:
    pass


# ================================================================ scenarios


@dataclass(frozen=True)
class Scenario:
    """One ready-made demonstration: what to ask, and the settings that show the effect."""

    name: str
    """The file's stem, e.g. "inconsistency-story"."""
    demo: str
    title: str
    explanation: str
    """Plain language, for the screen: what the viewer is about to see and why it happens."""
    steps: tuple[str, ...]
    """Captions for the step-by-step reveal of presentation mode, one per section of the view."""
    prompt: str
    chat: bool
    profiles: dict[str, dict[str, Any]]
    """Sampling settings (SamplingParams fields, plus "n") by profile."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What only this demonstration reads (options, schema, claim, branch, ...)."""

    def params(self, profile: str) -> tuple[SamplingParams, int]:
        """The profile's sampling parameters (seed unresolved unless the file fixes it) and N."""
        settings = dict(self.profiles.get(profile) or self.profiles["small"])
        n = int(settings.pop("n", 1))
        return SamplingParams(**settings).validate(), n


def _registered() -> list[str]:
    """The demonstrations' names, in the app's order. Imported here, not at the top: the
    registry imports every demonstration, and each of them imports this module."""
    from playground.demos import DEMOS

    return list(DEMOS)


def load_scenario(path: Path) -> Scenario:
    """Read one scenario file; a malformed one is an InvalidRequestError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        demo = data.pop("demo")
        if demo not in _registered():
            raise ValueError(f"unknown demo {demo!r}")
        scenario = Scenario(
            name=path.stem,
            demo=demo,
            title=data.pop("title"),
            explanation=data.pop("explanation"),
            steps=tuple(data.pop("steps")),
            prompt=data.pop("prompt", ""),
            chat=bool(data.pop("chat", True)),
            profiles=data.pop("profiles"),
            extra=data,
        )
        for profile in scenario.profiles:
            scenario.params(profile)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidRequestError(f"{path.name}: not a usable scenario ({error})") from error
    return scenario


def scenarios(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    """Every scenario, in the order of the registry, then by name."""
    found = [load_scenario(p) for p in sorted(directory.glob("*.json"))]
    order = _registered()
    return sorted(found, key=lambda s: (order.index(s.demo), s.name))


def find_scenario(name: str, directory: Path = SCENARIO_DIR) -> Scenario:
    """A scenario by file stem, or the first scenario of a demo by the demo's name."""
    every = scenarios(directory)
    for scenario in every:
        if scenario.name == name:
            return scenario
    for scenario in every:
        if scenario.demo == name:
            return scenario
    names = ", ".join(s.name for s in every)
    raise InvalidRequestError(f"no scenario {name!r}; there are: {names}")


def profile_for(info: ModelInfo) -> str:
    return "medium" if info.parameters >= MEDIUM_PARAMETERS else "small"


# ================================================================ the registry's entries


@dataclass(frozen=True)
class DemoRequest:
    """One run of a demonstration as the CLI asks for it: a scenario, with what the user
    changed. Every demonstration's `run` takes this and reads what it needs."""

    scenario: Scenario
    prompt: str
    """The scenario's prompt (or question), or the user's in its place."""
    params: SamplingParams
    """The scenario's profile settings, with the user's changes."""
    n: int
    engine: Engine | None
    """The loaded model; None for a demonstration that loads its own (`Demo.needs_engine`)."""
    model: Path | None = None
    """The model the user chose (None: the embedded one), for a demonstration that loads it."""
    judge: bool = True
    """Hallucination: score support with the judge too, not only by word overlap."""
    sentence: int | None = None
    """Tokens: which parallel sentence (None: the scenario's)."""
    base_model: Path | None = None
    """Base against instruct: the base GGUF (None: the default one)."""
    progress: Progress = quiet
    cancel: Cancel = never


@dataclass(frozen=True)
class Demo:
    """A demonstration as the CLI and the Demos tab find it in the registry."""

    name: str
    """What scenario files and the command line call it, e.g. "base-vs-instruct"."""
    title: str
    """What the app lists."""
    run: Callable[[DemoRequest], dict[str, Any]]
    """Run the request; returns the JSON document of `playground demo NAME --json`."""
    summary: Callable[[dict[str, Any]], Iterator[str]]
    """A few plain lines from that document, for the CLI without --json."""
    needs_engine: bool = True
    """False when the demonstration loads the models it compares itself."""


def engine_of(request: DemoRequest) -> Engine:
    """The request's loaded model, which a demonstration that `needs_engine` must be given."""
    if request.engine is None:
        raise ValueError(f"{request.scenario.demo} runs on a loaded model: give it one")
    return request.engine


# ================================================================ helpers for the runners


def generate(
    engine: Engine,
    run: Run,
    cancel: Cancel,
    on_sample: Callable[[], None] = lambda: None,
    constraint: Callable[[], Constraint] | None = None,
) -> Run:
    """Fill `run`; raise Cancelled if `cancel` stopped it."""
    for event in engine.generate(run, cancel=cancel, constraint=constraint):
        run.add(event)
        if isinstance(event, SampleEnd):
            on_sample()
    if cancel():
        raise Cancelled()
    return run


def chat_for(engine: Engine, chat: bool) -> bool:
    """Whether a prompt goes in the model's chat template: when asked and the model has one. A
    base model reads it as plain text, so that every demonstration works with it too."""
    return chat and engine.chat_template is not None


def start(engine: Engine, prompt: str, params: SamplingParams, n: int, chat: bool, *,
          same_seed: bool = False) -> Run:
    return engine.start_run(prompt, params, n, chat=chat_for(engine, chat), same_seed=same_seed)


def counter(progress: Progress, total: int) -> Callable[[], None]:
    """A step function that reports one more of `total` done each call (0 done at once)."""
    done = 0
    progress(0, total)

    def step() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    return step


def samples_json(run: Run) -> list[dict[str, Any]]:
    return [
        {"index": s.index, "seed": s.seed, "text": s.text, "finish_reason": s.finish_reason,
         "mean_logprob": json_float(mean_logprob(s.logprobs))}
        for s in run.samples
    ]


def quoted(text: str) -> str:
    """A text on one indented line, for the CLI summaries."""
    return "  " + " ".join(text.split())

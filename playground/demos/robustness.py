"""Slightly different input: a question reworded (typos, case, spacing, templates, options in
another order) and answered with the same settings and seed, and how often the answers agree."""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from playground.demos.scenario import (
    Cancel,
    Demo,
    DemoRequest,
    Progress,
    counter,
    engine_of,
    generate,
    never,
    quiet,
    quoted,
    start,
)
from playground.records import Run, json_float
from playground.sampling import SamplingParams
from playground.scoring import extract_answer, majority_vote, mean_logprob

if TYPE_CHECKING:
    from playground.engine_api import Engine


# ================================================================ variants


TEMPLATES = (
    ("question-answer", "Question: {q}\nAnswer:"),
    ("answer-briefly", "{q}{sep}Please answer briefly."),
    ("wondering", "I was wondering: {q}"),
)
"""Paraphrases of the prompt's frame that leave its content alone, by name. {sep} is a space, or
a newline after option lines, so that the request does not read as part of the last option."""

_LETTERS = "ABCDE"
"""`extract_answer` reads choices A to E, so at most five options."""


@dataclass(frozen=True)
class Variant:
    """One rewording of a prompt, and how to read its answers in terms of the original."""

    kind: str
    """"original", "typos", "lowercase", "uppercase", "extra-spaces", "template:<name>",
    "reordered" or "user"."""
    text: str
    option_order: tuple[int, ...] | None = None
    """For multiple choice: the original index of the option shown under each letter, so
    option_order[1] == 2 means this variant's "B" is the original "C". None without options."""

    def original_letter(self, letter: str) -> str:
        """The original option's letter for an answer letter of this variant (unchanged when
        the options were not reordered, or the letter is not one of them)."""
        shown = _LETTERS.find(letter.upper())
        if self.option_order is None or not 0 <= shown < len(self.option_order):
            return letter
        return _LETTERS[self.option_order[shown]]


def render_options(question: str, options: Sequence[str]) -> str:
    """The question followed by "A) ..." lines."""
    lines = [f"{_LETTERS[i]}) {option}" for i, option in enumerate(options)]
    return "\n".join([question, *lines])


def prompt_variants(
    question: str, *, seed: int, options: Sequence[str] | None = None
) -> list[Variant]:
    """The original prompt and rewordings a robust model should answer the same way.

    Typos, case and spacing change only the question, never the option lines, so the options
    stay recognisable; the templates frame the whole prompt. With options, a last variant lists
    them in reverse order under fresh letters. The same seed gives the same typos.
    """
    if options is not None and not 1 <= len(options) <= len(_LETTERS):
        raise ValueError(f"between 1 and {len(_LETTERS)} options are supported")
    order = tuple(range(len(options))) if options is not None else None

    def with_options(q: str) -> str:
        return render_options(q, options) if options is not None else q

    original = with_options(question)
    sep = "\n" if "\n" in original else " "
    variants = [
        Variant("original", original, order),
        Variant("typos", with_options(add_typos(question, seed=seed)), order),
        Variant("lowercase", with_options(question.lower()), order),
        Variant("uppercase", with_options(question.upper()), order),
        Variant("extra-spaces", with_options(_extra_spaces(question)), order),
    ]
    variants += [
        Variant(f"template:{name}", template.format(q=original, sep=sep), order)
        for name, template in TEMPLATES
    ]
    if options is not None:
        reversed_order = tuple(reversed(range(len(options))))
        shown = [options[i] for i in reversed_order]
        variants.append(Variant("reordered", render_options(question, shown), reversed_order))
    return variants


def user_variant(text: str, option_order: Sequence[int] | None = None) -> Variant:
    """A rewording the user typed; give `option_order` if it lists the options differently."""
    return Variant("user", text, tuple(option_order) if option_order is not None else None)


def add_typos(text: str, *, seed: int, count: int | None = None) -> str:
    """Swap two neighbouring letters or drop one, at `count` places inside words of four letters
    or more (never their first letter, which keeps words readable, as human typos usually do).
    By default one typo per 25 characters, at least one. Deterministic for a seed."""
    rng = random.Random(seed)
    places = [
        m.start() + k
        for m in re.finditer(r"[^\W\d_]{4,}", text)
        for k in range(1, len(m.group()) - 1)
    ]
    if count is None:
        count = max(1, len(text) // 25)
    chosen = sorted(rng.sample(places, min(count, len(places))), reverse=True)
    chars = list(text)
    for i in chosen:  # right to left, so earlier places keep their index
        if rng.random() < 0.5:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            del chars[i]
    return "".join(chars)


def _extra_spaces(text: str) -> str:
    return "  " + re.sub(r" ", "   ", text) + "  "


@dataclass(frozen=True)
class VariantAgreement:
    """How consistently a model answered the variants of one prompt."""

    answer: str | None
    """The most frequent answer (in terms of the original options); None when none parsed."""
    kind: str
    """The answer kind used for every variant (see `majority_vote`)."""
    share: float
    """Variants giving `answer` / all variants; unparsed ones count in the denominator."""
    answers: tuple[str | None, ...]
    """Each variant's canonical answer, mapped back to the original option letters."""
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    """Every answer with its variants: largest group first, then the one given first."""

    @property
    def agrees(self) -> tuple[bool, ...]:
        return tuple(a is not None and a == self.answer for a in self.answers)


_OPTION_LINE = re.compile(r"^([A-E])\) (.+)$", re.MULTILINE)


def _named_option(prompt: str, output: str) -> str | None:
    """The letter of the only option of `prompt` whose text appears in `output` as whole
    words (any case); None when none or several do."""
    named = [
        letter for letter, text in _OPTION_LINE.findall(prompt)
        if re.search(rf"(?<!\w){re.escape(text.strip())}(?!\w)", output, re.IGNORECASE)
    ]
    return named[0] if len(named) == 1 else None


def variant_agreement(variants: Sequence[Variant], outputs: Sequence[str]) -> VariantAgreement:
    """Extract each variant's answer from its output, map reordered options back, and vote.

    Multiple-choice variants are always read as choices: by the letter given, or, with no
    letter, by the one option whose text the output names ("The Red Planet is Mars."). Otherwise
    the kind is chosen over all outputs as `majority_vote` does. Ties go to the answer given
    first.
    """
    if len(variants) != len(outputs):
        raise ValueError("one output per variant is needed")
    if any(v.option_order is not None for v in variants):
        kind = "choice"
    else:
        kind = majority_vote(list(outputs)).kind
    answers: list[str | None] = []
    for variant, output in zip(variants, outputs, strict=True):
        answer = extract_answer(output, kind)
        if kind != "choice":
            answers.append(answer.value if answer else None)
            continue
        letter = answer.value if answer else _named_option(variant.text, output)
        answers.append(variant.original_letter(letter) if letter else None)
    by_value: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        if answer is not None:
            by_value.setdefault(answer, []).append(i)
    groups = tuple(
        (value, tuple(members))
        for value, members in sorted(by_value.items(), key=lambda item: -len(item[1]))
    )
    winner, voters = groups[0] if groups else (None, ())
    share = len(voters) / len(outputs) if outputs else 0.0
    return VariantAgreement(winner, kind, share, tuple(answers), groups)


# ================================================================ the run


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
                "mean_logprob": json_float(self.mean_logprobs()[i]),
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
    progress: Progress = quiet,
    cancel: Cancel = never,
) -> RobustnessResult:
    """Every variant of the question (see `prompt_variants`), and the user's own wording
    of it, answered with the same settings and seed, so that only the wording differs."""
    variants = prompt_variants(question, seed=seed, options=options)
    if user_text.strip():
        # The user rewords the question; the options, if any, are listed after it as in the
        # original, so that an answer can be read from every variant alike.
        shown = render_options(user_text, options) if options else user_text
        variants.append(user_variant(shown, variants[0].option_order))
    params = params.resolved()
    step = counter(progress, len(variants))
    runs = []
    for variant in variants:
        run = start(engine, variant.text, params, 1, chat)
        runs.append(generate(engine, run, cancel, step))
    outputs = [r.samples[0].text for r in runs]
    return RobustnessResult(variants, runs, variant_agreement(variants, outputs))


def run(request: DemoRequest) -> dict[str, Any]:
    extra = request.scenario.extra
    return run_robustness(engine_of(request), request.prompt, request.params,
                          options=extra.get("options"), user_text=extra.get("variant", ""),
                          chat=request.scenario.chat, seed=request.params.seed or 0,
                          progress=request.progress, cancel=request.cancel).to_json()


def summary(d: dict[str, Any]) -> Iterator[str]:
    yield f"Majority answer {d['answer']} in {d['share']:.0%} of the variants"
    for v in d["variants"]:
        mark = "agrees" if v["agrees"] else "differs"
        yield f"  {v['kind']:26} {v['answer'] or '-':5} {mark:8}{quoted(v['output'])}"


DEMO = Demo("robustness", "Slightly different input", run, summary)

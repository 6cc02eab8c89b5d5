"""Hallucination and snowballing: which sentences of N answers the other answers back up
(SelfCheckGPT, by word overlap and by a judge), and an answer forced onto another token at one
position, to see the model build on its own mistake."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
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
    start,
)
from playground.errors import Cancelled, InvalidRequestError
from playground.records import Run, RunEnd, Sample, TokenRecord, json_float
from playground.reward import open_reward_model
from playground.sampling import SamplingParams
from playground.scoring import mean_logprob

if TYPE_CHECKING:
    from playground.engine_api import Engine


# ================================================================ consistency (SelfCheckGPT)


FLAG_THRESHOLD = 0.5
"""Sentences with support below this are flagged: on average the other samples repeat fewer
than half of their content words, a sign the detail may be made up (SelfCheckGPT's premise:
what a model knows it says again; what it invents varies from sample to sample)."""

# Written as text, one word per space, because a list literal would run to a hundred lines.
_ABBREVIATIONS = frozenset(
    re.findall(r"\S+", "e.g i.e etc vs mr mrs ms dr prof st jr sr approx fig cf al inc ltd")
)
# A sentence ends at . ! ? (with any closing quotes or brackets) followed by whitespace, or at a
# CJK full stop, which needs no space. Newlines always end one.
_SENTENCE_BREAK = re.compile(r"([.!?]+[\"')\]]*)(?=\s)|([。！？]+)")
_WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+")
_STOPWORDS = frozenset(
    re.findall(
        r"\S+",
        """a an the and or but if then than so of to in on at by for with from into about as is
        are was were be been being am do does did have has had it its this that these those
        there here i you he she we they me him her us them my your his our their what which who
        whom when where why how not no yes can could will would shall should may might must just
        also very too""",
    )
)


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at . ! ? and newlines, stripped, empty ones dropped.

    Kept intact: decimals ("3.14", no space after the point), common abbreviations ("e.g.",
    "Dr.", "etc."), and a point followed by a lowercase word ("approx. three"), which rarely
    starts a sentence.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_BREAK.finditer(line):
            if match.group(1) is not None and not _ends_sentence(line, start, match):
                continue
            sentences.append(line[start : match.end()].strip())
            start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _ends_sentence(line: str, start: int, match: re.Match[str]) -> bool:
    if match.group(1).startswith("."):
        word = line[start : match.start()].split()
        if word and word[-1].lower().rstrip(".") in _ABBREVIATIONS:
            return False
    rest = line[match.end() :].lstrip()
    return not (rest and rest[0].islower())


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _content_words(text: str) -> list[str]:
    """The sentence's distinct words without stopwords, in order; all its words when it has
    nothing but stopwords ("Yes, it is.") so that it can still be compared."""
    words = list(dict.fromkeys(_words(text)))
    # Single letters are clitics ("France's" gives "s") or initials, not content.
    content = [w for w in words if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]
    return content or words


@dataclass(frozen=True)
class SentenceSupport:
    """How much the other samples back up one sentence of one sample."""

    sample: int
    """Index of the sample in the list given to `sentence_support`."""
    index: int
    """The sentence's position in its sample."""
    text: str
    support: float
    """Mean over the other samples of the fraction of this sentence's content words they
    contain: 1 when every other sample uses all of them, 0 when none uses any. NaN when there
    is no other sample; 1 for a sentence with no words at all (nothing to contradict)."""
    unsupported: tuple[str, ...]
    """Content words that no other sample contains: the likely invented details."""

    @property
    def flagged(self) -> bool:
        return self.support < FLAG_THRESHOLD


def sentence_support(samples_texts: Sequence[str]) -> list[list[SentenceSupport]]:
    """Score every sentence of every sample by how much the other samples support it.

    Support is the content-word recall against each other sample, averaged over the others.
    Recall rather than F1, because another sample that says more (or says it at more length)
    still supports the sentence; the average rather than the max, because a detail one other
    sample happens to repeat is still a detail most samples do not share. Words are lowercased
    and compared as whole words, anywhere in the other sample, so reordering does not matter.
    This is the n-gram flavour of SelfCheckGPT (Manakul et al. 2023) at unigram order: cheap,
    needs no second model, and blind to negation ("is" / "is not" share their content words).
    """
    vocabularies = [set(_words(text)) for text in samples_texts]
    result = []
    for i, text in enumerate(samples_texts):
        others = [v for j, v in enumerate(vocabularies) if j != i]
        scored = []
        for k, sentence in enumerate(split_sentences(text)):
            words = _content_words(sentence)
            if not others:
                support = math.nan
            elif not words:
                support = 1.0
            else:
                support = statistics.fmean(
                    sum(w in other for w in words) / len(words) for other in others
                )
            unsupported = tuple(w for w in words if not any(w in other for other in others))
            scored.append(SentenceSupport(i, k, sentence, support, unsupported))
        result.append(scored)
    return result


# ================================================================ the runs


SUPPORT_RUBRIC = ("Does the reference answer above agree with the response? Answer yes or no.")
"""The judge's question for SelfCheck support: asked of one sentence against another sample."""
SUPPORT_CONTEXT = "{question}\n\nReference answer:\n{reference}"


@dataclass
class ConsistencyResult:
    run: Run
    overlap: list[list[SentenceSupport]]
    """Unigram support of every sentence of every sample (see `sentence_support`)."""
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
                    {"text": x.text, "overlap": json_float(x.support), "judge": json_float(j)
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
    progress: Progress = quiet,
    cancel: Cancel = never,
) -> ConsistencyResult:
    """N samples, each sentence scored by how much the other samples support it."""
    if n < 2:
        raise InvalidRequestError("consistency needs at least 2 samples to compare")
    step = counter(progress, n + (n if judge else 0))
    run = generate(engine, start(engine, prompt, params.resolved(), n, chat), cancel, step)
    texts = [s.text for s in run.samples]
    overlap = sentence_support(texts)
    judged = judge_support(engine, prompt, texts, cancel=cancel, step=step) if judge else None
    return ConsistencyResult(run, overlap, judged)


def judge_support(
    engine: Engine,
    question: str,
    texts: Sequence[str],
    *,
    cancel: Cancel = never,
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
    cancel: Cancel = never,
) -> Sample:
    """Take `prefix`, then the `forced` tokens whatever their probability, then sample on.

    The forced tokens are scored as the model sees them (teacher forcing), so the branch's
    records show how unlikely they were; everything after is generated as usual.
    """
    engine.capabilities.require("teacher_forcing", "forcing a token")
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
                "mean_logprob": json_float(mean_logprob(s.logprobs)), "tokens": tokens(s.tokens)}
        original = self.run.samples[0]
        return {
            "prompt": self.run.prompt,
            "original": {"text": original.text, "tokens": tokens(original.tokens),
                         "mean_logprob": json_float(mean_logprob(original.logprobs))},
            "branch": branch,
            "claim": {"tokens": tokens(self.claim),
                      "mean_logprob": json_float(mean_logprob([r.logprob for r in self.claim]))},
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
    progress: Progress = quiet,
    cancel: Cancel = never,
) -> SnowballResult:
    """One answer; a branch forcing `branch_text` in place of the token where `branch_at` first
    appears in the answer (else at `branch_position`); `claim` teacher-forced after the same
    prompt."""
    step = counter(progress, 3)
    run = generate(engine, start(engine, prompt, params.resolved(), 1, chat), cancel, step)
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
    engine.capabilities.require("teacher_forcing", "scoring a given text")
    tokens = engine.tokenize(text, add_special=False)
    if not tokens:
        raise InvalidRequestError("the text to score is empty")
    return engine.teacher_force(prompt_tokens, tokens, top_logprobs)


def run(request: DemoRequest) -> dict[str, Any]:
    engine, scenario = engine_of(request), request.scenario
    # The answers take the time; the snowball, about one answer's worth, is not reported.
    consistency = run_consistency(engine, request.prompt, request.params, request.n,
                                  chat=scenario.chat, judge=request.judge,
                                  progress=request.progress, cancel=request.cancel)
    snow = scenario.extra["snowball"]
    snowball = run_snowball(
        engine, snow["prompt"], snowball_params(snow, request.params), chat=snow["chat"],
        branch_at=snow.get("at", ""), branch_position=snow.get("position"),
        branch_text=snow["text"], claim=snow["claim"], cancel=request.cancel)
    return {"consistency": consistency.to_json(), "snowball": snowball.to_json()}


def summary(d: dict[str, Any]) -> Iterator[str]:
    for sample in d["consistency"]["samples"]:
        yield f"Answer {sample['index'] + 1}:"
        for x in sample["sentences"]:
            judge = "" if x["judge"] is None else f", judge {x['judge']:.0%}"
            flag = "  << low support" if x["flagged"] else ""
            yield f"  [{x['overlap']:.0%}{judge}] {x['text']}{flag}"
    snow = d["snowball"]
    yield f"Original: {snow['original']['text']!r}"
    if snow["branch"]:
        yield f"Forced:   {snow['branch']['text']!r}"
    claim = snow["claim"]["tokens"]
    yield "Claim: " + " ".join(f"{t['text']!r}={t['prob']:.1%}" for t in claim)


DEMO = Demo("hallucination", "Hallucination and snowballing", run, summary)

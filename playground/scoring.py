"""Test-time compute: rank N samples of one prompt, by log-probability or by majority vote.

Best-of-N keeps the sample the model itself found most likely. Three scores are offered because
they disagree on length: the sum favours short answers, the mean ignores length, and the GNMT
length penalty (Wu et al. 2016) sits between them.

Self-consistency (Wang et al. 2022) instead extracts a final answer from every sample and keeps
the most frequent one. Extraction is the hard part; the rules are documented on
`extract_answer` and `majority_vote`.

Everything here is pure Python and knows nothing of models or Qt, so it can be tested alone.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

# ---------------------------------------------------------------- rankings


@dataclass(frozen=True)
class Ranking:
    """N samples ordered best first by one method."""

    method: str
    """How the samples were scored: a key of `LOGPROB_SCORES`, "vote", or e.g. "reward"."""
    order: tuple[int, ...]
    """Sample indices, best first."""
    scores: tuple[float, ...]
    """The score of each sample in `order`, parallel to it (best first); higher is better."""

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "order": list(self.order),
            "scores": [float(s) if math.isfinite(s) else None for s in self.scores],
        }


def mean_logprob(logprobs: Sequence[float]) -> float:
    """Average token log-probability; -inf for an empty sample."""
    if not logprobs:
        return -math.inf
    return math.fsum(logprobs) / len(logprobs)


def sum_logprob(logprobs: Sequence[float]) -> float:
    """Log-probability of the whole sample; -inf for an empty sample.

    An empty sample has probability 1 in theory, but it carries no evidence, so like under the
    other scores it ranks last rather than first.
    """
    if not logprobs:
        return -math.inf
    return math.fsum(logprobs)


def normalized_logprob(logprobs: Sequence[float], alpha: float = 0.6) -> float:
    """Sum divided by the GNMT length penalty ((5 + n) / 6) ** alpha; -inf for an empty sample.

    alpha = 0 is the plain sum; alpha = 1 is close to the mean for long samples.
    """
    if not logprobs:
        return -math.inf
    return math.fsum(logprobs) / (((5 + len(logprobs)) / 6) ** alpha)


LOGPROB_SCORES: dict[str, Callable[[Sequence[float]], float]] = {
    "mean-logprob": mean_logprob,
    "sum-logprob": sum_logprob,
    "normalized-logprob": normalized_logprob,
}


def rank_by_scores(scores: Sequence[float], method: str) -> Ranking:
    """Order samples by score, higher first. NaN sorts last; ties go to the lower index."""
    order = sorted(
        range(len(scores)), key=lambda i: (math.isnan(scores[i]), -_nan_as_lowest(scores[i]), i)
    )
    return Ranking(method, tuple(order), tuple(float(scores[i]) for i in order))


def _nan_as_lowest(score: float) -> float:
    # NaN is already sorted by the first key; mapping it keeps the tuple comparison total.
    return -math.inf if math.isnan(score) else score


def rank_by_logprob(samples_logprobs: Sequence[Sequence[float]], method: str) -> Ranking:
    """Rank samples by one of `LOGPROB_SCORES` over their per-token log-probabilities."""
    score = LOGPROB_SCORES.get(method)
    if score is None:
        known = ", ".join(LOGPROB_SCORES)
        raise ValueError(f"unknown ranking method {method!r}; expected one of: {known}")
    return rank_by_scores([score(logprobs) for logprobs in samples_logprobs], method)


def kendall_tau(order_a: Sequence[int], order_b: Sequence[int]) -> float:
    """Kendall tau-b between two orders (best first) of the same samples.

    1.0 for identical orders, -1.0 for reversed ones. Fewer than two samples agree trivially.
    """
    if len(set(order_a)) != len(order_a) or len(set(order_b)) != len(order_b):
        raise ValueError("a ranking lists the same sample twice")
    if set(order_a) != set(order_b):
        raise ValueError("the two rankings are not of the same samples")
    if len(order_a) < 2:
        return 1.0
    position_b = {sample: rank for rank, sample in enumerate(order_b)}
    tau = kendall_tau_b([-rank for rank in range(len(order_a))],
                        [-position_b[sample] for sample in order_a])
    assert tau is not None, "a strict order ties no pair"
    return tau


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two score lists (higher is better in both); None when either side
    ties every pair."""
    n = len(x)
    pairs = n * (n - 1) // 2
    s = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            s += dx * dy
            tied_x += dx == 0
            tied_y += dy == 0
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    return s / denominator if denominator else None


def top_agrees(a: Ranking, b: Ranking) -> bool:
    """Whether the two rankings share a best sample.

    Every sample tied with the first one counts as best, so a vote ranking (where all voters of
    the winning answer share one score) agrees with best-of-N when its pick voted for the winner.
    """
    return bool(_best_samples(a) & _best_samples(b))


def _best_samples(ranking: Ranking) -> set[int]:
    if not ranking.order:
        return set()
    top = ranking.scores[0]
    return {
        sample
        for sample, score in zip(ranking.order, ranking.scores, strict=True)
        if score == top or (math.isnan(score) and math.isnan(top))
    }


# ---------------------------------------------------------------- answer extraction

_ANSWER_KINDS = ("choice", "yesno", "number", "text")
"""The kinds an answer can have, in the order `majority_vote` prefers them on a tie."""


@dataclass(frozen=True)
class Answer:
    """The final answer found in one sample."""

    kind: str
    """"choice", "yesno", "number" or "text"."""
    value: str
    """Canonical form, equal for answers that mean the same: "1234", "0.75", "1/3", "B", "yes"."""
    raw: str
    """The part of the sample it was read from."""


# A number as written: 1,234.5 with thousands commas, 12.5, .5 (a European "12,5" is not handled).
_UNSIGNED = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(
    rf"""
    (?<![\w.])                      # not the tail of a word (H2O, x2) or of another number
    (?P<sign>[-−]?)
    (?:
        \\[dt]?frac\{{\s*(?P<frac_num>[-−]?(?:{_UNSIGNED}))\s*\}}\{{\s*(?P<frac_den>{_UNSIGNED})\s*\}}
      | \\[dt]?frac(?P<short_num>\d)(?P<short_den>\d)                  # \frac34
      | (?P<num>{_UNSIGNED})(?:\s*/\s*(?P<den>{_UNSIGNED}))?            # 12, 3/4
    )
    """,
    re.VERBOSE,
)
# "1. First..." or "2) Then..." at the start of a line, and "Step 3": counters, not answers.
_LIST_MARKER_AFTER = re.compile(r"[.)][ \t]+\S")
_LIST_MARKER_BEFORE = re.compile(r"[ \t*]*")
_COUNTER_BEFORE = re.compile(r"(?i)\b(?:step|part|case)\s*$")

# "Answer:" only counts at a line start or as "final answer:"; mid-sentence ("to find the
# answer: first...") it introduces working, not the result.
_ANSWER_PHRASE = re.compile(
    r"""
    (?:
        \b(?:answer|option|choice)\b[*_\s]*(?:is|would\s+be|will\s+be)\b   # the answer is
      | ^[\s*_\#>]*(?:final\s+)?answer\b[*_\s]*[:=]                      # Answer: / **Answer:**
      | \bfinal\s+answer\b[*_\s]*[:=]                                     # so, final answer:
    )
    [*_:\s]*
    """,
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
_GSM8K_MARKER = re.compile(r"####[ \t]*")
# A full stop needs a space after it, so 12.5 does not end a sentence.
_SENTENCE_END = re.compile(r"\n|[.!?;](?=\s|\Z)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Markup that may precede an answer without being part of it: $ ** \text{ \$, and for numbers
# also brackets (a choice keeps its "(B)", whose brackets tell it from an article).
_CHOICE_MARKUP = re.compile(r"(?:[\s*_$]|\\\$|\\[a-zA-Z]+\{)*")
_NUMBER_MARKUP = re.compile(r"(?:[\s*_$(\[{]|\\\$|\\[a-zA-Z]+\{)*")

_CHOICE_AT_SPAN_START = re.compile(
    r"(?:(?i:option|choice)\s+)?(?:\(([A-Ea-e])\)|\[([A-Ea-e])\]|([A-E])(?![\w']))"
)
# Stricter at the start of a whole sample, where "A cat..." is an article: the letter must stand
# alone or be followed by ".", ":", ")" or bold markup.
_CHOICE_AT_TEXT_START = re.compile(
    r"\A[\s*_]*(?:\(([A-E])\)|\[([A-E])\]|([A-E])(?:[.:)]|\*\*|\s*\Z))"
)
_CHOICE_MARKERS = re.compile(
    r"""
      (?<!\w)\(([A-E])\)                          # (B), but not f(A)
    | (?<![\w(\[])([A-E])\)                       # B)
    | \*\*\(?([A-E])\)?[.:]?\*\*                  # **D**
    | (?i:\b(?:option|choice))\s+\(?([A-E])\b    # Option E
    """,
    re.VERBOSE,
)
_YESNO_AT_START = re.compile(r"(?i)\A[\s*_$\"'(]*(?:\\text\{\s*)?(yes|no)\b")


def extract_answer(text: str, kind: str = "auto") -> Answer | None:
    """Find the final answer of one sample, or None when there is none of that kind.

    First the explicit answer spans are looked for, most explicit first: the last `\\boxed{}`,
    the text after the last "####" (GSM8K), the text after the last "the answer is" / "Answer:".

    - number: the number leading an answer span (or its part after the last "="), else the last
      number in the text, skipping list markers and "Step 2" if anything else is there.
      Thousands commas, currency, units and % are dropped; fractions, decimals and `\\frac` are
      compared by value: the canonical form is an integer ("12"), a terminating decimal
      ("0.75", so 3/4 and 6/8 too), or else a reduced fraction ("1/3").
    - choice: a letter A-E leading an answer span, else the last marker such as "(B)", "B)",
      "**B**" or "Option B", else a letter the text opens with ("B.", "B:", or "B" alone; an
      "A" followed by a word is an article).
    - yesno: yes/no at the start of the text, else leading an answer span.
    - text: the first answer span, else the last non-empty line, normalised: lowercase, without
      punctuation, symbols or articles, whitespace collapsed.
    - auto: if there is an answer span, it is read as choice, yes/no, number, or else text, in
      that order. Otherwise the whole text is read as choice, yes/no, number, then text: the
      stricter kinds first, because almost any text contains a number somewhere.
    """
    extract = _EXTRACTORS.get(kind)
    if extract is None:
        known = ", ".join(("auto", *_ANSWER_KINDS))
        raise ValueError(f"unknown answer kind {kind!r}; expected one of: {known}")
    return extract(text)


def _extract_auto(text: str) -> Answer | None:
    spans = [span for span in _answer_spans(text) if span.strip()]
    if spans:
        span = spans[0]
        return (
            _choice_leading(span)
            or _yesno_leading(span)
            or _number_leading(span)
            or _text_answer(span)
        )
    return (
        _extract_choice(text)
        or _extract_yesno(text)
        or _extract_number(text)
        or _extract_text(text)
    )


def _answer_spans(text: str) -> Iterator[str]:
    """Where the sample states its answer, most explicit first."""
    boxed = _last_boxed(text)
    if boxed is not None:
        yield boxed
    for marker in (_GSM8K_MARKER, _ANSWER_PHRASE):
        matches = list(marker.finditer(text))
        if matches:
            yield _sentence_at(text, matches[-1].end())


def _last_boxed(text: str) -> str | None:
    # Braces nest (\boxed{\frac{3}{4}}), so the closing one is found by counting, not by a regex.
    for match in reversed(list(_BOXED.finditer(text))):
        depth = 1
        for i in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[match.end() : i]
    return None


def _sentence_at(text: str, start: int) -> str:
    # What follows the statement ("Check: 18 - 10 = 8.") is not part of the answer.
    end = _SENTENCE_END.search(text, start)
    return text[start : end.start() if end else len(text)]


# -- numbers


def _extract_number(text: str) -> Answer | None:
    for span in _answer_spans(text):
        answer = _number_leading(span)
        if answer is not None:
            return answer
    return _last_number(text)


def _number_leading(span: str) -> Answer | None:
    """The number an answer span starts with, ignoring markup.

    After an "=" the result comes last ("x = 5", "3 + 4 = 7"), so that part is tried first.
    """
    for part in (span.rpartition("=")[2], span):
        first = next(_numbers(part), None)
        if first is not None and first[1].start() <= _NUMBER_MARKUP.match(part).end():
            return _number_answer(*first)
    return None


def _last_number(text: str) -> Answer | None:
    found = list(_numbers(text))
    if not found:
        return None
    answers = [(value, match) for value, match in found if not _is_counter(text, match)]
    value, match = (answers or found)[-1]
    return _number_answer(value, match)


def _is_counter(text: str, match: re.Match[str]) -> bool:
    line_start = text.rfind("\n", 0, match.start()) + 1
    list_marker = _LIST_MARKER_BEFORE.fullmatch(
        text, line_start, match.start()
    ) and _LIST_MARKER_AFTER.match(text, match.end())
    return bool(list_marker or _COUNTER_BEFORE.search(text, line_start, match.start()))


def _numbers(text: str) -> Iterator[tuple[Fraction, re.Match[str]]]:
    for match in _NUMBER.finditer(text):
        value = _number_value(match)
        if value is not None:
            yield value, match


def _number_value(match: re.Match[str]) -> Fraction | None:
    groups = match.groupdict()
    if groups["frac_num"] is not None:
        numerator, denominator = groups["frac_num"], groups["frac_den"]
    elif groups["short_num"] is not None:
        numerator, denominator = groups["short_num"], groups["short_den"]
    else:
        numerator, denominator = groups["num"], groups["den"] or "1"
    numerator_value, denominator_value = _parse_decimal(numerator), _parse_decimal(denominator)
    if denominator_value == 0:
        return None
    value = numerator_value / denominator_value
    return -value if groups["sign"] else value


def _parse_decimal(written: str) -> Fraction:
    return Fraction(written.replace(",", "").replace("−", "-"))


def _number_answer(value: Fraction, match: re.Match[str]) -> Answer:
    return Answer("number", _canonical_number(value), match.group(0).strip())


def _canonical_number(value: Fraction) -> str:
    """An integer, else a terminating decimal without trailing zeros, else a reduced fraction.

    Equal values always give the same string: 3/4, 6/8 and 0.75 are all "0.75".
    """
    if value.denominator == 1:
        return str(value.numerator)
    digits = _decimal_digits(value.denominator)
    if digits is None:
        return str(value)
    scaled = abs(value.numerator) * (10**digits // value.denominator)
    whole, fraction = divmod(scaled, 10**digits)
    sign = "-" if value < 0 else ""
    return f"{sign}{whole}.{fraction:0{digits}d}".rstrip("0")


def _decimal_digits(denominator: int) -> int | None:
    """How many decimals 1/denominator needs, or None if its expansion never ends."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    return max(twos, fives) if denominator == 1 else None


# -- multiple choice


def _extract_choice(text: str) -> Answer | None:
    for span in _answer_spans(text):
        answer = _choice_leading(span)
        if answer is not None:
            return answer
    # Reasoning ends with its conclusion, so the last marker beats a letter the text opens with.
    match = next(reversed(list(_CHOICE_MARKERS.finditer(text))), None)
    if match is None:
        match = _CHOICE_AT_TEXT_START.match(text)
    return None if match is None else _choice_answer(match)


def _choice_leading(span: str) -> Answer | None:
    match = _CHOICE_AT_SPAN_START.match(span, _CHOICE_MARKUP.match(span).end())
    return None if match is None else _choice_answer(match)


def _choice_answer(match: re.Match[str]) -> Answer:
    letter = next(group for group in match.groups() if group)
    return Answer("choice", letter.upper(), match.group(0).strip())


# -- yes / no


def _extract_yesno(text: str) -> Answer | None:
    answer = _yesno_leading(text)
    if answer is not None:
        return answer
    for span in _answer_spans(text):
        answer = _yesno_leading(span)
        if answer is not None:
            return answer
    return None


def _yesno_leading(span: str) -> Answer | None:
    match = _YESNO_AT_START.match(span)
    return None if match is None else Answer("yesno", match.group(1).lower(), match.group(1))


# -- free text


def _extract_text(text: str) -> Answer | None:
    span = next((span for span in _answer_spans(text) if span.strip()), None)
    if span is None:
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return None
        span = lines[-1]
    return _text_answer(span)


def _text_answer(span: str) -> Answer | None:
    value = _normalize_text(span)
    return Answer("text", value, span.strip()) if value else None


_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _normalize_text(text: str) -> str:
    """SQuAD-style normal form: lowercase, no punctuation, symbols or articles, single spaces."""
    text = _LATEX_TEXT.sub(r"\1", unicodedata.normalize("NFKC", text)).lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


_EXTRACTORS: dict[str, Callable[[str], Answer | None]] = {
    "auto": _extract_auto,
    "choice": _extract_choice,
    "yesno": _extract_yesno,
    "number": _extract_number,
    "text": _extract_text,
}


# ---------------------------------------------------------------- majority vote


@dataclass(frozen=True)
class Vote:
    """The result of self-consistency: the most frequent answer among the samples."""

    answer: str | None
    """The winning canonical answer; None when no sample had one."""
    kind: str
    """The answer kind used for every sample (see `majority_vote`)."""
    share: float
    """Voters of the winner / all samples; samples without an answer count in the denominator."""
    voters: tuple[int, ...]
    """Indices of the samples that gave the winning answer."""
    unparsed: tuple[int, ...]
    """Indices of the samples with no answer of this kind."""
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    """Every answer with its voters: largest group first, then the one voted for first."""
    answers: tuple[Answer | None, ...]
    """The answer of each sample, by sample index."""

    def to_json(self) -> dict:
        return {
            "answer": self.answer,
            "kind": self.kind,
            "share": self.share,
            "voters": list(self.voters),
            "unparsed": list(self.unparsed),
            "groups": [
                {"answer": answer, "voters": list(voters)} for answer, voters in self.groups
            ],
        }


def majority_vote(texts: Sequence[str], kind: str = "auto") -> Vote:
    """Extract one answer per sample and find the most frequent.

    With kind="auto" one kind is chosen for the whole set, so that all answers are comparable:
    the one of choice, yesno and number that parses the most samples, ties going in that order
    (a multiple-choice sample often also contains numbers, never the reverse). Free text parses
    every non-empty sample, so it would always win the count; it is used only when no sample
    has an answer of the other kinds. Ties between equally large groups go to the group whose
    first voter has the lower index.
    """
    if kind == "auto":
        kind = _vote_kind(texts)
    return vote_of(tuple(extract_answer(text, kind) for text in texts), kind)


def vote_of(answers: Sequence[Answer | None], kind: str) -> Vote:
    """Group already extracted answers (one per sample, None when unparsed) into a vote."""
    answers = tuple(answers)
    by_value: dict[str, list[int]] = {}
    for index, answer in enumerate(answers):
        if answer is not None:
            by_value.setdefault(answer.value, []).append(index)
    # dicts keep insertion order, i.e. by first voter, so a stable sort on size alone breaks ties.
    groups = tuple(
        (value, tuple(voters))
        for value, voters in sorted(by_value.items(), key=lambda item: -len(item[1]))
    )
    winner, voters = groups[0] if groups else (None, ())
    return Vote(
        answer=winner,
        kind=kind,
        share=len(voters) / len(answers) if answers else 0.0,
        voters=voters,
        unparsed=tuple(i for i, answer in enumerate(answers) if answer is None),
        groups=groups,
        answers=answers,
    )


def _vote_kind(texts: Sequence[str]) -> str:
    structured = _ANSWER_KINDS[:-1]
    parsed = [sum(extract_answer(text, kind) is not None for text in texts) for kind in structured]
    best = max(parsed, default=0)
    # index() finds the first of the equally good kinds, i.e. the tie-break order.
    return structured[parsed.index(best)] if best else "text"


def rank_by_vote(vote: Vote) -> Ranking:
    """Samples grouped by answer, largest group first, each scored by its group's share.

    Within a group samples keep their index order; samples without an answer come last with 0.
    """
    total = len(vote.answers)
    order: list[int] = []
    scores: list[float] = []
    for _, voters in vote.groups:
        order.extend(voters)
        scores.extend([len(voters) / total] * len(voters))
    order.extend(vote.unparsed)
    scores.extend([0.0] * len(vote.unparsed))
    return Ranking("vote", tuple(order), tuple(scores))

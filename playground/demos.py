"""The computations behind the demonstrations: where samples fork, which sentences the other
samples back up, how answers hold up under reworded prompts, how often structured output is
valid, and what a tokenizer costs each language.

Everything here is Qt-free and, apart from `GrammarConstraint`, `token_counts` and
`median_tokens` (which need an `Engine`), pure Python over records and strings, so that the GUI,
the CLI and the tests drive the same code.
"""

from __future__ import annotations

import ctypes
import json
import math
import random
import re
import statistics
import unicodedata
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import json_schema_to_gbnf

from playground import paths
from playground.analysis import Branch, Divergence
from playground.records import Sample
from playground.sampling import top_indices
from playground.scoring import extract_answer, majority_vote

if TYPE_CHECKING:
    from playground.engine_api import Engine
    from playground.handles import LlamaModel

# ================================================================ divergence tree


@dataclass(frozen=True)
class TreeNode:
    """A run of tokens that the same samples share, up to the next fork.

    Chains with a single continuation are merged into one node, so every node but the leaves
    ends at a fork (or where its samples end): the tree shows only the decisions that mattered.
    """

    start: int
    """Token position of the node's first token."""
    token_ids: tuple[int, ...]
    """The shared tokens; empty for a root whose samples part ways at the first token."""
    texts: tuple[str, ...]
    """Each token's `TokenRecord.text` (joined, they give the node's part of the samples' text)."""
    first_piece: str
    """The first token as shown at a fork: its text, or its bytes decoded when the token is only
    part of a UTF-8 character (its `text` is then empty). "" for an empty root."""
    probs: tuple[float, ...]
    """Each token's raw-model probability, taken from the lowest-index sample that took it."""
    samples: tuple[int, ...]
    """Sample indices passing through this node, ascending."""
    ended: tuple[int, ...]
    """The samples that end right after this node (they pass into no child)."""
    children: tuple[TreeNode, ...]
    """Largest group first, ties by the lowest sample index (as in `first_divergence`)."""

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def end(self) -> int:
        """Token position just after the node: where its fork is."""
        return self.start + len(self.token_ids)

    @property
    def prob(self) -> float:
        """Probability of the token that opened this branch (1 for an empty root)."""
        return self.probs[0] if self.probs else 1.0

    @property
    def chain_prob(self) -> float:
        """Probability of the whole run given what came before: the product of its tokens'."""
        return math.prod(self.probs)


def divergence_tree(samples: Sequence[Sample]) -> TreeNode:
    """Prefix-share the samples' token ids into a tree whose root holds their common prefix.

    A sample that ends while others go on is listed in its node's `ended`, and counts as a
    branch of its own at that fork, as in `first_divergence` (see `first_fork`).
    """
    by_index = {s.index: s for s in samples}
    return _subtree(by_index, sorted(by_index), 0)


def _subtree(by_index: dict[int, Sample], members: list[int], start: int) -> TreeNode:
    position = start
    while True:
        ids = {
            by_index[m].tokens[position].id if position < len(by_index[m].tokens) else None
            for m in members
        }
        if len(ids) != 1 or None in ids:
            break
        position += 1
    records = by_index[members[0]].tokens[start:position] if members else []
    groups: dict[int, list[int]] = {}
    ended = []
    for m in members:
        tokens = by_index[m].tokens
        if position < len(tokens):
            groups.setdefault(tokens[position].id, []).append(m)
        else:
            ended.append(m)
    children = [_subtree(by_index, group, position) for group in groups.values()]
    children.sort(key=lambda c: (-len(c.samples), c.samples[0]))
    piece = ""
    if records:
        piece = records[0].text or records[0].bytes.decode("utf-8", "replace")
    return TreeNode(
        start=start,
        token_ids=tuple(r.id for r in records),
        texts=tuple(r.text for r in records),
        first_piece=piece,
        probs=tuple(math.exp(r.logprob) for r in records),
        samples=tuple(members),
        ended=tuple(ended),
        children=tuple(children),
    )


def first_fork(tree: TreeNode) -> Divergence | None:
    """The tree's first fork as a `Divergence`: the same answer as `first_divergence`, read off
    the root instead of recomputed."""
    branches = [Branch(c.token_ids[0], c.first_piece, c.prob, c.samples) for c in tree.children]
    if tree.ended:
        branches.append(Branch(None, "", 0.0, tree.ended))
    if len(branches) < 2:
        return None
    branches.sort(key=lambda b: (-len(b.samples), b.samples[0]))
    return Divergence(tree.end, tuple(branches))


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


# ================================================================ robustness variants

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


# ================================================================ structured output


def json_schema_grammar(schema: Mapping[str, Any]) -> str:
    """A GBNF grammar for `schema`, by llama-cpp-python's own converter, so that the grammar
    matches what llama.cpp's grammar sampler expects (root rule "root")."""
    return json_schema_to_gbnf(json.dumps(schema))


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate_json(text: str, schema: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether `text` is JSON that satisfies `schema`, and why not ("" when it does).

    The subset of JSON Schema checked: "type" (a name or a list of names: object, array,
    string, number, integer, boolean, null), "enum", "properties", "required",
    "additionalProperties": false, and "items" (one schema for every element). Other keywords
    are ignored, so a text may pass here and fail a full validator. The reason names the first
    failure with a JSON path ("$.age: expected integer, got string") and no character offsets,
    so that the same mistake in different samples gives the same reason.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return False, f"not JSON: {e.msg}"
    error = _check(value, schema, "$")
    return error is None, error or ""


def _type_name(value: Any) -> str:
    return next(
        name
        for name in ("boolean", "null", "integer", "number", "string", "array", "object")
        if _TYPES[name](value)
    )


def _check(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_TYPES[name](value) for name in names):
            return f"{path}: expected {' or '.join(names)}, got {_type_name(value)}"
    if "enum" in schema and not any(
        (value == option and type(value) is type(option)) or _same_number(value, option)
        for option in schema["enum"]
    ):
        return f"{path}: {json.dumps(value)} is not one of {json.dumps(schema['enum'])}"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{path}: missing required property {name!r}"
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                error = _check(item, properties[name], f"{path}.{name}")
                if error:
                    return error
            elif schema.get("additionalProperties") is False:
                return f"{path}: unexpected property {name!r}"
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            error = _check(item, schema["items"], f"{path}[{i}]")
            if error:
                return error
    return None


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


@dataclass(frozen=True)
class RepairResult:
    """A text after `repair_json`, and what was done to it, in order."""

    text: str
    changes: tuple[str, ...]
    """Human-readable steps; empty when the text was valid JSON already."""


_FENCE = re.compile(r"```[\w-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def repair_json(text: str) -> RepairResult:
    """Fix the mistakes models commonly make around JSON, without guessing at content.

    In order: take the inside of a ``` code fence; cut the first {...} or [...] out of
    surrounding prose; close a string, array or object left open (a cut-off generation),
    completing a dangling "key": with null; drop trailing commas. Nothing else is attempted
    (single quotes, comments, Python literals stay broken), so the result may still be invalid.
    """
    if _is_json(text):
        return RepairResult(text, ())
    changes: list[str] = []
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
        changes.append("removed the code fence")
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        end = _block_end(text, start)
        block = text[start:end]
        if text[:start].strip() or text[end:].strip():
            changes.append("extracted the JSON from the surrounding text")
        text = block.rstrip()
    else:
        text = text.strip()
    closed, closing = _close(text)
    if closing:
        changes.append(closing)
        text = closed
    without, removed = _drop_trailing_commas(text)
    if removed:
        changes.append(f"removed {removed} trailing comma{'s' if removed > 1 else ''}")
        text = without
    return RepairResult(text, tuple(changes))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _scan(text: str, start: int = 0):
    """Yield (index, char, in_string, escaped) over `text`, the string state being the one after
    `char` (a bracket never changes it, so for brackets it is also the state before)."""
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        yield i, c, in_string, escaped


def _block_end(text: str, start: int) -> int:
    """Index just past the bracket closing the one at `start`, or len(text) if it never does."""
    depth = 0
    for i, c, in_string, _ in _scan(text, start):
        if in_string:
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _close(text: str) -> tuple[str, str]:
    """`text` with whatever it leaves open closed, and a description ("" if nothing was)."""
    stack: list[str] = []
    in_string = escaped = False
    for _, c, in_string, escaped in _scan(text):  # noqa: B007 (both are read after the loop)
        if in_string:
            continue
        if c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]" and stack:
            stack.pop()
    added = ""
    what = []
    if in_string:
        if escaped:  # a cut-off escape such as "C:\ cannot be completed; drop it
            text = text[:-1]
        added += '"'
        what.append("a string")
    if (text + added).rstrip().endswith(":"):
        added += " null"
        what.append("a missing value (null)")
    if stack:
        added += "".join(reversed(stack))
        what.append(f"{len(stack)} bracket{'s' if len(stack) > 1 else ''}")
    if not added:
        return text, ""
    return text + added, "closed " + ", ".join(what)


def _drop_trailing_commas(text: str) -> tuple[str, int]:
    out = []
    removed = 0
    pending_comma = -1
    for _, c, in_string, _ in _scan(text):
        if not in_string and c in "}]" and pending_comma >= 0:
            del out[pending_comma]
            removed += 1
        if not in_string and c == ",":
            pending_comma = len(out)
        elif in_string or not c.isspace():
            pending_comma = -1
        out.append(c)
    return "".join(out), removed


@dataclass(frozen=True)
class ValidityCounts:
    """How many outputs were valid as generated, valid only after `repair_json`, or invalid."""

    valid_raw: int
    valid_repaired: int
    invalid: int
    reasons: tuple[str, ...]
    """Each text's failure reason as generated ("" when it was valid)."""
    common_failure: str | None
    """The most frequent failure as generated (ties: the first seen); None when none failed."""
    common_failure_count: int


_FAULTS = (
    ("removed the code fence", "inside a code fence"),
    ("extracted", "JSON inside other text"),
    ("closed", "cut off before the end"),
    ("removed", "a trailing comma"),
)
"""What went wrong, by the first change `repair_json` made (matched by its start, in order)."""


def _fault(change: str, reason: str) -> str:
    return next((fault for start, fault in _FAULTS if change.startswith(start)), reason)


def validity_counts(texts: Sequence[str], schema: Mapping[str, Any]) -> ValidityCounts:
    """Count valid outputs before and after repair, and find the failure a model repeats."""
    valid_raw = valid_repaired = 0
    reasons = []
    for text in texts:
        ok, reason = validate_json(text, schema)
        if ok:
            valid_raw += 1
        else:
            repaired = repair_json(text)
            if repaired.changes and reason.startswith("not JSON"):
                # "Expecting value" says little; what repair had to undo says what went wrong.
                reason = f"not JSON: {_fault(repaired.changes[0], reason)}"
            if validate_json(repaired.text, schema)[0]:
                valid_repaired += 1
        reasons.append(reason)
    failures = Counter(r for r in reasons if r)
    common, count = failures.most_common(1)[0] if failures else (None, 0)
    invalid = len(texts) - valid_raw - valid_repaired
    return ValidityCounts(valid_raw, valid_repaired, invalid, tuple(reasons), common, count)


class GrammarConstraint:
    """llama.cpp's grammar sampler as a mask over one row of logits, for the numpy sampler.

    The project samples in numpy (see `playground.sampling`), so rather than adding the grammar
    to a llama.cpp sampler chain, the grammar sampler is applied to an array of candidate tokens
    with every logit 0, and the candidates it leaves finite are the allowed ones. Call `apply`
    before sampling each token and `accept` with the chosen one. Once the grammar is complete
    only end-of-generation tokens are allowed. Not thread-safe, like the engine it belongs to.
    """

    CANDIDATES = 256
    """How many of the most likely tokens `apply` checks first when sampling needs only the
    top few; checking the whole vocabulary costs about a millisecond per token."""

    def __init__(self, model: LlamaModel, gbnf: str, root: str = "root") -> None:
        # Built against the vocabulary that produces the logits: the engine's own model.
        self._sampler = llama_cpp.llama_sampler_init_grammar(
            model.vocab, gbnf.encode(), root.encode()
        )
        if not self._sampler:
            raise ValueError("llama.cpp could not parse the grammar (see its log)")
        self._finalizer = weakref.finalize(self, llama_cpp.llama_sampler_free, self._sampler)
        self.n_vocab = model.n_vocab
        # Laid out like llama_token_data {int32 id; float logit; float p}.
        self._data = np.zeros(
            self.n_vocab,
            dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]),
        )
        self._mask: np.ndarray | None = None

    def close(self) -> None:
        self._finalizer()

    def allows(self, ids: np.ndarray) -> np.ndarray:
        """A boolean per token of `ids`: whether the grammar allows it next. The grammar
        decides by the text so far only, so no logits are needed."""
        n = ids.shape[0]
        data = self._data[:n]
        data["id"] = ids
        data["logit"] = 0.0
        data["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=n,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))
        # Read back by id: the sampler may reorder or shorten the array.
        kept = data[: array.size]
        allowed = np.zeros(self.n_vocab, dtype=bool)
        allowed[kept["id"][np.isfinite(kept["logit"])]] = True
        return allowed[ids]

    def allowed_mask(self) -> np.ndarray:
        """A boolean array over the whole vocabulary: True where the grammar allows the token."""
        if self._mask is None:
            self._mask = self.allows(np.arange(self.n_vocab, dtype=np.int32))
        return self._mask

    def apply(self, logits: np.ndarray, enough: int = 0) -> np.ndarray:
        """A copy of `logits` with -inf for every token the grammar forbids.

        `enough` > 0 says that sampling draws only from the `enough` most likely tokens
        (`SamplingParams.top_needed`). The most likely candidates are then checked first: when
        `enough` of them are allowed, no allowed token outside them could rank among the top
        `enough`, so they are left out (-inf) and the draw is the same as with the whole mask.
        """
        if enough > 0 and self._mask is None:
            candidates = top_indices(logits, max(self.CANDIDATES, 8 * enough))
            allowed = candidates[self.allows(candidates.astype(np.int32))]
            if allowed.shape[0] >= enough:
                masked = np.full_like(logits, -np.inf)
                masked[allowed] = logits[allowed]
                return masked
        return np.where(self.allowed_mask(), logits, -np.inf).astype(logits.dtype, copy=False)

    def accept(self, token: int) -> None:
        """Advance the grammar past `token`. A forbidden token raises ValueError here, because
        llama.cpp would throw a C++ exception that would end the process."""
        if not self.allows(np.array([token], dtype=np.int32))[0]:
            raise ValueError(f"token {token} is not allowed by the grammar here")
        llama_cpp.llama_sampler_accept(self._sampler, token)
        self._mask = None


# ================================================================ tokens across languages

PARALLEL_PATH = paths.resource_dir("languages") / "parallel.json"


def load_parallel(path: Path = PARALLEL_PATH) -> dict[str, list[str]]:
    """The parallel sentences by language, in the file's order of languages."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {lang: [s[lang] for s in data["sentences"]] for lang in data["languages"]}


@dataclass(frozen=True)
class LanguageCount:
    """What one text costs in tokens under one tokenizer."""

    language: str
    text: str
    tokens: int
    words: int
    """Whitespace-separated words, except that every CJK character counts as one word: Chinese
    and Japanese are written without spaces, and a character is the closest unit to a word."""
    chars: int
    """Unicode code points."""
    pieces: tuple[tuple[str, bytes], ...]
    """Each token's bytes, and their text (a token holding part of a UTF-8 character shows �)."""

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else math.nan

    @property
    def tokens_per_char(self) -> float:
        return self.tokens / self.chars if self.chars else math.nan


def count_words(text: str) -> int:
    """Words as `LanguageCount.words` defines them."""
    total = 0
    for chunk in text.split():
        cjk = sum(_is_cjk(c) for c in chunk)
        rest = "".join(" " if _is_cjk(c) else c for c in chunk).split()
        # Punctuation alone ("。", "？") is not a word.
        total += cjk + sum(any(c.isalnum() for c in part) for part in rest)
    return total


def _is_cjk(char: str) -> bool:
    return unicodedata.name(char, "").startswith(("CJK UNIFIED", "HIRAGANA", "KATAKANA"))


def token_counts(engine: Engine, texts_by_language: Mapping[str, str]) -> list[LanguageCount]:
    """Tokenize each language's text (no BOS) and count tokens, words and characters.

    A SentencePiece tokenizer that adds a space prefix gives pieces that join to " " + text.
    """
    counts = []
    for language, text in texts_by_language.items():
        tokens = engine.tokenize(text, add_special=False)
        pieces = tuple(
            (piece.decode("utf-8", "replace"), piece)
            for piece in (engine.token_bytes(t) for t in tokens)
        )
        counts.append(
            LanguageCount(language, text, len(tokens), count_words(text), len(text), pieces)
        )
    return counts


def median_tokens(engine: Engine, sentences: Sequence[str]) -> float:
    """Median tokens per sentence (no BOS): the statistic of the MASSIVE comparison (median
    token length, English 7 vs Hindi 32 in the textbook's tokenizer)."""
    return float(statistics.median(len(engine.tokenize(s, add_special=False)) for s in sentences))

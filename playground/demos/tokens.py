"""Tokens across languages: what one sentence, said in several languages, costs in tokens under
the model's tokenizer, and each language's median over a set of parallel sentences."""

from __future__ import annotations

import json
import math
import statistics
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playground import paths
from playground.demos.scenario import (
    Cancel,
    Demo,
    DemoRequest,
    Progress,
    engine_of,
    never,
    quiet,
)
from playground.errors import InvalidRequestError
from playground.records import json_float

if TYPE_CHECKING:
    from playground.engine_api import Engine


# ================================================================ token counts


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


# ================================================================ the run


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
                 "chars": c.chars, "tokens_per_word": json_float(c.tokens_per_word),
                 "tokens_per_char": json_float(c.tokens_per_char),
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
    progress: Progress = quiet,
    cancel: Cancel = never,
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


def run(request: DemoRequest) -> dict[str, Any]:
    sentence = request.sentence
    if sentence is None:
        sentence = request.scenario.extra.get("sentence", 0)
    return run_tokens(engine_of(request), sentence, progress=request.progress,
                      cancel=request.cancel).to_json()


def summary(d: dict[str, Any]) -> Iterator[str]:
    for lang in d["languages"]:
        yield (f"  {lang['language']:8} {lang['tokens']:3} tokens  "
               f"{lang['tokens_per_word']:.2f}/word  {lang['tokens_per_char']:.2f}/char  "
               f"median {lang['median_tokens']:g}")


DEMO = Demo("tokens", "Tokens across languages", run, summary)

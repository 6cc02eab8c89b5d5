"""Reward-model scoring: how good is each of N responses to one prompt, by a model trained to judge.

One interface, `RewardModel.score(prompt, responses) -> list[float]` (higher is better), over three
backends that `open_reward_model` picks from the file:

* score-head reward models (Skywork-Reward-V2 and other `*ForSequenceClassification` models): the
  model's causal-LM backbone as a GGUF with the score head stored in its metadata
  (`playground.reward.score_head`, see docs/reward-models.md and `pack_reward_model`). llama.cpp
  returns the final normed hidden state h of the conversation's last token (LAST pooling); the
  score is head . h + bias, exactly what the Hugging Face model computes.
* rerankers and classifiers (Qwen3-Reranker, bge-reranker): llama.cpp's RANK pooling applies the
  file's classification head; the prompt is the query and the response the document.
* the LLM judge: an instruct model is asked a yes/no rubric question about the response, and the
  score is log P(yes) - log P(no) read from its logits, with no sampling.

All N responses are scored together, as N sequences of one unified KV cache: the tokens they share
(the chat template and the prompt) are decoded once and copied to every sequence, then their own
tokens go into the same decodes, as many as the context holds. Scoring in a batch gives the same
numbers as scoring one at a time (see `SCORE_UBATCH`), so a score never depends on what else was
scored with it.

Like the engine, a reward model is not thread-safe: use it on one thread (the judge on the thread
that owns its engine).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import struct
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import llama_cpp
import numpy as np

from playground.chat import render_chat
from playground.engine import (
    MEMORY_HEADROOM,
    Engine,
    available_memory,
    decode,
    default_threads,
    load,
)
from playground.errors import (
    InvalidRequestError,
    ModelFileError,
    PlaygroundError,
    ResourceError,
    UnsupportedModelError,
)
from playground.files import require_regular
from playground.gguf_file import GGUFHeader, model_info, read_header
from playground.records import Run
from playground.scoring import Ranking, kendall_tau, top_agrees
from playground.units import human_count

KIND_SCORE_HEAD = "score-head"
KIND_RERANKER = "reranker"
KIND_JUDGE = "judge"
KINDS = (KIND_SCORE_HEAD, KIND_RERANKER, KIND_JUDGE)

# The score-head format: keys added to a causal-LM GGUF (docs/reward-models.md).
HEAD_KEY = "playground.reward.score_head"
"""float32 array of n_embd values: the score head's single row."""
BIAS_KEY = "playground.reward.bias"
"""float32, optional (0): added to head . h."""
POOLING_KEY = "playground.reward.pooling"
"""string, optional ("last"): which hidden state the head reads."""
SOURCE_KEY = "playground.reward.source"
"""string, optional: where the head came from (a Hugging Face repo id or a file name)."""
VERSION_KEY = "playground.reward.format_version"
"""uint32, required: FORMAT_VERSION."""
FORMAT_VERSION = 1

DEFAULT_RUBRIC = "Is the response helpful, correct and honest? Answer yes or no."
JUDGE_PROMPT = "Question:\n{prompt}\n\nResponse:\n{response}\n\n{rubric}"
"""What the judge reads in its user turn, rendered with its own chat template."""
JUDGE_RAW_SUFFIX = "\nAnswer:"
"""Ends the judge's input when the model has no chat template (a base model)."""
YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")

QWEN3_RERANK_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)
# Qwen3-Reranker's documented prompt (huggingface.co/Qwen/Qwen3-Reranker-0.6B, "Usage"), in the
# form llama.cpp's convert_hf_to_gguf.py stores as the file's "rerank" chat template.
QWEN3_RERANK_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n<Instruct>: " + QWEN3_RERANK_INSTRUCTION + "\n<Query>: {query}\n"
    "<Document>: {document}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
)
# llama.cpp applies a softmax to the RANK output of these architectures only (llm_graph's RANK
# pooling); the others return the classification head's raw logits.
RANK_SOFTMAX_ARCHS = frozenset({"qwen3", "qwen3vl"})
# Architectures whose attention is not causal: no shared prefix, one input per decode.
ENCODER_ARCHS = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert", "neo-bert", "t5encoder"}
)
_POOLING_NAMES = {0: "no", 1: "mean", 2: "cls", 3: "last", 4: "rank"}

SCORE_UBATCH = 32
"""Tokens per llama.cpp micro-batch in the scoring contexts: what makes a batch score equal to the
same input scored alone.

llama.cpp's CPU flash attention computes each query row alone, in the same order whatever else
shares the micro-batch, except on two paths (measured on the 2-core CPU with SmolLM2 Q4_1 and the
tiny test models; the source's `use_split_kv_path` and tiled path): a micro-batch of 64 or more
tokens goes through a tiled kernel, and a micro-batch of one token over a KV cache view of 512
cells or more is split across threads. Either gave a response scored beside others a hidden state
up to 0.8 (2 %) away from the same response scored alone. Micro-batches of 32 tokens avoid the
first; `_slices` never leaves one token alone in a micro-batch, which avoids the second. Batched
and one-at-a-time scores were then bit-identical in every packing tried. (Flash attention off
was worse: different from about 17 tokens on, and 4-8x slower.) With one thread the micro-batch
size made no measurable speed difference (11.7 s against 11.2 s for 8 x 150 tokens at 32 and
512).
"""
MAX_SEQUENCES = 64
"""Responses decoded together at most; more are scored in further decodes."""
TAIL = 2
"""Tokens of each input decoded with outputs on: its last (the one read) and one more, so that
no decode holds a single token (see SCORE_UBATCH)."""
DECODE_BATCH = 8 * SCORE_UBATCH
"""Tokens per llama_decode call in causal scoring contexts. In embedding mode llama.cpp computes
and stores n_vocab logits for every token (measured: 390 MB more for 2,100 tokens of SmolLM2):
a decode of a whole 4,096-token context would take 2.5 GB for a 152k Qwen3 vocabulary. Only
each input's TAIL tokens are decoded in embedding mode now, and micro-batches are SCORE_UBATCH
tokens anyway, so small decodes cost nothing."""


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ScoredResponse:
    """One response's score and exactly what the model read to give it."""

    response: str
    score: float
    """Higher is better; NaN when scoring was cancelled before this response."""
    input_token_ids: tuple[int, ...]
    """The tokens the model scored: feed them to llama.cpp to check the score."""
    raw: tuple[float, ...] = ()
    """What the score was derived from: a reranker's outputs (one per label), the judge's
    (log P(yes), log P(no)); empty for a score head (h is n_embd long)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "score": self.score if math.isfinite(self.score) else None,
            "input_token_ids": list(self.input_token_ids),
            "raw": [float(x) if math.isfinite(x) else None for x in self.raw],
        }


def rank_agreement(a: Ranking, b: Ranking) -> dict[str, float | bool]:
    """How far two rankings of the same samples agree: Kendall tau and whether they share a best
    sample (e.g. the reward model against mean logprob)."""
    return {"kendall_tau": kendall_tau(a.order, b.order), "top_agrees": top_agrees(a, b)}


# ---------------------------------------------------------------------------------------------
# The interface


class RewardModel(ABC):
    """A model that scores responses to a prompt. Use `open_reward_model` to get one."""

    kind: str = ""
    """'score-head', 'reranker' or 'judge'."""

    def __init__(self, engine: Engine, decoder: _Decoder, *, owns_engine: bool) -> None:
        self.engine = engine
        """The loaded model (for the judge, possibly the app's generator)."""
        self._decoder = decoder
        self._owns_engine = owns_engine

    @property
    def path(self) -> Path:
        return self.engine.path

    @property
    def name(self) -> str:
        return self.engine.info.name

    @property
    def memory_bytes(self) -> int:
        """Size of the weights (llama_model_size); the scoring context comes on top."""
        return self.engine.memory_bytes

    @property
    def n_ctx(self) -> int:
        """Tokens one input may have: template, prompt and response together."""
        return self._decoder.n_ctx

    def score(
        self,
        prompt: str,
        responses: Sequence[str],
        *,
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[float]:
        """A score for each response, higher is better. See `score_detailed`."""
        scored = self.score_detailed(prompt, responses, cancel=cancel, progress=progress)
        return [s.score for s in scored]

    def score_detailed(
        self,
        prompt: str,
        responses: Sequence[str],
        *,
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ScoredResponse]:
        """Score every response to `prompt` in as few decodes as the context allows.

        `cancel` is polled before each decode: once it returns True no more is computed and the
        responses not yet scored get NaN. `progress(done, total)` follows each group of
        responses decoded together. Raises ResourceError, before anything is computed, when an
        input does not fit the context.
        """
        responses = list(responses)
        inputs = [self.input_tokens(prompt, r) for r in responses]
        for i, tokens in enumerate(inputs):
            if len(tokens) > self.n_ctx:
                raise ResourceError(
                    f"response {i + 1} is {len(tokens):,} tokens with the prompt and "
                    f"{self._wrapping}, but the reward model's context holds {self.n_ctx:,} "
                    "(shorten it, or open the reward model with a larger n_ctx)"
                )
        outputs = self._decoder.run(inputs, cancel, progress)
        scored = []
        for response, tokens, output in zip(responses, inputs, outputs, strict=True):
            score, raw = (math.nan, ()) if output is None else self._score(output)
            scored.append(ScoredResponse(response, score, tuple(tokens), raw))
        return scored

    def input_tokens(self, prompt: str, response: str) -> list[int]:
        """The tokens this model reads to score `response` to `prompt`."""
        if not self._decoder.open:
            # The vocabulary may be freed with the model: never touch it after close().
            raise PlaygroundError("this reward model is closed")
        return self._input_tokens(prompt, response)

    @abstractmethod
    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        """See input_tokens."""

    @abstractmethod
    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        """(score, raw) from what the decoder read for one input."""

    @property
    @abstractmethod
    def _wrapping(self) -> str:
        """What surrounds the prompt and response in an input, for messages."""

    @abstractmethod
    def describe(self) -> str:
        """One line: what the model is and how it turns an input into a score."""

    def close(self) -> None:
        """Free the scoring context (and the model, unless it is a borrowed engine)."""
        self._decoder.close()
        if self._owns_engine:
            self.engine.close()

    def __enter__(self) -> RewardModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _model_line(self) -> str:
        info = self.engine.info
        return (f"{info.name} ({info.architecture}, {human_count(info.parameters)} parameters, "
                f"{info.quantization})")


def score_run(
    model: RewardModel,
    run: Run,
    *,
    method: str = "reward",
    cancel: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Ranking:
    """Score every sample of `run` against its prompt, store the scores as `sample.scores[method]`
    and return the run's ranking by them."""
    scores = model.score(run.prompt, [s.text for s in run.samples], cancel=cancel,
                         progress=progress)
    for sample, score in zip(run.samples, scores, strict=True):
        sample.scores[method] = score
    return run.rank(method)


# ---------------------------------------------------------------------------------------------
# Backends


class ScoreHeadModel(RewardModel):
    """A sequence-classification reward model: head . h + bias, h from LAST pooling."""

    kind = KIND_SCORE_HEAD

    def __init__(self, engine: Engine, decoder: _Decoder, *, head: np.ndarray, bias: float,
                 source: str | None, owns_engine: bool = True) -> None:
        super().__init__(engine, decoder, owns_engine=owns_engine)
        self.head = head.astype(np.float64)
        self.bias = bias
        self.source = source
        self._vocab = llama_cpp.llama_model_get_vocab(decoder.model)

    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        # As the model was trained: the conversation in its own chat template with no generation
        # prompt, tokenized with special tokens parsed; the last token of the rendered text is the
        # one pooled (for Qwen3 templates the "\n" after <|im_end|>, for Llama 3 <|eot_id|>).
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return _chat_tokens(self.engine, self._vocab, messages, add_generation_prompt=False)

    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        return float(self.head @ output.astype(np.float64) + self.bias), ()

    @property
    def _wrapping(self) -> str:
        return "its chat template"

    def describe(self) -> str:
        source = f", from {self.source}" if self.source else ""
        return (f"score-head reward model {self._model_line()}: score = head . h + {self.bias:g} "
                f"(head of {self.head.size:,} values{source}), h = the final hidden state of the "
                "conversation's last token in the model's chat template")


class RerankerModel(RewardModel):
    """A classifier with llama.cpp RANK pooling: the prompt is the query, the response the
    document."""

    kind = KIND_RERANKER

    def __init__(self, engine: Engine, decoder: _Decoder, *, labels: tuple[str, ...],
                 template: str | None, template_origin: str, owns_engine: bool = True) -> None:
        super().__init__(engine, decoder, owns_engine=owns_engine)
        self.labels = labels
        self.template = template
        """With {query} and {document}; None for the [BOS] query [EOS][SEP] document [EOS] pair."""
        self._template_origin = template_origin
        self._model = decoder.model
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._softmax = engine.info.architecture in RANK_SOFTMAX_ARCHS
        lowered = [label.lower() for label in labels]
        self._yes_no = (lowered.index("yes"), lowered.index("no")) if len(labels) == 2 else None

    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        if self.template is not None:
            # llama.cpp's server (format_prompt_rerank): fill the template, parse special tokens,
            # add none.
            text = self.template.replace("{query}", prompt).replace("{document}", response)
            return _tokenize(self._vocab, text, add_special=False, parse_special=True)
        # llama.cpp's server without a rerank template: [BOS] query [EOS] [SEP] document [EOS],
        # each marker as the vocabulary asks (bert: [CLS] q [SEP] d [SEP]; XLM-R: <s> q </s></s>
        # d </s>), the texts tokenized without special tokens so neither can fake a separator.
        v = self._vocab
        query = _tokenize(v, prompt, add_special=False, parse_special=False)
        document = _tokenize(v, response, add_special=False, parse_special=False)
        eos = llama_cpp.llama_vocab_eos(v)
        if eos < 0:
            eos = llama_cpp.llama_vocab_sep(v)
        add_eos = llama_cpp.llama_vocab_get_add_eos(v)
        tokens = [llama_cpp.llama_vocab_bos(v)] if llama_cpp.llama_vocab_get_add_bos(v) else []
        tokens += query
        if add_eos:
            tokens.append(eos)
        if llama_cpp.llama_vocab_get_add_sep(v):
            tokens.append(llama_cpp.llama_vocab_sep(v))
        tokens += document
        if add_eos:
            tokens.append(eos)
        return tokens

    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        raw = tuple(float(x) for x in output)
        if self._yes_no is None:
            return raw[0], raw
        yes, no = self._yes_no
        if self._softmax:
            # Probabilities: log-odds, finite down to float32's smallest normal probability.
            tiny = float(np.finfo(np.float32).tiny)
            return math.log(max(raw[yes], tiny)) - math.log(max(raw[no], tiny)), raw
        return raw[yes] - raw[no], raw

    @property
    def _wrapping(self) -> str:
        return "the reranker's template" if self.template else "the pair markers"

    def describe(self) -> str:
        labels = "/".join(self.labels)
        if self._yes_no is not None:
            rule = "score = log p(yes) - log p(no)" + (
                " (llama.cpp's softmax over the two labels)" if self._softmax
                else " (the head's logit difference)")
        elif self._softmax:
            rule = ("score = the single output, which llama.cpp's softmax over one label makes "
                    "always 1.0: this file cannot rank")
        else:
            rule = "score = the head's raw output"
        return (f"reranker {self._model_line()} with labels {labels}: {rule}; the prompt is the "
                f"query and the response the document, in {self._template_origin}")


class JudgeModel(RewardModel):
    """An instruct model asked a yes/no rubric question: log P(yes) - log P(no)."""

    kind = KIND_JUDGE

    def __init__(self, engine: Engine, decoder: _Decoder, *, rubric: str,
                 owns_engine: bool) -> None:
        super().__init__(engine, decoder, owns_engine=owns_engine)
        self.rubric = rubric
        self._vocab = llama_cpp.llama_model_get_vocab(decoder.model)
        self.yes_ids = _single_token_ids(self._vocab, YES_WORDS)
        self.no_ids = _single_token_ids(self._vocab, NO_WORDS)
        if not self.yes_ids or not self.no_ids:
            raise UnsupportedModelError(
                f"{engine.path.name}: its vocabulary has no single token for "
                f"{'yes' if not self.yes_ids else 'no'}, which the judge reads"
            )

    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        content = JUDGE_PROMPT.format(prompt=prompt, response=response, rubric=self.rubric)
        if not self.engine.chat_template:
            return _tokenize(self._vocab, content + JUDGE_RAW_SUFFIX, add_special=True,
                             parse_special=True)
        messages = [{"role": "user", "content": content}]
        return _chat_tokens(self.engine, self._vocab, messages, add_generation_prompt=True)

    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        # Every spelling of yes (and of no) that is one token counts: the model may answer
        # "Yes" or " yes"; logsumexp adds their probabilities.
        row = output.astype(np.float64)
        top = row.max()
        log_z = top + math.log(np.exp(row - top).sum())
        log_yes = _logsumexp(row[list(self.yes_ids)]) - log_z
        log_no = _logsumexp(row[list(self.no_ids)]) - log_z
        return float(log_yes - log_no), (float(log_yes), float(log_no))

    @property
    def _wrapping(self) -> str:
        return "the judge's rubric and template"

    def describe(self) -> str:
        def pieces(ids: tuple[int, ...]) -> str:
            return ", ".join(repr(self.engine.token_bytes(i).decode("utf-8", "replace"))
                             for i in ids)

        template = "its chat template" if self.engine.chat_template else "raw text (no template)"
        return (f"LLM judge {self._model_line()}: score = log P(yes) - log P(no) for its next "
                f"token after the rubric {self.rubric!r}, in {template}; "
                f"yes = {pieces(self.yes_ids)}; no = {pieces(self.no_ids)}")


# ---------------------------------------------------------------------------------------------
# Opening a reward model


def open_reward_model(
    spec: str | Path,
    *,
    judge_engine: Engine | None = None,
    rubric: str | None = None,
    n_gpu_layers: int = 0,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    kind: str | None = None,
) -> RewardModel:
    """Open a reward model.

    `spec` is "judge" (the LLM judge: `judge_engine`, the app's loaded generator, or else the
    embedded model), "judge:PATH" (a judge loaded from an instruct GGUF), or the path of a GGUF
    whose kind is read from its metadata: a score head (`playground.reward.score_head`) or a
    classification head (a reranker). `kind` makes the caller's expectation explicit: a file of
    another kind then fails with a message that says what the file is. `rubric` is the judge's
    question, or a reranker's instruction (for templates with an <Instruct> line).
    `n_ctx` bounds one input (template, prompt and response); default min(trained, 4096).
    """
    if kind is not None and kind not in KINDS:
        raise InvalidRequestError(f"unknown reward model kind {kind!r}; expected one of: "
                                  + ", ".join(KINDS))
    text = str(spec)
    if text == "judge" or text.startswith("judge:"):
        if kind not in (None, KIND_JUDGE):
            raise InvalidRequestError(f"'{text}' is the LLM judge, not a {kind} model")
        path = Path(text.removeprefix("judge:")) if text != "judge" else None
        return _open_judge(path, judge_engine, rubric, n_gpu_layers, n_ctx, n_threads)
    path = Path(spec)
    header = read_header(path)
    found = _file_kind(header)
    if kind == KIND_JUDGE:
        _check_judge_file(path, header, found)
        return _open_judge(path, None, rubric, n_gpu_layers, n_ctx, n_threads)
    if found not in (KIND_SCORE_HEAD, KIND_RERANKER):
        raise ModelFileError(_not_a_reward_model(path, header, found))
    if kind is not None and found != kind:
        raise ModelFileError(
            f"{path.name} is {_what(header, found)}: expected {_EXPECTED[kind]}")
    if found == KIND_SCORE_HEAD:
        if rubric is not None:
            raise InvalidRequestError("a score-head reward model takes no rubric")
        return _open_score_head(path, header, n_gpu_layers, n_ctx, n_threads)
    return _open_reranker(path, header, rubric, n_gpu_layers, n_ctx, n_threads)


_EXPECTED = {
    KIND_SCORE_HEAD: "a score-head reward model (a GGUF with `playground.reward.score_head`, "
                     "see docs/reward-models.md)",
    KIND_RERANKER: "a reranker or classifier (a GGUF with a classification head for RANK "
                   "pooling)",
    KIND_JUDGE: "an instruct model that answers in text",
}


def _file_kind(header: GGUFHeader) -> str:
    """'score-head', 'reranker', 'embedding', 'chat', 'base', or what else the file is."""
    meta = header.metadata
    arch = meta.get("general.architecture", "")
    if meta.get("general.type") == "adapter":
        return "adapter"
    if arch == "clip" or meta.get("general.type") == "mmproj":
        return "mmproj"
    if HEAD_KEY in meta:
        return KIND_SCORE_HEAD
    pooling = meta.get(f"{arch}.pooling_type")
    if (f"{arch}.classifier.output_labels" in meta or pooling == 4
            or any(t.name == "cls.output.weight" for t in header.tensors)):
        return KIND_RERANKER
    if pooling is not None or arch in ENCODER_ARCHS:
        return "embedding"
    return "chat" if meta.get("tokenizer.chat_template") else "base"


def _what(header: GGUFHeader, found: str) -> str:
    """What the file is, for messages: 'a chat model (llama)'."""
    meta = header.metadata
    arch = meta.get("general.architecture", "unknown")
    if found == KIND_SCORE_HEAD:
        return f"a score-head reward model ({arch})"
    if found == KIND_RERANKER:
        labels = meta.get(f"{arch}.classifier.output_labels")
        label_text = f", labels {'/'.join(labels)}" if isinstance(labels, list) else ""
        return f"a reranker ({arch}{label_text})"
    if found == "embedding":
        pooling = _POOLING_NAMES.get(meta.get(f"{arch}.pooling_type"), "")
        return f"an embedding model ({arch}" + (f", {pooling} pooling)" if pooling else ")")
    if found == "adapter":
        return "a LoRA adapter"
    if found == "mmproj":
        return "a multimodal projector (mmproj)"
    if found == "chat":
        return f"a chat model ({arch})"
    return f"a base language model ({arch}, no chat template)"


def _not_a_reward_model(path: Path, header: GGUFHeader, found: str) -> str:
    what = _what(header, found)
    if found in ("chat", "base"):
        return (f"{path.name} is {what} without a score head: a score-head reward model needs "
                f"`{HEAD_KEY}` (see docs/reward-models.md), or use it as the judge")
    return (f"{path.name} is {what}: it has neither a score head nor a classification head, so it "
            "cannot score responses (see docs/reward-models.md)")


def _check_judge_file(path: Path, header: GGUFHeader, found: str) -> None:
    if found in ("chat", "base"):
        return
    what = _what(header, found)
    if found in (KIND_SCORE_HEAD, KIND_RERANKER):
        raise ModelFileError(
            f"{path.name} is {what}: the judge needs an instruct model that answers in text; "
            "open it by its path as a reward model instead"
        )
    raise ModelFileError(f"{path.name} is {what}: the judge needs an instruct model that answers "
                         "in text")


def _open_judge(path: Path | None, engine: Engine | None, rubric: str | None, n_gpu_layers: int,
                n_ctx: int | None, n_threads: int | None) -> JudgeModel:
    rubric = DEFAULT_RUBRIC if rubric is None else rubric
    if not rubric.strip():
        raise InvalidRequestError("the judge's rubric is empty")
    owns = engine is None
    if engine is not None and path is not None:
        raise InvalidRequestError("give the judge either a model path or an engine, not both")
    if engine is None:
        if path is not None:
            header = read_header(path)
            _check_judge_file(path, header, _file_kind(header))
        engine = load(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx)
    else:
        header = read_header(engine.path)
        _check_judge_file(engine.path, header, _file_kind(header))
    try:
        decoder = _Decoder(engine.llama_model, n_ctx=n_ctx or engine.n_ctx,
                           kv_bytes_per_token=engine.kv_bytes_per_token,
                           n_threads=n_threads, embeddings=False, causal=True)
        try:
            return JudgeModel(engine, decoder, rubric=rubric, owns_engine=owns)
        except BaseException:
            decoder.close()
            raise
    except BaseException:
        if owns:
            engine.close()
        raise


def _open_score_head(path: Path, header: GGUFHeader, n_gpu_layers: int, n_ctx: int | None,
                     n_threads: int | None) -> ScoreHeadModel:
    meta = header.metadata
    info = model_info(path, header)
    version = meta.get(VERSION_KEY)
    if version != FORMAT_VERSION:
        raise UnsupportedModelError(
            f"{path.name}: score-head format version {version} is not supported "
            f"(this playground reads version {FORMAT_VERSION})"
        )
    pooling = meta.get(POOLING_KEY, "last")
    if pooling != "last":
        raise UnsupportedModelError(f"{path.name}: score heads over {pooling!r} pooling are not "
                                    "supported (only 'last')")
    if info.architecture in ENCODER_ARCHS:
        raise UnsupportedModelError(f"{path.name}: a score head needs a causal language model, "
                                    f"not an encoder ({info.architecture})")
    head = read_float_array(path, HEAD_KEY)
    if head.size != info.embedding_length:
        raise ModelFileError(
            f"{path.name}: its score head has {head.size:,} values but the model's hidden size "
            f"(n_embd) is {info.embedding_length:,}; the head belongs to another backbone"
        )
    if not np.all(np.isfinite(head)):
        raise ModelFileError(f"{path.name}: its score head contains NaN or infinite values")
    if not meta.get("tokenizer.chat_template"):
        raise ModelFileError(f"{path.name} has no chat template: a score-head reward model scores "
                             "the conversation in the chat template it was trained with")
    engine = load(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx)
    try:
        decoder = _Decoder(engine.llama_model, n_ctx=engine.n_ctx,
                           kv_bytes_per_token=engine.kv_bytes_per_token, n_threads=n_threads,
                           embeddings=True, pooling=llama_cpp.LLAMA_POOLING_TYPE_LAST,
                           width=info.embedding_length, causal=True)
    except BaseException:
        engine.close()
        raise
    return ScoreHeadModel(engine, decoder, head=head, bias=float(meta.get(BIAS_KEY, 0.0)),
                          source=meta.get(SOURCE_KEY))


def _open_reranker(path: Path, header: GGUFHeader, rubric: str | None, n_gpu_layers: int,
                   n_ctx: int | None, n_threads: int | None) -> RerankerModel:
    info = model_info(path, header)
    engine = load(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx)
    try:
        model = engine.llama_model
        n_cls = int(llama_cpp.llama_model_n_cls_out(model))
        labels = tuple(
            (llama_cpp.llama_model_cls_label(model, i) or f"label_{i}".encode()).decode(
                "utf-8", "replace")
            for i in range(n_cls)
        )
        lowered = sorted(label.lower() for label in labels)
        if not (n_cls == 1 or (n_cls == 2 and lowered == ["no", "yes"])):
            raise UnsupportedModelError(
                f"{path.name} is a classifier with labels {'/'.join(labels)}: a reranker needs "
                "one output or the two labels yes/no"
            )
        template, origin = _rerank_template(model, info.architecture, labels, rubric)
        decoder = _Decoder(model, n_ctx=engine.n_ctx,
                           kv_bytes_per_token=engine.kv_bytes_per_token, n_threads=n_threads,
                           embeddings=True, pooling=llama_cpp.LLAMA_POOLING_TYPE_RANK,
                           width=n_cls, causal=info.architecture not in ENCODER_ARCHS)
    except BaseException:
        engine.close()
        raise
    return RerankerModel(engine, decoder, labels=labels, template=template,
                         template_origin=origin)


def _rerank_template(model: llama_cpp.llama_model_p, arch: str, labels: tuple[str, ...],
                     rubric: str | None) -> tuple[str | None, str]:
    """(template with {query}/{document} or None for the pair format, where it came from)."""
    stored = llama_cpp.llama_model_chat_template(model, b"rerank")
    if stored:
        template, origin = stored.decode("utf-8", "replace"), "the file's rerank template"
    elif arch in RANK_SOFTMAX_ARCHS and sorted(x.lower() for x in labels) == ["no", "yes"]:
        template, origin = QWEN3_RERANK_TEMPLATE, "Qwen3-Reranker's documented prompt"
    else:
        if rubric is not None:
            raise InvalidRequestError("this reranker reads a query and a document only: it "
                                      "takes no rubric")
        return None, "the [BOS] query [EOS][SEP] document [EOS] pair of llama.cpp's rerank"
    if rubric is not None:
        instruction = " ".join(rubric.split())
        if "<Instruct>: " not in template:
            raise InvalidRequestError("this reranker's template has no <Instruct> line for a "
                                      "rubric")
        template = re.sub(r"<Instruct>: [^\n]*", lambda _m: "<Instruct>: " + instruction,
                          template, count=1)
        origin += " with the rubric as its instruction"
    return template, origin


# ---------------------------------------------------------------------------------------------
# Tokens


def _tokenize(vocab: llama_cpp.llama_vocab_p, text: str, *, add_special: bool,
              parse_special: bool) -> list[int]:
    data = text.encode("utf-8")
    capacity = len(data) + 8
    while True:
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, capacity, add_special,
                                     parse_special)
        if n >= 0:
            return list(buf[:n])
        capacity = -n


def _chat_tokens(engine: Engine, vocab: llama_cpp.llama_vocab_p, messages: list[dict[str, str]],
                 *, add_generation_prompt: bool) -> list[int]:
    """The model's chat template around `messages`, rendered in the sandbox and tokenized with
    special tokens parsed (as Hugging Face's apply_chat_template then tokenizer() does)."""
    bos, eos = llama_cpp.llama_vocab_bos(vocab), llama_cpp.llama_vocab_eos(vocab)

    def text_of(token: int) -> str:
        return engine.token_bytes(token, special=True).decode("utf-8", "replace") if token >= 0 \
            else ""

    text = render_chat(engine.chat_template, messages, bos_token=text_of(bos),
                       eos_token=text_of(eos), add_generation_prompt=add_generation_prompt)
    tokens = _tokenize(vocab, text, add_special=True, parse_special=True)
    if len(tokens) > 1 and tokens[0] == tokens[1] == bos:
        del tokens[0]  # the template wrote BOS and tokenize added another
    return tokens


def _single_token_ids(vocab: llama_cpp.llama_vocab_p, words: Iterable[str]) -> tuple[int, ...]:
    """The ids of every spelling of `words` (bare and after a space) that is a single token."""
    ids = set()
    for word in words:
        for text in (word, " " + word):
            tokens = _tokenize(vocab, text, add_special=False, parse_special=False)
            if len(tokens) == 1:
                ids.add(tokens[0])
    return tuple(sorted(ids))


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


# ---------------------------------------------------------------------------------------------
# Batched decoding


class _Decoder:
    """A llama.cpp context that decodes many token sequences together and reads one output per
    sequence: the pooled embedding (LAST or RANK pooling) or the last token's logits.

    Causal models: the tokens all inputs share are decoded once on sequence 0 and copied to the
    others (`llama_memory_seq_cp` in a unified KV cache), then every input's own tokens go into
    one decode as its own sequence, as many inputs per decode as the context holds. Encoders
    (bert) see a whole micro-batch at once, which would make an input's result depend on its
    neighbours (see `SCORE_UBATCH`), so each input gets its own decode.
    """

    def __init__(self, model: llama_cpp.llama_model_p, *, n_ctx: int, kv_bytes_per_token: int,
                 n_threads: int | None, embeddings: bool, causal: bool,
                 pooling: int = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED, width: int = 0) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.causal = causal
        self.embeddings = embeddings
        self.width = width
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        needed = n_ctx * kv_bytes_per_token
        available = available_memory()
        if causal and available is not None and needed > available * MEMORY_HEADROOM:
            raise ResourceError(
                f"a scoring context of {n_ctx:,} tokens needs {needed / 2**30:.1f} GiB of KV cache "
                f"but only {available / 2**30:.1f} GiB of memory is available"
            )
        # An encoder must see each input in one decode and one micro-batch; causal models take
        # their inputs in slices (see _decode_all) and micro-batches of SCORE_UBATCH.
        self.n_batch = min(n_ctx, DECODE_BATCH) if causal else n_ctx
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = self.n_batch
        params.n_ubatch = SCORE_UBATCH if causal else n_ctx
        # + 1: the shared prefix's sequence. llama.cpp needs n_batch outputs >= n_seq_max.
        params.n_seq_max = min(MAX_SEQUENCES + 1, self.n_batch) if causal else 1
        self.max_sequences = max(1, params.n_seq_max - 1)
        params.kv_unified = True
        params.embeddings = embeddings
        params.pooling_type = pooling
        # As in the engine: flash attention, whose per-row results do not depend on the batch
        # (below SCORE_UBATCH rows on CPU).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        threads = n_threads or default_threads()[1]  # scoring is prompt processing: every core
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            raise ResourceError(f"llama.cpp could not create a scoring context of {n_ctx:,} tokens "
                                "(out of memory?)")
        self._ctx = ctx
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._finalizer = weakref.finalize(self, _free, ctx, self._batch)

    @property
    def open(self) -> bool:
        return self._finalizer.alive

    def close(self) -> None:
        self._finalizer()

    def run(
        self,
        inputs: list[list[int]],
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray | None]:
        """One output per input (None for those not reached before `cancel` returned True)."""
        if not self.open:
            raise PlaygroundError("this reward model is closed")
        results: list[np.ndarray | None] = [None] * len(inputs)
        if not inputs:
            return results
        if any(not tokens for tokens in inputs):
            raise InvalidRequestError("an input to score has no tokens")
        cancelled = cancel or (lambda: False)
        memory = llama_cpp.llama_get_memory(self._ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)
        shared = _shared_prefix(inputs) if self.causal and len(inputs) > 1 else 0
        first_seq = 1 if shared else 0
        # Only each input's last token is read. Tokens before its last TAIL go in with no output
        # and, for a causal model, with embeddings off: in embedding mode llama.cpp makes every
        # token an output and computes its n_vocab logits (and the last layer) for nothing.
        # The KV cache gets the same values either way.
        tail = TAIL if self.causal else None
        prefix = [(t, i, 0, False) for i, t in enumerate(inputs[0][:shared])]
        if not self._decode_all(prefix, {}, results, cancelled, embeddings=False):
            return results
        done = 0
        for chunk in self._chunks(inputs, shared):
            body: list[tuple[int, int, int, bool]] = []
            ends: list[tuple[int, int, int, bool]] = []
            last_of: dict[int, tuple[int, int]] = {}
            for j, index in enumerate(chunk):
                seq = first_seq + j
                if shared:
                    llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
                own = inputs[index][shared:]
                split = max(0, len(own) - tail) if tail else 0
                body += [(token, shared + k, seq, False) for k, token in enumerate(own[:split])]
                ends += [(token, shared + k, seq, self.embeddings or k == len(own) - 1)
                         for k, token in enumerate(own[split:], split)]
                last_of[len(ends) - 1] = (seq, index)
            finished = (self._decode_all(body, {}, results, cancelled, embeddings=False)
                        and self._decode_all(ends, last_of, results, cancelled,
                                             embeddings=self.embeddings))
            if memory:
                if shared:
                    for j in range(len(chunk)):
                        llama_cpp.llama_memory_seq_rm(memory, first_seq + j, -1, -1)
                else:
                    llama_cpp.llama_memory_clear(memory, True)
            if not finished:
                break
            done += len(chunk)
            if progress is not None:
                progress(done, len(inputs))
        return results

    def _decode_all(
        self,
        entries: list[tuple[int, int, int, bool]],
        last_of: dict[int, tuple[int, int]],
        results: list[np.ndarray | None],
        cancelled: Callable[[], bool],
        *,
        embeddings: bool,
    ) -> bool:
        """Decode `entries` in slices of n_batch tokens, reading the output of each sequence
        whose last token (`last_of`: entry -> (sequence, input index)) a slice held. Slices
        bound llama.cpp's output buffer, which in embedding mode holds n_vocab logits for every
        token. False when cancelled."""
        if not entries:
            return True
        if self.causal and self.embeddings:
            llama_cpp.llama_set_embeddings(self._ctx, embeddings)
        bounds = _slices(len(entries), self.n_batch) if self.causal else [(0, len(entries))]
        for start, end in bounds:
            if cancelled():
                return False
            part = entries[start:end]
            self._decode(part)
            for e in range(start, start + len(part)):
                if e in last_of:
                    seq, index = last_of[e]
                    results[index] = self._read(seq, e - start)
        return True

    def _chunks(self, inputs: list[list[int]], shared: int) -> list[list[int]]:
        """Input indices, packed in order into decodes that fit the context."""
        if not self.causal:
            return [[i] for i in range(len(inputs))]
        capacity = self.n_ctx - shared
        chunks: list[list[int]] = []
        used = capacity + 1
        for i, tokens in enumerate(inputs):
            need = len(tokens) - shared
            if used + need > capacity or len(chunks[-1]) >= self.max_sequences:
                chunks.append([])
                used = 0
            chunks[-1].append(i)
            used += need
        return chunks

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        decode(self._ctx, self._batch, entries)

    def _read(self, seq: int, batch_index: int) -> np.ndarray:
        if self.embeddings:
            # llama.cpp writes `width` floats (n_cls_out for RANK pooling); anything after them
            # in its buffer is stale memory from earlier decodes.
            pointer = llama_cpp.llama_get_embeddings_seq(self._ctx, seq)
            if not pointer:
                raise PlaygroundError("llama.cpp returned no pooled output for a sequence")
            return np.ctypeslib.as_array(pointer, shape=(self.width,)).copy()
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, batch_index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()


def _slices(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of the decodes for n tokens: at most `size` each, and none whose last
    micro-batch would hold a single token (see SCORE_UBATCH) unless n is 1."""
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    if not bounds:
        return bounds
    start, end = bounds[-1]
    if (end - start) % SCORE_UBATCH == 1 and n > 1:
        if end - start > 1:
            bounds[-1:] = [(start, end - 2), (end - 2, end)]
        else:
            bounds[-2:] = [(bounds[-2][0], start - 1), (start - 1, end)]
    return bounds


def _shared_prefix(inputs: list[list[int]]) -> int:
    """Tokens every input starts with, leaving each at least two of its own: its last is the
    one read, and a decode of one token could take another kernel path (see SCORE_UBATCH)."""
    first = inputs[0]
    limit = min(len(tokens) for tokens in inputs) - 2
    n = 0
    while n < limit and all(tokens[n] == first[n] for tokens in inputs):
        n += 1
    return n


def _free(ctx: llama_cpp.llama_context_p, batch: llama_cpp.llama_batch) -> None:
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)


# ---------------------------------------------------------------------------------------------
# The score-head file format: reading the head, packing a backbone with a head


def read_float_array(path: Path | str, key: str) -> np.ndarray:
    """One float32 array from a GGUF's metadata, read without decoding the rest (the gguf
    package's reader parses every token string: seconds for a 150k vocabulary)."""
    path = Path(path)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            found = _find_float_array(buf, key)
        except (struct.error, IndexError, UnicodeDecodeError):
            raise ModelFileError(f"{path.name}: the file is truncated or damaged") from None
    if found is None:
        raise ModelFileError(f"{path.name}: `{key}` is missing or is not a float32 array")
    return found


_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY, _GGUF_F32 = 8, 9, 6


def _find_float_array(buf: mmap.mmap, key: str) -> np.ndarray | None:
    _version, _n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    pos = 24
    wanted = key.encode()
    for _ in range(n_kv):
        (length,) = struct.unpack_from("<Q", buf, pos)
        name = buf[pos + 8 : pos + 8 + length]
        pos += 8 + length
        (kind,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if name == wanted:
            if kind != _GGUF_ARRAY:
                return None
            elem, count = struct.unpack_from("<IQ", buf, pos)
            if elem != _GGUF_F32 or pos + 12 + 4 * count > len(buf):
                return None
            return np.frombuffer(buf, dtype="<f4", count=count, offset=pos + 12).copy()
        pos = _skip_value(buf, pos, kind)
    return None


def _skip_value(buf: mmap.mmap, pos: int, kind: int) -> int:
    if kind in _GGUF_SIZES:
        return pos + _GGUF_SIZES[kind]
    if kind == _GGUF_STRING:
        (length,) = struct.unpack_from("<Q", buf, pos)
        return pos + 8 + length
    if kind == _GGUF_ARRAY:
        elem, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if elem in _GGUF_SIZES:
            return pos + count * _GGUF_SIZES[elem]
        for _ in range(count):
            pos = _skip_value(buf, pos, elem)
        return pos
    raise struct.error(f"unknown GGUF value type {kind}")


def pack_reward_model(
    backbone: Path | str,
    head: Path | str,
    out: Path | str,
    *,
    bias: float | None = None,
    source: str | None = None,
) -> Path:
    """Write `out`: a copy of the causal-LM GGUF `backbone` with a score head in its metadata.

    `head` is a .npy (n_embd values, shape (n_embd,) or (1, n_embd)) or a .safetensors file
    (`score.weight`, or its single (1, n_embd) tensor; `score.bias` if present). Tensors are copied
    byte for byte, so quantization is unchanged. `bias` overrides the file's; `source` is recorded
    (default: the head file's name). Returns `out`.
    """
    import gguf

    backbone, head, out = Path(backbone), Path(head), Path(out)
    header = read_header(backbone)
    info = model_info(backbone, header)
    found = _file_kind(header)
    if found not in ("chat", "base", KIND_SCORE_HEAD):
        raise ModelFileError(f"{backbone.name} is {_what(header, found)}: a score head goes into "
                             "the backbone of a causal language model")
    if info.architecture in ENCODER_ARCHS:
        raise UnsupportedModelError(f"{backbone.name}: a score head needs a causal language "
                                    f"model, not an encoder ({info.architecture})")
    vector, file_bias, tensor_name = load_score_head(head)
    if vector.size != info.embedding_length:
        raise InvalidRequestError(
            f"{head.name} has {vector.size:,} values ({tensor_name}) but {backbone.name} has a "
            f"hidden size (n_embd) of {info.embedding_length:,}: the head belongs to another model"
        )
    if not np.all(np.isfinite(vector)):
        raise InvalidRequestError(f"{head.name}: the score head contains NaN or infinite values")
    if out.resolve() == backbone.resolve():
        raise InvalidRequestError("the output must be a new file, not the backbone itself")
    # The file is written beside the output and renamed over it: never over a device or a FIFO,
    # and through a symlink to the file it names.
    require_regular(out, "the output")
    out = out.resolve()

    reader = gguf.GGUFReader(str(backbone))
    writer_arch = str(reader.get_field("general.architecture").contents())
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(temporary, writer_arch, endianess=reader.endianess)
        for field in reader.fields.values():
            if (field.name == "general.architecture" or field.name.startswith("GGUF.")
                    or field.name.startswith("playground.reward.")):
                continue
            if field.name == "general.alignment":
                writer.add_custom_alignment(int(field.contents()))
                continue
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
        writer.add_uint32(VERSION_KEY, FORMAT_VERSION)
        writer.add_key_value(HEAD_KEY, [float(x) for x in vector], gguf.GGUFValueType.ARRAY,
                             sub_type=gguf.GGUFValueType.FLOAT32)
        writer.add_float32(BIAS_KEY, float(file_bias if bias is None else bias))
        writer.add_string(POOLING_KEY, "last")
        writer.add_string(SOURCE_KEY, source or f"{head.name} ({tensor_name})")
        for tensor in reader.tensors:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype,
                                   tensor.data.nbytes, tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
        writer.close()
        del reader
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out


def load_score_head(path: Path | str) -> tuple[np.ndarray, float, str]:
    """(head as float32 vector, bias, where it was found) from a .npy or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRequestError(f"{path.name}: no such file")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise InvalidRequestError(f"{path.name}: not a readable .npy file ({error})") from None
        if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[0] != 1):
            raise InvalidRequestError(
                f"{path.name} has shape {array.shape}: a score head is one row of n_embd values, "
                "shape (n_embd,) or (1, n_embd)"
            )
        return np.asarray(array, dtype=np.float32).reshape(-1), 0.0, "the array"
    if path.suffix == ".safetensors":
        header, _ = read_safetensors_header(path)
        name = find_score_tensor(header, path.name)
        vector = load_safetensors_tensor(path, name).reshape(-1)
        bias_name = name.removesuffix("weight") + "bias"
        bias = 0.0
        if bias_name != name and bias_name in header:
            bias = float(load_safetensors_tensor(path, bias_name).reshape(-1)[0])
        return vector, bias, name
    raise InvalidRequestError(f"{path.name}: a score head is read from a .npy or .safetensors file")


def find_score_tensor(header: dict[str, Any], where: str, hidden: int | None = None) -> str:
    """The score head's name among a safetensors header's tensors: `score.weight` (or a name
    ending in it), else the only 2-D tensor of shape (1, n) (with n == hidden when given)."""
    names = [n for n in header if n != "__metadata__"]
    for name in names:
        if name == "score.weight" or name.endswith(".score.weight"):
            return name
    rows = [n for n in names if len(header[n]["shape"]) == 2 and header[n]["shape"][0] == 1
            and (hidden is None or header[n]["shape"][1] == hidden)]
    if len(rows) == 1:
        return rows[0]
    if len(names) == 1 and len(header[names[0]]["shape"]) == 1:
        return names[0]
    found = ", ".join(f"{n} {tuple(header[n]['shape'])}" for n in names[:8])
    raise InvalidRequestError(
        f"{where}: no score head found (no `score.weight` and not exactly one (1, n) tensor; "
        f"it holds {found}{' ...' if len(names) > 8 else ''})"
    )


# ---------------------------------------------------------------------------------------------
# safetensors, read without the safetensors package: an 8-byte little-endian header length, a
# JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
# raw little-endian data (offsets relative to the end of the header).

SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
                      "F64": np.dtype("<f8")}


def read_safetensors_header(path: Path | str) -> tuple[dict[str, Any], int]:
    """(the JSON header, the byte offset where tensor data starts)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _safetensors_header(path, f, os.fstat(f.fileno()).st_size)
    except OSError as error:
        raise InvalidRequestError(f"{path.name}: cannot be read ({error.strerror})") from None


def _safetensors_header(path: Path, f: IO[bytes], size: int) -> tuple[dict[str, Any], int]:
    raw = f.read(8)
    if len(raw) < 8:
        raise InvalidRequestError(f"{path.name}: not a safetensors file (too short)")
    (length,) = struct.unpack("<Q", raw)
    if length > min(size - 8, 100_000_000):
        raise InvalidRequestError(f"{path.name}: not a safetensors file (bad header length)")
    try:
        header = json.loads(f.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequestError(f"{path.name}: not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise InvalidRequestError(f"{path.name}: not a safetensors file (bad header)")
    return header, 8 + length


def load_safetensors_tensor(path: Path | str, name: str) -> np.ndarray:
    """One tensor as float32 (F32, F16, BF16 or F64 in the file)."""
    path = Path(path)
    header, start = read_safetensors_header(path)
    entry = header.get(name)
    if not isinstance(entry, dict):
        raise InvalidRequestError(f"{path.name}: no tensor {name!r}")
    dtype = SAFETENSORS_DTYPES.get(entry.get("dtype"))
    if dtype is None:
        raise InvalidRequestError(f"{path.name}: tensor {name!r} is {entry.get('dtype')}; "
                                  "expected F32, F16 or BF16")
    try:
        shape = tuple(int(n) for n in entry["shape"])
        begin, end = (int(n) for n in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRequestError(f"{path.name}: tensor {name!r} has no valid shape and offsets")\
            from None
    count = math.prod(shape)
    if end - begin != count * dtype.itemsize or start + end > path.stat().st_size:
        raise InvalidRequestError(f"{path.name}: tensor {name!r} has inconsistent offsets")
    with path.open("rb") as f:
        f.seek(start + begin)
        array = np.frombuffer(f.read(end - begin), dtype=dtype)
    if entry["dtype"] == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32).reshape(shape)


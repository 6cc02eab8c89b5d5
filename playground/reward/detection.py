"""What kind of reward model a file is, and opening it as the backend that fits."""

from __future__ import annotations

import re
from pathlib import Path

import llama_cpp
import numpy as np

from playground.engine import LocalEngine, load
from playground.errors import (
    InvalidRequestError,
    ModelFileError,
    UnsupportedModelError,
)
from playground.gguf_file import GGUFHeader, model_info, read_array, read_header
from playground.handles import LlamaModel
from playground.reward.backends import (
    DEFAULT_RUBRIC,
    QWEN3_RERANK_TEMPLATE,
    RANK_SOFTMAX_ARCHS,
    JudgeModel,
    RerankerModel,
    ScoreHeadModel,
)
from playground.reward.decoder import Decoder
from playground.reward.interface import (
    BIAS_KEY,
    FORMAT_VERSION,
    HEAD_KEY,
    KIND_JUDGE,
    KIND_RERANKER,
    KIND_SCORE_HEAD,
    KINDS,
    POOLING_KEY,
    SOURCE_KEY,
    VERSION_KEY,
    Scorer,
)

# Architectures whose attention is not causal: no shared prefix, one input per decode.
ENCODER_ARCHS = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert", "neo-bert", "t5encoder"}
)
_POOLING_NAMES = {0: "no", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


def open_reward_model(
    spec: str | Path,
    *,
    judge_engine: LocalEngine | None = None,
    rubric: str | None = None,
    n_gpu_layers: int = 0,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    kind: str | None = None,
) -> Scorer:
    """Open a reward model.

    `spec` is "judge" (the LLM judge: `judge_engine`, the app's loaded generator, or else the
    embedded model; a `RemoteEngine` judges through its logprobs, see remote_reward.py),
    "judge:PATH" (a judge loaded from an instruct GGUF), or the path of a GGUF whose kind is
    read from its metadata: a score head (`playground.reward.score_head`) or a
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
    found = file_kind(header)
    if kind == KIND_JUDGE:
        _check_judge_file(path, header, found)
        return _open_judge(path, None, rubric, n_gpu_layers, n_ctx, n_threads)
    if found not in (KIND_SCORE_HEAD, KIND_RERANKER):
        raise ModelFileError(_not_a_reward_model(path, header, found))
    if kind is not None and found != kind:
        raise ModelFileError(
            f"{path.name} is {what_file_is(header, found)}: expected {_EXPECTED[kind]}")
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


def file_kind(header: GGUFHeader) -> str:
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


def what_file_is(header: GGUFHeader, found: str) -> str:
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
    what = what_file_is(header, found)
    if found in ("chat", "base"):
        return (f"{path.name} is {what} without a score head: a score-head reward model needs "
                f"`{HEAD_KEY}` (see docs/reward-models.md), or use it as the judge")
    return (f"{path.name} is {what}: it has neither a score head nor a classification head, so it "
            "cannot score responses (see docs/reward-models.md)")


def _check_judge_file(path: Path, header: GGUFHeader, found: str) -> None:
    if found in ("chat", "base"):
        return
    what = what_file_is(header, found)
    if found in (KIND_SCORE_HEAD, KIND_RERANKER):
        raise ModelFileError(
            f"{path.name} is {what}: the judge needs an instruct model that answers in text; "
            "open it by its path as a reward model instead"
        )
    raise ModelFileError(f"{path.name} is {what}: the judge needs an instruct model that answers "
                         "in text")


def _open_judge(path: Path | None, engine: LocalEngine | None, rubric: str | None,
                n_gpu_layers: int, n_ctx: int | None, n_threads: int | None) -> JudgeModel:
    rubric = DEFAULT_RUBRIC if rubric is None else rubric
    if not rubric.strip():
        raise InvalidRequestError("the judge's rubric is empty")
    owns = engine is None
    if engine is not None and path is not None:
        raise InvalidRequestError("give the judge either a model path or an engine, not both")
    if engine is not None and engine.info.server is not None:
        # A model on a server has no logits here: its judge reads the server's logprobs.
        from playground.remote_reward import ServerJudge

        return ServerJudge(engine, rubric)
    if engine is None:
        if path is not None:
            header = read_header(path)
            _check_judge_file(path, header, file_kind(header))
        engine = load(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx)
    else:
        header = read_header(engine.path)
        _check_judge_file(engine.path, header, file_kind(header))
    try:
        decoder = Decoder(engine.model, n_ctx=n_ctx or engine.n_ctx,
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
    head = read_array(path, HEAD_KEY)
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
        decoder = Decoder.last_hidden_state(engine, n_threads)
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
        model = engine.model
        labels = model.classifier_labels()
        n_cls = len(labels)
        lowered = sorted(label.lower() for label in labels)
        if not (n_cls == 1 or (n_cls == 2 and lowered == ["no", "yes"])):
            raise UnsupportedModelError(
                f"{path.name} is a classifier with labels {'/'.join(labels)}: a reranker needs "
                "one output or the two labels yes/no"
            )
        template, origin = _rerank_template(model, info.architecture, labels, rubric)
        decoder = Decoder(model, n_ctx=engine.n_ctx,
                           kv_bytes_per_token=engine.kv_bytes_per_token, n_threads=n_threads,
                           embeddings=True, pooling=llama_cpp.LLAMA_POOLING_TYPE_RANK,
                           width=n_cls, causal=info.architecture not in ENCODER_ARCHS)
    except BaseException:
        engine.close()
        raise
    return RerankerModel(engine, decoder, labels=labels, template=template,
                         template_origin=origin, rubric=rubric or "")


def _rerank_template(model: LlamaModel, arch: str, labels: tuple[str, ...],
                     rubric: str | None) -> tuple[str | None, str]:
    """(template with {query}/{document} or None for the pair format, where it came from)."""
    stored = model.chat_template("rerank")
    if stored:
        template, origin = stored, "the file's rerank template"
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


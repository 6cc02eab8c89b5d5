"""Tiny random-weight GGUF models for tests.

The models written here load in llama.cpp (llama-cpp-python 0.3.36) in a fraction of a
second and decode in milliseconds, so tests can exercise the real inference path without
downloading anything.

* :func:`write_tiny_llama` -- a 2-layer "llama" architecture causal LM with a SentencePiece
  ("llama") tokenizer: <unk>, <s>, </s>, <|im_start|>, <|im_end|>, all 256 byte tokens and a
  few hundred English pieces. Carries a ChatML chat template by default.
* :func:`write_tiny_qwen3_classifier` -- a 2-layer "qwen3" model with a classification head
  (``cls.output``, ``qwen3.classifier.output_labels``), usable with
  ``pooling_type=LLAMA_POOLING_TYPE_RANK``.
* :func:`write_not_gguf` / :func:`write_truncated` -- bad inputs for error-path tests.

Weights are random (numpy, seeded); numpy shapes are (out, in), the GGUF/ggml dims are the
reverse. All tensors are stored as F32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "CHATML_TEMPLATE",
    "FIRST_BYTE_TOKEN",
    "N_EMBD",
    "N_FF",
    "N_HEAD",
    "N_HEAD_KV",
    "N_LAYER",
    "TOKEN_BOS",
    "TOKEN_EOS",
    "TOKEN_IM_END",
    "TOKEN_IM_START",
    "TOKEN_UNK",
    "build_vocab",
    "write_not_gguf",
    "write_tiny_llama",
    "write_tiny_qwen3_classifier",
    "write_truncated",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Hyperparameters shared by both model kinds.
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = N_EMBD // N_HEAD  # 16
N_FF = 128
ROPE_FREQ_BASE = 10000.0
RMS_EPS = 1e-5

# Token ids of the special tokens (fixed positions at the start of the vocabulary).
TOKEN_UNK = 0
TOKEN_BOS = 1
TOKEN_EOS = 2
TOKEN_IM_START = 3
TOKEN_IM_END = 4
FIRST_BYTE_TOKEN = 5  # <0x00>; the byte tokens are ids 5..260, NORMAL pieces follow

# gguf.TokenType values (duplicated so that build_vocab() does not need gguf).
_TT_NORMAL = 1
_TT_UNKNOWN = 2
_TT_CONTROL = 3
_TT_BYTE = 6

_SP = "\u2581"  # SentencePiece word-boundary marker "▁"

# Roughly in order of frequency; earlier words get slightly higher scores.
_WORD_TEXT = (
    "the be to of and a in that have it for not on with he as you do at this but his by "
    "from they we say her she or an will my one all would there their what so up out if "
    "about who get which go me when make can like time no just him know take people into "
    "year your good some could them see other than then now look only come its over think "
    "also back after use two how our work first well way even new want because any these "
    "give day most us is was are were has had said very little big happy hello world model "
    "token text sample story once upon cat dog sun water house tree red blue green yes "
    "thank please write answer question"
)
_WORDS = _WORD_TEXT.split()
_CAPITALIZED = ("The", "It", "I", "Hello", "Once", "He", "She", "We", "You", "This", "What")
_SUFFIXES = (
    "in",
    "ing",
    "er",
    "ed",
    "es",
    "th",
    "an",
    "on",
    "en",
    "at",
    "or",
    "re",
    "ly",
    "tion",
    "st",
    "ll",
    "ou",
    "ent",
)
_PUNCT = tuple(".,!?;:'\"-()[]/*+=&%$#@_<>")


def _prefixes(s: str, min_len: int = 2) -> list[str]:
    return [s[:i] for i in range(min_len, len(s) + 1)]


def build_vocab() -> tuple[list[str], list[float], list[int]]:
    """Return (tokens, scores, token_types) of the tiny SentencePiece vocabulary.

    Layout: 0 <unk>, 1 <s>, 2 </s>, 3 <|im_start|>, 4 <|im_end|>, 5..260 <0x00>..<0xFF>,
    then NORMAL pieces. llama.cpp's SPM tokenizer builds a piece by merging adjacent symbols
    whose concatenation is in the vocabulary, so every multi-character piece comes with all
    of its prefixes (e.g. "▁h", "▁he", "▁hel", "▁hell", "▁hello").
    """
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    scores = [0.0] * 5
    types = [_TT_UNKNOWN, _TT_CONTROL, _TT_CONTROL, _TT_CONTROL, _TT_CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(_TT_BYTE)

    pieces: dict[str, float] = {}

    def add(piece: str, bonus: float = 0.0) -> None:
        # Longer pieces score higher (so merges prefer them); `bonus` ranks common words.
        score = float(len(piece)) + bonus
        if piece not in pieces or pieces[piece] < score:
            pieces[piece] = score

    add(_SP, 0.5)
    for c in "abcdefghijklmnopqrstuvwxyz":
        add(c)
        add(_SP + c, 0.2)
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        add(c, -0.3)
    for c in "0123456789":
        add(c)
    for c in _PUNCT:
        add(c)
    n_words = len(_WORDS)
    for rank, w in enumerate(_WORDS):
        bonus = 0.5 * (1.0 - rank / n_words)
        for p in _prefixes(_SP + w):
            add(p, bonus)
    for w in _CAPITALIZED:
        for p in _prefixes(_SP + w):
            add(p, 0.1)
    for s in _SUFFIXES:
        for p in _prefixes(s):
            add(p, 0.1)

    for piece, score in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0])):
        tokens.append(piece)
        scores.append(score)
        types.append(_TT_NORMAL)
    return tokens, scores, types


def _add_common_hparams(w, *, n_ctx: int, n_vocab: int) -> None:
    w.add_vocab_size(n_vocab)
    w.add_context_length(n_ctx)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(ROPE_FREQ_BASE)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_file_type(0)  # gguf.LlamaFileType.ALL_F32


def _add_spm_tokenizer(w, *, chat_template: str | None) -> int:
    tokens, scores, types = build_vocab()
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(TOKEN_UNK)
    w.add_bos_token_id(TOKEN_BOS)
    w.add_eos_token_id(TOKEN_EOS)
    # End of turn for ChatML; llama.cpp also detects "<|im_end|>" by its text and makes it
    # an end-of-generation token (as it does for eos).
    w.add_uint32("tokenizer.ggml.eot_token_id", TOKEN_IM_END)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_bool("tokenizer.ggml.add_space_prefix", True)
    if chat_template is not None:
        w.add_string("tokenizer.chat_template", chat_template)
    return len(tokens)


def _output_row_scale(n_vocab: int) -> np.ndarray:
    """Per-token multiplier for output-layer rows: the model never predicts <unk>/<s>, and
    predicts control and byte tokens less often than text pieces."""
    scale = np.ones(n_vocab, dtype=np.float32)
    scale[TOKEN_UNK] = 0.0
    scale[TOKEN_BOS] = 0.0
    scale[TOKEN_EOS:FIRST_BYTE_TOKEN] = 0.6
    scale[FIRST_BYTE_TOKEN : FIRST_BYTE_TOKEN + 256] = 0.5
    return scale


# Standard deviation of the logits (before the per-row scale); 4.0 gives a top-token
# probability of roughly 0.2-0.9, 1.0 gives a flat-ish distribution.
_PEAKED_LOGIT_STD = 4.0
_FLAT_LOGIT_STD = 1.0


def _random_weights(
    rng: np.random.Generator, n_vocab: int, *, peaked: bool, qk_norm: bool
) -> dict[str, np.ndarray]:
    def lin(n_out: int, n_in: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    t: dict[str, np.ndarray] = {}
    t["token_embd.weight"] = rng.standard_normal((n_vocab, N_EMBD)).astype(np.float32)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = ones(N_EMBD)
        t[p + "attn_q.weight"] = lin(N_HEAD * HEAD_DIM, N_EMBD)
        t[p + "attn_k.weight"] = lin(N_HEAD_KV * HEAD_DIM, N_EMBD)
        t[p + "attn_v.weight"] = lin(N_HEAD_KV * HEAD_DIM, N_EMBD)
        t[p + "attn_output.weight"] = lin(N_EMBD, N_HEAD * HEAD_DIM, 0.5)
        if qk_norm:
            t[p + "attn_q_norm.weight"] = ones(HEAD_DIM)
            t[p + "attn_k_norm.weight"] = ones(HEAD_DIM)
        t[p + "ffn_norm.weight"] = ones(N_EMBD)
        t[p + "ffn_gate.weight"] = lin(N_FF, N_EMBD)
        t[p + "ffn_up.weight"] = lin(N_FF, N_EMBD)
        t[p + "ffn_down.weight"] = lin(N_EMBD, N_FF, 0.5)
    t["output_norm.weight"] = ones(N_EMBD)
    # After output_norm the hidden state has RMS ~1 (norm ~sqrt(N_EMBD)), so a row with
    # entries of std std/sqrt(N_EMBD) gives logits of std ~std.
    std = _PEAKED_LOGIT_STD if peaked else _FLAT_LOGIT_STD
    out = lin(n_vocab, N_EMBD, std) * _output_row_scale(n_vocab)[:, None]
    t["output.weight"] = out.astype(np.float32)
    return t


def _write(path: Path, arch: str, add_kv, tensors: dict[str, np.ndarray]) -> Path:
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    add_kv(w)
    for name, arr in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_tiny_llama(
    path: Path,
    *,
    seed: int = 0,
    n_ctx: int = 512,
    chat_template: str | None = CHATML_TEMPLATE,
    peaked: bool = True,
    name: str = "tiny-llama",
) -> Path:
    """Write a tiny random "llama" GGUF (2 layers, 64 wide, 4 heads / 2 KV heads, ffn 128,
    F32, SentencePiece vocabulary of :func:`build_vocab`) to ``path`` and return ``path``.

    ``n_ctx`` is the training context length stored in the file. ``peaked=True`` scales the
    output layer so that the next-token distribution has a clear favourite (top probability
    typically 0.2-0.9); ``peaked=False`` gives a much flatter distribution. Different seeds
    give different weights (the vocabulary is always the same)."""
    rng = np.random.default_rng(seed)
    n_vocab = len(build_vocab()[0])

    def add_kv(w) -> None:
        w.add_name(name)
        w.add_license("MIT")
        _add_common_hparams(w, n_ctx=n_ctx, n_vocab=n_vocab)
        _add_spm_tokenizer(w, chat_template=chat_template)

    tensors = _random_weights(rng, n_vocab, peaked=peaked, qk_norm=False)
    return _write(path, "llama", add_kv, tensors)


def _default_labels(n_labels: int) -> list[str]:
    if n_labels == 1:
        return ["score"]
    if n_labels == 2:
        return ["yes", "no"]
    return [f"label_{i}" for i in range(n_labels)]


def write_tiny_qwen3_classifier(
    path: Path,
    *,
    n_labels: int,
    seed: int = 0,
    labels: list[str] | None = None,
    n_ctx: int = 512,
    name: str = "tiny-qwen3-classifier",
) -> Path:
    """Write a tiny random "qwen3" GGUF with a classification head and return ``path``.

    Same sizes and SentencePiece vocabulary as :func:`write_tiny_llama` (llama.cpp accepts a
    "llama" tokenizer with the qwen3 architecture), plus ``blk.N.attn_q_norm`` /
    ``attn_k_norm``, the head tensor ``cls.output.weight`` (numpy shape (n_labels, n_embd))
    and the key ``qwen3.classifier.output_labels``. Load it with ``embedding=True,
    pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK``; ``llama_model_n_cls_out`` is then
    ``n_labels``. No ``cls.output.bias`` is written: llama.cpp's qwen3 loader does not take
    one, and an unused tensor makes the load fail ("wrong number of tensors")."""
    if n_labels < 1:
        raise ValueError("n_labels must be >= 1")
    if labels is None:
        labels = _default_labels(n_labels)
    labels = list(labels)
    if len(labels) != n_labels:
        raise ValueError(f"{len(labels)} labels given for n_labels={n_labels}")
    rng = np.random.default_rng(seed)
    n_vocab = len(build_vocab()[0])

    def add_kv(w) -> None:
        w.add_name(name)
        w.add_license("MIT")
        _add_common_hparams(w, n_ctx=n_ctx, n_vocab=n_vocab)
        _add_spm_tokenizer(w, chat_template=None)
        w.add_array("qwen3.classifier.output_labels", labels)
        w.add_uint32("qwen3.pooling_type", 4)  # LLAMA_POOLING_TYPE_RANK, as rerankers carry

    tensors = _random_weights(rng, n_vocab, peaked=True, qk_norm=True)
    tensors["cls.output.weight"] = (
        rng.standard_normal((n_labels, N_EMBD)) / np.sqrt(N_EMBD)
    ).astype(np.float32)
    return _write(path, "qwen3", add_kv, tensors)


def write_not_gguf(path: Path) -> Path:
    """Write a file that is not GGUF (a few KB of plain text; the caller picks the name,
    e.g. ``bad.gguf``) and return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"This is not a GGUF model file.\n" * 64)
    return path


def write_truncated(path: Path, source: Path, keep_fraction: float = 0.5) -> Path:
    """Copy the GGUF ``source`` to ``path`` cut inside its tensor data: the header, metadata
    and tensor infos are intact, and ``keep_fraction`` of the tensor data bytes is kept."""
    if not 0.0 <= keep_fraction < 1.0:
        raise ValueError("keep_fraction must be in [0, 1)")
    import gguf

    source = Path(source)
    data = source.read_bytes()
    reader = gguf.GGUFReader(str(source))
    data_offset = int(reader.data_offset)
    del reader  # releases the memory map
    cut = data_offset + int((len(data) - data_offset) * keep_fraction)
    cut = min(cut, len(data) - 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:cut])
    return path

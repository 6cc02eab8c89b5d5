"""Checks that the tiny GGUF models of tests/tiny_models.py load and behave in llama.cpp."""

from __future__ import annotations

import ctypes
import math
import time

import llama_cpp
import numpy as np
import pytest
import tiny_models as tm

PROMPTS = [
    b"Once upon a time",
    b"hello world",
    b"The cat and the dog",
    b"I think that",
    b"what is the answer?",
    b"x",
]


def _load(path, **kw) -> llama_cpp.Llama:
    kw.setdefault("n_ctx", 256)
    kw.setdefault("verbose", False)
    kw.setdefault("logits_all", False)
    return llama_cpp.Llama(model_path=str(path), **kw)


def _token_bytes(llm, token: int) -> bytes:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    assert 0 <= n <= len(buf)
    return buf.raw[:n]


def _last_logits(llm, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _trajectory_stats(llm, seed: int = 0, steps: int = 4) -> tuple[float, float]:
    """Mean top-token probability and mean entropy over prompts plus sampled continuations."""
    rng = np.random.default_rng(seed)
    max_ps, entropies = [], []
    for prompt in PROMPTS:
        toks = llm.tokenize(prompt)
        for _ in range(steps):
            p = _softmax(_last_logits(llm, toks))
            max_ps.append(p.max())
            entropies.append(float(-(p * np.log(p + 1e-30)).sum()))
            toks = [*toks, int(rng.choice(len(p), p=p))]
    return float(np.mean(max_ps)), float(np.mean(entropies))


@pytest.fixture
def tiny_llama_path(tmp_path):
    return tm.write_tiny_llama(tmp_path / "tiny.gguf")


@pytest.fixture
def tiny_llama(tiny_llama_path):
    return _load(tiny_llama_path)


def test_vocab_layout():
    tokens, scores, types = tm.build_vocab()
    assert len(tokens) == len(scores) == len(types) == len(set(tokens))
    assert tokens[: tm.FIRST_BYTE_TOKEN] == ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    byte_tokens = tokens[tm.FIRST_BYTE_TOKEN : tm.FIRST_BYTE_TOKEN + 256]
    assert byte_tokens == [f"<0x{b:02X}>" for b in range(256)]
    assert set(types[tm.FIRST_BYTE_TOKEN : tm.FIRST_BYTE_TOKEN + 256]) == {6}
    normal = [t for t, ty in zip(tokens, types, strict=True) if ty == 1]
    assert len(normal) >= 200
    # SPM merges need every prefix of a multi-character piece in the vocabulary.
    vocab = set(tokens)
    for piece in normal:
        for i in range(1, len(piece)):
            assert piece[:i] in vocab, (piece, piece[:i])


def test_llama_loads_with_metadata(tiny_llama_path):
    size = tiny_llama_path.stat().st_size
    t0 = time.perf_counter()
    llm = _load(tiny_llama_path)
    load_s = time.perf_counter() - t0
    print(f"tiny llama: {size} bytes, n_vocab {llm.n_vocab()}, loaded in {load_s * 1000:.1f} ms")
    assert llm.n_vocab() == len(tm.build_vocab()[0])
    assert llm.n_embd() == tm.N_EMBD
    assert llm.n_ctx() == 256
    md = llm.metadata
    assert md["general.architecture"] == "llama"
    assert md["general.name"] == "tiny-llama"
    assert md["general.license"] == "MIT"
    assert md["llama.block_count"] == str(tm.N_LAYER)
    assert md["llama.attention.head_count"] == str(tm.N_HEAD)
    assert md["llama.attention.head_count_kv"] == str(tm.N_HEAD_KV)
    assert md["tokenizer.ggml.model"] == "llama"
    assert md["tokenizer.chat_template"] == tm.CHATML_TEMPLATE
    assert llm.token_bos() == tm.TOKEN_BOS
    assert llm.token_eos() == tm.TOKEN_EOS


def test_name_and_no_chat_template(tmp_path):
    path = tm.write_tiny_llama(tmp_path / "m.gguf", chat_template=None, name="other", n_ctx=128)
    llm = _load(path, n_ctx=128)
    assert llm.metadata["general.name"] == "other"
    assert "tokenizer.chat_template" not in llm.metadata
    assert llama_cpp.llama_model_n_ctx_train(llm.model) == 128


def test_hello_world_round_trip(tiny_llama):
    llm = tiny_llama
    toks = llm.tokenize(b"hello world", add_bos=False)
    assert len(toks) == 2  # "▁hello", "▁world" are single pieces
    assert llm.detokenize(toks) == b" hello world"  # SentencePiece space prefix
    with_bos = llm.tokenize(b"hello world")
    assert with_bos == [tm.TOKEN_BOS, *toks]
    assert llm.detokenize(with_bos) == b"hello world"


def test_english_mixes_words_and_pieces(tiny_llama):
    llm = tiny_llama
    text = b"The xylophone played quietly, 42 times!"
    toks = llm.tokenize(text, add_bos=False)
    pieces = [_token_bytes(llm, t) for t in toks]
    assert b"".join(pieces) == b" " + text
    assert b" The" in pieces  # a whole word
    assert any(len(p.strip()) == 1 for p in pieces)  # and single characters
    assert all(t >= tm.FIRST_BYTE_TOKEN + 256 for t in toks)  # no byte fallback needed


@pytest.mark.parametrize("text", ["नमस्ते", "🙂", "héllo wörld 🙂 नमस्ते"])
def test_non_ascii_uses_byte_tokens(tiny_llama, text):
    llm = tiny_llama
    toks = llm.tokenize(text.encode("utf-8"), add_bos=False)
    assert toks
    joined = b"".join(_token_bytes(llm, t) for t in toks)
    assert joined.decode("utf-8") == " " + text
    byte_ids = range(tm.FIRST_BYTE_TOKEN, tm.FIRST_BYTE_TOKEN + 256)
    assert any(t in byte_ids for t in toks)


def test_chatml_markers_are_single_control_tokens(tiny_llama):
    llm = tiny_llama
    toks = llm.tokenize(b"<|im_start|>user\nhi<|im_end|>", add_bos=False, special=True)
    assert toks[0] == tm.TOKEN_IM_START
    assert toks[-1] == tm.TOKEN_IM_END
    # Without special parsing the markers are plain text.
    assert tm.TOKEN_IM_START not in llm.tokenize(b"<|im_start|>", add_bos=False, special=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    assert llama_cpp.llama_vocab_is_eog(vocab, tm.TOKEN_EOS)
    assert llama_cpp.llama_vocab_is_eog(vocab, tm.TOKEN_IM_END)
    assert not llama_cpp.llama_vocab_is_eog(vocab, tm.TOKEN_IM_START)
    assert llama_cpp.llama_vocab_eot(vocab) == tm.TOKEN_IM_END


def test_generates_20_tokens_deterministically(tiny_llama):
    llm = tiny_llama
    prompt = llm.tokenize(b"Once upon a time")

    def greedy() -> list[int]:
        llm.reset()
        out = []
        for tok in llm.generate(prompt, temp=0.0):
            out.append(tok)
            if len(out) == 20:
                break
        return out

    first = greedy()
    assert len(first) == 20
    assert all(0 <= t < llm.n_vocab() for t in first)
    assert greedy() == first
    text = b"".join(_token_bytes(llm, t) for t in first)
    assert text  # decodes to something


def test_create_completion_runs(tiny_llama):
    out = tiny_llama.create_completion("Once upon a time", max_tokens=20, temperature=0.8, seed=1)
    choice = out["choices"][0]
    assert choice["finish_reason"] in ("length", "stop")
    assert 1 <= out["usage"]["completion_tokens"] <= 20


def test_peaked_distribution(tiny_llama, tmp_path):
    mean_max_p, mean_entropy = _trajectory_stats(tiny_llama)
    log_v = math.log(tiny_llama.n_vocab())
    assert 0.2 < mean_max_p < 0.95
    assert mean_entropy < 0.6 * log_v

    flat = _load(tm.write_tiny_llama(tmp_path / "flat.gguf", peaked=False))
    flat_max_p, flat_entropy = _trajectory_stats(flat)
    assert flat_max_p < mean_max_p
    assert flat_entropy > mean_entropy


def test_never_predicts_unk_or_bos(tiny_llama):
    logits = _last_logits(tiny_llama, tiny_llama.tokenize(b"hello world"))
    p = _softmax(logits)
    assert p[tm.TOKEN_UNK] < 0.01 and p[tm.TOKEN_BOS] < 0.01


def test_seeds_give_different_models(tmp_path):
    a = tm.write_tiny_llama(tmp_path / "a.gguf", seed=0)
    a2 = tm.write_tiny_llama(tmp_path / "a2.gguf", seed=0)
    b = tm.write_tiny_llama(tmp_path / "b.gguf", seed=1)
    assert a.read_bytes() == a2.read_bytes()  # deterministic
    assert a.read_bytes() != b.read_bytes()
    prompt = [tm.TOKEN_BOS, *_load(a).tokenize(b"hello world", add_bos=False)]
    la = _last_logits(_load(a), prompt)
    la2 = _last_logits(_load(a2), prompt)
    lb = _last_logits(_load(b), prompt)
    np.testing.assert_allclose(la, la2, rtol=0, atol=1e-5)
    assert np.abs(la - lb).max() > 1.0
    assert np.argsort(la)[-5:].tolist() != np.argsort(lb)[-5:].tolist()


def test_bad_inputs_fail_to_load(tmp_path, tiny_llama_path):
    not_gguf = tm.write_not_gguf(tmp_path / "not.gguf")
    assert not not_gguf.read_bytes().startswith(b"GGUF")
    truncated = tm.write_truncated(tmp_path / "trunc.gguf", tiny_llama_path)
    data, source = truncated.read_bytes(), tiny_llama_path.read_bytes()
    assert data.startswith(b"GGUF") and source.startswith(data) and len(data) < len(source)
    for bad in (not_gguf, truncated):
        with pytest.raises(ValueError):
            _load(bad)


@pytest.mark.parametrize("n_labels", [1, 2])
def test_qwen3_classifier(tmp_path, n_labels):
    path = tm.write_tiny_qwen3_classifier(tmp_path / "cls.gguf", n_labels=n_labels)
    llm = llama_cpp.Llama(
        model_path=str(path),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
        n_ctx=256,
        verbose=False,
    )
    assert llm.metadata["general.architecture"] == "qwen3"
    assert llama_cpp.llama_model_n_cls_out(llm.model) == n_labels
    labels = [llama_cpp.llama_model_cls_label(llm.model, i) for i in range(n_labels)]
    assert labels == ([b"score"] if n_labels == 1 else [b"yes", b"no"])
    scores = [np.asarray(e[:n_labels]) for e in llm.embed(["hello world", "the cat and the dog"])]
    for s in scores:
        assert np.all(np.isfinite(s))
        assert s.sum() == pytest.approx(1.0, abs=1e-4)  # qwen3 RANK output is a softmax
    if n_labels == 2:
        assert not np.allclose(scores[0], scores[1])


def test_qwen3_classifier_custom_labels(tmp_path):
    path = tm.write_tiny_qwen3_classifier(tmp_path / "c.gguf", n_labels=3, labels=["a", "b", "c"])
    llm = llama_cpp.Llama(
        model_path=str(path),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
        verbose=False,
    )
    assert llama_cpp.llama_model_n_cls_out(llm.model) == 3
    assert llama_cpp.llama_model_cls_label(llm.model, 2) == b"c"
    with pytest.raises(ValueError):
        tm.write_tiny_qwen3_classifier(tmp_path / "x.gguf", n_labels=2, labels=["only-one"])

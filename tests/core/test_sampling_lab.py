"""The sampling lab and `kept` against brute force: full sorts in float64, both sampler orders,
on synthetic rows and on llama-cpp-python's own full logits (logits_all, flash attention on)."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import replace
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
from sampling_reference import brute_force

from playground.cli import main
from playground.engine_api import Engine
from playground.errors import InvalidRequestError
from playground.records import TokenRecord
from playground.sampling import SAMPLER_ORDERS, Sampler, SamplingParams
from playground.sampling_lab import both_orders, probe, probe_context, reshape
from playground.store import decode_tokens, encode_tokens

PARAMS = [
    SamplingParams(seed=1),
    SamplingParams(seed=1, temperature=0),
    SamplingParams(seed=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0),
    SamplingParams(seed=1, temperature=0.5, top_k=0, top_p=0.9, min_p=0.0),
    SamplingParams(seed=1, temperature=2.0, top_k=0, top_p=0.6, min_p=0.05),
    SamplingParams(seed=1, temperature=1.7, top_k=0, top_p=1.0, min_p=0.1),
    SamplingParams(seed=1, temperature=1.2, top_k=5, top_p=0.8, min_p=0.2),
    SamplingParams(seed=1, temperature=0.8, top_k=50, top_p=0.95, min_p=0.0, repeat_penalty=1.5),
]


@pytest.mark.parametrize("order", list(SAMPLER_ORDERS))
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"T{p.temperature}-k{p.top_k}"
                         f"-p{p.top_p}-m{p.min_p}-r{p.repeat_penalty}")
@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])  # flat to very peaked distributions
def test_reshape_and_kept_equal_brute_force(params: SamplingParams, order: str, scale: float):
    rng = np.random.default_rng(int(scale * 10))
    logits = (rng.standard_normal(5000) * scale).astype(np.float32)
    history = [int(t) for t in rng.integers(0, 5000, size=40)]
    params = replace(params, sampler_order=order)
    probs, cut = brute_force(logits, params, history)
    ours = reshape(logits, params, history)
    np.testing.assert_allclose(ours.probs, probs, atol=1e-6)
    assert [ours.cut_by(t) for t in range(len(cut))] == cut
    assert ours.kept == sum(c is None for c in cut)
    kept = probs[probs > 0]
    assert ours.entropy_after == pytest.approx(-float(np.sum(kept * np.log(kept))), abs=1e-6)
    # The sampler draws from the same distribution and reports the same kept count.
    draw = Sampler(params, history=history).sample(logits)
    assert draw.kept == ours.kept
    assert draw.logprob == pytest.approx(math.log(probs[draw.token]), abs=1e-5)


def test_the_orders_differ_where_the_textbook_says():
    """Temperature first: a hot temperature flattens the row before top-p, so top-p keeps more
    tokens. Temperature last: top-p cuts at temperature 1 and keeps the same set."""
    logits = (np.random.default_rng(7).standard_normal(3000) * 3).astype(np.float32)
    cool = SamplingParams(temperature=0.7, top_k=0, top_p=0.9, min_p=0.0)
    hot = replace(cool, temperature=1.8)
    first = {t: both_orders(logits, p)["temperature-first"].kept for t, p in (("c", cool),
                                                                              ("h", hot))}
    last = {t: both_orders(logits, p)["temperature-last"].kept for t, p in (("c", cool),
                                                                            ("h", hot))}
    assert first["h"] > first["c"]
    assert last["h"] == last["c"]


def test_sampler_order_is_validated_and_round_trips():
    with pytest.raises(InvalidRequestError, match="sampler order must be temperature-first or "
                                                   "temperature-last, not 'llama'"):
        SamplingParams(sampler_order="llama").validate()
    params = SamplingParams(sampler_order="temperature-last", seed=3)
    assert SamplingParams.from_json(json.loads(json.dumps(params.to_json()))) == params
    # Runs of earlier versions have no order: they ran temperature first.
    old = {k: v for k, v in params.to_json().items() if k != "sampler_order"}
    assert SamplingParams.from_json(old).sampler_order == "temperature-first"


def test_kept_survives_the_store_blob():
    record = TokenRecord(sample=0, position=0, id=5, bytes=b"a", text="a", logprob=-1.0,
                         sampling_logprob=-0.5, rank=2, entropy=1.0, top=(), kept=17)
    tokens = [record, replace(record, position=1, kept=1)]
    blob = encode_tokens(tokens)
    assert decode_tokens(blob, 0) == tokens
    # A blob of the format before kept (PGT1: 16 sections, no kept) reads as kept 0.
    header = struct.Struct("<4sqq17Q")
    _, n, start, *lengths = header.unpack_from(blob)
    old = (struct.Struct("<4sqq16Q").pack(b"PGT1", n, start, *lengths[:-1])
           + blob[header.size : len(blob) - lengths[-1]])
    assert decode_tokens(old, 0) == [replace(t, kept=0) for t in tokens]


# ---------------------------------------------------------------------------------------------
# Against llama-cpp-python's own logits


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    return row - (row.max() + np.log(np.exp(row - row.max()).sum()))


@pytest.fixture(scope="module")
def reference(embedded_model_path: Path):
    llm = llama_cpp.Llama(model_path=str(embedded_model_path), n_ctx=512, logits_all=True,
                          verbose=False, seed=0, flash_attn=True)
    yield llm
    llm.close()


def _rows(reference: llama_cpp.Llama, tokens: list[int]) -> np.ndarray:
    reference.reset()
    reference.eval(tokens)
    return np.asarray(reference.scores[: reference.n_tokens], dtype=np.float32)


@pytest.mark.parametrize("order", list(SAMPLER_ORDERS))
def test_generation_kept_and_the_lab_equal_brute_force_on_real_logits(
        embedded_engine: Engine, reference, order: str):
    params = SamplingParams(temperature=1.5, top_k=30, top_p=0.8, min_p=0.05,
                            repeat_penalty=1.2, seed=4, max_tokens=10, sampler_order=order)
    run = embedded_engine.run("Name a colour.", params)
    tokens = run.samples[0].tokens
    prompt = run.prompt_token_ids
    rows = _rows(reference, prompt + [t.id for t in tokens])
    history = prompt[-params.repeat_last_n:]
    for i, token in enumerate(tokens):
        row = rows[len(prompt) - 1 + i]
        probs, cut = brute_force(row, params, history)
        assert token.kept == sum(c is None for c in cut)
        assert token.sampling_logprob == pytest.approx(math.log(probs[token.id]), abs=1e-4)
        # The lab's row comes from re-decoding the prefix, as the distribution view does.
        lab = reshape(embedded_engine.next_logits(prompt + [t.id for t in tokens[:i]]), params,
                      history)
        np.testing.assert_allclose(lab.probs, probs, atol=1e-4)
        assert lab.kept == token.kept
        history = [*history, token.id][-params.repeat_last_n:]


def test_probe_equals_teacher_forced_reference(embedded_engine: Engine, reference):
    context = probe_context(embedded_engine, "The capital of France is", chat=False)
    candidates = [" Paris", "Paris", " London", " the city of Paris"]
    scores = probe(embedded_engine, context, candidates)
    last = _log_softmax(_rows(reference, context)[-1])
    for score in scores:
        ids = embedded_engine.tokenize(score.text, add_special=False)
        assert [t[0] for t in score.tokens] == ids
        assert score.rank == 1 + int(np.sum(last > last[ids[0]]))
        forced = _rows(reference, context + ids)
        expected = math.fsum(_log_softmax(forced[len(context) - 1 + j])[t]
                             for j, t in enumerate(ids))
        assert score.logprob == pytest.approx(expected, abs=1e-3)
        if len(ids) == 1:
            assert score.logprob == pytest.approx(float(last[ids[0]]), abs=1e-3)
    assert len(scores[3].tokens) > 1
    assert scores[0].logprob != scores[1].logprob  # the leading space is part of the word


def test_probe_cli_json(tiny_model_path: Path, capsys: pytest.CaptureFixture):
    code = main(["probe", "-m", str(tiny_model_path), "--prompt", "the cat", "--raw",
                 "--prefix", " is", "--candidates", " on, on the", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["text"] for c in doc["candidates"]] == [" on", " on the"]
    for c in doc["candidates"]:
        assert set(c) == {"text", "logprob", "rank", "tokens"}
        assert c["logprob"] == pytest.approx(math.fsum(t["logprob"] for t in c["tokens"]))
        assert c["rank"] >= 1
    assert main(["probe", "-m", str(tiny_model_path), "--prompt", "x", "--candidates",
                 "a,,b"]) == 1
    assert "a candidate is empty" in capsys.readouterr().err

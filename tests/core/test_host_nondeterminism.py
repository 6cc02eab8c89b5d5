"""Same seed, different machine, against independent truth: the engine's normal (flash
attention) path for the request alone, and llama-cpp-python's C API replaying exactly the
decodes the demonstration made, batch by batch, for the logprobs it reports."""

from __future__ import annotations

from dataclasses import replace

import llama_cpp
import numpy as np
import pytest

from playground.demos.host_nondeterminism import (
    Comparison,
    HostResult,
    parting_line,
    run_host_nondeterminism,
)
from playground.demos.scenario import find_scenario
from playground.errors import Cancelled, InvalidRequestError
from playground.records import Alternative, Run, Sample, TokenRecord

SCENARIO = find_scenario("host-nondeterminism")
OTHERS = 4


@pytest.fixture(scope="module")
def result(embedded_engine) -> HostResult:
    """The scenario on the embedded model, with fewer tokens (it parts at about token 12)."""
    params, _ = SCENARIO.params("small")
    return run_host_nondeterminism(embedded_engine, SCENARIO.prompt,
                                   replace(params, max_tokens=16), OTHERS)


def replay(engine, run: Run, n_ctx: int, flash_attention: bool) -> list[np.ndarray]:
    """Sample 0's log-softmax rows, one per token it drew, from the same decodes as the engine
    made for `run`: the prompt on sequence 0, copied to the others, then one token per live
    sample per step (a sample that hit the length limit is not decoded after its last token)."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = min(512, n_ctx)  # as the engine's contexts
    params.n_seq_max = 32
    params.kv_unified = True
    params.n_threads = params.n_threads_batch = engine.n_threads
    params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    ctx = llama_cpp.llama_init_from_model(engine.model.handle, params)
    batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
    n_vocab = engine.n_vocab

    def decode(entries: list[tuple[int, int, int, bool]]) -> None:
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, logits
        batch.n_tokens = len(entries)
        assert llama_cpp.llama_decode(ctx, batch) == 0

    def row(index: int) -> np.ndarray:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index),
                                       shape=(n_vocab,)).astype(np.float64)
        return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())

    try:
        prompt = run.prompt_token_ids
        decode([(t, i, 0, i == len(prompt) - 1) for i, t in enumerate(prompt)])
        for s in range(1, len(run.samples)):
            llama_cpp.llama_memory_seq_cp(llama_cpp.llama_get_memory(ctx), 0, s, -1, -1)
        rows = [row(-1)]
        decoded = [len(s.tokens) - (s.finish_reason == "length") for s in run.samples]
        ours = run.samples[0]
        for step in range(decoded[0]):
            decode([(s.tokens[step].id, len(prompt) + step, s.index, True)
                    for s in run.samples if step < decoded[s.index]])
            rows.append(row(0))  # sample 0 is live, so it comes first
        return rows[: len(ours.tokens)]
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def test_with_flash_attention_alone_and_batched_are_identical(result: HostResult,
                                                                embedded_engine) -> None:
    comparison = result.with_flash
    alone, batched = comparison.ours_alone, comparison.ours_batched
    assert len(comparison.batched.samples) == OTHERS + 1
    assert [s.seed for s in comparison.batched.samples] == [
        result.params.seed + i for i in range(OTHERS + 1)]
    assert [t.id for t in alone.tokens] == [t.id for t in batched.tokens]
    assert [t.logprob for t in alone.tokens] == [t.logprob for t in batched.tokens]
    assert comparison.identical and comparison.parting is None
    assert comparison.largest_difference == 0.0
    # ... and both are what the app's ordinary run of the request gives.
    ordinary = embedded_engine.run(result.prompt, result.params, 1).samples[0]
    assert [(t.id, t.logprob) for t in ordinary.tokens] == [
        (t.id, t.logprob) for t in alone.tokens]


def test_without_flash_attention_the_reported_differences_are_llama_cpps(
        result: HostResult, embedded_engine) -> None:
    comparison = result.without
    prompt = len(comparison.alone.prompt_token_ids)
    # The size the engine gave the context it made for the batch, which the lone run reused.
    n_ctx = -(-(prompt + (OTHERS + 1) * result.params.max_tokens) // 256) * 256
    alone_rows = replay(embedded_engine, comparison.alone, n_ctx, False)
    batched_rows = replay(embedded_engine, comparison.batched, n_ctx, False)
    for sample, rows in ((comparison.ours_alone, alone_rows),
                         (comparison.ours_batched, batched_rows)):
        assert [t.logprob for t in sample.tokens] == pytest.approx(
            [r[t.id] for t, r in zip(sample.tokens, rows, strict=True)], abs=1e-5)

    parting = comparison.parting
    shared = parting.position if parting else len(alone_rows)
    expected = [b[t.id] - a[t.id] for t, a, b in zip(
        comparison.ours_alone.tokens[:shared], alone_rows, batched_rows, strict=False)]
    assert comparison.differences == pytest.approx(expected, abs=1e-5)
    # The demonstration's premise: here the batch does change the numbers.
    assert comparison.largest_difference > 1e-3
    assert not comparison.identical

    assert parting is not None, "the scenario no longer parts within 16 tokens"
    at = parting.position
    fork = comparison.to_json()["parting"]
    for record, side in ((parting.alone, "alone"), (parting.batched, "batched")):
        truth = {"alone": alone_rows[at][record.id], "batched": batched_rows[at][record.id]}
        for run, value in fork[side]["logprob"].items():
            if value is not None:
                assert value == pytest.approx(truth[run], abs=1e-5)
    assert fork["alone"]["logprob"]["alone"] is not None
    assert fork["batched"]["logprob"]["batched"] is not None


def test_the_document_says_what_the_view_says(result: HostResult) -> None:
    doc = result.to_json()
    without, with_flash = doc["comparisons"]
    assert (without["flash_attention"], with_flash["flash_attention"]) == (False, True)
    assert with_flash["identical"] and with_flash["parting"] is None
    assert without["parting"]["position"] == result.without.parting.position
    assert without["alone"]["text"] == result.without.ours_alone.text
    assert [s["seed"] for s in without["batched"]] == [
        result.params.seed + i for i in range(OTHERS + 1)]
    assert doc["others"] == OTHERS and doc["safeguards"]


@pytest.mark.parametrize("others", [0, 32])
def test_a_batch_the_engine_cannot_hold_is_one_line(tiny_engine, others: int) -> None:
    with pytest.raises(InvalidRequestError, match=f"from 1 to 31, not {others}$"):
        run_host_nondeterminism(tiny_engine, "once upon", SCENARIO.params("small")[0], others)


def test_a_cancelled_run_raises_cancelled(tiny_engine) -> None:
    params, _ = SCENARIO.params("small")
    with pytest.raises(Cancelled):
        run_host_nondeterminism(tiny_engine, "once upon", replace(params, max_tokens=4), 2,
                                chat=False, cancel=lambda: True)


def test_an_ordinary_run_after_the_demonstration_has_flash_attention_again(tiny_engine) -> None:
    params = replace(SCENARIO.params("small")[0], max_tokens=2)
    prompt = tiny_engine.tokenize("once upon")
    list(tiny_engine.stream(prompt, params, flash_attention=False))
    assert not tiny_engine._ctx.flash_attention
    tiny_engine.run("once upon", params, chat=False)
    assert tiny_engine._ctx.flash_attention


def _run(info, ids_logprobs: list[tuple[int, float]], reason: str,
         top: dict[int, tuple[Alternative, ...]] | None = None) -> Run:
    tokens = [TokenRecord(0, i, t, f"t{t}".encode(), f"t{t}", lp, lp, 1, 0.0,
                          (top or {}).get(i, ()))
              for i, (t, lp) in enumerate(ids_logprobs)]
    sample = Sample(0, seed=1, tokens=tokens, text="".join(r.text for r in tokens),
                    finish_reason=reason)
    return Run(info, SCENARIO.params("small")[0], "p", [1], False, None, [sample])


def test_parting_rules_on_constructed_runs(tiny_engine) -> None:
    info = tiny_engine.info
    alone = _run(info, [(5, -0.5), (6, -1.0), (7, -2.0)], "length")
    batched = _run(info, [(5, -0.25), (6, -1.0), (8, -1.5)], "length",
                   top={2: (Alternative(7, "t7", -2.5),)})
    comparison = Comparison(False, alone, batched)
    parting = comparison.parting
    assert parting.position == 2 and (parting.alone.id, parting.batched.id) == (7, 8)
    assert comparison.differences == [0.25, 0.0] and comparison.largest_difference == 0.25
    fork = comparison.to_json()["parting"]
    assert fork["alone"] == {"text": "t7", "logprob": {"alone": -2.0, "batched": -2.5}}
    assert fork["batched"] == {"text": "t8", "logprob": {"alone": None, "batched": -1.5}}
    assert not comparison.identical

    # The lone answer ends (end of generation) where the batched one goes on.
    ended = Comparison(False, _run(info, [(5, -0.5)], "stop"), batched)
    assert (ended.parting.position, ended.parting.alone) == (1, None)
    line = parting_line(ended.to_json(), 5)
    assert "part at token 2: alone the answer ended, in the batch 't6' (36.8%)" in line

    same = Comparison(True, alone, _run(info, [(5, -0.5), (6, -1.0), (7, -2.0)], "length"))
    assert same.identical and same.parting is None and same.differences == [0.0, 0.0, 0.0]

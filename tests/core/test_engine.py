"""Single generation: exact logprobs against llama-cpp-python, sampling, seeds, stops, text."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
import tiny_models

from playground.engine import load
from playground.engine_api import Engine
from playground.errors import InvalidRequestError, ResourceError
from playground.handles import Entry
from playground.records import RunEnd, SampleEnd, TokenRecord
from playground.sampling import Sampler, SamplingParams

GREEDY = SamplingParams(temperature=0, top_k=0, top_p=1, min_p=0, seed=0)


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    return row - (row.max() + np.log(np.exp(row - row.max()).sum()))


@pytest.fixture(scope="module")
def reference(embedded_model_path: Path):
    """llama-cpp-python's own logits_all path: the independent truth for logprobs.

    With flash attention, as the engine runs: without it llama.cpp's logits depend on how many
    tokens share a decode (see Engine._context)."""
    llm = llama_cpp.Llama(
        model_path=str(embedded_model_path), n_ctx=512, logits_all=True, verbose=False, seed=0,
        flash_attn=True,
    )
    yield llm
    llm.close()


def test_raw_logprobs_and_top_k_equal_llama_cpp_python(embedded_engine: Engine, reference):
    k = 5
    prompt = "The three primary colors are"
    run = embedded_engine.run(prompt, replace(GREEDY, max_tokens=16, top_logprobs=k), chat=False)
    ours = run.samples[0].tokens
    assert len(ours) == 16

    theirs = reference.create_completion(
        run.prompt_token_ids, max_tokens=16, temperature=0.0, repeat_penalty=1.0, logprobs=k,
        top_k=0, top_p=1.0, min_p=0.0,
    )
    lp = theirs["choices"][0]["logprobs"]
    assert [t.text for t in ours] == lp["tokens"]  # the same tokens were generated
    for token, their_logprob, their_top in zip(
        ours, lp["token_logprobs"], lp["top_logprobs"], strict=True
    ):
        assert token.logprob == pytest.approx(their_logprob, abs=1e-4)
        ours_top = {alt.text: alt.logprob for alt in token.top}
        # llama-cpp-python keys its alternatives by text; compare those it kept.
        for text, value in their_top.items():
            assert ours_top[text] == pytest.approx(value, abs=1e-4)
        assert token.rank == 1  # greedy picks the most likely token
        assert token.sampling_logprob == 0.0  # and greedy is a deterministic distribution


def test_sampled_tokens_replay_against_independent_logits(embedded_engine: Engine, reference):
    """Replaying the sampler on llama-cpp-python's logits reproduces every sampled token, and
    sampling_logprob is the chosen token's share of a proper distribution over the kept ones."""
    params = SamplingParams(temperature=0.9, top_k=30, top_p=0.9, min_p=0.02,
                            repeat_penalty=1.3, seed=11, max_tokens=24)
    run = embedded_engine.run("Tell me about the moon.", params)
    tokens = run.samples[0].tokens
    assert tokens

    reference.reset()
    reference.eval(run.prompt_token_ids + [t.id for t in tokens])
    rows = np.asarray(reference.scores[: reference.n_tokens], dtype=np.float32)
    first = len(run.prompt_token_ids) - 1
    history = run.prompt_token_ids[-params.repeat_last_n :]
    replay = Sampler(params, history=history)
    for i, token in enumerate(tokens):
        row = rows[first + i]
        assert token.logprob == pytest.approx(_log_softmax(row)[token.id], abs=1e-4)
        ids, logprobs = replay.candidates(row)
        assert math.fsum(np.exp(logprobs)) == pytest.approx(1.0, abs=1e-9)
        assert token.id in ids
        assert token.sampling_logprob == pytest.approx(
            logprobs[list(ids).index(token.id)], abs=1e-4)
        assert replay.sample(row)[0] == token.id
        replay.accept(token.id)


def test_rank_and_entropy_of_the_raw_distribution(embedded_engine: Engine, reference):
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=5,
                            max_tokens=12)
    run = embedded_engine.run("Once upon a time", params, chat=False)
    tokens = run.samples[0].tokens
    reference.reset()
    reference.eval(run.prompt_token_ids + [t.id for t in tokens])
    first = len(run.prompt_token_ids) - 1
    for i, token in enumerate(tokens):
        logprobs = _log_softmax(np.asarray(reference.scores[first + i]))
        assert token.rank == 1 + int(np.sum(logprobs > logprobs[token.id]))
        entropy = -float(np.sum(np.exp(logprobs) * logprobs))
        assert token.entropy == pytest.approx(entropy, abs=1e-3)
        assert [a.id for a in token.top] == list(np.argsort(-logprobs, kind="stable")[:10])


def test_same_seed_same_tokens_different_seed_different_tokens(embedded_engine: Engine):
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=20)

    def ids(seed: int) -> list[int]:
        run = embedded_engine.run("Write a sentence about cats.", replace(params, seed=seed))
        return [t.id for t in run.samples[0].tokens]

    assert ids(123) == ids(123)
    assert ids(123) != ids(124)


def test_unlocked_seed_is_drawn_and_recorded(tiny_engine: Engine):
    run = tiny_engine.start_run("hello", SamplingParams(max_tokens=4))
    assert isinstance(run.params.seed, int)
    assert run.samples[0].seed == run.params.seed


def test_cancel_takes_effect_before_the_next_token(tiny_engine: Engine):
    run = tiny_engine.start_run("the cat", SamplingParams(seed=1, max_tokens=100, temperature=1))
    seen: list[TokenRecord] = []
    events = []
    for event in tiny_engine.generate(run, cancel=lambda: len(seen) >= 3):
        events.append(event)
        if isinstance(event, TokenRecord):
            seen.append(event)
    assert len(seen) == 3
    ends = [e for e in events if isinstance(e, SampleEnd)]
    assert [e.finish_reason for e in ends] == ["cancelled"]
    assert isinstance(events[-1], RunEnd)


def test_stop_string_ends_the_sample_without_it(embedded_engine: Engine):
    prompt = "Count from one to ten in words, separated by commas."
    text = embedded_engine.run(prompt, replace(GREEDY, max_tokens=30)).samples[0].text
    stop = text[len(text) // 2 :][:3]  # greedy repeats itself: the same text up to the stop
    sample = embedded_engine.run(prompt, replace(GREEDY, max_tokens=30, stop=(stop,))).samples[0]
    assert sample.finish_reason == "stop"
    assert sample.text == text[: text.index(stop)]
    joined = "".join(t.text for t in sample.tokens)
    assert joined.startswith(sample.text) and len(joined) < len(sample.text) + len(stop)


def test_end_of_generation_stops_and_is_not_in_the_text(embedded_engine: Engine):
    run = embedded_engine.run("Say hi.", replace(GREEDY, max_tokens=60))
    sample = run.samples[0]
    assert sample.finish_reason == "stop"
    assert "<|im_end|>" not in sample.text
    assert run.stats.new_tokens == len(sample.tokens)


def test_length_limit(tiny_engine: Engine):
    run = tiny_engine.run("hello", SamplingParams(seed=3, max_tokens=5, temperature=0))
    sample = run.samples[0]
    assert sample.finish_reason in {"length", "stop"}
    assert len(sample.tokens) <= 5
    if sample.finish_reason == "length":
        assert len(sample.tokens) == 5


@pytest.mark.parametrize("text", ["नमस्ते दुनिया", "I 🙂 emoji 👩‍💻!", "混合 text ✓"])
def test_multibyte_characters_survive_token_splits(embedded_engine: Engine, text: str):
    prompt = embedded_engine.tokenize("Repeat:")
    records = embedded_engine.teacher_force(prompt, embedded_engine.tokenize(text,
                                                                             add_special=False))
    assert b"".join(r.bytes for r in records) == text.encode()
    assert "".join(r.text for r in records) == text
    # At least one token holds only part of a character: its own bytes are not valid UTF-8.
    def invalid(b: bytes) -> bool:
        try:
            b.decode()
        except UnicodeDecodeError:
            return True
        return False
    assert any(invalid(r.bytes) for r in records)


def test_generated_text_is_the_join_of_token_texts(tiny_engine: Engine):
    # The tiny model often samples byte tokens, so its output splits characters.
    run = tiny_engine.run("नमस्ते 🙂", SamplingParams(seed=7, temperature=1.5, top_k=0,
                                                        top_p=1, min_p=0, max_tokens=60))
    sample = run.samples[0]
    assert "".join(t.text for t in sample.tokens) == sample.text
    joined = b"".join(t.bytes for t in sample.tokens)
    assert joined.decode("utf-8", errors="replace") == sample.text


def test_teacher_forcing_matches_generation(embedded_engine: Engine):
    run = embedded_engine.run("The capital of France is", SamplingParams(
        **{**GREEDY.__dict__, "max_tokens": 8}), chat=False)
    tokens = run.samples[0].tokens
    forced = embedded_engine.teacher_force(run.prompt_token_ids, [t.id for t in tokens])
    for a, b in zip(tokens, forced, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
        assert a.rank == b.rank


@pytest.mark.skipif((os.cpu_count() or 1) < 2,
                    reason="llama.cpp splits a lone token's attention only across 2 threads")
def test_a_lone_sample_past_512_cells_scores_as_teacher_forced(tmp_path: Path):
    """One sample's steps over a KV cache view of 512 cells or more, with two step threads, took
    llama.cpp's split attention kernel: its logprobs drifted from the same tokens teacher-forced
    and from the same sample decoded beside another (4e-3 on this model, 0.06 nats on SmolLM2).
    On this F32 model the row kernel itself moves by about 1e-6 with the decode's size."""
    path = tiny_models.write_tiny_llama(tmp_path / "long.gguf", n_ctx=1024)
    with load(path, n_ctx=1024, n_threads=2) as engine:
        prompt = " ".join(["the cat sat in the house"] * 90)
        params = replace(GREEDY, max_tokens=8)
        alone = engine.run(prompt, params, chat=False)
        assert len(alone.prompt_token_ids) > 512 and engine.n_threads == 2
        tokens = alone.samples[0].tokens
        forced = engine.teacher_force(alone.prompt_token_ids, [t.id for t in tokens])
        beside = engine.run(prompt, params, 2, chat=False, same_seed=True).samples[1].tokens
        for other in (forced, beside):
            assert [t.id for t in other] == [t.id for t in tokens]
            assert [t.logprob for t in other] == pytest.approx([t.logprob for t in tokens],
                                                               abs=1e-5)


def followers(tokens: list[int], n: int) -> list[int]:
    """What followed the last n tokens each time they occurred before, latest first, by brute
    force."""
    return [tokens[start + n] for start in range(len(tokens) - n - 1, -1, -1)
            if tokens[start:start + n] == tokens[-n:]]


@pytest.mark.embedded
@pytest.mark.skipif((os.cpu_count() or 1) < 2,
                    reason="llama.cpp splits a lone token's attention only across 2 threads")
def test_a_lone_sample_guesses_along_exactly(embedded_model_path: Path):
    """A lone sample's step takes a guess of its next token along where the guess is sure (the
    last two tokens were followed by the same token the latest two times), and at every step
    once llama.cpp's view of the cache can reach 512 cells; a right guess saves the next step.
    That rests on where llama.cpp puts cells: after a best-of-4 run, the same prompt keeps its
    cells at the bottom and the new sample goes just above, so its steps see 256 cells up to
    cell 256 and 512 after. Without the second token, this sample's logprobs leave the
    teacher-forced ones exactly at cell 257 (by 0.07 nats); with it, they are the same as
    teacher-forced and as decoded with one thread, where only the sure guesses are taken."""
    with load(embedded_model_path, n_ctx=1024, n_threads=2) as engine:
        engine.is_end_of_generation = lambda token: False
        prompt = "Tell me a long story about a lighthouse keeper and a storm."
        engine.run(prompt, replace(GREEDY, max_tokens=48), 4, same_seed=True)
        steps: list[list[Entry]] = []
        decode = engine._batch.decode
        engine._batch.decode = lambda ctx, entries, **kw: (steps.append(list(entries)),
                                                           decode(ctx, entries, **kw))[1]
        alone = engine.run(prompt, replace(GREEDY, max_tokens=260))
        made = [t.id for t in alone.samples[0].tokens]
        text = alone.prompt_token_ids + made
        assert len(text) > 256 + 32 and engine.n_threads == 2
        # The prompt, read again: its last two tokens; then one step per token not guessed.
        cells, saved = len(alone.prompt_token_ids), 0
        for entries in steps[1:]:
            (last, position, _, _), *spare = entries
            before = text[: position + 1]
            assert before[-1] == last
            if cells + 1 > 256:  # the view may reach 512 cells: the best guess, sure or not
                best = next((found[0] for n in (3, 2, 1) if (found := followers(before, n))),
                            before[-1])
                assert [e[0] for e in spare] == [best]
            else:  # a sure guess: the same token followed the last two the latest two times
                two = followers(before, 2)[:2]
                assert [e[0] for e in spare] == (two[:1] if len(two) == 2 and two[0] == two[1]
                                                 else [])
            cells += len(entries)
            saved += bool(spare) and position + 2 < len(text) and text[position + 1] == spare[0][0]
        assert len(steps) - 1 == len(made) - 1 - saved, "each right guess saved a step"
        assert saved > 20 and any(len(e) == 2 for e in steps[1:40]), "guesses before cell 256"
        forced = engine.teacher_force(alone.prompt_token_ids, made)
        assert [t.id for t in forced] == made
        assert [t.logprob for t in forced] == [t.logprob for t in alone.samples[0].tokens]
    with load(embedded_model_path, n_ctx=1024, n_threads=1) as engine:
        engine.is_end_of_generation = lambda token: False
        one_thread = engine.run(prompt, replace(GREEDY, max_tokens=260)).samples[0].tokens
        assert one_thread == alone.samples[0].tokens


def test_prompt_longer_than_the_context(tiny_engine: Engine):
    with pytest.raises(ResourceError) as error:
        tiny_engine.start_run("the " * 600, SamplingParams(seed=1, max_tokens=8), chat=False)
    assert "context holds 512" in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top-p"),
        ({"max_tokens": 0}, "max tokens"),
        ({"stop": ("",)}, "stop strings"),
    ],
)
def test_bad_parameters(tiny_engine: Engine, change: dict, message: str):
    with pytest.raises(InvalidRequestError, match=message):
        tiny_engine.start_run("hi", replace(GREEDY, **change))


def test_chat_mode_uses_the_models_template(tiny_engine: Engine):
    import tiny_models

    tokens = tiny_engine.prompt_tokens("hello", chat=True, system="be nice")
    assert tokens.count(tiny_models.TOKEN_IM_START) == 3  # system, user, assistant
    assert tokens[0] == tiny_models.TOKEN_BOS and tokens[1] != tiny_models.TOKEN_BOS
    raw = tiny_engine.prompt_tokens("hello", chat=False)
    assert tiny_models.TOKEN_IM_START not in raw


def test_reusing_the_cached_prompt_changes_nothing(embedded_engine: Engine):
    params = SamplingParams(temperature=0.8, seed=21, max_tokens=12)
    base, longer = "Tell me a fact about owls.", "Tell me a fact about owls and bats."

    def logprobs(prompt: str, after: str) -> list[tuple[int, float]]:
        embedded_engine.run(after, replace(params, max_tokens=2))  # leaves `after` cached
        return [(t.id, t.logprob) for t in embedded_engine.run(prompt, params).samples[0].tokens]

    cold = logprobs(longer, "Something unrelated.")
    warm = logprobs(longer, base)  # shares the chat prefix up to "owls"
    assert [i for i, _ in warm] == [i for i, _ in cold]
    assert [lp for _, lp in warm] == pytest.approx([lp for _, lp in cold], abs=1e-6)

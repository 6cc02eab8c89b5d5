"""Best-of-N: N sequences decoded together must behave exactly like N separate runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from playground.engine import MAX_SAMPLES
from playground.engine_api import Engine
from playground.errors import InvalidRequestError, ResourceError
from playground.records import SampleEnd, TokenRecord
from playground.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0, top_k=0, top_p=1, min_p=0, seed=0, max_tokens=24)
HOT = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=100, max_tokens=24)


def _ids(sample) -> list[int]:
    return [t.id for t in sample.tokens]


def test_greedy_batched_equals_single(embedded_engine: Engine):
    single = embedded_engine.run("Name a planet.", GREEDY).samples[0]
    batched = embedded_engine.run("Name a planet.", GREEDY, n=4)
    for sample in batched.samples:
        assert _ids(sample) == _ids(single)
        for a, b in zip(sample.tokens, single.tokens, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_sample_i_is_the_single_run_with_seed_base_plus_i(embedded_engine: Engine):
    batched = embedded_engine.run("Invent a name for a cat.", HOT, n=4)
    assert [s.seed for s in batched.samples] == [100, 101, 102, 103]
    for sample in batched.samples:
        alone = embedded_engine.run("Invent a name for a cat.", replace(HOT, seed=sample.seed))
        assert _ids(alone.samples[0]) == _ids(sample)
    assert len({tuple(_ids(s)) for s in batched.samples}) > 1  # and they do differ


def test_batched_logprobs_equal_teacher_forced_rescoring(embedded_engine: Engine):
    run = embedded_engine.run("Describe the sea in one sentence.", HOT, n=4)
    for sample in run.samples:
        forced = embedded_engine.teacher_force(run.prompt_token_ids, _ids(sample))
        assert len(forced) == len(sample.tokens)
        for generated, rescored in zip(sample.tokens, forced, strict=True):
            assert generated.logprob == pytest.approx(rescored.logprob, abs=1e-3)


def test_same_base_seed_reproduces_all_samples(tiny_engine: Engine):
    params = replace(HOT, max_tokens=16, seed=7)
    first = tiny_engine.run("the cat", params, n=6)
    again = tiny_engine.run("the cat", params, n=6)
    assert [_ids(s) for s in first.samples] == [_ids(s) for s in again.samples]
    assert [s.text for s in first.samples] == [s.text for s in again.samples]


@pytest.mark.parametrize("n", [1, MAX_SAMPLES])
def test_sizes(tiny_engine: Engine, n: int):
    run = tiny_engine.run("once upon a time", replace(HOT, max_tokens=8), n=n)
    assert len(run.samples) == n
    assert all(s.finish_reason in {"stop", "length"} for s in run.samples)
    assert run.stats.new_tokens == sum(len(s.tokens) for s in run.samples)
    assert all(t.sample == s.index for s in run.samples for t in s.tokens)


def test_uneven_stops(embedded_engine: Engine):
    """Samples end at very different lengths (end of generation or the length limit), and a
    stop string hit by some samples only ends those alone."""
    prompt = "What color is the sky? Answer briefly."
    params = replace(HOT, temperature=1.2, max_tokens=40, seed=3)
    free = embedded_engine.run(prompt, params, n=12)
    lengths = sorted(len(s.tokens) for s in free.samples)
    assert lengths[0] < lengths[-1] // 2
    # A stop string that occurs in some samples' text but not in others.
    counts: dict[str, int] = {}
    for s in free.samples:
        for word in set(s.text.split()):
            counts[word] = counts.get(word, 0) + 1
    stop = next(w for w, c in sorted(counts.items(), key=lambda x: (x[1], x[0]))
                if 2 <= c <= 8 and len(w) >= 3)
    stopped = embedded_engine.run(prompt, replace(params, stop=(stop,)), n=12)
    for before, after in zip(free.samples, stopped.samples, strict=True):
        if stop in before.text:
            assert after.finish_reason == "stop"
            assert after.text == before.text[: before.text.index(stop)]
        else:
            assert _ids(after) == _ids(before)
            assert after.finish_reason == before.finish_reason


def test_events_are_tagged_and_every_sample_ends_once(tiny_engine: Engine):
    run = tiny_engine.start_run("hi", replace(HOT, max_tokens=10), n=5)
    ends: list[int] = []
    positions: dict[int, int] = {}
    for event in tiny_engine.generate(run):
        if isinstance(event, TokenRecord):
            assert event.position == positions.get(event.sample, 0)
            positions[event.sample] = event.position + 1
        elif isinstance(event, SampleEnd):
            ends.append(event.sample)
    assert sorted(ends) == list(range(5))


def test_cancel_stops_every_sequence(tiny_engine: Engine):
    run = tiny_engine.start_run("hi", replace(HOT, max_tokens=50), n=8)
    tokens: list[TokenRecord] = []
    reasons = []
    for event in tiny_engine.generate(run, cancel=lambda: len(tokens) >= 8):
        if isinstance(event, TokenRecord):
            tokens.append(event)
        elif isinstance(event, SampleEnd):
            reasons.append(event.finish_reason)
    assert len(tokens) == 8  # one step drew a token for each of the 8 samples, then it stopped
    assert reasons.count("cancelled") == 8 - reasons.count("stop")


@pytest.mark.parametrize(("n", "error"), [(0, InvalidRequestError), (1000, InvalidRequestError)])
def test_bad_n(tiny_engine: Engine, n: int, error: type):
    with pytest.raises(error, match="N must be between 1 and 32"):
        tiny_engine.start_run("hi", HOT, n=n)


def test_prompt_that_does_not_fit(tiny_engine: Engine):
    with pytest.raises(ResourceError, match="context holds"):
        tiny_engine.start_run("the " * 300, replace(HOT, max_tokens=300), n=4, chat=False)


def test_context_grows_for_n_times_max_tokens(tiny_engine: Engine):
    run = tiny_engine.run("hi", replace(HOT, max_tokens=200, temperature=0.0), n=8)
    assert len(run.samples) == 8
    assert tiny_engine._ctx.n_ctx >= len(run.prompt_token_ids) + 8 * 200

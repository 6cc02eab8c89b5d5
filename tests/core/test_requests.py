"""Every request is checked in one place, `SamplingParams.validate`, before anything runs or is
saved; the engine bounds its threads."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest

from playground import cli
from playground.engine import load
from playground.errors import InvalidRequestError
from playground.sampling import MAX_SEED, SamplingParams
from playground.store import Store

NOT_FINITE = [math.inf, -math.inf, math.nan]
NAMES = {"temperature": "temperature", "top_p": "top-p", "min_p": "min-p",
         "repeat_penalty": "repetition penalty", "top_k": "top-k", "repeat_last_n": "repeat-last-n",
         "max_tokens": "max tokens", "top_logprobs": "top-logprobs", "seed": "seed",
         "stop": "stop strings"}


@pytest.mark.parametrize(("field", "value"), [
    *(("temperature", v) for v in [*NOT_FINITE, -0.1, 1e7, 10**400, True, "1", None]),
    *(("top_p", v) for v in [*NOT_FINITE, 0.0, -0.5, 1.0000001, "0.9"]),
    *(("min_p", v) for v in [*NOT_FINITE, -1e-9, 1.5]),
    *(("repeat_penalty", v) for v in [*NOT_FINITE, 0.0, -1.0, 1e300]),
    *(("top_k", v) for v in [-1, 2**31, 1.5, math.inf, True]),
    *(("repeat_last_n", v) for v in [-1, 2**40, 2.0]),
    *(("max_tokens", v) for v in [0, -3, 10**30, 4.0]),
    *(("top_logprobs", v) for v in [-1, 101, 1.0]),
    *(("seed", v) for v in [-1, MAX_SEED + 1, 2**64, 2**70, 1.5, math.nan, False]),
    *(("stop", v) for v in [("",), ("ok", ""), (1,)]),
])
def test_every_bad_value_is_refused_with_its_name(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        replace(SamplingParams(), **{field: value}).validate()
    message = str(raised.value)
    assert "\n" not in message and len(message) < 160
    assert message.startswith(NAMES[field])


@pytest.mark.parametrize("params", [
    SamplingParams(),
    SamplingParams(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0),
    SamplingParams(temperature=1e6, repeat_penalty=1e6, seed=0, top_logprobs=0),
    SamplingParams(seed=MAX_SEED, max_tokens=2**31 - 1, top_k=2**31 - 1, min_p=1.0),
])
def test_values_at_the_limits_are_accepted_unchanged(params: SamplingParams) -> None:
    assert params.validate() == params


@pytest.mark.parametrize("tiny", [1e-320, 5e-324, 1e-30, 9.9e-7])
def test_a_tiny_temperature_is_greedy(tiny: float, tiny_engine) -> None:
    """Sampling tends to greedy as the temperature goes to 0: the run is greedy, says so, and
    gives the tokens of temperature 0 (where dividing by a subnormal used to make NaN)."""
    tiny_params = SamplingParams(temperature=tiny, seed=3, max_tokens=12)
    assert tiny_params.validate().temperature == 0.0
    greedy = tiny_engine.run("hello", replace(tiny_params, temperature=0.0))
    run = tiny_engine.run("hello", tiny_params)
    assert run.params.temperature == 0.0
    assert [t.id for t in run.samples[0].tokens] == [t.id for t in greedy.samples[0].tokens]
    assert all(math.isfinite(t.sampling_logprob) for t in run.samples[0].tokens)


@pytest.mark.parametrize("threads", [os.cpu_count() or 1, 5_000, 100_000, 2**40])
def test_threads_are_clamped_to_the_cores(threads: int, tiny_model_path: Path) -> None:
    with load(tiny_model_path, n_ctx=64, n_threads=threads) as engine:
        assert engine.n_threads == min(threads, os.cpu_count() or 1)
        run = engine.run("hi", SamplingParams(seed=1, max_tokens=3))
        assert run.samples[0].tokens


@pytest.mark.parametrize("threads", [0, -1, -100_000])
def test_threads_below_one_are_refused(threads: int, tiny_model_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="threads"):
        load(tiny_model_path, n_ctx=64, n_threads=threads)


@pytest.mark.parametrize("flags", [
    ["--temperature", "inf"], ["--repeat-penalty", "inf"], ["--seed", "-1"],
    ["--seed", str(2**70)], ["--temperature", "nan"], ["--threads", "0"],
])
def test_a_refused_request_saves_nothing(flags: list[str], tiny_model_path: Path,
                                         tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    status = cli.main(["generate", "-m", str(tiny_model_path), "-p", "hi", "--max-tokens", "3",
                       "--db", str(db), *flags])
    assert status == 1
    with Store(db) as store:
        assert store.list_runs() == []


def test_what_is_saved_exports(tiny_model_path: Path, tmp_path: Path) -> None:
    """The runs that extreme but valid requests leave in the history hold no infinity, so
    every export of it works (`Infinity` in the parameters used to break them all)."""
    db, out = tmp_path / "history.sqlite", tmp_path / "runs.jsonl"
    for flags in (["--temperature", "1e-320"], ["--repeat-penalty", "1e6"],
                  ["--temperature", "1e6", "--seed", str(MAX_SEED)]):
        assert cli.main(["generate", "-m", str(tiny_model_path), "-p", "hi", "--max-tokens",
                         "3", "--db", str(db), *flags]) == 0
    assert cli.main(["export", "1", "2", "3", "-f", "jsonl", "-o", str(out),
                     "--db", str(db)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["params"]["temperature"] for line in lines] == [0.0, 0.8, 1e6]

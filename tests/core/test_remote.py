"""The remote engine against a fake server: the dialects, and every fault of issue 15 item 4
(down at start, a connection dropped mid-stream, a slow server, an error status, malformed
JSON, a proxy that buffers SSE, a server that ignores the seed). The real llama-server is in
test_remote_server.py."""

from __future__ import annotations

import http.client
import json
import math
import socket

import numpy as np
import pytest
from fake_server import SCRIPT, Behaviour, FakeServer

from playground.engine_api import Engine
from playground.errors import (
    InvalidRequestError,
    ServerError,
    StreamInterrupted,
    UnsupportedModelError,
)
from playground.records import SampleEnd, TokenRecord
from playground.remote import RemoteEngine, Server, entropy_lower_bound
from playground.sampling import SamplingParams

PARAMS = SamplingParams(seed=4, top_logprobs=2)


def texts(script: list) -> list[str]:
    return [step[0] for step in script]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("chat", [True, False])
def test_both_dialects_give_the_scripted_samples(native: bool, chat: bool) -> None:
    with FakeServer(Behaviour(native=native)) as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        run = engine.run("hi", PARAMS, n=2, chat=chat)
        sent = fake.generation_requests()
    # Sample i asked with seed + i, and the fake answers seed s with SCRIPT[s % 2:].
    assert sorted(body["seed"] for body in sent) == [4, 5]
    for sample in run.samples:
        script = SCRIPT[sample.seed % 2:]
        assert [t.text for t in sample.tokens] == texts(script)
        assert sample.text == "".join(texts(script))
        assert sample.finish_reason == "stop"  # the end-of-generation token is not kept
        for token, (_, logprob, top) in zip(sample.tokens, script, strict=True):
            assert token.logprob == logprob
            assert token.rank == 1
            assert [a.text for a in token.top] == [token.text, top[0][0]]  # k = 2
            # Without ids from the server, the chosen token is still told from the others.
            assert [a.id == token.id for a in token.top] == [True, False]
            assert (token.id >= 0) == native
            assert math.isnan(token.sampling_logprob)
            everything = [logprob, *(lp for _, lp in top)]
            assert token.entropy == pytest.approx(entropy_lower_bound(everything))
    assert (sent[0].get("prompt") if native else None) == (
        run.prompt_token_ids if native else None)
    assert engine.capabilities.exact_entropy is False
    assert engine.capabilities.max_alternatives == (100 if native else 20)
    assert run.model.server == fake.url and run.model.name == "fake-model"


def test_the_entropy_bound_is_below_the_entropy_and_exact_with_every_token() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        logits = rng.normal(0, rng.uniform(0.1, 5), 50)
        logprobs = logits - np.log(np.exp(logits).sum())
        entropy = -float(np.sum(np.exp(logprobs) * logprobs))
        ordered = sorted(logprobs.tolist(), reverse=True)
        bounds = [entropy_lower_bound(ordered[:k]) for k in (1, 5, 20, 50)]
        assert all(b <= entropy + 1e-9 for b in bounds)
        assert bounds[-1] == pytest.approx(entropy, abs=1e-9)
        assert bounds[1] >= -sum(math.exp(lp) * lp for lp in ordered[:5]) - 1e-12


def test_stop_strings_cut_the_sample_here_and_the_stream_is_cut() -> None:
    with FakeServer() as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        run = engine.run("hi", SamplingParams(seed=0, stop=(" wor",)), n=1)
    assert "stop" not in fake.generation_requests()[0]  # applied here, as the local engine does
    sample = run.samples[0]
    assert sample.text == "Hello,"
    assert [t.text for t in sample.tokens] == ["Hello", ","]
    assert sample.finish_reason == "stop"


@pytest.mark.parametrize(("order", "samplers"), [
    ("temperature-first", ["penalties", "temperature", "top_k", "top_p", "min_p"]),
    ("temperature-last", ["penalties", "top_k", "top_p", "min_p", "temperature"])])
def test_llama_server_gets_the_runs_sampler_order(order: str, samplers: list[str]) -> None:
    with FakeServer() as fake:
        RemoteEngine(fake.url, check_seed=False).run(
            "hi", SamplingParams(seed=0, sampler_order=order))
    assert fake.generation_requests()[0]["samplers"] == samplers


def test_an_openai_server_takes_only_its_own_order() -> None:
    with FakeServer(Behaviour(native=False)) as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        with pytest.raises(InvalidRequestError, match="temperature-last order needs"):
            engine.start_run("hi", SamplingParams(sampler_order="temperature-last"))


def test_max_tokens_ends_with_length() -> None:
    with FakeServer() as fake:
        run = RemoteEngine(fake.url, check_seed=False).run(
            "hi", SamplingParams(seed=0, max_tokens=2), n=1)
    assert [t.text for t in run.samples[0].tokens] == ["Hello", ","]
    assert run.samples[0].finish_reason == "length"


def test_cancel_cuts_every_stream_and_keeps_what_came() -> None:
    with FakeServer() as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        run = engine.start_run("hi", PARAMS, n=3)
        seen = []
        for event in engine.generate(run, cancel=lambda: len(seen) >= 2):
            run.add(event)
            seen.append(event)
    assert [s.finish_reason for s in run.samples] == ["cancelled"] * 3
    assert run.finished


# -- faults ----------------------------------------------------------------------------------


def test_a_server_that_is_down_at_start_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerError, match="connection refused") as caught:
        RemoteEngine(url)
    assert url in str(caught.value) and "\n" not in str(caught.value)


def test_a_dropped_connection_keeps_the_samples_and_marks_them_interrupted() -> None:
    with FakeServer(Behaviour(drop_after=2)) as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        run = engine.start_run("hi", SamplingParams(seed=0, top_logprobs=1), n=2)
        with pytest.raises(StreamInterrupted, match=r"dropped.*kept.*interrupted"):
            for event in engine.generate(run):
                run.add(event)
    assert not run.finished  # no RunEnd: the history lists it as interrupted
    for sample in run.samples:
        assert sample.finish_reason == "interrupted"
        assert [t.text for t in sample.tokens] == texts(SCRIPT[sample.seed % 2:])[:2]


def test_a_slow_server_times_out_with_a_clear_message() -> None:
    with (FakeServer(Behaviour(stall=2.0)) as fake,
          pytest.raises(ServerError, match=r"did not answer GET /v1/models within 0\.3 s")):
        RemoteEngine(fake.url, timeout=0.3)


def test_a_stream_that_stalls_times_out_too() -> None:
    with FakeServer(Behaviour(buffer=2.0)) as fake:
        engine = RemoteEngine(fake.url, timeout=0.3, check_seed=False)
        with pytest.raises(ServerError, match=r"did not answer POST /completion within 0\.3 s"):
            engine.run("hi", PARAMS)


@pytest.mark.parametrize(("status", "message"), [(503, "Loading model"),
                                                 (400, "top_logprobs must be at most 5")])
def test_an_error_status_is_the_servers_message_in_one_line(status: int, message: str) -> None:
    with FakeServer(Behaviour(status=(status, message))) as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        with pytest.raises(ServerError) as caught:
            engine.run("hi", PARAMS)
    text = str(caught.value)
    assert f"{status}" in text and message in text and "\n" not in text


def test_a_wrong_key_is_a_401_and_the_key_goes_as_a_bearer_token() -> None:
    with FakeServer(Behaviour(api_key="sesame")) as fake:
        with pytest.raises(ServerError, match="401 Unauthorized: Invalid API Key"):
            RemoteEngine(fake.url, "wrong")
        RemoteEngine(fake.url, "sesame", check_seed=False)
        # A key in the URL is used as the key, and never recorded.
        host = fake.url.removeprefix("http://")
        engine = RemoteEngine(f"http://user:sesame@{host}", check_seed=False)
        run = engine.run("hi", PARAMS)
    assert {headers.get("Authorization") for _, _, headers in fake.requests[-3:]} == {
        "Bearer sesame"}
    assert "sesame" not in json.dumps(run.to_json())
    assert run.model.server == fake.url


def test_https_is_chosen_by_the_url() -> None:
    assert isinstance(Server("https://example.org/v1").connection(), http.client.HTTPSConnection)
    plain = Server("example.org:8080").connection()
    assert not isinstance(plain, http.client.HTTPSConnection) and plain.port == 8080


def test_malformed_json_is_one_line() -> None:
    with (FakeServer(Behaviour(malformed=True)) as fake,
          pytest.raises(ServerError, match="/v1/models is not valid JSON")):
        RemoteEngine(fake.url)


def test_a_malformed_event_mid_stream_is_one_line() -> None:
    with FakeServer() as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        fake.behaviour.malformed = True
        with pytest.raises(ServerError, match=r"an event of .* stream .* is not valid JSON"):
            engine.run("hi", PARAMS)


def test_a_proxy_that_buffers_sse_still_gives_the_run_and_is_said() -> None:
    with FakeServer(Behaviour(buffer=0.8)) as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        run = engine.run("hi", SamplingParams(seed=0), n=2)
    assert [s.text for s in run.samples] == ["Hello, world!", ", world!"]
    assert len(engine.notices) == 1 and "buffers server-sent events" in engine.notices[0]


def test_a_server_that_ignores_the_seed_is_said_and_gets_n() -> None:
    with FakeServer(Behaviour(ignore_seed=True)) as fake:
        engine = RemoteEngine(fake.url)
        assert engine.capabilities.reproducible_seed is False
        assert any("ignores the seed" in notice for notice in engine.notices)
        fake.requests.clear()
        run = engine.run("hi", PARAMS, n=2)
        sent = fake.generation_requests()
    assert len(sent) == 1 and sent[0]["n"] == 2
    assert sorted(s.text for s in run.samples) == [", world!", "Hello, world!"]


def test_a_seeded_server_passes_the_seed_check() -> None:
    with FakeServer() as fake:
        engine = RemoteEngine(fake.url)
    assert engine.capabilities.reproducible_seed and not engine.notices


def test_text_without_logprobs_is_refused() -> None:
    with FakeServer(Behaviour(native=False, no_logprobs=True)) as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        with pytest.raises(ServerError, match="without logprobs"):
            engine.run("hi", PARAMS, chat=False)


def test_what_a_server_lacks_says_why() -> None:
    with FakeServer(Behaviour(native=False)) as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        with pytest.raises(UnsupportedModelError, match="teacher forcing"):
            engine.teacher_force([1], [2])
        with pytest.raises(UnsupportedModelError, match="grammar"):
            engine.grammar_constraint("root ::= \"a\"")
        with pytest.raises(UnsupportedModelError, match="tokenizer"):
            engine.tokenize("hi")
        with pytest.raises(UnsupportedModelError, match="exact entropy"):
            engine.next_logits([1])
        with pytest.raises(Exception, match="at most 20 alternatives"):
            engine.start_run("hi", SamplingParams(top_logprobs=21))


def test_the_remote_engine_has_every_member_of_the_interface() -> None:
    members = {name for name in dir(Engine) if not name.startswith("_")}
    members |= set(Engine.__annotations__)
    with FakeServer() as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
    assert sorted(name for name in members if not hasattr(engine, name)) == []


def test_events_are_the_engine_protocol() -> None:
    with FakeServer() as fake:
        engine = RemoteEngine(fake.url, check_seed=False)
        run = engine.start_run("hi", PARAMS, n=2)
        events = list(engine.generate(run))
    ends = [e for e in events if isinstance(e, SampleEnd)]
    assert sorted(e.sample for e in ends) == [0, 1]
    assert all(isinstance(e, TokenRecord | SampleEnd) for e in events[:-1])
    positions = [e.position for e in events if isinstance(e, TokenRecord) and e.sample == 0]
    assert positions == list(range(len(positions)))

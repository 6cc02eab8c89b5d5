"""The remote engine against a real llama-server serving the embedded model, compared with the
local engine on the same file: greedy runs give the same tokens, with logprobs within 1e-3
(issue 15 item 5), and the CLI's `--server` runs end to end."""

from __future__ import annotations

import json
import math

import pytest

from playground.cli import main
from playground.remote import RemoteEngine
from playground.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0.0, seed=0, max_tokens=32, top_logprobs=5)
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def remote(llama_server_url: str) -> RemoteEngine:
    return RemoteEngine(llama_server_url)


@pytest.mark.parametrize(("prompt", "chat"), [("Why is the sky blue?", True),
                                              ("The capital of France is", False)])
def test_greedy_tokens_and_logprobs_are_the_local_engines(remote: RemoteEngine, embedded_engine,
                                                         prompt: str, chat: bool) -> None:
    here = embedded_engine.run(prompt, GREEDY, chat=chat)
    there = remote.run(prompt, GREEDY, chat=chat)
    assert there.prompt_token_ids == here.prompt_token_ids
    mine, theirs = here.samples[0], there.samples[0]
    assert [t.id for t in theirs.tokens] == [t.id for t in mine.tokens]
    assert theirs.text == mine.text and theirs.finish_reason == mine.finish_reason
    for a, b in zip(mine.tokens, theirs.tokens, strict=True):
        assert b.bytes == a.bytes and b.rank == a.rank == 1
        assert abs(b.logprob - a.logprob) < TOLERANCE
        assert [alt.id for alt in b.top] == [alt.id for alt in a.top]
        assert max(abs(x.logprob - y.logprob) for x, y in zip(a.top, b.top, strict=True)) \
            < TOLERANCE
        # From the top 20 only: a lower bound of the exact entropy.
        assert b.entropy <= a.entropy + TOLERANCE


def test_stop_strings_cut_where_the_local_engine_cuts(remote: RemoteEngine,
                                                     embedded_engine) -> None:
    params = SamplingParams(temperature=0.0, seed=0, max_tokens=48, stop=(" the",),
                            top_logprobs=1)
    here = embedded_engine.run("Why is the sky blue?", params).samples[0]
    there = remote.run("Why is the sky blue?", params).samples[0]
    assert (there.text, there.finish_reason, [t.id for t in there.tokens]) == (
        here.text, here.finish_reason, [t.id for t in here.tokens])


def test_best_of_n_is_seeded_per_sample(remote: RemoteEngine) -> None:
    assert remote.capabilities.reproducible_seed
    assert not any("seed" in notice for notice in remote.notices)
    params = SamplingParams(temperature=1.0, seed=11, max_tokens=16, top_logprobs=2)
    first = remote.run("Tell me a story.", params, n=4)
    again = remote.run("Tell me a story.", params, n=4)
    assert [s.seed for s in first.samples] == [11, 12, 13, 14]
    assert [s.text for s in again.samples] == [s.text for s in first.samples]
    assert len({s.text for s in first.samples}) > 1


def test_cli_generate_and_sample_on_the_server(llama_server_url: str,
                                               capsys: pytest.CaptureFixture) -> None:
    assert main(["generate", "--server", llama_server_url, "-p", "What is 2 + 2?",
                 "--max-tokens", "12", "--seed", "3", "--json"]) == 0
    generated = json.loads(capsys.readouterr().out)
    assert generated["tokens"] and generated["model"]["server"] == llama_server_url
    assert main(["sample", "-n", "4", "--server", llama_server_url, "-p", "What is 2 + 2?",
                 "--max-tokens", "12", "--seed", "3", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert len(sampled["samples"]) == 4 and sorted(sampled["ranking"]["order"]) == [0, 1, 2, 3]
    # Sample 0 has seed 3, as the single run did: the same text.
    assert sampled["samples"][0]["text"] == generated["text"]
    assert main(["runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["status"] for r in runs] == ["finished", "finished"]
    assert {r["model_path"] for r in runs} == {llama_server_url}


def test_the_judge_on_the_server_reads_what_the_local_engine_computes(
        remote: RemoteEngine, embedded_engine) -> None:
    """The judge's score from the server's top alternatives equals the same formula over the
    local engine's alternatives for the same prompt tokens. (The local JudgeModel reads its own
    scoring decode, whose logits differed from generation's by about 0.04 nats here.)"""
    from playground.remote_reward import _judge_score
    from playground.reward import open_reward_model
    from playground.reward.backends import DEFAULT_RUBRIC, JUDGE_PROMPT

    question = "What is the capital of France?"
    responses = ["Paris is the capital of France.", "The capital of France is Berlin."]
    with open_reward_model("judge", judge_engine=remote) as on_server:
        there = on_server.score_detailed(question, responses)
    first = SamplingParams(temperature=0.0, seed=0, max_tokens=1, top_logprobs=100)
    for response, b in zip(responses, there, strict=True):
        content = JUDGE_PROMPT.format(prompt=question, response=response, rubric=DEFAULT_RUBRIC)
        here = embedded_engine.run(content, first)
        assert list(b.input_token_ids) == here.prompt_token_ids
        score, raw = _judge_score(here.samples[0].tokens[0].top)
        assert all(math.isfinite(x) for x in b.raw)  # both words are in the top 100 here
        assert abs(b.score - score) < TOLERANCE
        assert max(abs(x - y) for x, y in zip(b.raw, raw, strict=True)) < TOLERANCE


def test_a_llama_server_reranker_scores_each_response_in_its_place(tmp_path) -> None:
    """The real /rerank, with a tiny random qwen3 classifier: found by the probe, and each score
    lands on its own response (the server sorts its results by score)."""
    import tiny_models

    import dev
    from playground.remote_reward import ServerRewardModel

    path = tiny_models.write_tiny_qwen3_classifier(tmp_path / "rerank.gguf", n_labels=2)
    responses = ["paris is the capital", "berlin maybe", "the", "a longer answer than these"]
    with dev.running_llama_server(path, "--reranking", "-t", "1", "-c", "512") as url:
        model = ServerRewardModel(url)
        forward = model.score("what is the capital", responses)
        backward = model.score("what is the capital", responses[::-1])
    assert model.endpoint == "/rerank"
    assert all(math.isfinite(s) for s in forward) and len(set(forward)) == len(forward)
    assert backward[::-1] == pytest.approx(forward, abs=1e-6)


def test_tokens_that_split_a_character_are_said(remote: RemoteEngine, embedded_engine) -> None:
    """llama-server holds back a token that ends inside a UTF-8 character and sends it with the
    next, without its logprobs: the text is the local engine's, the records fewer, and that is
    said."""
    from playground.remote import MERGED_NOTICE

    params = SamplingParams(temperature=0.0, seed=0, max_tokens=24, top_logprobs=3)
    prompt = "中文：我爱北京天安门。天空是蓝色的。我们"
    here = embedded_engine.run(prompt, params, chat=False).samples[0]
    there = remote.run(prompt, params, chat=False).samples[0]
    assert there.text == here.text
    assert b"".join(t.bytes for t in there.tokens) == b"".join(t.bytes for t in here.tokens)
    assert len(there.tokens) < len(here.tokens)
    assert MERGED_NOTICE in remote.notices


def test_the_host_demonstration_on_a_server_says_it_needs_a_local_model(
        remote: RemoteEngine) -> None:
    from playground.demos.host_nondeterminism import run_host_nondeterminism
    from playground.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="needs a local model"):
        run_host_nondeterminism(remote, "Hi", SamplingParams(seed=0, max_tokens=4), 1)

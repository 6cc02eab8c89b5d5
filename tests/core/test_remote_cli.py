"""`--server` on the command line, against the fake server: generation recorded with the server
URL, a dropped stream left interrupted in the history, keys from the environment, and reward
scoring through a server's rerank, score and pooling endpoints and the judge's logprobs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fake_server import Behaviour, FakeServer

from playground.cli import main
from playground.records import Alternative
from playground.remote_reward import _judge_score


def json_out(capsys: pytest.CaptureFixture) -> dict:
    return json.loads(capsys.readouterr().out)


def test_generate_on_a_server_records_its_url_and_model(capsys: pytest.CaptureFixture) -> None:
    with FakeServer() as fake:
        assert main(["generate", "--server", fake.url, "-p", "hi", "--seed", "0",
                     "--json"]) == 0
    doc = json_out(capsys)
    assert doc["text"] == "Hello, world!"
    assert doc["model"]["server"] == fake.url and doc["model"]["name"] == "fake-model"
    assert doc["capabilities"]["exact_entropy"] is False and doc["notices"] == []
    assert main(["runs", "--json"]) == 0
    (listed,) = json_out(capsys)["runs"]
    assert listed["id"] == doc["run_id"] and listed["status"] == "finished"
    assert listed["model_path"] == fake.url and listed["model"] == "fake-model"


def test_the_key_comes_from_the_environment(capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeServer(Behaviour(api_key="sesame")) as fake:
        assert main(["generate", "--server", fake.url, "-p", "hi", "--json",
                     "--no-save"]) == 1
        assert "401 Unauthorized: Invalid API Key" in capsys.readouterr().err
        monkeypatch.setenv("PLAYGROUND_API_KEY", "sesame")
        assert main(["generate", "--server", fake.url, "-p", "hi", "--json"]) == 0
    doc = json_out(capsys)
    assert "sesame" not in json.dumps(doc)


def test_a_dropped_stream_leaves_the_run_interrupted(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    with FakeServer(Behaviour(drop_after=3, faults_from=2)) as fake:
        code = main(["sample", "-n", "2", "--server", fake.url, "-p", "hi", "--seed", "0",
                     "--json"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "dropped" in err and "interrupted" in err and "(run 1 in the history)" in err
    assert main(["runs", "--json"]) == 0
    (listed,) = json_out(capsys)["runs"]
    assert listed["status"] == "interrupted" and listed["samples_done"] == 2
    out = tmp_path / "out.jsonl"
    assert main(["export", "1", "--format", "jsonl", "--tokens", "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {row["n_tokens"] for row in rows} == {3}  # the tokens that came are kept


def test_a_server_that_is_down_is_one_line(capsys: pytest.CaptureFixture) -> None:
    with FakeServer() as fake:
        url = fake.url
    assert main(["generate", "--server", url, "-p", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "connection refused" in err


def test_model_and_server_together_are_refused(capsys: pytest.CaptureFixture) -> None:
    assert main(["generate", "--server", "http://127.0.0.1:1", "-m", "x.gguf", "-p", "hi"]) == 1
    assert "either --model or --server" in capsys.readouterr().err


@pytest.mark.parametrize("endpoint", ["rerank", "score", "pooling"])
def test_score_with_a_servers_reward_model(endpoint: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"response": "short"}\n{"response": "a longer answer"}\n')
    with FakeServer(Behaviour(reward=endpoint)) as fake:
        assert main(["score", "--server", fake.url, "--reward-model", "server", "-p", "q",
                     "--responses", str(answers), "--json"]) == 0
    doc = json_out(capsys)
    # The fake scores a response by its length / 10 (pooling: of prompt, newline, response).
    extra = 2 if endpoint == "pooling" else 0
    assert [r["score"] for r in doc["results"]] == pytest.approx(
        [(5 + extra) / 10, (15 + extra) / 10])
    assert fake.url in doc["reward_model"]


def test_sample_reranked_by_a_reward_server(capsys: pytest.CaptureFixture) -> None:
    with FakeServer() as generator, FakeServer(Behaviour(reward="rerank")) as reward:
        assert main(["sample", "-n", "2", "--server", generator.url, "-p", "hi", "--seed", "0",
                     "--rank", "reward", "--reward-model", reward.url, "--json"]) == 0
    doc = json_out(capsys)
    by_text = {s["text"]: s["scores"]["reward"] for s in doc["samples"]}
    assert by_text == pytest.approx({"Hello, world!": 1.3, ", world!": 0.8})
    assert doc["ranking"]["order"] == [0, 1]
    assert doc["reward_model"] == {"kind": "reranker", "file": reward.url, "sha256": "",
                                   "name": "fake-model", "rubric": ""}


def test_a_server_without_reward_endpoints_says_so(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"response": "x"}\n')
    with FakeServer() as fake:
        assert main(["score", "--reward-model", fake.url, "-p", "q",
                     "--responses", str(answers)]) == 1
    assert "no reward or rerank endpoint" in capsys.readouterr().err


def test_the_judge_reads_yes_and_no_from_the_alternatives() -> None:
    top = (Alternative(1, "Yes", -0.3), Alternative(2, " yes", -2.0), Alternative(3, "No", -1.6),
           Alternative(4, "Maybe", -4.0))
    score, (log_yes, log_no) = _judge_score(top)
    assert log_yes == pytest.approx(math.log(math.exp(-0.3) + math.exp(-2.0)))
    assert log_no == -1.6 and score == pytest.approx(log_yes + 1.6)
    # "No" missing from the top k: it is at most as likely as the least likely one there.
    score, (_, log_no) = _judge_score(top[:2] + top[3:])
    assert log_no == -math.inf and score == pytest.approx(log_yes + 4.0)
    assert math.isnan(_judge_score(top[3:])[0])

"""The `playground` command: JSON schemas, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from playground.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "playground", *args],
                          capture_output=True, text=True, timeout=300)


def test_generate_json_uses_the_embedded_model(embedded_model_path: Path):
    result = run_cli("generate", "--json", "--prompt", "Say hello.", "--max-tokens", "8",
                     "--seed", "1", "--top-logprobs", "3")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"model", "params", "prompt", "prompt_token_ids", "text", "tokens",
                        "finish_reason", "stats", "run_id"}
    assert Path(doc["model"]["path"]) == embedded_model_path.resolve()
    assert doc["params"]["seed"] == 1 and doc["params"]["max_tokens"] == 8
    assert doc["finish_reason"] in {"stop", "length"}
    assert 1 <= len(doc["tokens"]) <= 8
    for token in doc["tokens"]:
        assert set(token) == {"id", "text", "bytes_hex", "logprob", "sampling_logprob", "rank",
                              "entropy", "kept", "top"}
        assert 1 <= token["kept"] <= 40  # the default top-k
        assert len(token["top"]) == 3
        assert set(token["top"][0]) == {"id", "text", "logprob"}
    assert "".join(t["text"] for t in doc["tokens"]) == doc["text"]
    assert set(doc["stats"]) == {"prompt_tokens", "new_tokens", "seconds", "tokens_per_second"}
    assert doc["stats"]["prompt_tokens"] == len(doc["prompt_token_ids"])


def test_sample_ranks_by_mean_logprob(tiny_model_path: Path, capsys: pytest.CaptureFixture):
    code = main(["sample", "-m", str(tiny_model_path), "-n", "8", "--rank", "mean-logprob",
                 "--json", "-p", "hello", "--max-tokens", "6", "--seed", "2"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["samples"]) == 8
    assert [s["seed"] for s in doc["samples"]] == list(range(2, 10))
    means = [sum(t["logprob"] for t in s["tokens"]) / len(s["tokens"]) for s in doc["samples"]]
    for s, mean in zip(doc["samples"], means, strict=True):
        assert s["scores"]["mean_logprob"] == pytest.approx(mean)
    order = doc["ranking"]["order"]
    assert sorted(order) == list(range(8))
    assert [means[i] for i in order] == sorted(means, reverse=True)
    assert doc["ranking"]["scores"] == pytest.approx([means[i] for i in order])


def test_sample_vote(tiny_model_path: Path, capsys: pytest.CaptureFixture):
    code = main(["sample", "-m", str(tiny_model_path), "-n", "4", "--rank", "vote", "--json",
                 "-p", "hello", "--max-tokens", "6", "--seed", "2"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["vote"]) >= {"answer", "share", "voters", "unparsed"}
    assert doc["ranking"]["method"] == "vote"


def test_info_has_the_scale_figures(capsys: pytest.CaptureFixture, embedded_model_path: Path):
    assert main(["info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["chinchilla_tokens"] == 20 * doc["parameters"]
    assert doc["training_flops"] == pytest.approx(6 * doc["parameters"] * doc["chinchilla_tokens"])
    assert doc["backend"]["accelerator"] == "CPU" or doc["backend"]["gpu_offload"]


def test_models_lists_the_embedded_and_given_models(tiny_model_path: Path,
                                                    capsys: pytest.CaptureFixture):
    assert main(["models", "--json", str(tiny_model_path.parent)]) == 0
    found = json.loads(capsys.readouterr().out)["models"]
    sources = {m["source"] for m in found}
    assert {"embedded", "given"} <= sources
    given = next(m for m in found if m["source"] == "given")
    assert given["info"]["architecture"] == "llama"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "-m", "/nonexistent.gguf", "-p", "x"], "no such file"),
        (["generate", "-m", "{bad}", "-p", "x"], "not a GGUF"),
        (["generate", "-m", "{tiny}", "-p", "word " * 600], "context holds"),
        (["sample", "-m", "{tiny}", "-p", "x", "-n", "1000"], "N must be between"),
        (["generate", "-p", "x", "--temperature", "-2"], "temperature"),
        (["generate", "-p", "x", "--prompt-file", "y"], "not allowed with"),
        (["info", "{bad}"], "not a GGUF"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path: Path, tiny_model_path: Path,
                                                 args: list[str], expected: str):
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model")
    args = [a.replace("{bad}", str(bad)).replace("{tiny}", str(tiny_model_path)) for a in args]
    result = run_cli(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_runs_are_saved_listed_exported_and_imported(tiny_model_path: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture):
    base = ["-m", str(tiny_model_path), "-p", "hello", "--max-tokens", "5", "--json"]
    assert main(["generate", *base, "--seed", "1"]) == 0
    first = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["sample", *base, "-n", "3", "--seed", "2"]) == 0
    second = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["generate", *base, "--seed", "3", "--no-save"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] is None

    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert [r["id"] for r in listed] == [second, first]  # newest first, unsaved run absent
    assert [r["samples"] for r in listed] == [3, 1]

    out = tmp_path / "runs.jsonl"
    assert main(["export", str(first), str(second), "-f", "jsonl", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 4  # one line per sample
    assert main(["import", str(out), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)["run_ids"]
    assert len(imported) == 2
    assert main(["runs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 4


def test_export_and_import_refusals_exit_non_zero(tiny_model_path: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture):
    base = ["-m", str(tiny_model_path), "-p", "hello", "--max-tokens", "3", "--json"]
    assert main(["generate", *base, "--seed", "1"]) == 0
    single = json.loads(capsys.readouterr().out)["run_id"]
    pairs = tmp_path / "pairs.json"
    assert main(["export", str(single), "-f", "labelstudio-pairwise", "-o", str(pairs)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("playground: no pairs to compare: run") and err.count("\n") == 1
    assert not pairs.exists()

    assert main(["sample", *base, "-n", "2", "--seed", "2"]) == 0
    two = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["export", str(two), "-f", "argilla", "-o", str(tmp_path / "a.json")]) == 0
    assert "(and a.settings.json beside it)" in capsys.readouterr().err
    assert (tmp_path / "a.settings.json").exists()

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["import", str(empty)]) == 1
    assert "has no samples to import" in capsys.readouterr().err
    assert main(["runs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 2

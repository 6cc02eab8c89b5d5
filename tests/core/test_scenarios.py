"""The demonstration runners against independent truth: single runs with the same seed, the
tokenizer, teacher forcing, the judge asked directly, and a JSON parser."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import tiny_models

from playground.cli import main
from playground.demos import DEMOS
from playground.demos.base_instruct import run_base_vs_instruct
from playground.demos.hallucination import (
    SUPPORT_CONTEXT,
    SUPPORT_RUBRIC,
    force_branch,
    run_consistency,
    run_snowball,
    split_sentences,
    token_at_text,
)
from playground.demos.inconsistency import distinct_texts, run_inconsistency
from playground.demos.robustness import run_robustness
from playground.demos.scenario import PROFILES, find_scenario, scenarios
from playground.demos.structured import run_structured, validate_json
from playground.demos.tokens import load_parallel, run_tokens
from playground.errors import Cancelled, InvalidRequestError
from playground.records import TokenRecord
from playground.reward import open_reward_model
from playground.sampling import SamplingParams

PARAMS = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=11, max_tokens=8)


def test_every_scenario_loads_and_every_demo_has_one() -> None:
    every = scenarios()
    assert {s.demo for s in every} == set(DEMOS)
    for s in every:
        assert s.steps and s.explanation.strip()
        for profile in PROFILES:
            params, n = s.params(profile)
            assert n >= 1 and params.max_tokens >= 1
    assert find_scenario("structured").demo == "structured"
    with pytest.raises(InvalidRequestError, match="no scenario"):
        find_scenario("nonsense")


def test_a_broken_scenario_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"demo": "tokens", "title": "x"}')
    with pytest.raises(InvalidRequestError, match=r"bad\.json: not a usable scenario"):
        scenarios(tmp_path)


def test_inconsistency_free_samples_repeat_single_runs_and_locked_ones_agree(tiny_engine):
    result = run_inconsistency(tiny_engine, "once upon", PARAMS, 4, chat=False)
    free, locked = result.free, result.locked
    assert [s.seed for s in free.samples] == [11, 12, 13, 14]
    assert [s.seed for s in locked.samples] == [11] * 4
    for sample in free.samples:
        alone = tiny_engine.run("once upon", replace(PARAMS, seed=sample.seed), chat=False)
        assert [t.id for t in sample.tokens] == [t.id for t in alone.samples[0].tokens]
    assert {tuple(t.id for t in s.tokens) for s in locked.samples} == {
        tuple(t.id for t in free.samples[0].tokens)}
    assert distinct_texts(locked) == 1
    assert distinct_texts(free) == len({s.text for s in free.samples})
    assert sorted(result.tree.samples) == [0, 1, 2, 3]


def test_a_cancelled_demonstration_raises_cancelled(tiny_engine):
    with pytest.raises(Cancelled):
        run_inconsistency(tiny_engine, "once upon", PARAMS, 2, chat=False,
                          cancel=lambda: True)


def test_force_branch_scores_the_forced_token_and_continues_from_it(tiny_engine):
    prompt = tiny_engine.prompt_tokens("once upon", chat=False)
    run = tiny_engine.run("once upon", PARAMS, chat=False)
    original = run.samples[0].tokens
    forced = original[2].top[-1].id  # an unlikely alternative at position 2
    branch = force_branch(tiny_engine, prompt, original[:2], [forced], PARAMS)
    assert [t.id for t in branch.tokens[:2]] == [t.id for t in original[:2]]
    assert [t.position for t in branch.tokens] == list(range(len(branch.tokens)))
    record = branch.tokens[2]
    assert record.id == forced and math.isnan(record.sampling_logprob)
    rescored = tiny_engine.teacher_force(prompt + [t.id for t in original[:2]], [forced])[0]
    assert record.logprob == pytest.approx(rescored.logprob, abs=1e-5)
    continued = list(tiny_engine.stream(prompt + [t.id for t in original[:2]] + [forced],
                                        PARAMS))
    expected = [e.id for e in continued if isinstance(e, TokenRecord)]
    assert [t.id for t in branch.tokens[3:]] == expected[: len(branch.tokens) - 3]
    assert branch.text == "".join(t.text for t in branch.tokens)


def test_token_at_text_finds_the_token_where_a_word_starts(tiny_engine):
    records = [TokenRecord(0, i, i, t.encode(), t, 0.0, 0.0, 1, 0.0, ())
               for i, t in enumerate(["The", " capital", " is", " Can", "berra", "."])]
    assert token_at_text(records, "Canberra") == 3
    assert token_at_text(records, "berra") == 4
    assert token_at_text(records, "Sydney") is None


def test_snowball_branches_where_the_scenario_says(tiny_engine):
    run = tiny_engine.run("once upon", replace(PARAMS, temperature=0.0), chat=False)
    word = run.samples[0].tokens[3].text
    result = run_snowball(tiny_engine, "once upon", replace(PARAMS, temperature=0.0),
                          chat=False, branch_at=word, branch_text=" cat", claim=" a cat")
    assert result.branch is not None
    assert result.branch.position == token_at_text(run.samples[0].tokens, word)
    forced_ids = tiny_engine.tokenize(" cat", add_special=False)
    at = result.branch.position
    assert [t.id for t in result.branch.sample.tokens[at : at + len(forced_ids)]] == forced_ids
    assert [t.id for t in result.claim] == tiny_engine.tokenize(" a cat", add_special=False)


def test_consistency_judge_matches_the_judge_asked_directly(tiny_engine):
    result = run_consistency(tiny_engine, "once upon", replace(PARAMS, max_tokens=12), 3,
                             chat=False)
    texts = [s.text for s in result.run.samples]
    assert [[x.text for x in row] for row in result.overlap] == [split_sentences(t)
                                                                for t in texts]
    i = next(i for i, row in enumerate(result.overlap) if row)
    sentence = result.overlap[i][0].text
    with open_reward_model("judge", judge_engine=tiny_engine, rubric=SUPPORT_RUBRIC) as judge:
        direct = [
            1 / (1 + math.exp(-judge.score(
                SUPPORT_CONTEXT.format(question="once upon", reference=texts[j]),
                [sentence])[0]))
            for j in range(3) if j != i
        ]
    assert result.judge[i][0] == pytest.approx(statistics.fmean(direct), abs=1e-4)
    with pytest.raises(InvalidRequestError, match="at least 2"):
        run_consistency(tiny_engine, "once upon", PARAMS, 1, chat=False)


def test_robustness_answers_each_variant_as_a_run_of_its_own(tiny_engine):
    greedy = replace(PARAMS, temperature=0.0, max_tokens=4)
    result = run_robustness(tiny_engine, "Which is red?", greedy, options=["sky", "rose"],
                            user_text="what is red", chat=False)
    assert [r.prompt for r in result.runs] == [v.text for v in result.variants]
    assert result.variants[-1].kind == "user"
    for variant, run in zip(result.variants[:3], result.runs, strict=False):
        alone = tiny_engine.run(variant.text, greedy, chat=False)
        assert run.samples[0].text == alone.samples[0].text
    assert len(result.agreement.answers) == len(result.variants)


def test_structured_constrained_outputs_all_follow_the_schema(tiny_engine):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    result = run_structured(tiny_engine, "json please", schema,
                            replace(PARAMS, max_tokens=40), 3, chat=False)
    for sample in result.constrained.samples:
        assert sample.finish_reason == "stop"
        value = json.loads(sample.text)
        assert set(value) == {"ok"} and isinstance(value["ok"], bool)
    assert result.constrained_counts.valid_raw == 3
    free_ok = sum(validate_json(s.text, schema)[0] for s in result.free.samples)
    assert result.free_counts.valid_raw == free_ok
    assert [r is None for r in result.repairs] == [
        validate_json(s.text, schema)[0] for s in result.free.samples]


def test_tokens_counts_match_the_tokenizer(tiny_engine):
    result = run_tokens(tiny_engine, 1)
    parallel = load_parallel()
    for count in result.counts:
        assert count.text == parallel[count.language][1]
        assert count.tokens == len(tiny_engine.tokenize(count.text, add_special=False))
    for language, sentences in parallel.items():
        assert result.medians[language] == statistics.median(
            len(tiny_engine.tokenize(s, add_special=False)) for s in sentences)
    with pytest.raises(InvalidRequestError, match="choose 0 to"):
        run_tokens(tiny_engine, 99)


def test_base_vs_instruct_runs_each_model_its_own_way(tmp_path: Path, tiny_model_path: Path):
    base = tiny_models.write_tiny_llama(tmp_path / "base.gguf", chat_template=None)
    params = replace(PARAMS, max_tokens=5)
    result = run_base_vs_instruct(base, tiny_model_path, "hello", params)
    assert (result.base.chat, result.instruct.chat) == (False, True)
    assert Path(result.base.model.path) == base.resolve()
    assert result.base.params.seed == result.instruct.params.seed == 11
    with pytest.raises(InvalidRequestError, match="no chat template"):
        run_base_vs_instruct(base, base, "hello", params)


def test_cli_demo_json_and_errors(tiny_model_path: Path, capsys: pytest.CaptureFixture):
    assert main(["demo", "--list", "--json"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)["scenarios"]]
    assert len(names) == len(scenarios())
    assert main(["demo", "tokens", "-m", str(tiny_model_path), "--sentence", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["demo"] == "tokens" and doc["profile"] == "small"
    assert [lang["text"] for lang in doc["languages"]] == [
        sentences[2] for sentences in load_parallel().values()]
    assert main(["demo", "inconsistency", "-m", str(tiny_model_path), "-n", "3",
                 "--max-tokens", "4", "--seed", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["seed"] for s in doc["free"]["samples"]] == [5, 6, 7]
    assert doc["locked"]["distinct"] == 1
    assert main(["demo", "nonsense"]) == 1
    assert capsys.readouterr().err.startswith("playground: no scenario 'nonsense'")


def test_a_base_model_reads_chat_scenarios_as_plain_text(tmp_path: Path):
    from playground.engine import load

    with load(tiny_models.write_tiny_llama(tmp_path / "base.gguf", chat_template=None),
              n_ctx=256) as base:
        result = run_inconsistency(base, "once upon", PARAMS, 2, chat=True)
        assert not result.free.chat and not result.locked.chat
        assert result.free.prompt_token_ids == base.prompt_tokens("once upon", chat=False)


DOCUMENT_KEYS = {
    "inconsistency": {"prompt", "params", "free", "locked"},
    "hallucination": {"consistency", "snowball"},
    "robustness": {"answer", "kind", "share", "params", "variants"},
    "structured": {"schema", "prompt", "params", "constrained", "free"},
    "tokens": {"languages"},
    "base-vs-instruct": {"prompt", "params", "base", "instruct"},
    "host-nondeterminism": {"prompt", "params", "others", "comparisons", "safeguards"},
}


@pytest.mark.parametrize("demo", list(DEMOS))
def test_every_scenario_runs_from_the_cli(demo: str, tiny_model_path: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture):
    args = ["demo", demo, "-m", str(tiny_model_path), "-n", "2", "--max-tokens", "6", "--json"]
    if demo == "base-vs-instruct":
        base = tiny_models.write_tiny_llama(tmp_path / "base.gguf", chat_template=None)
        args += ["--base-model", str(base)]
    assert main(args) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["demo"] == demo and doc["scenario"] == find_scenario(demo).name
    assert DOCUMENT_KEYS[demo] <= set(doc)
    if demo != "base-vs-instruct":
        assert Path(doc["model"]["path"]) == tiny_model_path.resolve()
    assert main([a for a in args if a != "--json"]) == 0  # the plain-text summary too
    assert find_scenario(demo).title in capsys.readouterr().out

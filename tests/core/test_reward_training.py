"""Reward training: the Bradley-Terry fit against known truth, the packed head against
llama-cpp-python's own hidden states, the feature cache, bad input, and the proof's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
import store_writer as sw
from tiny_models import write_tiny_qwen3_classifier

from playground.cli import main
from playground.errors import InvalidRequestError, UnsupportedModelError
from playground.labels import Preference, order_label, preferences_for_runs
from playground.reward import open_reward_model
from playground.reward.features import FeatureExtractor
from playground.reward.proof import Question, Reply, Task, accuracy_table, picks, preferences
from playground.reward.training import (
    _newton,
    choose_l2,
    fit_head,
    pairwise_accuracy,
    train_reward_model,
)
from playground.store import Store

PROMPTS = ["the cat", "a dog", "the sun", "a tree", "the sea", "a bird"]
REPLIES = ["the cat is here", "a dog and the cat", "the sun is up", "a tree"]


def _synthetic_pairs(n: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of random features where the chosen one scores higher on a hidden direction."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(width)
    direction /= np.linalg.norm(direction)
    a, b = rng.standard_normal((n, width)), rng.standard_normal((n, width))
    a_wins = (a @ direction > b @ direction)[:, None]
    return np.where(a_wins, a, b), np.where(a_wins, b, a), direction


def test_separable_features_recover_the_separating_direction():
    chosen, rejected, direction = _synthetic_pairs(2000, 16, seed=1)
    head = fit_head(chosen + 3.0, rejected + 3.0, l2=1e-3)  # an offset changes nothing
    cosine = head.vector @ direction / np.linalg.norm(head.vector)
    assert cosine > 0.99
    assert pairwise_accuracy(head, chosen + 3.0, rejected + 3.0) > 0.97
    # The bias centres the training replies' scores on 0.
    assert head.scores(np.concatenate([chosen, rejected]) + 3.0).mean() == pytest.approx(0,
                                                                                          abs=1e-9)


def test_newton_reaches_the_regularised_optimum():
    chosen, rejected, _ = _synthetic_pairs(300, 8, seed=2)
    d = chosen - rejected
    w = _newton(d, l2=0.1)
    # The gradient of mean(log(1 + exp(-d.w))) + 0.05 |w|^2, written out independently.
    gradient = -(d * (1 / (1 + np.exp(d @ w)))[:, None]).mean(axis=0) + 0.1 * w
    assert np.abs(gradient).max() < 1e-8


def test_cross_validation_prefers_regularisation_when_labels_are_noise():
    rng = np.random.default_rng(3)
    chosen, rejected = rng.standard_normal((60, 40)), rng.standard_normal((60, 40))
    results = choose_l2(chosen, rejected, list(range(60)), seed=0)
    best = min(results, key=lambda r: r.log_loss)
    assert best.l2 >= 1.0  # nothing to learn: the strongest shrinkage wins
    assert results[0].log_loss > best.log_loss


# ---------------------------------------------------------------------------------------------
# On a real (tiny) backbone


def _pairs() -> list[Preference]:
    return [Preference(p, REPLIES[i % 4], REPLIES[(i + 1) % 4])
            for i, p in enumerate(PROMPTS)] + [Preference(PROMPTS[0], REPLIES[2], REPLIES[3])]


def _reference_h(path: Path, tokens: tuple[int, ...]) -> np.ndarray:
    """llama-cpp-python's own last-token hidden state for exactly these token ids."""
    llm = llama_cpp.Llama(model_path=str(path), embedding=True, flash_attn=True, n_ubatch=32,
                          pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST, verbose=False)
    llm.tokenize = lambda *_args, **_kwargs: list(tokens)
    try:
        return np.array(llm.embed("ignored"), dtype=np.float64)
    finally:
        llm.close()


def test_packed_head_scores_are_head_dot_h_plus_bias(tiny_model_path: Path, tmp_path: Path):
    import gguf

    out = tmp_path / "rm.gguf"
    report = train_reward_model(_pairs(), tiny_model_path, out, n_threads=1)
    distinct = {(p.prompt, reply) for p in _pairs() for reply in (p.chosen, p.rejected)}
    assert report.pairs == 7 and report.features_computed == len(distinct) == 14
    reader = gguf.GGUFReader(str(out))
    head = np.array(reader.get_field("playground.reward.score_head").contents(), np.float64)
    bias = float(reader.get_field("playground.reward.bias").contents())
    with open_reward_model(out) as model:
        scored = model.score_detailed(PROMPTS[1], REPLIES)
    for s in scored:
        h = _reference_h(tiny_model_path, s.input_token_ids)
        assert s.score == pytest.approx(float(head @ h + bias), abs=1e-4)
    assert len({round(s.score, 6) for s in scored}) == len(scored)


def test_features_are_llama_cpp_hidden_states_and_are_cached(tiny_model_path: Path,
                                                             tmp_path: Path):
    texts = [(PROMPTS[0], REPLIES[0]), (PROMPTS[0], REPLIES[1]), (PROMPTS[2], REPLIES[0])]
    with FeatureExtractor(tiny_model_path, cache_dir=tmp_path, n_threads=1) as extractor:
        first = extractor.features(texts)
        tokens = [extractor.engine.chat_tokens(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
            add_generation_prompt=False) for p, r in texts]
        assert extractor.computed == 3
    for row, ids in zip(first, tokens, strict=True):
        assert np.allclose(row, _reference_h(tiny_model_path, tuple(ids)), atol=1e-5)
    with FeatureExtractor(tiny_model_path, cache_dir=tmp_path, n_threads=1) as extractor:
        again = extractor.features(texts[::-1])
        assert (extractor.cached, extractor.computed) == (3, 0)
    assert np.array_equal(again, first[::-1])


def test_bad_input_gets_one_line(tiny_model_path: Path, tmp_path: Path):
    with pytest.raises(InvalidRequestError, match="at least 4 preference pairs"):
        train_reward_model(_pairs()[:3], tiny_model_path, tmp_path / "rm.gguf")
    same = [*_pairs(), Preference("q", "same reply", "same reply")]
    with pytest.raises(InvalidRequestError, match="pair 8: the chosen reply equals the rejected"):
        train_reward_model(same, tiny_model_path, tmp_path / "rm.gguf")
    classifier = write_tiny_qwen3_classifier(tmp_path / "cls.gguf", n_labels=2)
    with pytest.raises(UnsupportedModelError, match="must be a causal language model"):
        train_reward_model(_pairs(), classifier, tmp_path / "rm.gguf")
    assert not (tmp_path / "rm.gguf").exists()


def test_cli_reward_train(tiny_model_path: Path, tmp_path: Path, capsys):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen,
                                          "rejected": p.rejected}) + "\n" for p in _pairs()))
    out = tmp_path / "rm.gguf"
    assert main(["reward-train", "--labels", str(labels), "--backbone", str(tiny_model_path),
                 "-o", str(out), "--threads", "1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["output"] == str(out) and out.is_file()
    assert [p["pairs"] for p in document["learning_curve"]][-1] == 7 - document["held_out_pairs"]
    labels.write_text(labels.read_text().splitlines()[0] + "\n")
    assert main(["reward-train", "--labels", str(labels), "--backbone", str(tiny_model_path),
                 "-o", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "at least 4 preference pairs, and got 1" in error


def test_cli_reward_train_on_runs_ranked_in_the_app(tiny_model_path: Path, tmp_path: Path,
                                                     capsys):
    """From best-of-N to a reward model: runs ranked by hand, stored, then trained on."""
    db = tmp_path / "history.sqlite"
    with Store(db) as store:
        run_ids = []
        for seed, prompt in enumerate(PROMPTS[:3]):
            run = sw.synthetic_run(3, [4, 5, 6], seed=seed, prompt=prompt)
            run_id = store.save(run)
            texts = [sample.text for sample in run.samples]
            store.add_labels([order_label(prompt, texts, [2, 0, 1], "me", run_id)])
            run_ids.append(run_id)
        expected = preferences_for_runs(store, run_ids)
    assert len(expected) == 9  # three strict pairs per ranking of three
    out = tmp_path / "rm.gguf"
    assert main(["reward-train", "--runs", ",".join(map(str, run_ids)), "--db", str(db),
                 "--backbone", str(tiny_model_path), "-o", str(out), "--threads", "1",
                 "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["pairs"] == 9 and document["prompts"] == 3 and out.is_file()


# ---------------------------------------------------------------------------------------------
# The proof's labels and table


def _question(answer: int, replies: list[tuple[str, float]]) -> Question:
    return Question(Task("q", "What is it?", answer),
                    tuple(Reply(text, logprob) for text, logprob in replies))


def test_proof_labels_pair_every_right_reply_with_every_wrong_one():
    q = _question(12, [("The answer is 12.", -1.0), ("It is 7.", -0.5),
                       ("The answer is 12.", -2.0), ("No idea", -0.1)])
    pairs = preferences([q])
    assert {(p.chosen, p.rejected) for p in pairs} == {("The answer is 12.", "It is 7."),
                                                       ("The answer is 12.", "No idea")}


def test_proof_picks_by_hand():
    q = _question(5, [("So 5.", -1.0), ("The answer is 4.", -0.2), ("4", -0.9), ("5", -3.0)])
    # Right: replies 0 and 3. Mean logprob picks 1 (wrong); the vote ties 5 and 4 and goes to
    # the group voted for first (5); the reward scores pick reply 3.
    assert picks(q, [0.0, -1.0, 0.5, 2.0]) == {
        "random": 0.5, "mean-logprob": 0.0, "vote": 1.0, "reward-model": 1.0, "oracle": 1.0}
    table = accuracy_table([q, _question(1, [("2", -1.0), ("3", -2.0)])],
                           [[0.0, -1.0, 0.5, 2.0], [1.0, 0.0]])
    assert table["random"] == {"accuracy": 0.25, "correct": 0.5, "questions": 2}
    assert table["reward-model"]["accuracy"] == 0.5 and table["oracle"]["correct"] == 1


def test_proof_end_to_end_on_saved_replies(tiny_model_path: Path, tmp_path: Path, capsys):
    """The whole proof on the tiny model, from a samples file whose right replies all say "The
    answer is N." and whose wrong ones "I guess M": a reward model that learns the wording
    picks a right reply on every held-out question."""
    from playground.reward.proof import N_SAMPLES, read_tasks, save_questions

    rng = np.random.default_rng(5)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"t{i}", "question": f"What is {i} + 1?",
                                         "answer": i + 1}) + "\n" for i in range(20)))
    questions = []
    for task in read_tasks(tasks):
        replies = [f"The answer is {task.answer}." if i % 2 == 0 else
                   f"I guess {task.answer + 1 + i}" for i in range(N_SAMPLES)]
        questions.append(Question(task, tuple(Reply(text, float(rng.normal()))
                                              for text in replies)))
    samples = tmp_path / "samples.jsonl"
    save_questions(questions, samples)
    out = tmp_path / "proof-rm.gguf"
    assert main(["reward-proof", "--model", str(tiny_model_path), "--tasks", str(tasks),
                 "--samples", str(samples), "-o", str(out), "--threads", "1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    table = document["best_of_n"]
    assert document["train_questions"] + document["held_out_questions"] == len(questions)
    assert table["random"]["accuracy"] == 0.5 and table["oracle"]["accuracy"] == 1.0
    assert table["reward-model"]["accuracy"] == 1.0
    assert document["training"]["pairs"] == document["train_questions"] * 4
    assert document["repeated_splits"]["accuracy"]["reward-model"]["mean"] == 1.0

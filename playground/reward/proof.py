"""The proof that reward training works: verifier-based best-of-N on checkable arithmetic.

After Cobbe et al. (2021), "Training Verifiers to Solve Math Word Problems": sample N replies to
each word problem of `resources/proof/arithmetic.jsonl`, label every reply by checking its final
number against the known answer, train a reward model on the labelled pairs of a random half of
the questions, and compare the best-of-N accuracy on the other half when the pick is random, by
mean logprob, by majority vote and by the trained reward model. `playground reward-proof`
regenerates the README's table.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from playground.engine import LocalEngine
from playground.errors import Cancelled, InvalidRequestError
from playground.files import require_regular
from playground.labels import Preference
from playground.paths import resource_dir
from playground.sampling import SamplingParams
from playground.scoring import extract_answer, vote_of

TASK_FILE = "arithmetic.jsonl"
RESULTS_FILE = "arithmetic-results.json"
"""The shipped result that the GUI's proof view shows: `playground reward-proof --json`."""
INSTRUCTION = "\nEnd your reply with: The answer is <number>."
N_SAMPLES = 8
PARAMS = SamplingParams(temperature=0.8, top_k=0, top_p=1.0, min_p=0.0, max_tokens=64,
                        stop=("\n\n",), top_logprobs=1)
"""Plain temperature sampling, so the N replies differ; a blank line ends a reply (the small
model's answer comes before it, rambling after), which halves the generation time."""
TRAIN_SHARE = 0.5
REPEATS = 20
"""Further random splits the table is averaged over: one split of 48 questions moves an accuracy
by whole questions (2 points each)."""
METHODS = ("random", "mean-logprob", "vote", "reward-model", "oracle")
"""The picks compared; 'random' is the expected accuracy of a uniformly random pick (the share of
correct replies) and 'oracle' the share of questions with any correct reply (pass@N)."""


@dataclass(frozen=True)
class Task:
    id: str
    question: str
    answer: int

    @property
    def prompt(self) -> str:
        return self.question + INSTRUCTION


@dataclass(frozen=True)
class Reply:
    text: str
    mean_logprob: float


@dataclass(frozen=True)
class Question:
    """One task with its N sampled replies."""

    task: Task
    replies: tuple[Reply, ...]

    def answers(self) -> list[str | None]:
        return [_number(r.text) for r in self.replies]

    def correct(self) -> list[bool]:
        return [a == str(self.task.answer) for a in self.answers()]


def _number(text: str) -> str | None:
    answer = extract_answer(text, "number")
    return answer.value if answer else None


def read_tasks(path: Path | None = None) -> list[Task]:
    """A task set: JSONL of {"id", "question", "answer" (an integer)}."""
    path = path or resource_dir("proof") / TASK_FILE
    require_regular(path, "a task set")
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            tasks.append(Task(str(row["id"]), str(row["question"]), int(row["answer"])))
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidRequestError(f"{path.name}, line {number}: not an {{id, question, "
                                      f"answer}} object ({error})") from None
    return tasks


def generate(
    engine: LocalEngine,
    tasks: list[Task],
    *,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[Question]:
    """N_SAMPLES replies to each task, with the seed of task i at seed + 1000 i."""
    cancelled = cancel or (lambda: False)
    questions = []
    for index, task in enumerate(tasks):
        if cancelled():
            raise Cancelled()
        params = replace(PARAMS, seed=seed + 1000 * index)
        run = engine.start_run(task.prompt, params, N_SAMPLES)
        for event in engine.generate(run, cancel=cancelled):
            run.add(event)
        if cancelled():
            raise Cancelled()
        questions.append(Question(task, tuple(
            Reply(s.text, s.logprob_scores()["mean-logprob"]) for s in run.samples)))
        if progress is not None:
            progress(index + 1, len(tasks))
    return questions


def save_questions(questions: list[Question], path: Path) -> None:
    rows = [{"id": q.task.id, "replies": [{"text": r.text, "mean_logprob": r.mean_logprob}
                                           for r in q.replies]} for q in questions]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                    encoding="utf-8")


def load_questions(path: Path, tasks: list[Task]) -> list[Question]:
    """Replies saved by `save_questions`, for the tasks they answer (all of them, in order)."""
    require_regular(path, "a samples file")
    by_id = {t.id: t for t in tasks}
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            questions.append(Question(by_id[row["id"]], tuple(
                Reply(str(r["text"]), float(r["mean_logprob"])) for r in row["replies"])))
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidRequestError(f"{path.name}, line {number}: not a saved proof question "
                                      f"({error})") from None
    if [q.task.id for q in questions] != [t.id for t in tasks]:
        raise InvalidRequestError(f"{path.name} does not answer the task set's questions in order")
    return questions


def preferences(questions: list[Question]) -> list[Preference]:
    """Every (correct, wrong) pair of replies to the same question, as the checker labels them;
    identical texts are paired once."""
    pairs = []
    for q in questions:
        texts = [r.text for r in q.replies]
        right = dict.fromkeys(t for t, ok in zip(texts, q.correct(), strict=True) if ok)
        wrong = dict.fromkeys(t for t, ok in zip(texts, q.correct(), strict=True) if not ok)
        pairs += [Preference(q.task.prompt, c, r, "checker") for c in right for r in wrong]
    return pairs


def split(questions: list[Question], seed: int) -> tuple[list[Question], list[Question]]:
    """(train, held out): a random TRAIN_SHARE of the questions, and the rest."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * TRAIN_SHARE)
    return ([questions[i] for i in sorted(order[:cut])],
            [questions[i] for i in sorted(order[cut:])])


def picks(question: Question, reward_scores: list[float]) -> dict[str, float]:
    """Whether each method's pick is correct (1 or 0; 'random' its expected value)."""
    correct = question.correct()
    vote = vote_of([extract_answer(r.text, "number") for r in question.replies], "number")
    logprobs = [r.mean_logprob for r in question.replies]
    return {
        "random": sum(correct) / len(correct),
        "mean-logprob": float(correct[_argmax(logprobs)]),
        "vote": float(vote.answer is not None and vote.answer == str(question.task.answer)),
        "reward-model": float(correct[_argmax(reward_scores)]),
        "oracle": float(any(correct)),
    }


def _argmax(values: list[float]) -> int:
    """The first best index; NaN counts as lowest."""
    clean = [v if math.isfinite(v) else -math.inf for v in values]
    return int(np.argmax(clean))


def accuracy_table(held_out: list[Question], reward_scores: list[list[float]]) -> dict[str, Any]:
    """Best-of-N accuracy on the held-out questions by each method, with the counts."""
    rows = [picks(q, s) for q, s in zip(held_out, reward_scores, strict=True)]
    return {method: {"accuracy": sum(r[method] for r in rows) / len(rows),
                     "correct": sum(r[method] for r in rows), "questions": len(rows)}
            for method in METHODS}


def run_proof(
    model: Path | None,
    out: Path,
    *,
    seed: int = 17,
    tasks: Path | None = None,
    samples: Path | None = None,
    n_gpu_layers: int = 0,
    n_threads: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """The whole proof on the task set `tasks` (default: the shipped arithmetic): generate (or
    read `samples`, when it exists; else save there), label, train on a random half of the
    questions, write the reward model to `out`, and rank the held-out questions' replies with it
    as `open_reward_model` opens it. `progress(phase, done, total)`; `n_threads` is for the
    scoring decodes (default: every core)."""
    from playground.engine import load
    from playground.reward.detection import open_reward_model
    from playground.reward.training import train_reward_model

    def report(phase: str) -> Callable[[int, int], None] | None:
        return None if progress is None else lambda done, total: progress(phase, done, total)

    task_set = read_tasks(tasks)
    engine = load(model, n_gpu_layers=n_gpu_layers)
    backbone = engine.path
    try:
        if samples is not None and samples.exists():
            questions = load_questions(samples, task_set)
        else:
            questions = generate(engine, task_set, seed=seed, progress=report("generating"),
                                 cancel=cancel)
            if samples is not None:
                save_questions(questions, samples)
        model_json = engine.info.to_json()
    finally:
        engine.close()
    train, held_out = split(questions, seed)
    training = train_reward_model(preferences(train), backbone, out, seed=seed,
                                  n_gpu_layers=n_gpu_layers, n_threads=n_threads,
                                  progress=report("training"), cancel=cancel)
    repeated = repeated_splits(questions, backbone, training.l2, seed, n_gpu_layers=n_gpu_layers,
                               n_threads=n_threads, progress=report("decoding every reply"),
                               cancel=cancel)
    scores = []
    with open_reward_model(out, n_gpu_layers=n_gpu_layers, n_threads=n_threads) as reward_model:
        for index, q in enumerate(held_out):
            scores.append(reward_model.score(q.task.prompt, [r.text for r in q.replies],
                                             cancel=cancel))
            if cancel is not None and cancel():
                raise Cancelled()
            if progress is not None:
                progress("ranking", index + 1, len(held_out))
    return {
        "model": model_json,
        "task_set": (tasks or Path(TASK_FILE)).name,
        "questions": len(questions),
        "train_questions": len(train),
        "held_out_questions": len(held_out),
        "samples_per_question": N_SAMPLES,
        "params": PARAMS.to_json(),
        "seed": seed,
        "reward_model": str(out),
        "training": training.to_json(),
        "best_of_n": accuracy_table(held_out, scores),
        "repeated_splits": repeated,
    }


def repeated_splits(
    questions: list[Question],
    backbone: Path,
    l2: float,
    seed: int,
    *,
    n_gpu_layers: int = 0,
    n_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Each method's best-of-N accuracy, mean and standard deviation over REPEATS more random
    splits (seeds seed + 1 ...), a head trained on each split's training half. The L2 weight is
    the main split's (cross-validating again for every split would cost minutes); the heads are
    applied to cached hidden states, which the tests show equal what the packed model scores."""
    from playground.reward.features import FeatureExtractor
    from playground.reward.training import fit_head

    texts = [(q.task.prompt, r.text) for q in questions for r in q.replies]
    with FeatureExtractor(backbone, n_gpu_layers=n_gpu_layers, n_threads=n_threads) as extractor:
        h = extractor.features(texts, progress=progress, cancel=cancel)
    row = {text: i for i, text in enumerate(texts)}
    tables = []
    for k in range(1, REPEATS + 1):
        train, held_out = split(questions, seed + k)
        pairs = preferences(train)
        head = fit_head(h[[row[p.prompt, p.chosen] for p in pairs]],
                        h[[row[p.prompt, p.rejected] for p in pairs]], l2)
        scores = [[float(x) for x in head.scores(h[[row[q.task.prompt, r.text]
                                                     for r in q.replies]])]
                  for q in held_out]
        tables.append(accuracy_table(held_out, scores))
    ahead = np.array([t["reward-model"]["accuracy"] - t["mean-logprob"]["accuracy"]
                      for t in tables])
    return {"splits": REPEATS, "l2": l2, "accuracy": {
        method: {"mean": float(np.mean([t[method]["accuracy"] for t in tables])),
                 "sd": float(np.std([t[method]["accuracy"] for t in tables]))}
        for method in METHODS},
        # Paired, split by split: the methods' spreads above include which questions are held out.
        "reward_model_minus_mean_logprob": {"mean": float(ahead.mean()),
                                            "sd": float(ahead.std()), "min": float(ahead.min()),
                                            "splits_ahead": int((ahead > 0).sum())}}

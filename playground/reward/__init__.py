"""Reward-model scoring: how good is each of N responses to one prompt, by a model trained to judge.

One interface, `Scorer.score(prompt, responses) -> list[float]` (higher is better), over three
local backends (`RewardModel`) that `open_reward_model` picks from the file, and a server's
(`playground.remote_reward`):

* score-head reward models (Skywork-Reward-V2 and other `*ForSequenceClassification` models): the
  model's causal-LM backbone as a GGUF with the score head stored in its metadata
  (`playground.reward.score_head`, see docs/reward-models.md and `pack_reward_model`). llama.cpp
  returns the final normed hidden state h of the conversation's last token (LAST pooling); the
  score is head . h + bias, exactly what the Hugging Face model computes.
* rerankers and classifiers (Qwen3-Reranker, bge-reranker): llama.cpp's RANK pooling applies the
  file's classification head; the prompt is the query and the response the document.
* the LLM judge: an instruct model is asked a yes/no rubric question about the response, and the
  score is log P(yes) - log P(no) read from its logits, with no sampling.

All N responses are scored together, as N sequences of one unified KV cache: the tokens they share
(the chat template and the prompt) are decoded once and copied to every sequence, then their own
tokens go into the same decodes, as many as the context holds. Scoring in a batch gives the same
numbers as scoring one at a time (see `playground.handles.MICRO_BATCH`), so a score never depends
on what else was scored with it.

Like the engine, a reward model is not thread-safe: use it on one thread (the judge on the thread
that owns its engine).

The package, by job: `interface` (Scorer, RewardModel, results, kinds and format keys),
`backends` (the three kinds), `detection` (what a file is; opening it), `decoder` (batched scoring
decodes), `packing` (the score-head format) and `safetensors` (reading Hugging Face heads).
"""

from playground.reward.backends import DEFAULT_RUBRIC, JudgeModel, RerankerModel, ScoreHeadModel
from playground.reward.detection import open_reward_model
from playground.reward.interface import (
    BIAS_KEY,
    FORMAT_VERSION,
    HEAD_KEY,
    KIND_JUDGE,
    KIND_RERANKER,
    KIND_SCORE_HEAD,
    KINDS,
    POOLING_KEY,
    SOURCE_KEY,
    VERSION_KEY,
    RewardModel,
    ScoredResponse,
    Scorer,
    rank_agreement,
    score_run,
)
from playground.reward.packing import find_score_tensor, load_score_head, pack_reward_model
from playground.reward.safetensors import load_safetensors_tensor, read_safetensors_header

__all__ = [
    "BIAS_KEY",
    "DEFAULT_RUBRIC",
    "FORMAT_VERSION",
    "HEAD_KEY",
    "KINDS",
    "KIND_JUDGE",
    "KIND_RERANKER",
    "KIND_SCORE_HEAD",
    "POOLING_KEY",
    "SOURCE_KEY",
    "VERSION_KEY",
    "JudgeModel",
    "RerankerModel",
    "RewardModel",
    "ScoreHeadModel",
    "ScoredResponse",
    "Scorer",
    "find_score_tensor",
    "load_safetensors_tensor",
    "load_score_head",
    "open_reward_model",
    "pack_reward_model",
    "rank_agreement",
    "read_safetensors_header",
    "score_run",
]

"""Reward-model scoring against independent computations, on tiny random-weight GGUFs.

The references are llama-cpp-python's own `Llama` objects, fed exactly the scored token ids. They
run with `n_ubatch=32` and flash attention, as every context of the project does (see
playground.handles.MICRO_BATCH): llama.cpp's CPU attention takes other kernel paths for bigger
micro-batches, which move results by about 1e-4 on these models.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import pytest
import tiny_models

from playground import gguf_file, reward
from playground.engine import load
from playground.engine_api import Engine
from playground.errors import InvalidRequestError, ModelFileError, PlaygroundError, ResourceError
from playground.gguf_file import read_header
from playground.records import RewardModelIdentity
from playground.reward import (
    BIAS_KEY,
    DEFAULT_RUBRIC,
    HEAD_KEY,
    SOURCE_KEY,
    VERSION_KEY,
    detection,
    open_reward_model,
    pack_reward_model,
    rank_agreement,
    score_run,
)
from playground.sampling import SamplingParams

REPO = Path(__file__).resolve().parents[2]
PROMPT = "write a story about the cat"
RESPONSES = [
    "once upon a time there was a cat",
    "the dog is red",
    "",
    "hello world, the cat sat in the house and was very happy",
    "yes",
]


# ---------------------------------------------------------------------------------------------
# Helpers


def _copy_gguf(src: Path, dst: Path, *, extra: dict | None = None,
               drop_tensors: tuple[str, ...] = ()) -> Path:
    """A copy of `src` with extra metadata (key -> (value, GGUFValueType[, sub type])) and
    without some tensors: files that pack_reward_model would refuse to write."""
    reader = gguf.GGUFReader(str(src))
    writer = gguf.GGUFWriter(str(dst), str(reader.get_field("general.architecture").contents()))
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for key, (value, kind, *sub) in (extra or {}).items():
        writer.add_key_value(key, value, kind, sub_type=sub[0] if sub else None)
    for tensor in reader.tensors:
        if tensor.name not in drop_tensors:
            writer.add_tensor(tensor.name, np.array(tensor.data), raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def _reference(path: Path, **kwargs) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(path), flash_attn=True, n_ubatch=32, verbose=False,
                           **kwargs)


def _embed_exactly(llm: llama_cpp.Llama, tokens: tuple[int, ...]) -> np.ndarray:
    """Llama.embed on exactly these token ids: embed() tokenizes its text, so the tokenizer is
    replaced by the ids for the call."""
    llm.tokenize = lambda *_args, **_kwargs: list(tokens)
    try:
        return np.array(llm.embed("ignored"), dtype=np.float64)
    finally:
        del llm.tokenize


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> Path:
    """name -> (dtype, array): the safetensors format by hand (BF16 as the top 16 bits)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, array) in tensors.items():
        if dtype == "BF16":
            raw = (np.asarray(array, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = np.asarray(array, {"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    return path


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reward")


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    return np.random.default_rng(7).standard_normal(tiny_models.N_EMBD).astype(np.float32)


@pytest.fixture(scope="module")
def score_head_path(models: Path, tiny_model_path: Path, head: np.ndarray) -> Path:
    np.save(models / "head.npy", head)
    return pack_reward_model(tiny_model_path, models / "head.npy", models / "tiny-rm.gguf")


@pytest.fixture(scope="module")
def score_head_model(score_head_path: Path):
    model = open_reward_model(score_head_path)
    yield model
    model.close()


@pytest.fixture(scope="module")
def reranker_paths(models: Path) -> dict[int, Path]:
    return {n: tiny_models.write_tiny_qwen3_classifier(models / f"rerank{n}.gguf", n_labels=n)
            for n in (1, 2)}


# ---------------------------------------------------------------------------------------------
# (a) score head


def test_score_head_is_head_dot_last_hidden_state(score_head_model, score_head_path: Path,
                                                   head: np.ndarray):
    scored = score_head_model.score_detailed(PROMPT, RESPONSES)
    assert score_head_model.kind == "score-head"
    llm = _reference(score_head_path, embedding=True,
                     pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST)
    try:
        for s in scored:
            h = _embed_exactly(llm, s.input_token_ids)
            assert s.score == pytest.approx(float(head.astype(np.float64) @ h), abs=1e-5)
    finally:
        llm.close()
    assert len({round(s.score, 6) for s in scored}) == len(scored)


def test_score_head_reads_the_conversation_in_its_chat_template(score_head_model):
    scored = score_head_model.score_detailed(PROMPT, ["the cat"])[0]
    engine = score_head_model.engine
    text = b"".join(engine.token_bytes(t, special=True) for t in scored.input_token_ids)
    # (This SentencePiece vocabulary puts a space before a word that follows a special token.)
    assert text.decode().replace(" ", "").endswith(
        ("<|im_start|>user\n" + PROMPT + "<|im_end|>\n<|im_start|>assistant\nthe cat<|im_end|>\n"
         ).replace(" ", ""))
    # The pooled token is the rendered conversation's last: "\n" after the assistant's end.
    assert scored.input_token_ids[-1] == tiny_models.FIRST_BYTE_TOKEN + ord("\n")
    assert tiny_models.TOKEN_IM_END in scored.input_token_ids[-3:]


def test_score_head_batched_equals_one_at_a_time(score_head_model):
    batched = score_head_model.score(PROMPT, RESPONSES)
    alone = [score_head_model.score(PROMPT, [r])[0] for r in RESPONSES]
    assert batched == pytest.approx(alone, abs=1e-4)


def test_score_head_more_responses_than_one_decode_holds(score_head_path: Path):
    with open_reward_model(score_head_path, n_ctx=128) as model:
        responses = [f"the cat {'and the dog ' * (i % 5)}" for i in range(12)]
        calls = []
        scores = model.score(PROMPT, responses, progress=lambda d, t: calls.append((d, t)))
        assert len(calls) > 1 and calls[-1] == (12, 12)
        assert scores == pytest.approx([model.score(PROMPT, [r])[0] for r in responses],
                                       abs=1e-4)


def test_empty_response_scores(score_head_model):
    assert math.isfinite(score_head_model.score(PROMPT, [""])[0])
    assert score_head_model.score(PROMPT, []) == []


def test_response_longer_than_the_context_is_a_clear_error(score_head_path: Path):
    with open_reward_model(score_head_path, n_ctx=64) as model, \
            pytest.raises(ResourceError) as error:
        model.score(PROMPT, ["the cat", "the dog " * 100])
    message = _one_line(error)
    assert "response 2 is" in message and "context holds 64" in message


def test_cancel_leaves_nan_and_progress_counts(score_head_model):
    assert all(math.isnan(s) for s in score_head_model.score(PROMPT, RESPONSES,
                                                             cancel=lambda: True))
    calls = []
    score_head_model.score(PROMPT, RESPONSES, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (len(RESPONSES), len(RESPONSES))


def test_pack_writes_the_format_and_keeps_every_tensor(score_head_path: Path,
                                                       tiny_model_path: Path, head: np.ndarray):
    meta = read_header(score_head_path).metadata
    assert meta[VERSION_KEY] == 1 and meta[BIAS_KEY] == 0.0 and "head.npy" in meta[SOURCE_KEY]
    assert np.array_equal(gguf_file.read_array(score_head_path, HEAD_KEY), head)
    packed, original = gguf.GGUFReader(str(score_head_path)), gguf.GGUFReader(str(tiny_model_path))
    assert [(t.name, t.tensor_type) for t in packed.tensors] == \
        [(t.name, t.tensor_type) for t in original.tensors]
    for a, b in zip(packed.tensors, original.tensors, strict=True):
        assert a.data.tobytes() == b.data.tobytes()


def test_pack_quantized_backbone_keeps_its_quantization(models: Path, embedded_model_path: Path):
    head = np.random.default_rng(1).standard_normal(576).astype(np.float32)
    np.save(models / "head576.npy", head)
    out = pack_reward_model(embedded_model_path, models / "head576.npy", models / "smol-rm.gguf")
    packed, original = gguf.GGUFReader(str(out)), gguf.GGUFReader(str(embedded_model_path))
    assert [t.tensor_type for t in packed.tensors] == [t.tensor_type for t in original.tensors]
    assert packed.tensors[0].data.tobytes() == original.tensors[0].data.tobytes()


def test_pack_from_safetensors_with_bias(models: Path, tiny_model_path: Path):
    row = np.random.default_rng(3).standard_normal((1, tiny_models.N_EMBD)).astype(np.float32)
    path = _write_safetensors(models / "rm.safetensors", {
        "model.norm.weight": ("F32", np.ones(tiny_models.N_EMBD, np.float32)),
        "score.weight": ("F16", row),
        "score.bias": ("F32", np.array([0.75], np.float32)),
    })
    out = pack_reward_model(tiny_model_path, path, models / "tiny-rm-st.gguf")
    with open_reward_model(out) as model:
        assert model.bias == 0.75
        assert np.array_equal(model.head, row.astype(np.float16).astype(np.float64).reshape(-1))
        llm = _reference(out, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST)
        try:
            for s in model.score_detailed(PROMPT, RESPONSES[:2]):
                h = _embed_exactly(llm, s.input_token_ids)
                assert s.score == pytest.approx(float(model.head @ h) + 0.75, abs=1e-5)
        finally:
            llm.close()


def test_safetensors_bf16_and_the_single_row_rule(models: Path):
    row = np.random.default_rng(4).standard_normal((1, 8)).astype(np.float32)
    path = _write_safetensors(models / "bf16.safetensors", {
        "v_head.weight": ("BF16", row), "other": ("F32", np.zeros((4, 8), np.float32))})
    vector, bias, name = reward.load_score_head(path)
    expected = (row.view(np.uint32) & 0xFFFF0000).view(np.float32).reshape(-1)
    assert name == "v_head.weight" and bias == 0.0 and np.array_equal(vector, expected)
    ambiguous = _write_safetensors(models / "two.safetensors", {
        "a": ("F32", row), "b": ("F32", row)})
    with pytest.raises(InvalidRequestError) as error:
        reward.load_score_head(ambiguous)
    assert "no score head found" in _one_line(error)


def test_pack_rejects_a_head_of_the_wrong_size(models: Path, tiny_model_path: Path):
    np.save(models / "head100.npy", np.zeros(100, np.float32))
    with pytest.raises(InvalidRequestError) as error:
        pack_reward_model(tiny_model_path, models / "head100.npy", models / "bad.gguf")
    message = _one_line(error)
    assert "100 values" in message and "hidden size (n_embd) of 64" in message
    assert not (models / "bad.gguf").exists()


def test_extract_script_on_a_sharded_checkpoint(tmp_path: Path):
    hidden = 16
    rng = np.random.default_rng(5)
    checkpoint = tmp_path / "Skywork-Reward-tiny"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({
        "architectures": ["Qwen3ForSequenceClassification"], "hidden_size": hidden,
        "num_labels": 1, "tie_word_embeddings": True}))
    (checkpoint / "tokenizer.json").write_text("{}")
    embed = rng.standard_normal((10, hidden)).astype(np.float32)
    score = rng.standard_normal((1, hidden)).astype(np.float32)
    _write_safetensors(checkpoint / "model-00001-of-00002.safetensors",
                       {"model.embed_tokens.weight": ("BF16", embed)})
    _write_safetensors(checkpoint / "model-00002-of-00002.safetensors", {
        "model.norm.weight": ("F32", np.ones(hidden, np.float32)),
        "score.weight": ("BF16", score), "score.bias": ("F32", np.array([-1.5], np.float32))})
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": 0}, "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00002-of-00002.safetensors",
            "score.weight": "model-00002-of-00002.safetensors",
            "score.bias": "model-00002-of-00002.safetensors"}}))
    out, backbone = tmp_path / "head.npy", tmp_path / "backbone"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "extract_score_head.py"), str(checkpoint),
         "-o", str(out), "--backbone-dir", str(backbone)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    expected = (score.view(np.uint32) & 0xFFFF0000).view(np.float32).reshape(-1)
    assert np.array_equal(np.load(out), expected)
    config = json.loads((backbone / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"]
    index = json.loads((backbone / "model.safetensors.index.json").read_text())
    assert "score.weight" not in index["weight_map"] and "score.bias" not in index["weight_map"]
    shard2, _ = reward.read_safetensors_header(backbone / "model-00002-of-00002.safetensors")
    assert set(shard2) == {"model.norm.weight"}
    assert np.array_equal(
        reward.load_safetensors_tensor(backbone / "model-00001-of-00002.safetensors",
                                       "model.embed_tokens.weight"),
        reward.load_safetensors_tensor(checkpoint / "model-00001-of-00002.safetensors",
                                       "model.embed_tokens.weight"))
    assert (backbone / "tokenizer.json").is_file()
    # A .safetensors output keeps the bias, which pack_reward_model then reads.
    kept = tmp_path / "head.safetensors"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "extract_score_head.py"), str(checkpoint),
         "-o", str(kept)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    vector, bias, name = reward.load_score_head(kept)
    assert np.array_equal(vector, expected) and bias == -1.5 and name == "score.weight"


def test_untied_backbone_without_output_layer_scores(models: Path, tiny_model_path: Path,
                                                      head: np.ndarray):
    # A *ForSequenceClassification checkpoint of an untied model has no lm_head: its backbone
    # GGUF has no output.weight, and llama.cpp then uses token_embd as the output layer.
    headless = _copy_gguf(tiny_model_path, models / "no-output.gguf",
                          drop_tensors=("output.weight",))
    out = pack_reward_model(headless, models / "head.npy", models / "no-output-rm.gguf")
    with open_reward_model(out) as model:
        llm = _reference(out, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST)
        try:
            s = model.score_detailed(PROMPT, ["the cat"])[0]
            h = _embed_exactly(llm, s.input_token_ids)
            assert s.score == pytest.approx(float(head.astype(np.float64) @ h), abs=1e-5)
        finally:
            llm.close()


def test_score_run_stores_rewards_and_ranks(score_head_model, tiny_engine: Engine):
    run = tiny_engine.run(PROMPT, SamplingParams(seed=3, max_tokens=8), n=3)
    ranking = score_run(score_head_model, run)
    assert ranking.method == "reward" and len(ranking.order) == 3
    assert all(math.isfinite(s.scores["reward"]) for s in run.samples)
    agreement = rank_agreement(ranking, run.rank("mean-logprob"))
    assert set(agreement) == {"kendall_tau", "top_agrees"}
    assert -1.0 <= agreement["kendall_tau"] <= 1.0


def test_scores_record_the_reward_model_that_gave_them(score_head_model, score_head_path: Path,
                                                      tiny_engine: Engine, reranker_paths):
    run = tiny_engine.run(PROMPT, SamplingParams(seed=3, max_tokens=4), n=2)
    score_run(score_head_model, run)
    sha256 = hashlib.sha256(score_head_path.read_bytes()).hexdigest()
    assert run.reward_models["reward"] == RewardModelIdentity(
        "score-head", str(score_head_path), sha256, score_head_model.name, "")
    with open_reward_model("judge", judge_engine=tiny_engine, rubric="Is it short?") as judge:
        score_run(judge, run, method="judge")
    judged = run.reward_models["judge"]
    assert (judged.kind, judged.file, judged.rubric) == ("judge", str(tiny_engine.path),
                                                        "Is it short?")
    assert judged.sha256 == hashlib.sha256(tiny_engine.path.read_bytes()).hexdigest()
    with open_reward_model(reranker_paths[2]) as reranker:
        score_run(reranker, run, method="rerank")
    assert run.reward_models["rerank"].kind == "reranker"
    assert run.reward_models["rerank"].file == str(reranker_paths[2])
    assert run.to_json()["reward_models"]["reward"]["sha256"] == sha256


# ---------------------------------------------------------------------------------------------
# (b) rerankers


def test_two_label_reranker_is_log_odds_of_the_rank_output(reranker_paths):
    path = reranker_paths[2]
    with open_reward_model(path) as model:
        assert model.kind == "reranker" and model.labels == ("yes", "no")
        scored = model.score_detailed(PROMPT, RESPONSES)
        llm = _reference(path, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK)
        try:
            n_cls = llama_cpp.llama_model_n_cls_out(llm._model.model)
            assert n_cls == 2
            for s in scored:
                p_yes, p_no = _embed_exactly(llm, s.input_token_ids)[:n_cls]
                assert s.raw == pytest.approx((p_yes, p_no), abs=1e-6)
                assert s.score == pytest.approx(math.log(p_yes) - math.log(p_no), abs=1e-5)
                assert sum(s.raw) == pytest.approx(1.0, abs=1e-5)  # qwen3: softmax
        finally:
            llm.close()


def _qwen3_reranker_prompt(instruction: str, query: str, document: str) -> str:
    """The prompt of Qwen3-Reranker's model card (huggingface.co/Qwen/Qwen3-Reranker-0.6B):
    prefix + format_instruction(...) + suffix."""
    prefix = ("<|im_start|>system\nJudge whether the Document meets the requirements based on "
              "the Query and the Instruct provided. Note that the answer can only be \"yes\" or "
              "\"no\".<|im_end|>\n<|im_start|>user\n")
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    return prefix + f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}" + \
        suffix


def test_two_label_qwen3_reads_qwen3_reranker_prompt(reranker_paths):
    default = "Given a web search query, retrieve relevant passages that answer the query"
    for rubric, instruction in ((None, default), ("Judge the story.", "Judge the story.")):
        expected = _qwen3_reranker_prompt(instruction, "the query", "the document")
        with open_reward_model(reranker_paths[2], rubric=rubric) as model:
            tokens = model.score_detailed("the query", ["the document"])[0].input_token_ids
            tokenize = model.engine.model.tokenize
            assert list(tokens) == tokenize(expected, add_special=False,
                                                    parse_special=True)
        assert tokens[0] == tiny_models.TOKEN_IM_START


def test_one_label_reranker_slices_to_n_cls_out(reranker_paths):
    path = reranker_paths[1]
    with open_reward_model(path) as model:
        scored = model.score_detailed(PROMPT, RESPONSES)
        assert "always 1.0" in model.describe()
        llm = _reference(path, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK)
        try:
            for s in scored:
                full = _embed_exactly(llm, s.input_token_ids)
                # llama.cpp wrote one float; embed() returns n_embd, the rest stale memory.
                assert len(full) == tiny_models.N_EMBD and len(s.raw) == 1
                assert s.score == s.raw[0] == pytest.approx(full[0], abs=1e-6)
                assert s.score == pytest.approx(1.0)  # a softmax over one label
        finally:
            llm.close()


def test_pair_format_without_rerank_template(reranker_paths):
    with open_reward_model(reranker_paths[1]) as model:
        tokens = list(model.score_detailed("the cat", ["the dog"])[0].input_token_ids)
        tokenize = model.engine.model.tokenize
        q = tokenize("the cat", add_special=False, parse_special=False)
        d = tokenize("the dog", add_special=False, parse_special=False)
        # This vocabulary asks for BOS only (no EOS, no SEP), as llama.cpp's server builds it.
        assert tokens == [tiny_models.TOKEN_BOS, *q, *d]


def test_rerank_template_in_the_file_is_used(models: Path, reranker_paths):
    template = "<|im_start|>Q: {query} D: {document}<|im_end|>"
    path = _copy_gguf(reranker_paths[2], models / "rerank-template.gguf", extra={
        "tokenizer.chat_template.rerank": (template, gguf.GGUFValueType.STRING)})
    with open_reward_model(path) as model:
        assert "the file's rerank template" in model.describe()
        tokens = model.score_detailed("a", ["b"])[0].input_token_ids
        tokenize = model.engine.model.tokenize
        assert list(tokens) == tokenize("<|im_start|>Q: a D: b<|im_end|>",
                                                add_special=False, parse_special=True)
    assert tokens[0] == tiny_models.TOKEN_IM_START  # parsed as a special token


@pytest.mark.parametrize("labels", [1, 2])
def test_reranker_batched_equals_one_at_a_time(reranker_paths, labels: int):
    with open_reward_model(reranker_paths[labels]) as model:
        batched = model.score(PROMPT, RESPONSES)
        alone = [model.score(PROMPT, [r])[0] for r in RESPONSES]
    assert batched == pytest.approx(alone, abs=1e-4)


def test_encoder_path_scores_each_input_alone(reranker_paths, monkeypatch: pytest.MonkeyPatch):
    # Encoders (bert) must see an input in one micro-batch; the tiny qwen3 stands in for one.
    monkeypatch.setattr(detection, "ENCODER_ARCHS", frozenset({"qwen3"}))
    with open_reward_model(reranker_paths[2]) as model:
        assert not model._decoder.causal
        batched = model.score(PROMPT, RESPONSES)
        assert batched == pytest.approx([model.score(PROMPT, [r])[0] for r in RESPONSES],
                                        abs=1e-4)
    with open_reward_model(reranker_paths[2]) as causal:
        assert causal.score(PROMPT, RESPONSES) == pytest.approx(batched, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# (c) the judge


def _yes_no_ids(llm: llama_cpp.Llama) -> tuple[list[int], list[int]]:
    def ids(words):
        found = set()
        for word in words:
            for text in (word, " " + word):
                tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
                if len(tokens) == 1:
                    found.add(tokens[0])
        return sorted(found)

    return ids(["yes", "Yes", "YES"]), ids(["no", "No", "NO"])


def test_judge_is_log_p_yes_minus_log_p_no(tiny_engine: Engine, tiny_model_path: Path):
    with open_reward_model("judge", judge_engine=tiny_engine) as judge:
        assert judge.kind == "judge"
        scored = judge.score_detailed(PROMPT, RESPONSES)
    llm = _reference(tiny_model_path, n_ctx=512)
    try:
        yes, no = _yes_no_ids(llm)
        assert yes and no
        for s in scored:
            llm.reset()
            llm.eval(list(s.input_token_ids))
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1),
                                        shape=(llm.n_vocab(),)).astype(np.float64)
            logprobs = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
            log_yes = np.log(np.exp(logprobs[yes]).sum())
            log_no = np.log(np.exp(logprobs[no]).sum())
            assert s.raw == pytest.approx((log_yes, log_no), abs=1e-4)
            assert s.score == pytest.approx(log_yes - log_no, abs=1e-4)
            # The engine's teacher forcing reads the same micro-batches (see MICRO_BATCH).
            record = tiny_engine.teacher_force(list(s.input_token_ids), [yes[0]])[0]
            assert record.logprob == pytest.approx(logprobs[yes[0]], abs=1e-5)
    finally:
        llm.close()


def test_judge_reads_the_rubric(tiny_engine: Engine):
    with open_reward_model("judge", judge_engine=tiny_engine) as judge:
        tokens = judge.score_detailed(PROMPT, ["the cat"])[0].input_token_ids
        assert DEFAULT_RUBRIC in tiny_engine.detokenize(list(tokens))
        assert "the cat" in tiny_engine.detokenize(list(tokens))
    with open_reward_model("judge", judge_engine=tiny_engine, rubric="Is it about a cat?") as j:
        tokens = j.score_detailed(PROMPT, ["the cat"])[0].input_token_ids
        assert "Is it about a cat?" in tiny_engine.detokenize(list(tokens))
        assert "rubric 'Is it about a cat?'" in j.describe()


def _yes_no_logprobs(row: np.ndarray, yes: tuple[int, ...], no: tuple[int, ...]):
    row = row.astype(np.float64)
    logprobs = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
    return tuple(float(np.log(np.exp(logprobs[list(ids)]).sum())) for ids in (yes, no))


@pytest.mark.parametrize("words", [12, 60])
def test_judge_scores_as_the_engine_generates(tiny_engine: Engine, words: int):
    """The judge's log P(yes), log P(no) are those of the first token the engine would generate
    after the same tokens, read as generation reads a prompt: whole, and again with the prefix
    the last run left in the KV cache. Inputs of 64 tokens or more once went through llama.cpp's
    tiled attention kernel in the engine's 512-token micro-batches and not in the judge's (3e-4
    apart on this model). Scored alone: beside others, this F32 model moves by about 1e-6 (see
    test_judge_batched_equals_one_at_a_time)."""
    response = " ".join(["the cat sat in the house"] * words)
    with open_reward_model("judge", judge_engine=tiny_engine) as judge:
        scored = judge.score_detailed(PROMPT, [response])[0]
        yes, no = judge.yes_ids, judge.no_ids
    tokens = list(scored.input_token_ids)
    assert len(tokens) > 64
    tiny_engine.forget_prompt()
    whole = tiny_engine.next_logits(tokens)
    cached = tiny_engine.next_logits(tokens)  # reuses every cached cell it can
    assert _yes_no_logprobs(whole, yes, no) == pytest.approx(scored.raw, abs=1e-9)
    assert _yes_no_logprobs(cached, yes, no) == pytest.approx(scored.raw, abs=1e-9)


def test_judge_batched_equals_one_at_a_time(tiny_engine: Engine):
    with open_reward_model("judge", judge_engine=tiny_engine) as judge:
        batched = judge.score(PROMPT, RESPONSES)
        alone = [judge.score(PROMPT, [r])[0] for r in RESPONSES]
    assert batched == pytest.approx(alone, abs=1e-4)
    assert all(math.isfinite(s) for s in batched)  # the empty response too


def test_judge_leaves_a_borrowed_engine_open(tiny_engine: Engine):
    judge = open_reward_model("judge", judge_engine=tiny_engine)
    judge.close()
    judge.close()
    assert tiny_engine.tokenize("the cat")
    with pytest.raises(PlaygroundError):
        judge.score(PROMPT, ["x"])


def test_a_closed_model_refuses_to_score(score_head_path: Path):
    model = open_reward_model(score_head_path)
    model.close()
    for call in (lambda: model.score(PROMPT, ["x"]), lambda: model.input_tokens(PROMPT, "x")):
        with pytest.raises(PlaygroundError) as error:
            call()
        assert "closed" in _one_line(error)


def test_judge_from_a_path_and_too_long(tiny_model_path: Path):
    with open_reward_model(f"judge:{tiny_model_path}", n_ctx=64) as judge:
        assert judge.memory_bytes > 0
        with pytest.raises(ResourceError) as error:
            judge.score(PROMPT, ["the dog " * 100])
    assert "context holds 64" in _one_line(error)


# ---------------------------------------------------------------------------------------------
# Files of the wrong kind


def test_chat_model_is_not_a_score_head_model(tiny_model_path: Path):
    with pytest.raises(ModelFileError) as error:
        open_reward_model(tiny_model_path)
    message = _one_line(error)
    assert message.startswith("tiny.gguf is a chat model (llama) without a score head")
    assert "`playground.reward.score_head`" in message and "or use it as the judge" in message


def test_reranker_is_not_a_judge(reranker_paths, tiny_engine: Engine):
    with pytest.raises(ModelFileError) as error:
        open_reward_model(f"judge:{reranker_paths[2]}")
    message = _one_line(error)
    assert "is a reranker (qwen3, labels yes/no)" in message
    assert "the judge needs an instruct model" in message
    engine = load(reranker_paths[2])
    try:
        with pytest.raises(ModelFileError) as error:
            open_reward_model("judge", judge_engine=engine)
        assert "is a reranker" in _one_line(error)
    finally:
        engine.close()


def test_score_head_model_is_not_a_judge_nor_a_reranker(score_head_path: Path):
    with pytest.raises(ModelFileError) as error:
        open_reward_model(score_head_path, kind="judge")
    assert "is a score-head reward model (llama): the judge needs" in _one_line(error)
    with pytest.raises(ModelFileError) as error:
        open_reward_model(score_head_path, kind="reranker")
    assert "is a score-head reward model (llama): expected a reranker" in _one_line(error)


def test_not_a_gguf(models: Path):
    with pytest.raises(ModelFileError) as error:
        open_reward_model(tiny_models.write_not_gguf(models / "notes.gguf"))
    assert "not a GGUF model file" in _one_line(error)


def test_head_that_does_not_match_the_backbone(models: Path, tiny_model_path: Path):
    path = _copy_gguf(tiny_model_path, models / "short-head.gguf", extra={
        VERSION_KEY: (1, gguf.GGUFValueType.UINT32),
        HEAD_KEY: ([0.5] * 10, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)})
    with pytest.raises(ModelFileError) as error:
        open_reward_model(path)
    assert "score head has 10 values but the model's hidden size (n_embd) is 64" in \
        _one_line(error)


def test_embedding_model_is_explained(models: Path, tiny_model_path: Path):
    path = _copy_gguf(tiny_model_path, models / "embedder.gguf", extra={
        "llama.pooling_type": (1, gguf.GGUFValueType.UINT32)})
    with pytest.raises(ModelFileError) as error:
        open_reward_model(path)
    assert "is an embedding model (llama, mean pooling)" in _one_line(error)


def test_describe_is_one_line(score_head_model, reranker_paths, tiny_engine: Engine):
    with open_reward_model(reranker_paths[2]) as reranker, \
            open_reward_model("judge", judge_engine=tiny_engine) as judge:
        for model in (score_head_model, reranker, judge):
            text = model.describe()
            assert text and "\n" not in text and model.kind in text.replace("LLM judge", "judge")

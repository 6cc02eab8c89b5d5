"""The three backends: a score head over the last hidden state, a reranker's classification
head (RANK pooling), and an instruct model asked a yes/no rubric question (the judge)."""

from __future__ import annotations

import math

import llama_cpp
import numpy as np

from playground.engine import LocalEngine
from playground.errors import UnsupportedModelError
from playground.reward.decoder import Decoder
from playground.reward.interface import KIND_JUDGE, KIND_RERANKER, KIND_SCORE_HEAD, RewardModel

DEFAULT_RUBRIC = "Is the response helpful, correct and honest? Answer yes or no."
JUDGE_PROMPT = "Question:\n{prompt}\n\nResponse:\n{response}\n\n{rubric}"
"""What the judge reads in its user turn, rendered with its own chat template."""
JUDGE_RAW_SUFFIX = "\nAnswer:"
"""Ends the judge's input when the model has no chat template (a base model)."""
YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")

QWEN3_RERANK_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)
# Qwen3-Reranker's documented prompt (huggingface.co/Qwen/Qwen3-Reranker-0.6B, "Usage"), in the
# form llama.cpp's convert_hf_to_gguf.py stores as the file's "rerank" chat template.
QWEN3_RERANK_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n<Instruct>: " + QWEN3_RERANK_INSTRUCTION + "\n<Query>: {query}\n"
    "<Document>: {document}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
)
# llama.cpp applies a softmax to the RANK output of these architectures only (llm_graph's RANK
# pooling); the others return the classification head's raw logits.
RANK_SOFTMAX_ARCHS = frozenset({"qwen3", "qwen3vl"})


def conversation_tokens(engine: LocalEngine, prompt: str, response: str) -> list[int]:
    """What a score head reads, as the model was trained: the conversation in its own chat
    template with no generation prompt, tokenized with special tokens parsed; the last token of
    the rendered text is the one pooled (for Qwen3 templates the "\n" after <|im_end|>, for
    Llama 3 <|eot_id|>). Reward training reads the same tokens."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return engine.chat_tokens(messages, add_generation_prompt=False)


class ScoreHeadModel(RewardModel):
    """A sequence-classification reward model: head . h + bias, h from LAST pooling."""

    kind = KIND_SCORE_HEAD

    def __init__(self, engine: LocalEngine, decoder: Decoder, *, head: np.ndarray, bias: float,
                 source: str | None, owns_engine: bool = True) -> None:
        super().__init__(engine, decoder, owns_engine=owns_engine)
        self.head = head.astype(np.float64)
        self.bias = bias
        self.source = source

    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        return conversation_tokens(self.engine, prompt, response)

    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        return float(self.head @ output.astype(np.float64) + self.bias), ()

    @property
    def _wrapping(self) -> str:
        return "its chat template"

    def describe(self) -> str:
        source = f", from {self.source}" if self.source else ""
        return (f"score-head reward model {self._model_line()}: score = head . h + {self.bias:g} "
                f"(head of {self.head.size:,} values{source}), h = the final hidden state of the "
                "conversation's last token in the model's chat template")


class RerankerModel(RewardModel):
    """A classifier with llama.cpp RANK pooling: the prompt is the query, the response the
    document."""

    kind = KIND_RERANKER

    def __init__(self, engine: LocalEngine, decoder: Decoder, *, labels: tuple[str, ...],
                 template: str | None, template_origin: str, rubric: str = "",
                 owns_engine: bool = True) -> None:
        super().__init__(engine, decoder, owns_engine=owns_engine)
        self.rubric = rubric
        self.labels = labels
        self.template = template
        """With {query} and {document}; None for the [BOS] query [EOS][SEP] document [EOS] pair."""
        self._template_origin = template_origin
        self._softmax = engine.info.architecture in RANK_SOFTMAX_ARCHS
        lowered = [label.lower() for label in labels]
        self._yes_no = (lowered.index("yes"), lowered.index("no")) if len(labels) == 2 else None

    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        if self.template is not None:
            # llama.cpp's server (format_prompt_rerank): fill the template, parse special tokens,
            # add none.
            text = self.template.replace("{query}", prompt).replace("{document}", response)
            return self.engine.model.tokenize(text, add_special=False, parse_special=True)
        # llama.cpp's server without a rerank template: [BOS] query [EOS] [SEP] document [EOS],
        # each marker as the vocabulary asks (bert: [CLS] q [SEP] d [SEP]; XLM-R: <s> q </s></s>
        # d </s>), the texts tokenized without special tokens so neither can fake a separator.
        model = self.engine.model
        v = model.vocab
        query = model.tokenize(prompt, add_special=False, parse_special=False)
        document = model.tokenize(response, add_special=False, parse_special=False)
        eos = llama_cpp.llama_vocab_eos(v)
        if eos < 0:
            eos = llama_cpp.llama_vocab_sep(v)
        add_eos = llama_cpp.llama_vocab_get_add_eos(v)
        tokens = [llama_cpp.llama_vocab_bos(v)] if llama_cpp.llama_vocab_get_add_bos(v) else []
        tokens += query
        if add_eos:
            tokens.append(eos)
        if llama_cpp.llama_vocab_get_add_sep(v):
            tokens.append(llama_cpp.llama_vocab_sep(v))
        tokens += document
        if add_eos:
            tokens.append(eos)
        return tokens

    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        raw = tuple(float(x) for x in output)
        if self._yes_no is None:
            return raw[0], raw
        yes, no = self._yes_no
        if self._softmax:
            # Probabilities: log-odds, finite down to float32's smallest normal probability.
            tiny = float(np.finfo(np.float32).tiny)
            return math.log(max(raw[yes], tiny)) - math.log(max(raw[no], tiny)), raw
        return raw[yes] - raw[no], raw

    @property
    def _wrapping(self) -> str:
        return "the reranker's template" if self.template else "the pair markers"

    def describe(self) -> str:
        labels = "/".join(self.labels)
        if self._yes_no is not None:
            rule = "score = log p(yes) - log p(no)" + (
                " (llama.cpp's softmax over the two labels)" if self._softmax
                else " (the head's logit difference)")
        elif self._softmax:
            rule = ("score = the single output, which llama.cpp's softmax over one label makes "
                    "always 1.0: this file cannot rank")
        else:
            rule = "score = the head's raw output"
        return (f"reranker {self._model_line()} with labels {labels}: {rule}; the prompt is the "
                f"query and the response the document, in {self._template_origin}")


class JudgeModel(RewardModel):
    """An instruct model asked a yes/no rubric question: log P(yes) - log P(no)."""

    kind = KIND_JUDGE

    def __init__(self, engine: LocalEngine, decoder: Decoder, *, rubric: str,
                 owns_engine: bool) -> None:
        super().__init__(engine, decoder, owns_engine=owns_engine)
        self.rubric = rubric
        self.yes_ids = engine.model.single_token_ids(YES_WORDS)
        self.no_ids = engine.model.single_token_ids(NO_WORDS)
        if not self.yes_ids or not self.no_ids:
            raise UnsupportedModelError(
                f"{engine.path.name}: its vocabulary has no single token for "
                f"{'yes' if not self.yes_ids else 'no'}, which the judge reads"
            )

    def _input_tokens(self, prompt: str, response: str) -> list[int]:
        content = JUDGE_PROMPT.format(prompt=prompt, response=response, rubric=self.rubric)
        if not self.engine.chat_template:
            return self.engine.tokenize(content + JUDGE_RAW_SUFFIX)
        messages = [{"role": "user", "content": content}]
        return self.engine.chat_tokens(messages)

    def _score(self, output: np.ndarray) -> tuple[float, tuple[float, ...]]:
        # Every spelling of yes (and of no) that is one token counts: the model may answer
        # "Yes" or " yes"; logsumexp adds their probabilities.
        row = output.astype(np.float64)
        top = row.max()
        log_z = top + math.log(np.exp(row - top).sum())
        log_yes = _logsumexp(row[list(self.yes_ids)]) - log_z
        log_no = _logsumexp(row[list(self.no_ids)]) - log_z
        return float(log_yes - log_no), (float(log_yes), float(log_no))

    @property
    def _wrapping(self) -> str:
        return "the judge's rubric and template"

    def describe(self) -> str:
        def pieces(ids: tuple[int, ...]) -> str:
            return ", ".join(repr(self.engine.token_bytes(i).decode("utf-8", "replace"))
                             for i in ids)

        template = "its chat template" if self.engine.chat_template else "raw text (no template)"
        return (f"LLM judge {self._model_line()}: score = log P(yes) - log P(no) for its next "
                f"token after the rubric {self.rubric!r}, in {template}; "
                f"yes = {pieces(self.yes_ids)}; no = {pieces(self.no_ids)}")



def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))

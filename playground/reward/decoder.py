"""Batched decoding for scoring: many inputs in one unified KV cache, one output each."""

from __future__ import annotations

from collections.abc import Callable

import llama_cpp
import numpy as np

from playground.engine import MEMORY_HEADROOM, LocalEngine, available_memory, default_threads
from playground.errors import InvalidRequestError, PlaygroundError, ResourceError
from playground.handles import (
    MICRO_BATCH,
    Entry,
    LlamaBatch,
    LlamaContext,
    LlamaModel,
    decode_slices,
)

MAX_SEQUENCES = 64
"""Responses decoded together at most; more are scored in further decodes."""
TAIL = 2
"""Tokens of each input decoded with outputs on: its last (the one read) and one more, so that
no decode holds a single token (see MICRO_BATCH)."""
DECODE_BATCH = 8 * MICRO_BATCH
"""Tokens per llama_decode call in causal scoring contexts. In embedding mode llama.cpp computes
and stores n_vocab logits for every token (measured: 390 MB more for 2,100 tokens of SmolLM2):
a decode of a whole 4,096-token context would take 2.5 GB for a 152k Qwen3 vocabulary. Only
each input's TAIL tokens are decoded in embedding mode now, and micro-batches are MICRO_BATCH
tokens anyway, so small decodes cost nothing."""



class Decoder:
    """A llama.cpp context that decodes many token sequences together and reads one output per
    sequence: the pooled embedding (LAST or RANK pooling) or the last token's logits.

    Causal models: the tokens all inputs share are decoded once on sequence 0 and copied to the
    others (`llama_memory_seq_cp` in a unified KV cache), then every input's own tokens go into
    one decode as its own sequence, as many inputs per decode as the context holds. Encoders
    (bert) see a whole micro-batch at once, which would make an input's result depend on its
    neighbours (see `MICRO_BATCH`), so each input gets its own decode.
    """

    def __init__(self, model: LlamaModel, *, n_ctx: int, kv_bytes_per_token: int,
                 n_threads: int | None, embeddings: bool, causal: bool,
                 pooling: int = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED, width: int = 0) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.causal = causal
        self.embeddings = embeddings
        self.width = width
        needed = n_ctx * kv_bytes_per_token
        available = available_memory()
        if causal and available is not None and needed > available * MEMORY_HEADROOM:
            raise ResourceError(
                f"a scoring context of {n_ctx:,} tokens needs {needed / 2**30:.1f} GiB of KV cache "
                f"but only {available / 2**30:.1f} GiB of memory is available"
            )
        # An encoder must see each input in one decode and one micro-batch; causal models take
        # their inputs in slices (see _decode_all) and micro-batches of MICRO_BATCH.
        self.n_batch = min(n_ctx, DECODE_BATCH) if causal else n_ctx
        # + 1: the shared prefix's sequence. llama.cpp needs n_batch outputs >= n_seq_max.
        n_seq_max = min(MAX_SEQUENCES + 1, self.n_batch) if causal else 1
        self.max_sequences = max(1, n_seq_max - 1)
        threads = n_threads or default_threads()[1]  # scoring is prompt processing: every core
        self._ctx = LlamaContext(model, n_ctx=n_ctx, n_batch=self.n_batch,
                                 n_ubatch=MICRO_BATCH if causal else n_ctx, n_seq_max=n_seq_max,
                                 n_threads=threads, n_threads_batch=threads,
                                 embeddings=embeddings, pooling=pooling)
        self._batch = LlamaBatch(self.n_batch)
        self._open = True

    @classmethod
    def last_hidden_state(cls, engine: LocalEngine, n_threads: int | None) -> Decoder:
        """A decoder of each input's last hidden state over the engine's causal model: what a
        score head reads."""
        return cls(engine.model, n_ctx=engine.n_ctx, kv_bytes_per_token=engine.kv_bytes_per_token,
                   n_threads=n_threads, embeddings=True, pooling=llama_cpp.LLAMA_POOLING_TYPE_LAST,
                   width=engine.info.embedding_length, causal=True)

    @property
    def open(self) -> bool:
        return self._open

    def close(self) -> None:
        self._open = False
        self._batch.close()
        self._ctx.close()

    def run(
        self,
        inputs: list[list[int]],
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray | None]:
        """One output per input (None for those not reached before `cancel` returned True)."""
        if not self.open:
            raise PlaygroundError("this reward model is closed")
        results: list[np.ndarray | None] = [None] * len(inputs)
        if not inputs:
            return results
        if any(not tokens for tokens in inputs):
            raise InvalidRequestError("an input to score has no tokens")
        cancelled = cancel or (lambda: False)
        ctx = self._ctx
        ctx.clear()
        shared = _shared_prefix(inputs) if self.causal and len(inputs) > 1 else 0
        first_seq = 1 if shared else 0
        # Only each input's last token is read. Tokens before its last TAIL go in with no output
        # and, for a causal model, with embeddings off: in embedding mode llama.cpp makes every
        # token an output and computes its n_vocab logits (and the last layer) for nothing.
        # The KV cache gets the same values either way.
        tail = TAIL if self.causal else None
        prefix = [(t, i, 0, False) for i, t in enumerate(inputs[0][:shared])]
        if not self._decode_all(prefix, {}, results, cancelled, embeddings=False):
            return results
        done = 0
        for chunk in self._chunks(inputs, shared):
            body: list[Entry] = []
            ends: list[Entry] = []
            last_of: dict[int, tuple[int, int]] = {}
            for j, index in enumerate(chunk):
                seq = first_seq + j
                if shared:
                    ctx.copy_sequence(0, seq)
                own = inputs[index][shared:]
                split = max(0, len(own) - tail) if tail else 0
                body += [(token, shared + k, seq, False) for k, token in enumerate(own[:split])]
                ends += [(token, shared + k, seq, self.embeddings or k == len(own) - 1)
                         for k, token in enumerate(own[split:], split)]
                last_of[len(ends) - 1] = (seq, index)
            finished = (self._decode_all(body, {}, results, cancelled, embeddings=False)
                        and self._decode_all(ends, last_of, results, cancelled,
                                             embeddings=self.embeddings))
            if shared:
                for j in range(len(chunk)):
                    ctx.remove(first_seq + j)
            else:
                ctx.clear()
            if not finished:
                break
            done += len(chunk)
            if progress is not None:
                progress(done, len(inputs))
        return results

    def _decode_all(
        self,
        entries: list[Entry],
        last_of: dict[int, tuple[int, int]],
        results: list[np.ndarray | None],
        cancelled: Callable[[], bool],
        *,
        embeddings: bool,
    ) -> bool:
        """Decode `entries` in slices of n_batch tokens, reading the output of each sequence
        whose last token (`last_of`: entry -> (sequence, input index)) a slice held. Slices
        bound llama.cpp's output buffer, which in embedding mode holds n_vocab logits for every
        token. False when cancelled."""
        if not entries:
            return True
        if self.causal and self.embeddings:
            self._ctx.set_embeddings(embeddings)
        bounds = decode_slices(len(entries), self.n_batch) if self.causal else [(0, len(entries))]
        for start, end in bounds:
            if cancelled():
                return False
            part = entries[start:end]
            self._batch.decode(self._ctx, part)
            for e in range(start, start + len(part)):
                if e in last_of:
                    seq, index = last_of[e]
                    results[index] = self._read(seq, e - start)
        return True

    def _chunks(self, inputs: list[list[int]], shared: int) -> list[list[int]]:
        """Input indices, packed in order into decodes that fit the context."""
        if not self.causal:
            return [[i] for i in range(len(inputs))]
        capacity = self.n_ctx - shared
        chunks: list[list[int]] = []
        used = capacity + 1
        for i, tokens in enumerate(inputs):
            need = len(tokens) - shared
            if used + need > capacity or len(chunks[-1]) >= self.max_sequences:
                chunks.append([])
                used = 0
            chunks[-1].append(i)
            used += need
        return chunks

    def _read(self, seq: int, batch_index: int) -> np.ndarray:
        if self.embeddings:
            return self._ctx.pooled(seq, self.width)
        return self._ctx.logits(batch_index).copy()


def _shared_prefix(inputs: list[list[int]]) -> int:
    """Tokens every input starts with, leaving each at least two of its own: its last is the
    one read, and a decode of one token could take another kernel path (see MICRO_BATCH)."""
    first = inputs[0]
    limit = min(len(tokens) for tokens in inputs) - 2
    n = 0
    while n < limit and all(tokens[n] == first[n] for tokens in inputs):
        n += 1
    return n

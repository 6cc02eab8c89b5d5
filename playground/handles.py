"""One small class per llama.cpp handle, each freeing its handle in exactly one place.

As llama-cpp-python's `_internals.py` does: `LlamaModel` (the weights and their vocabulary),
`LlamaContext` (a KV cache and compute buffers over a model) and `LlamaBatch` (a reusable
`llama_batch`). Each frees its handle through `weakref.finalize`, so an exception, a forgotten
`close()` or the end of the interpreter all free it once, in the right order: a context keeps
its model alive, and finalizers left at exit run newest first, contexts before their model.

The engine, the reward decoder and the grammar constraint are built on these; nothing else
calls `llama_*_free` or tokenizes through the C API. Not thread-safe: llama.cpp handles stay on
the thread that uses them.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
import weakref
from collections import deque
from collections.abc import Iterable

import llama_cpp
import numpy as np

from playground.errors import PlaygroundError, ResourceError

Entry = tuple[int, int, int, bool]
"""One token of a decode: (token, position, sequence, wants its output)."""

MICRO_BATCH = 32
"""Tokens per llama.cpp micro-batch (n_ubatch) in every context of a causal model (an encoder
sees each input in one micro-batch): what makes a token's numbers the same whichever decode
holds it, so that a prompt read whole or after a cached prefix, a sample alone or beside
others, a text teacher-forced and a response scored alone or in a batch all agree.

llama.cpp's CPU flash attention computes each query row alone, in the same order whatever else
shares the micro-batch, except on two paths (the source's tiled path and `use_split_kv_path`):
a micro-batch of 64 tokens or more goes through a tiled kernel (float32 accumulators, where the
row kernel accumulates in float16), and a micro-batch of one token over a KV cache view of 512
cells or more is split into one chunk per thread (with one thread it sums as the row kernel
does). Measured on the 2-core CPU with SmolLM2 Q4_1: the judge's log P(yes) for a 92-token
input was -2.694 read in one 512-token micro-batch and -2.593 in micro-batches of 32 (-2.661
with the first 91 tokens cached, the last decoded alone); a response scored beside others had a
hidden state up to 0.8 (2 %) away from the same response scored alone; a lone sample's steps
past 512 cells with two threads drifted up to 0.06 nats from the same tokens teacher-forced.
Micro-batches of 32 tokens avoid the first path; `decode_slices` (and the engine's guess that goes
with a lone sample's step) never leave one token alone in a micro-batch, which avoids the second.
(Flash attention off was worse: different from about 17 tokens on, and 4-8x slower.) With one
thread, reading 512 prompt tokens took 5.3 s in micro-batches of 32 against 4.8 s in one of 512.
"""


def decode_slices(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of the decodes for n tokens: at most `size` each (a multiple of
    MICRO_BATCH), and none whose last micro-batch would hold a single token unless n is 1."""
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    if not bounds:
        return bounds
    start, end = bounds[-1]
    if (end - start) % MICRO_BATCH == 1 and n > 1:
        if end - start > 1:
            bounds[-1:] = [(start, end - 2), (end - 2, end)]
        else:
            bounds[-2:] = [(bounds[-2][0], start - 1), (start - 1, end)]
    return bounds

# llama.cpp's log: kept in memory so that a failed load can say why, printed only on request.
_LOG: deque[str] = deque(maxlen=200)
_LOG_COUNT = [0]  # lines ever logged: a mark stays valid after old lines fall off the deque


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    line = text.decode("utf-8", errors="replace")
    _LOG.append(line)
    _LOG_COUNT[0] += 1
    if os.environ.get("PLAYGROUND_LLAMA_LOG"):
        sys.stderr.write(line)


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def log_mark() -> int:
    return _LOG_COUNT[0]


def log_since(mark: int) -> str:
    """What llama.cpp logged since `mark` (as far as the memory of 200 lines holds it)."""
    new = min(_LOG_COUNT[0] - mark, len(_LOG))
    return "".join(list(_LOG)[-new:]) if new > 0 else ""


class LlamaModel:
    """Loaded weights and their vocabulary: tokenizing, token bytes, special tokens."""

    def __init__(self, handle: llama_cpp.llama_model_p) -> None:
        """Wrap a handle from `llama_model_load_from_file` (not null); this object owns it."""
        self.handle = handle
        self.vocab = llama_cpp.llama_model_get_vocab(handle)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.size_bytes = int(llama_cpp.llama_model_size(handle))
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self._pieces: dict[int, bytes] = {}
        self._finalizer = weakref.finalize(self, llama_cpp.llama_model_free, handle)

    def close(self) -> None:
        self._finalizer()

    def tokenize(self, text: str, *, add_special: bool = True,
                 parse_special: bool = True) -> list[int]:
        """Token ids of `text`; with `parse_special`, markers such as <|im_start|> are tokens."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity,
                                         add_special, parse_special)
            if n >= 0:
                return list(buf[:n])
            capacity = -n

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The token's bytes (control tokens are empty unless `special`)."""
        if not special and token in self._pieces:
            return self._pieces[token]
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        piece = buf.raw[:n]
        if not special:
            self._pieces[token] = piece
        return piece

    def special_text(self, token: int) -> str:
        """A special token as text for a chat template (BOS, EOS); "" when the model has none."""
        return self.token_bytes(token, special=True).decode("utf-8", "replace") if token >= 0 \
            else ""

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def single_token_ids(self, words: Iterable[str]) -> tuple[int, ...]:
        """The ids of every spelling of `words` (bare and after a space) that is one token."""
        ids = set()
        for word in words:
            for text in (word, " " + word):
                tokens = self.tokenize(text, add_special=False, parse_special=False)
                if len(tokens) == 1:
                    ids.add(tokens[0])
        return tuple(sorted(ids))

    def chat_template(self, name: str | None = None) -> str | None:
        """The model's chat template of that name (None: the default one), as stored."""
        stored = llama_cpp.llama_model_chat_template(self.handle, name.encode() if name else None)
        return stored.decode("utf-8", "replace") if stored else None

    def classifier_labels(self) -> tuple[str, ...]:
        """The labels of the classification head that RANK pooling applies (none: empty)."""
        return tuple(
            (llama_cpp.llama_model_cls_label(self.handle, i) or f"label_{i}".encode()).decode(
                "utf-8", "replace")
            for i in range(int(llama_cpp.llama_model_n_cls_out(self.handle)))
        )


class LlamaContext:
    """A llama.cpp context over a model: its KV cache, memory operations and outputs.

    Every context of the project has a unified KV cache (sequences share the prompt's cells and
    the whole context), flash attention on and, for causal models, micro-batches of MICRO_BATCH
    tokens: without flash attention, llama.cpp's CPU logits depend on how many tokens share a
    decode (up to ~0.25 nats on SmolLM2 Q4_1), so batched samples, single runs and
    teacher-forced rescoring would disagree. `flash_attention=False` exists only for the
    demonstration that shows this happening (`playground.demos.host`).
    """

    def __init__(self, model: LlamaModel, *, n_ctx: int, n_batch: int, n_ubatch: int,
                 n_seq_max: int, n_threads: int, n_threads_batch: int,
                 embeddings: bool = False,
                 pooling: int = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
                 flash_attention: bool = True) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch
        params.n_seq_max = n_seq_max
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch
        params.embeddings = embeddings
        params.pooling_type = pooling
        params.no_perf = True
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        mark = log_mark()
        handle = llama_cpp.llama_init_from_model(model.handle, params)
        if not handle:
            said = log_since(mark).strip().splitlines()
            raise ResourceError(f"llama.cpp could not create a context of {n_ctx:,} tokens "
                                f"({said[-1] if said else 'out of memory?'})")
        self.model = model  # keeps the weights alive while this context is
        self.handle = handle
        self.n_ctx = n_ctx
        self.flash_attention = flash_attention
        self.cells_decoded = 0
        """Tokens decoded since the last clear: a bound on the highest KV cell in use, because
        llama.cpp always fills the lowest free cell (its search starts at a head that removals
        move back to the lowest freed cell)."""
        self.memory = llama_cpp.llama_get_memory(handle)
        self._threads = (n_threads, n_threads_batch)
        self._finalizer = weakref.finalize(self, llama_cpp.llama_free, handle)
        deadline = self._deadline = [math.inf]  # a list, so that the callback holds no self
        self._abort = llama_cpp.ggml_abort_callback(
            lambda _data: time.perf_counter() > deadline[0])

    def close(self) -> None:
        self._finalizer()

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        """llama.cpp uses `n_threads` for one-token steps and `n_threads_batch` for larger ones;
        changing them between decodes costs nothing, but each call logs a line, which costs
        about 0.1 ms through the log callback: so only a change is passed on."""
        if (n_threads, n_threads_batch) != self._threads:
            llama_cpp.llama_set_n_threads(self.handle, n_threads, n_threads_batch)
            self._threads = (n_threads, n_threads_batch)

    def set_deadline(self, deadline: float | None) -> None:
        """Abort decodes that are still running at `time.perf_counter()` `deadline` (None:
        never). llama.cpp calls the check after every graph node, which costs about a
        microsecond each, so it is installed only while a deadline is set."""
        if deadline is None:
            llama_cpp.llama_set_abort_callback(self.handle, _NO_ABORT, None)
        else:
            self._deadline[0] = deadline
            llama_cpp.llama_set_abort_callback(self.handle, self._abort, None)

    def set_embeddings(self, on: bool) -> None:
        llama_cpp.llama_set_embeddings(self.handle, on)

    def clear(self) -> None:
        if self.memory:
            llama_cpp.llama_memory_clear(self.memory, True)
        self.cells_decoded = 0

    def lone_token_may_split(self) -> bool:
        """Whether a one-token decode now could take the split flash-attention kernel (see
        MICRO_BATCH): llama.cpp views min(n_ctx, max(256, the highest cell in use rounded up
        to 256)) KV cells, and splits a lone token over a view of 512 or more."""
        return self.flash_attention and self.n_ctx >= 512 and self.cells_decoded + 1 > 256

    def copy_sequence(self, source: int, target: int) -> None:
        llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def remove(self, seq: int, start: int = -1, end: int = -1) -> None:
        """Drop sequence `seq`'s cells from position `start` to `end` (-1: open-ended)."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, start, end)

    def keep_prefix(self, seq: int, n: int) -> None:
        """Keep only sequence `seq`'s first `n` positions. Where that sequence was decoded
        first after a clear (or kept so), those n cells are the lowest n, so the bound on the
        highest cell in use comes down to n."""
        llama_cpp.llama_memory_seq_keep(self.memory, seq)
        llama_cpp.llama_memory_seq_rm(self.memory, seq, n, -1)
        self.cells_decoded = n

    def logits(self, index: int) -> np.ndarray:
        """A view of one output's logits (-1: the last); valid until the next decode."""
        pointer = llama_cpp.llama_get_logits_ith(self.handle, index)
        return np.ctypeslib.as_array(pointer, shape=(self.model.n_vocab,))

    def pooled(self, seq: int, width: int) -> np.ndarray:
        """A copy of sequence `seq`'s pooled embedding. llama.cpp writes `width` floats
        (n_cls_out for RANK pooling); anything after them in its buffer is stale memory."""
        pointer = llama_cpp.llama_get_embeddings_seq(self.handle, seq)
        if not pointer:
            raise PlaygroundError("llama.cpp returned no pooled output for a sequence")
        return np.ctypeslib.as_array(pointer, shape=(width,)).copy()


class LlamaBatch:
    """A reusable `llama_batch` of up to `capacity` tokens, one sequence id each."""

    def __init__(self, capacity: int) -> None:
        self._batch = llama_cpp.llama_batch_init(capacity, 0, 1)
        self._finalizer = weakref.finalize(self, llama_cpp.llama_batch_free, self._batch)

    def close(self) -> None:
        self._finalizer()

    def decode(self, ctx: LlamaContext, entries: list[Entry], *,
               within: float | None = None) -> bool:
        """One llama_decode of `entries` (at most `capacity`); a full KV cache is a
        ResourceError. With `within`, a decode still running after that many seconds is
        aborted, its KV cells dropped, and False returned: the same entries can be decoded
        again."""
        batch = self._batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        ctx.cells_decoded += len(entries)  # also when it fails: a bound may only be too high
        mark = log_mark()
        if within is None:
            code = llama_cpp.llama_decode(ctx.handle, batch)
        else:
            ctx.set_deadline(time.perf_counter() + within)
            try:
                code = llama_cpp.llama_decode(ctx.handle, batch)
            finally:
                ctx.set_deadline(None)
            if code == 2:
                # llama.cpp drops the cells of the micro-batch it aborted, not those of the
                # micro-batches before it in the same decode: drop them all, so that the same
                # entries can be decoded again.
                first: dict[int, int] = {}
                for _token, pos, seq, _logits in entries:
                    first[seq] = min(pos, first.get(seq, pos))
                for seq, pos in first.items():
                    ctx.remove(seq, pos)
                # The cells it filled, the lowest free ones, are free again: the bound on the
                # highest cell in use is what it was (a prompt's aborted probe made lone steps
                # take guesses 40 tokens early).
                ctx.cells_decoded -= len(entries)
                return False
        if code == 1:
            raise ResourceError("the context is full: no room left in the KV cache")
        if code != 0:
            said = log_since(mark).strip().splitlines()
            raise PlaygroundError(f"llama.cpp failed to decode (error {code})"
                                  + (f": {said[0].strip()}" if said else ""))
        return True


_NO_ABORT = llama_cpp.ggml_abort_callback()  # a null function pointer: no abort check

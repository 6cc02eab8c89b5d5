"""The llama.cpp engine: load a GGUF, tokenize, and stream N samples with exact logprobs.

One mechanism serves single generation and best-of-N: the prompt is decoded once on sequence 0,
its KV cells are shared with sequences 1..N-1 (`llama_memory_seq_cp` in a unified KV cache), and
each step decodes one token for every live sequence in a single `llama_decode`. After each decode
the logits row of each sequence is read straight from llama.cpp (no `logits_all`), so the raw
log-softmax, rank, entropy and alternatives cost tens of microseconds per token.

`LocalEngine` is the first implementation of `playground.engine_api.Engine`. It is not
thread-safe: llama.cpp contexts must stay on one thread. The GUI gives it a single long-lived
worker thread; the CLI and tests use it directly.
"""

from __future__ import annotations

import codecs
import ctypes
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import llama_cpp
import numpy as np

from playground import paths
from playground.chat import chat_messages, render_chat
from playground.engine_api import Capabilities
from playground.errors import (
    InvalidRequestError,
    ModelFileError,
    PlaygroundError,
    ResourceError,
    UnsupportedModelError,
)
from playground.gguf_file import GGUFHeader, ModelInfo, model_info, read_header
from playground.handles import (
    MICRO_BATCH,
    Entry,
    LlamaBatch,
    LlamaContext,
    LlamaModel,
    decode_slices,
    log_mark,
    log_since,
)
from playground.records import (
    Alternative,
    Event,
    Run,
    RunEnd,
    RunStats,
    SampleEnd,
    TokenRecord,
)
from playground.sampling import (
    MAX_ALTERNATIVES,
    Constraint,
    Draw,
    GrammarConstraint,
    Sampler,
    SamplingParams,
    raw_stats,
)
from playground.threads import ThreadChooser, candidate_counts, kind_of

MAX_SAMPLES = 32
DEFAULT_CONTEXT = 4096
PROMPT_BATCH = 512
FORCED_BATCH = 32
# Room left for llama.cpp's compute buffers and the rest of the app when sizing the KV cache.
MEMORY_HEADROOM = 0.8


# ---------------------------------------------------------------------------------------------
# Backends: what this llama.cpp build can run on.


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    type: str
    """'cpu', 'gpu', 'igpu' or 'accel'."""
    memory_total: int
    memory_free: int


@dataclass(frozen=True)
class BackendInfo:
    gpu_offload: bool
    """Whether this llama.cpp build can offload layers to a GPU at all."""
    backends: tuple[str, ...]
    """Registered ggml backends, e.g. ('CPU',) or ('CUDA', 'CPU')."""
    devices: tuple[Device, ...]

    @property
    def accelerator(self) -> str:
        """The name a user knows: CPU, CUDA, Metal, Vulkan, ..."""
        return next((b for b in self.backends if b != "CPU"), "CPU")

    def to_json(self) -> dict:
        return {
            "gpu_offload": self.gpu_offload,
            "accelerator": self.accelerator,
            "backends": list(self.backends),
            "devices": [d.__dict__ for d in self.devices],
        }


_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


def backend_info() -> BackendInfo:
    """Read the ggml backend registry (llama-cpp-python does not bind it, so ctypes does)."""
    from llama_cpp import _ggml

    lib = _ggml.libggml
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    for name, restype, argtypes in [
        ("ggml_backend_reg_count", size_t, []),
        ("ggml_backend_reg_get", vp, [size_t]),
        ("ggml_backend_reg_name", ctypes.c_char_p, [vp]),
        ("ggml_backend_dev_count", size_t, []),
        ("ggml_backend_dev_get", vp, [size_t]),
        ("ggml_backend_dev_name", ctypes.c_char_p, [vp]),
        ("ggml_backend_dev_description", ctypes.c_char_p, [vp]),
        ("ggml_backend_dev_type", ctypes.c_int, [vp]),
        ("ggml_backend_dev_memory", None, [vp, ctypes.POINTER(size_t), ctypes.POINTER(size_t)]),
    ]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    backends = tuple(
        lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)).decode()
        for i in range(lib.ggml_backend_reg_count())
    )
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = size_t(0), size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        devices.append(
            Device(
                name=lib.ggml_backend_dev_name(dev).decode(),
                description=(lib.ggml_backend_dev_description(dev) or b"").decode(),
                type=_DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "other"),
                memory_total=total.value,
                memory_free=free.value,
            )
        )
    return BackendInfo(bool(llama_cpp.llama_supports_gpu_offload()), backends, tuple(devices))


# ---------------------------------------------------------------------------------------------
# Resources


def default_threads() -> tuple[int, int]:
    """(decode threads to start from, threads of teacher forcing).

    Decodes start at half the logical cores (about the physical ones, llama.cpp's own advice;
    one on 2 cores, the count that stays fast beside a busy process) and then follow the
    measured speed (`playground.threads`). Teacher forcing reads many tokens per decode, which
    is compute-bound: it takes every core.
    """
    cores = os.cpu_count() or 1
    return max(1, min(8, cores // 2)), cores


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation, or None where it cannot be told."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def kv_bytes_per_token(header: GGUFHeader) -> int:
    """Bytes of f16 KV cache one token takes in every layer."""
    meta = header.metadata
    arch = meta.get("general.architecture", "")
    layers = int(meta.get(f"{arch}.block_count", 0))
    heads = int(meta.get(f"{arch}.attention.head_count", 1) or 1)
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    kv_heads = max(kv_heads) if isinstance(kv_heads, list) else int(kv_heads or heads)
    embd = int(meta.get(f"{arch}.embedding_length", 0))
    key = int(meta.get(f"{arch}.attention.key_length", embd // heads))
    value = int(meta.get(f"{arch}.attention.value_length", embd // heads))
    return layers * kv_heads * (key + value) * 2


def default_model_path() -> Path:
    problem = paths.bundled_model_problem()
    if problem:
        raise ModelFileError(problem)
    path = paths.embedded_model_path()
    if path is None:
        raise ModelFileError(
            "no model chosen and the embedded SmolLM2 model is not installed "
            "(run `python3 dev.py setup`, or pass a .gguf file)"
        )
    return path


# ---------------------------------------------------------------------------------------------
# The engine


def load(
    path: Path | str | None = None,
    n_gpu_layers: int = 0,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    progress: Callable[[float], bool] | None = None,
) -> LocalEngine:
    """Check and load a GGUF model (the embedded default when `path` is None).

    `n_ctx` is the context window of one sample (prompt + new tokens); `n_gpu_layers` -1 offloads
    every layer. `progress` gets 0..1 while loading and may return False to cancel.
    Raises a `PlaygroundError` subclass with a one-line message for every bad input.
    """
    if n_threads is not None:
        n_threads = _checked_threads(n_threads)
    path = Path(path) if path else default_model_path()
    header = read_header(path)
    info = model_info(path, header)
    _check_kind(path, header, info)
    if n_ctx is None:
        n_ctx = min(info.context_length or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
    if n_ctx < 16:
        raise InvalidRequestError(f"a context of {n_ctx} tokens is too small")
    if info.context_length and n_ctx > info.context_length:
        raise ResourceError(
            f"a context of {n_ctx:,} tokens is more than the {info.context_length:,} "
            f"this model was trained for"
        )
    _check_memory(n_ctx * kv_bytes_per_token(header), f"a context of {n_ctx:,} tokens")

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    callback = None
    if progress is not None:

        @llama_cpp.llama_progress_callback
        def callback(fraction: float, _user_data: ctypes.c_void_p) -> bool:
            return bool(progress(float(fraction)))

        params.progress_callback = callback
    mark = log_mark()
    handle = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    log = log_since(mark)
    if not handle:
        raise _load_error(path, info, log)
    model = LlamaModel(handle)
    offloaded = re.search(r"offloaded (\d+)/(\d+) layers to GPU", log)
    decode_threads, batch_threads = default_threads()
    return LocalEngine(
        model,
        path,
        header,
        info,
        n_ctx=n_ctx,
        threads=ThreadChooser((n_threads,)) if n_threads else
        ThreadChooser(candidate_counts(), start=decode_threads),
        n_threads_batch=max(n_threads or 0, batch_threads),
        layers_offloaded=int(offloaded.group(1)) if offloaded else 0,
    )


def _checked_threads(n_threads: int) -> int:
    """At least 1, and at most the logical cores: llama.cpp starts every thread it is given, and
    100,000 of them crashed it while 5,000 took forever to decode one token."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise InvalidRequestError(f"threads must be a whole number, 1 or more, not {n_threads!r}")
    return min(n_threads, os.cpu_count() or 1)


def _check_kind(path: Path, header: GGUFHeader, info: ModelInfo) -> None:
    if info.kind == "adapter":
        raise ModelFileError(f"{path.name}: this is a LoRA adapter, not a model")
    if info.architecture == "clip" or info.kind == "mmproj":
        raise ModelFileError(
            f"{path.name}: this is a multimodal projector (mmproj), not a language model"
        )
    if not header.tensors:
        raise ModelFileError(f"{path.name}: this file has no weights (a vocabulary only?)")


def _check_memory(needed: int, what: str) -> None:
    available = available_memory()
    if available is not None and needed > available * MEMORY_HEADROOM:
        raise ResourceError(
            f"{what} needs {needed / 2**30:.1f} GiB of KV cache but only "
            f"{available / 2**30:.1f} GiB of memory is available"
        )


def _load_error(path: Path, info: ModelInfo, log: str) -> PlaygroundError:
    if "unknown model architecture" in log:
        return UnsupportedModelError(
            f"{path.name}: architecture '{info.architecture}' is not supported by this llama.cpp"
        )
    reason = next(
        (line.strip() for line in reversed(log.splitlines()) if "error" in line.lower()), ""
    )
    reason = re.sub(r"^\w+: ", "", reason)
    return ModelFileError(
        f"{path.name}: llama.cpp could not load it" + (f" ({reason})" if reason else "")
    )


class LocalEngine:
    """A loaded model and the llama.cpp context that runs it, in this process. See the module
    docstring."""

    capabilities = Capabilities(max_alternatives=MAX_ALTERNATIVES, max_samples=MAX_SAMPLES,
                                exact_entropy=True, teacher_forcing=True, grammar=True,
                                hidden_states=True)

    def __init__(
        self,
        model: LlamaModel,
        path: Path,
        header: GGUFHeader,
        info: ModelInfo,
        *,
        n_ctx: int,
        threads: ThreadChooser,
        n_threads_batch: int,
        layers_offloaded: int,
    ) -> None:
        self.path = path
        self.info = info
        self.n_ctx = n_ctx
        self.threads = threads
        """Picks each generation step's thread count (one count when pinned by --threads)."""
        self.n_threads = threads.last
        """The decode threads of everything but generation steps (teacher forcing)."""
        self.n_threads_batch = n_threads_batch
        self.layers_offloaded = layers_offloaded
        self.kv_bytes_per_token = kv_bytes_per_token(header)
        self.chat_template: str | None = header.metadata.get("tokenizer.chat_template")
        self.model = model
        """The loaded weights, also for other contexts on them (the reward judge, a grammar).
        Valid until close(); use it on the engine's thread."""
        self.n_vocab = model.n_vocab
        self.memory_bytes = model.size_bytes
        self._ctx: LlamaContext | None = None
        self._cached_prompt: list[int] = []
        """The prompt whose KV cells sequence 0 holds (see _reuse_prefix)."""
        self._batch = LlamaBatch(max(PROMPT_BATCH, MAX_SAMPLES))
        self.notices: list[str] = []  # a local model has nothing to say of its runs

    @property
    def decode_threads(self) -> int:
        """The thread count generation steps use now (see `ThreadChooser.last`)."""
        return self.threads.last

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        self._free_context()
        self._batch.close()
        self.model.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens ----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Token ids of `text`; special markers such as <|im_start|> are parsed as tokens."""
        return self.model.tokenize(text, add_special=add_special)

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The token's bytes (control tokens are empty unless `special`)."""
        return self.model.token_bytes(token, special=special)

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return self.model.is_end_of_generation(token)

    def prompt_tokens(self, prompt: str, *, chat: bool, system: str | None = None) -> list[int]:
        """The tokens the model sees: the model's chat template around `prompt`, or raw text."""
        if not chat:
            return self.tokenize(prompt)
        return self.chat_tokens(chat_messages(prompt, system))

    def chat_tokens(self, messages: list[dict[str, str]], *,
                    add_generation_prompt: bool = True) -> list[int]:
        """The model's chat template around `messages`, rendered in the sandbox and tokenized
        with special tokens parsed (as Hugging Face's apply_chat_template then tokenizer())."""
        model = self.model
        text = render_chat(self.chat_template, messages, bos_token=model.special_text(model.bos),
                           eos_token=model.special_text(model.eos),
                           add_generation_prompt=add_generation_prompt)
        tokens = self.tokenize(text)
        if len(tokens) > 1 and tokens[0] == tokens[1] == model.bos:
            del tokens[0]  # the template wrote BOS and tokenize added another
        return tokens

    def grammar_constraint(self, gbnf: str) -> Callable[[], Constraint]:
        """A factory of per-sample grammar constraints; a grammar llama.cpp cannot parse is an
        InvalidRequestError here, before any sample starts."""
        try:
            GrammarConstraint(self.model, gbnf).close()
        except ValueError as error:
            raise InvalidRequestError(f"the grammar is not valid GBNF ({error})") from None
        return lambda: GrammarConstraint(self.model, gbnf)

    def forget_prompt(self) -> None:
        """Drop the cached prompt, so that the next run reads its prompt from scratch."""
        self._cached_prompt = []

    # -- generation ------------------------------------------------------------------------

    def start_run(
        self,
        prompt: str,
        params: SamplingParams,
        n: int = 1,
        *,
        chat: bool = True,
        system: str | None = None,
        same_seed: bool = False,
    ) -> Run:
        """A new run, checked and with its seed resolved, ready for `generate`. Sample i gets
        seed + i, or with `same_seed` every sample the same seed (and so the same text)."""
        params = params.validate().resolved()
        tokens = self.prompt_tokens(prompt, chat=chat, system=system)
        self._check_fits(len(tokens), n, params.max_tokens)
        return Run.start(self.info, params, prompt, tokens, n, chat=chat, system=system,
                         same_seed=same_seed)

    def run(self, prompt: str, params: SamplingParams, n: int = 1, **kwargs) -> Run:
        """Generate a whole run (no streaming)."""
        run = self.start_run(prompt, params, n, **kwargs)
        for event in self.generate(run):
            run.add(event)
        return run

    def generate(
        self,
        run: Run,
        cancel: Callable[[], bool] | None = None,
        constraint: Callable[[], Constraint] | None = None,
        *,
        flash_attention: bool = True,
    ) -> Iterator[Event]:
        """Stream the run's samples: TokenRecords as they are drawn, a SampleEnd as each sample
        stops, and a RunEnd last. `cancel` is polled before every decode: when it returns True,
        every live sample ends as 'cancelled' before another token is computed. `constraint`
        makes one `Constraint` per sample (e.g. a grammar) that limits what it may draw;
        `flash_attention` is as in `stream`."""
        return self.stream(run.prompt_token_ids, run.params, len(run.samples), cancel,
                           seeds=[s.seed for s in run.samples], constraint=constraint,
                           flash_attention=flash_attention)

    def stream(
        self,
        prompt: list[int],
        params: SamplingParams,
        n: int = 1,
        cancel: Callable[[], bool] | None = None,
        *,
        seeds: list[int] | None = None,
        constraint: Callable[[], Constraint] | None = None,
        flash_attention: bool = True,
    ) -> Iterator[Event]:
        """See `generate`; `seeds` are the samples' seeds (default: params.seed + i).
        `flash_attention=False` decodes in a context without it, where the logits depend on the
        batch (see `LlamaContext`): only the demonstration of that effect asks for it."""
        params = params.validate()
        if params.seed is None:
            raise InvalidRequestError("resolve the seed first (SamplingParams.resolved)")
        if seeds is None:
            seeds = [params.seed + i for i in range(n)]
        self._check_fits(len(prompt), n, params.max_tokens)
        cancelled = cancel or (lambda: False)
        started = time.perf_counter()
        # A lone sample's guess (see _decode_timed) goes at most where its last token would.
        ctx = self._context(len(prompt) + n * params.max_tokens, flash_attention)

        history = prompt[-params.repeat_last_n :] if params.repeat_last_n else []
        sequences = [
            _Sequence(i, Sampler(replace(params, seed=seed), deque(history)),
                      constraint() if constraint else None, prompt)
            for i, seed in enumerate(seeds)
        ]
        if not self._decode_prompt(ctx, prompt, self._reuse_prefix(ctx, prompt), cancelled):
            for seq in sequences:
                yield seq.end("cancelled")
            yield RunEnd(RunStats(len(prompt), 0, time.perf_counter() - started))
            return
        for seq in sequences[1:]:
            ctx.copy_sequence(0, seq.index)

        first = ctx.logits(-1)
        rows = [first] * n
        live = sequences
        position = len(prompt)
        # A lone sample's guess of its next token, decoded with its last token, and the row
        # after the guess (see _decode_timed).
        ahead: tuple[int, np.ndarray] | None = None
        new_tokens = 0
        stops = [s.encode("utf-8") for s in params.stop]
        ends = self.is_end_of_generation
        while live:
            still = []
            for seq, row in zip(live, rows, strict=True):
                draw = seq.draw(row, params.top_needed, ends)
                if draw is None:
                    yield seq.end("stop")
                    continue
                new_tokens += 1
                yield self._record(seq, draw.token, row, draw.logprob, params.top_logprobs,
                                   draw.kept)
                end = seq.finished(stops, params.max_tokens)
                if end is None:
                    still.append(seq)
                else:
                    yield end
            live = still
            if not live:
                break
            if cancelled():
                for seq in live:
                    yield seq.end("cancelled")
                break
            if ahead is not None:  # only a lone sample guesses, and it is still live
                guess, row = ahead
                ahead = None
                if live[0].sampler.history[-1] == guess:
                    # The guess was drawn: its cell is in place and the row after it is known.
                    rows = [row]
                    position += 1
                    continue
                ctx.remove(live[0].index, position)
            rows, ahead = self._decode_step(ctx, live, position)
            position += 1
        yield RunEnd(RunStats(len(prompt), new_tokens, time.perf_counter() - started))

    def teacher_force(
        self, prompt: list[int], tokens: list[int], top_logprobs: int = 0
    ) -> list[TokenRecord]:
        """Score a given continuation token by token: the raw-distribution facts of each token of
        `tokens` after `prompt`, as if the model had generated them (sampling_logprob is nan)."""
        if not prompt:
            raise InvalidRequestError("teacher forcing needs at least one prompt token")
        self._check_fits(len(prompt), 1, max(len(tokens), 1))
        ctx = self._context(len(prompt) + len(tokens))
        ctx.clear()
        self._cached_prompt = []
        ctx.set_threads(self.n_threads, self.n_threads_batch)
        everything = prompt + tokens
        first = len(prompt) - 1  # the position whose logits predict tokens[0]
        # A token more goes with it where it would be decoded alone (see MICRO_BATCH).
        forced = max(0, min(first, len(everything) - 3))
        for start, end in decode_slices(forced, PROMPT_BATCH):  # the prompt, as generation reads it
            self._batch.decode(ctx, [(everything[p], p, 0, False) for p in range(start, end)])
        # The scored tokens go in small decodes: each of them brings n_vocab logits.
        seq = _Sequence(0, None)
        records: list[TokenRecord] = []
        for start, end in decode_slices(len(everything) - 1 - forced, FORCED_BATCH):
            positions = range(forced + start, forced + end)
            self._batch.decode(ctx, [(everything[p], p, 0, p >= first) for p in positions])
            records += [self._record(seq, everything[p + 1], ctx.logits(i), math.nan, top_logprobs)
                        for i, p in enumerate(positions) if p >= first]
        return records

    def next_logits(self, tokens: list[int]) -> np.ndarray:
        """The raw logits (a copy) of the token that would follow `tokens`: the full
        distribution at one moment of a generation, for the sampling lab. The KV cells of the
        prefix it shares with the last prompt are kept, so a moment of the last run costs a
        decode of the tokens after its prompt, and the next run reuses this one's cells."""
        self._check_fits(len(tokens), 1, 1)
        ctx = self._context(len(tokens) + 1)
        self._decode_prompt(ctx, tokens, self._reuse_prefix(ctx, tokens), lambda: False)
        return ctx.logits(-1).copy()

    # -- internals -------------------------------------------------------------------------

    def _check_fits(self, prompt_tokens: int, n: int, max_tokens: int) -> None:
        if not 1 <= n <= MAX_SAMPLES:
            raise InvalidRequestError(f"N must be between 1 and {MAX_SAMPLES}, not {n}")
        if prompt_tokens == 0:
            raise InvalidRequestError("the prompt is empty")
        if prompt_tokens + max_tokens > self.n_ctx:
            raise ResourceError(
                f"the prompt is {prompt_tokens:,} tokens; with {max_tokens:,} new tokens it needs "
                f"{prompt_tokens + max_tokens:,} but the context holds {self.n_ctx:,}"
            )
        total = prompt_tokens + n * max_tokens
        if self._ctx is None or total > self._ctx.n_ctx:
            _check_memory(total * self.kv_bytes_per_token,
                          f"{n} samples of {max_tokens:,} tokens")

    def _context(self, tokens: int, flash_attention: bool = True) -> LlamaContext:
        """A context with room for `tokens` KV cells, reused while it is big enough (and has
        flash attention as asked)."""
        ctx = self._ctx
        if ctx is not None and ctx.n_ctx >= tokens and ctx.flash_attention == flash_attention:
            return ctx
        self._free_context()
        size = -(-tokens // 256) * 256
        self._ctx = LlamaContext(self.model, n_ctx=size, n_batch=min(PROMPT_BATCH, size),
                                 n_ubatch=MICRO_BATCH, n_seq_max=MAX_SAMPLES,
                                 n_threads=self.n_threads, n_threads_batch=self.n_threads_batch,
                                 flash_attention=flash_attention)
        self._cached_prompt = []
        return self._ctx

    def _free_context(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def _reuse_prefix(self, ctx: LlamaContext, prompt: list[int]) -> int:
        """Keep the KV cells of the longest prefix that the last prompt shares with this one.

        Running the same prompt again (another seed, other settings) is the common case, and
        re-reading a long prompt costs more than sampling a short answer. The last two prompt
        tokens are always decoded again: the last for its logits, and one more because a decode
        of one token could take another attention kernel (see MICRO_BATCH). Returns how many
        prompt tokens are reused.
        """
        common = 0
        for cached, wanted in zip(self._cached_prompt, prompt, strict=False):
            if cached != wanted:
                break
            common += 1
        common = min(common, len(prompt) - 2)
        self._cached_prompt = []
        if common <= 0:
            ctx.clear()
            return 0
        ctx.keep_prefix(0, common)  # sequence 0 holds the prompt, decoded first
        return common

    def _decode_prompt(
        self,
        ctx: LlamaContext,
        prompt: list[int],
        start: int,
        cancelled: Callable[[], bool],
    ) -> bool:
        """Decode prompt[start:] on sequence 0, with logits for the last token only."""
        for first, end in decode_slices(len(prompt) - start, PROMPT_BATCH):
            if cancelled():
                return False
            first, end = start + first, start + end
            # A prompt read again (another seed) is its last two tokens: a batched step.
            self._decode_timed(ctx, [(prompt[i], i, 0, i == len(prompt) - 1)
                                     for i in range(first, end)],
                               "prompt" if end - first > 2 else None)
        self._cached_prompt = list(prompt)
        return True

    def _decode_step(self, ctx: LlamaContext, live: list[_Sequence],
                     position: int) -> tuple[list[np.ndarray], tuple[int, np.ndarray] | None]:
        """Decode the last token of every live sample at `position`: the rows their next tokens
        are drawn from, and for a lone sample whose step took a guess along, (the guess, the
        row after it)."""
        seq = live[0]

        def spare(needed: bool) -> Entry | None:
            token = seq.guess(sure_only=not needed)
            return None if token is None else (token, position + 1, seq.index, True)

        guess = self._decode_timed(
            ctx, [(s.sampler.history[-1], position, s.index, True) for s in live],
            spare=spare if len(live) == 1 else None)
        rows = [ctx.logits(j) for j in range(len(live))]
        return rows, (guess[0], ctx.logits(1)) if guess else None

    def _decode_timed(self, ctx: LlamaContext, entries: list[Entry], kind: str | None = None,
                      *, spare: Callable[[bool], Entry | None] | None = None) -> Entry | None:
        """Decode with the thread count the chooser plans, and tell it how long that took; a
        probe that runs past its limit is aborted and decoded again with the current count.

        The count is the one measured fastest now (see playground.threads): spin-waiting
        threads on a busy machine made steps 20x slower with 2 threads on 2 cores, while on an
        idle one 2 threads are almost twice as fast.

        One token alone over 512 KV cells or more takes llama.cpp's split flash-attention
        kernel, which sums the cells in one chunk per thread (see MICRO_BATCH): with two
        threads a lone sample drifted 0.06 nats from the same text teacher-forced or decoded
        beside another. A second token in the step keeps it on the row kernel, so a lone
        sample's step then takes the `spare` along, `spare(True)`: the sample's guess of its
        next token, one position on. When the sampler draws the guess, the step after it is
        already done. A second token makes a step 1.5-1.8 times as long, whatever it is, so
        elsewhere (one thread, or before the cache's view can reach 512 cells) the step takes
        only a sure guess along, `spare(False)`, if there is one: on SmolLM2's samples, sure
        guesses were right 93-95% of the time, and the rest 14-16%. Returns the spare entry
        where it was decoded (its logits follow the entries'), else None.
        """
        kind = kind or kind_of(len(entries))
        while True:
            threads, limit = self.threads.plan(len(entries), kind)
            ctx.set_threads(threads, threads)
            extra = spare(threads > 1 and ctx.lone_token_may_split()) if spare is not None \
                else None
            if extra is not None and limit is not None:
                limit *= (len(entries) + 1) / len(entries)  # the limit is per token decoded
            started = time.perf_counter()
            done = self._batch.decode(ctx, [*entries, extra] if extra else entries, within=limit)
            # Timed per token decoded: a step with the spare does the work of two.
            self.threads.measured(len(entries) + (extra is not None), threads,
                                  time.perf_counter() - started, kind,
                                  aborted=not done)
            if done:
                return extra

    def _record(
        self, seq: _Sequence, token: int, row: np.ndarray, sampling_logprob: float, k: int,
        kept: int = 0,
    ) -> TokenRecord:
        stats = raw_stats(row, token, k)
        token_bytes = self.model.token_bytes  # the hot path: one lookup, not one per alternative
        piece = token_bytes(token)
        return TokenRecord(
            sample=seq.index,
            position=len(seq.starts),
            id=token,
            bytes=piece,
            text=seq.push(piece),
            logprob=stats.logprob,
            sampling_logprob=sampling_logprob,
            rank=stats.rank,
            entropy=stats.entropy,
            top=tuple(
                Alternative(int(i), token_bytes(int(i)).decode("utf-8", errors="replace"),
                            float(lp))
                for i, lp in zip(stats.top_ids, stats.top_logprobs, strict=True)
            ),
            kept=kept,
        )


class _Sequence:
    """One sample's decoding state: its sampler and the bytes and characters produced so far."""

    def __init__(self, index: int, sampler: Sampler | None,
                 constraint: Constraint | None = None, prompt: list[int] | None = None) -> None:
        self.index = index
        self.sampler = sampler
        self.constraint = constraint
        self._prompt = prompt or []
        self._drawn: list[int] = []
        self._after: dict[tuple[int, ...], tuple[int, bool]] = {}
        """What followed each run of one, two and three tokens the latest time, and whether the
        same token followed it the time before (see `guess`)."""
        self._indexed = 0
        self._tail: list[int] = []
        """The last three tokens indexed in `_after`."""
        self.produced = bytearray()
        self.starts: list[int] = []
        """Byte offset where each kept token begins."""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def draw(self, row: np.ndarray, top_needed: int,
             ends: Callable[[int], bool]) -> Draw | None:
        """Draw the next token from `row` and accept it, or None where the sample ends instead
        (end of generation, or a constraint that allows nothing more)."""
        allowed = row if self.constraint is None else self.constraint.apply(row, top_needed)
        if self.constraint is not None and not np.isfinite(allowed).any():
            return None
        draw = self.sampler.sample(allowed)
        if ends(draw.token):
            return None
        self.sampler.accept(draw.token)
        self._drawn.append(draw.token)
        if self.constraint is not None:
            self.constraint.accept(draw.token)
        return draw

    def guess(self, *, sure_only: bool = False) -> int | None:
        """A guess of the token after the last one: what followed the last three tokens the
        latest time they occurred, else the last two, else the last one, else the last one
        again (prompt lookup, as llama.cpp's n-gram drafts). With `sure_only`, only a sure
        guess, else None: the last two tokens occurred at least twice before, and the same
        token followed them the latest two times. The prompt is indexed on the first call,
        then each token drawn since."""
        new = self._drawn[self._indexed - len(self._prompt):] if self._indexed \
            else self._prompt + self._drawn
        tail, after = self._tail, self._after
        for token in new:
            for n in range(1, len(tail) + 1):
                key = tuple(tail[-n:])
                before = after.get(key)
                after[key] = (token, before is not None and before[0] == token)
            tail = [*tail[-2:], token]
        self._tail, self._indexed = tail, self._indexed + len(new)
        if sure_only:
            found = after.get(tuple(tail[-2:]))
            return found[0] if found is not None and found[1] else None
        for n in range(len(tail), 0, -1):
            found = after.get(tuple(tail[-n:]))
            if found is not None:
                return found[0]
        return tail[-1]

    def finished(self, stops: list[bytes], max_tokens: int) -> SampleEnd | None:
        """How the sample ends after its last token (a stop string, the length), or None."""
        cut = self.find_stop(stops)
        if cut is not None:
            return self.end("stop", cut)
        if len(self.starts) >= max_tokens:
            return self.end("length")
        return None

    def push(self, piece: bytes) -> str:
        """Append a token's bytes; return the characters it completes."""
        self.starts.append(len(self.produced))
        self.produced += piece
        return self._decoder.decode(piece)

    def find_stop(self, stops: list[bytes]) -> int | None:
        """Byte offset of the earliest stop string that the last token completed."""
        last = self.starts[-1]
        found = [
            i for stop in stops
            if (i := self.produced.find(stop, max(0, last - len(stop) + 1))) >= 0
        ]
        return min(found) if found else None

    def end(self, reason: str, cut: int | None = None) -> SampleEnd:
        if cut is None:
            return SampleEnd(self.index, reason, self._text(len(self.produced)), len(self.starts))
        kept = sum(1 for start in self.starts if start < cut)
        return SampleEnd(self.index, reason, self._text(cut), kept)

    def _text(self, end: int) -> str:
        # Not final: a character cut off by the end of the sample is dropped, not shown as U+FFFD,
        # so that the text stays the join of the tokens' texts.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(bytes(self.produced[:end]), final=False)

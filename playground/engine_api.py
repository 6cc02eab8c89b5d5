"""What every engine offers: the interface the GUI, the CLI, scoring and the demonstrations use.

The local llama.cpp engine (`playground.engine.LocalEngine`) is the first implementation; the
engine that talks to a server (`playground.remote.RemoteEngine`) is the second. Engines differ
in what they can give, so callers ask `capabilities` instead of assuming: a server may cap the
alternatives at 20, compute entropy from the top k only, or have no teacher forcing or grammar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from playground.errors import UnsupportedModelError
from playground.gguf_file import ModelInfo
from playground.records import Event, Run, TokenRecord
from playground.sampling import Constraint, SamplingParams


@dataclass(frozen=True)
class Capabilities:
    """What an engine can give; a view that needs more says why it is off."""

    max_alternatives: int
    """Alternatives per token it can report (SamplingParams.top_logprobs at most)."""
    max_samples: int
    """Samples one run may have."""
    exact_entropy: bool
    """Entropy over the whole vocabulary; False: a lower bound from the top alternatives."""
    teacher_forcing: bool
    """Scoring a given continuation token by token (`teacher_force`)."""
    grammar: bool
    """Constraining samples with a GBNF grammar (`grammar_constraint`)."""
    hidden_states: bool
    """Last-token hidden states, which score-head reward models read."""
    reproducible_seed: bool = True
    """The same seed gives the same sample; False where a server was seen to ignore `seed`."""

    def require(self, name: str, what: str) -> None:
        """Raise a one-line error naming `what` needs the capability `name` when it is off."""
        if not getattr(self, name):
            raise UnsupportedModelError(f"{what} needs {name.replace('_', ' ')}, which this "
                                        "engine does not offer")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Engine(Protocol):
    """A loaded model that tokenizes and streams samples with logprobs. Not thread-safe: use
    one engine on one thread (the GUI's engine thread)."""

    path: Path
    info: ModelInfo
    n_ctx: int
    """Tokens one sample may hold: prompt and new tokens."""
    n_vocab: int
    chat_template: str | None
    memory_bytes: int
    layers_offloaded: int
    notices: list[str]
    """What the user should know about this engine's runs (a server that ignores seeds, a proxy
    that buffers its stream), appended as found, each once."""
    decode_threads: int | None
    """The thread count generation steps use now; None where the engine chooses none."""

    @property
    def capabilities(self) -> Capabilities: ...

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]: ...

    def token_bytes(self, token: int, *, special: bool = False) -> bytes: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def prompt_tokens(self, prompt: str, *, chat: bool, system: str | None = None) -> list[int]:
        """The tokens the model sees: its chat template around `prompt`, or the raw text."""
        ...

    def start_run(self, prompt: str, params: SamplingParams, n: int = 1, *, chat: bool = True,
                  system: str | None = None, same_seed: bool = False) -> Run:
        """A new run, checked and with its seed resolved, ready for `generate`."""
        ...

    def run(self, prompt: str, params: SamplingParams, n: int = 1, **kwargs: Any) -> Run:
        """A whole run, without streaming."""
        ...

    def generate(self, run: Run, cancel: Callable[[], bool] | None = None,
                 constraint: Callable[[], Constraint] | None = None) -> Iterator[Event]:
        """Stream the run's samples: TokenRecords, a SampleEnd per sample, a RunEnd last."""
        ...

    def teacher_force(self, prompt: list[int], tokens: list[int],
                      top_logprobs: int = 0) -> list[TokenRecord]:
        """Score `tokens` after `prompt` token by token (capability `teacher_forcing`)."""
        ...

    def next_logits(self, tokens: list[int]) -> np.ndarray:
        """The raw logits row of the token after `tokens`, over the whole vocabulary (the
        sampling lab reshapes it); needs capability `exact_entropy`, a full row."""
        ...

    def grammar_constraint(self, gbnf: str) -> Callable[[], Constraint]:
        """A factory of per-sample constraints for `generate` (capability `grammar`)."""
        ...

    def forget_prompt(self) -> None:
        """Drop any cached prompt, so that the next run reads its prompt from scratch."""
        ...

    def close(self) -> None: ...

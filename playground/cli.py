"""The `playground` command: the GUI with no subcommand, the same jobs headless with one.

Every subcommand prints JSON with --json. Bad input ends with a one-line message on stderr and
a non-zero exit status, never a traceback (set PLAYGROUND_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from playground import __version__
from playground.errors import PlaygroundError
from playground.sampling import SamplingParams


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _generation_options() -> argparse.ArgumentParser:
    defaults = SamplingParams()
    p = _Parser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", type=Path, help="a .gguf file (default: the embedded SmolLM2)")
    g.add_argument("--n-gpu-layers", type=int, default=0, metavar="L",
                   help="layers to offload to the GPU; -1 for all (default 0)")
    g.add_argument("--ctx", type=int, default=None, metavar="N",
                   help="context window of one sample in tokens (default: min(trained, 4096))")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="decode threads (default: measured rule, see README)")
    g = p.add_argument_group("prompt")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", "-p", help="the prompt text")
    src.add_argument("--prompt-file", type=Path, metavar="F", help="read the prompt from a file")
    g.add_argument("--raw", action="store_true",
                   help="send the text as it is, without the model's chat template")
    g.add_argument("--system", "-s", help="system prompt (chat mode)")
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", "-t", type=float, default=defaults.temperature,
                   help=f"0 is greedy (default {defaults.temperature})")
    g.add_argument("--top-k", type=int, default=defaults.top_k,
                   help=f"0 is off (default {defaults.top_k})")
    g.add_argument("--top-p", type=float, default=defaults.top_p,
                   help=f"1 is off (default {defaults.top_p})")
    g.add_argument("--min-p", type=float, default=defaults.min_p,
                   help=f"0 is off (default {defaults.min_p})")
    g.add_argument("--repeat-penalty", type=float, default=defaults.repeat_penalty,
                   help=f"1 is off (default {defaults.repeat_penalty})")
    g.add_argument("--seed", type=int, default=None, help="default: a fresh random seed")
    g.add_argument("--max-tokens", type=int, default=defaults.max_tokens,
                   help=f"new tokens at most (default {defaults.max_tokens})")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when the text contains this (repeatable)")
    g.add_argument("--top-logprobs", type=int, default=defaults.top_logprobs, metavar="K",
                   help=f"alternatives recorded per token (default {defaults.top_logprobs})")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="playground", description="See how language models sample.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    gen = _generation_options()

    p = sub.add_parser("generate", parents=[gen], help="generate one sample with logprobs")
    p.set_defaults(handler=cmd_generate)

    p = sub.add_parser("sample", parents=[gen], help="generate N samples and rank them")
    p.add_argument("-n", type=int, default=8, help="number of samples (1-32, default 8)")
    p.add_argument("--rank", default="mean-logprob",
                   choices=["mean-logprob", "sum-logprob", "normalized-logprob", "vote"],
                   help="how to rank the samples (default mean-logprob)")
    p.set_defaults(handler=cmd_sample)

    p = sub.add_parser("info", help="describe a model, with its scale figures")
    p.add_argument("model", nargs="?", type=Path, help="a .gguf file (default: embedded)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("models", help="list the models found on this machine")
    p.add_argument("paths", nargs="*", type=Path, help="more files or folders to look in")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args) or 0
    except PlaygroundError as error:
        print(f"playground: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0
    except Exception as error:
        if os.environ.get("PLAYGROUND_DEBUG"):
            raise
        print(f"playground: unexpected error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------


def _params(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repeat_penalty=args.repeat_penalty,
        seed=args.seed,
        max_tokens=args.max_tokens,
        stop=tuple(args.stop),
        top_logprobs=args.top_logprobs,
    ).validate()


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return args.prompt
    try:
        return args.prompt_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PlaygroundError(f"cannot read the prompt file: {error}") from None


def _engine(args: argparse.Namespace):
    from playground.engine import load

    return load(args.model, n_gpu_layers=args.n_gpu_layers, n_ctx=args.ctx, n_threads=args.threads)


def _interruptible(events: Iterator, cancel_flag: list[bool]) -> Iterator:
    """Ctrl-C ends the run cleanly: the samples so far are kept, marked 'cancelled'."""
    previous = signal.signal(signal.SIGINT, lambda *_: cancel_flag.__setitem__(0, True))
    try:
        yield from events
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args: argparse.Namespace, n: int, on_text: Callable[[str], None] | None = None):
    params, prompt = _params(args), _prompt(args)
    engine = _engine(args)
    run = engine.start_run(prompt, params, n, chat=not args.raw, system=args.system)
    flag = [False]
    for event in _interruptible(engine.generate(run, cancel=lambda: flag[0]), flag):
        run.add(event)
        text = getattr(event, "text", None)
        if on_text and text and hasattr(event, "logprob"):
            on_text(text)
    return run


def _print_json(document: dict[str, Any]) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, allow_nan=False,
              default=_json_default, indent=1)
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def cmd_generate(args: argparse.Namespace) -> int:
    def echo(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    run = _run(args, 1, None if args.json else echo)
    sample = run.samples[0]
    if not args.json:
        sys.stdout.write("\n")
        return 0
    document = run.to_json()
    _print_json({
        "model": document["model"],
        "params": document["params"],
        "prompt": run.prompt,
        "prompt_token_ids": run.prompt_token_ids,
        "text": sample.text,
        "tokens": document["samples"][0]["tokens"],
        "finish_reason": sample.finish_reason,
        "stats": document["stats"],
    })
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    run = _run(args, args.n)
    ranking = run.rank(args.rank)
    if args.json:
        document = run.to_json()
        _print_json({
            "model": document["model"],
            "params": document["params"],
            "prompt": run.prompt,
            "samples": document["samples"],
            "ranking": ranking.to_json(),
            **({"vote": run.vote.to_json()} if run.vote else {}),
            "stats": document["stats"],
        })
        return 0
    for place, index in enumerate(ranking.order, 1):
        s = run.samples[index]
        mean = s.all_scores()["mean_logprob"]
        print(f"#{place}  sample {index}  seed {s.seed}  mean logprob {mean:.3f}  "
              f"({s.finish_reason})")
        print("    " + s.text.strip().replace("\n", "\n    ") + "\n")
    if run.vote:
        print(f"vote: {run.vote.answer!r} with {run.vote.share:.0%} of the samples "
              f"(voters {list(run.vote.voters)}, unparsed {list(run.vote.unparsed)})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from playground.engine import backend_info, default_model_path
    from playground.gguf_file import model_info

    info = model_info(args.model or default_model_path())
    backend = backend_info()
    if args.json:
        _print_json({**info.to_json(), "backend": backend.to_json()})
        return 0
    rows = [
        ("name", info.name),
        ("file", info.path),
        ("architecture", info.architecture),
        ("parameters", f"{info.parameters:,} ({_si(info.parameters)})"),
        ("quantization", info.quantization),
        ("file size", f"{info.file_size / 2**20:,.1f} MiB"),
        ("context length", f"{info.context_length:,}"),
        ("vocabulary", f"{info.vocab_size:,}"),
        ("layers", str(info.layers)),
        ("chat template", "yes" if info.has_chat_template else "no"),
        ("license", info.license or "unknown"),
        ("Chinchilla tokens", f"{_si(info.chinchilla_tokens)} (~20 x parameters)"),
        ("training compute", f"{info.training_flops:.2e} FLOPs (~6 x parameters x tokens)"),
        ("backend", f"{backend.accelerator} (GPU offload: {backend.gpu_offload})"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from playground.catalog import discover

    found = discover(args.paths)
    if args.json:
        _print_json({"models": [m.to_json() for m in found]})
        return 0
    for m in found:
        desc = (f"{m.info.name}  {m.info.architecture}  {_si(m.info.parameters)}  "
                f"{m.info.quantization}" if m.info else f"unusable: {m.problem}")
        print(f"[{m.source}] {m.path}\n    {desc}")
    if not found:
        print("no models found; put .gguf files in the models folder or pass a path")
    return 0


def _si(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


if __name__ == "__main__":
    sys.exit(main())

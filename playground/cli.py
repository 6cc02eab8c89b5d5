"""The `playground` command: the GUI with no subcommand, the same jobs headless with one.

Every subcommand prints JSON with --json. Bad input ends with a one-line message on stderr and
a non-zero exit status, never a traceback (set PLAYGROUND_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from playground import __version__
from playground.errors import InvalidRequestError, PlaygroundError, StreamInterrupted
from playground.export import FORMATS
from playground.records import TokenRecord
from playground.sampling import SAMPLER_ORDERS, SamplingParams
from playground.units import human_count, human_size


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _server_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server (instead of a local model; see docs/remote.md)")
    g.add_argument("--server", metavar="URL",
                   help="a llama-server, vLLM or other OpenAI-compatible server "
                        "(https where the URL says so)")
    g.add_argument("--api-key", metavar="KEY",
                   help="sent as a Bearer token (default: $PLAYGROUND_API_KEY)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds the server may stay silent (default 60)")


def _generation_options() -> argparse.ArgumentParser:
    defaults = SamplingParams()
    p = _Parser(add_help=False)
    _server_options(p)
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", type=Path, help="a .gguf file (default: the embedded SmolLM2)")
    g.add_argument("--n-gpu-layers", type=int, default=0, metavar="L",
                   help="layers to offload to the GPU; -1 for all (default 0)")
    g.add_argument("--ctx", type=int, default=None, metavar="N",
                   help="context window of one sample in tokens (default: min(trained, 4096))")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="pin the decode threads (default: the count measured fastest now)")
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
    g.add_argument("--sampler-order", choices=list(SAMPLER_ORDERS),
                   default=defaults.sampler_order,
                   help="when temperature applies: before top-k, top-p and min-p (Hugging Face, "
                        "OpenAI) or after them (llama.cpp) (default "
                        f"{defaults.sampler_order})")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--no-save", action="store_true", help="do not record the run in the history")
    p.add_argument("--db", type=Path, help="history database (default: in the data dir)")
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
                   choices=["mean-logprob", "sum-logprob", "normalized-logprob", "vote", "reward"],
                   help="how to rank the samples (default mean-logprob)")
    p.add_argument("--reward-model", metavar="PATH|URL|judge|server",
                   help="score every sample with this reward model (a score-head or reranker "
                        "GGUF, or a reward server's URL), 'judge' to ask the generator itself "
                        "the rubric, or 'server' for the --server's own reward endpoint")
    p.add_argument("--rubric", help="the judge's yes/no question (default: helpful, correct, "
                                    "honest)")
    p.set_defaults(handler=cmd_sample)

    p = sub.add_parser("score", help="score responses to a prompt with a reward model")
    p.add_argument("--prompt", "-p", required=True)
    p.add_argument("--responses", type=Path, required=True, metavar="FILE.jsonl",
                   help='one {"response": ...} per line')
    p.add_argument("--reward-model", required=True, metavar="PATH|URL|judge|server")
    p.add_argument("--rubric", help="the judge's yes/no question")
    p.add_argument("--model", "-m", type=Path, help="the judge's model (default: embedded)")
    p.add_argument("--n-gpu-layers", type=int, default=0, metavar="L")
    p.add_argument("--json", action="store_true")
    _server_options(p)
    p.set_defaults(handler=cmd_score)

    p = sub.add_parser("probe", help="the probability and rank of candidate continuations")
    p.add_argument("--model", "-m", type=Path, help="a .gguf file (default: the embedded SmolLM2)")
    p.add_argument("--n-gpu-layers", type=int, default=0, metavar="L")
    p.add_argument("--ctx", type=int, default=None, metavar="N")
    p.add_argument("--threads", type=int, default=None, metavar="N")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", "-p", help="the prompt text")
    src.add_argument("--prompt-file", type=Path, metavar="F", help="read the prompt from a file")
    p.add_argument("--raw", action="store_true",
                   help="send the text as it is, without the model's chat template")
    p.add_argument("--system", "-s", help="system prompt (chat mode)")
    p.add_argument("--prefix", default="", metavar="TEXT",
                   help="the start of the answer that the candidates continue")
    p.add_argument("--candidates", required=True, metavar="A,B,C",
                   help='split on commas and kept verbatim: " Paris" (with its space) is not '
                        '"Paris"')
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_probe)

    p = sub.add_parser("reward-pack",
                       help="pack a reward model's backbone GGUF and score head into one GGUF")
    p.add_argument("backbone", type=Path, metavar="BACKBONE.gguf")
    p.add_argument("head", type=Path, metavar="HEAD.npy|HEAD.safetensors")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.gguf")
    p.add_argument("--bias", type=float, default=None,
                   help="the score layer's bias (default: the head file's score.bias, else 0)")
    p.add_argument("--source", help="where the head came from, recorded in the file")
    p.set_defaults(handler=cmd_reward_pack)

    p = sub.add_parser("reward-train",
                       help="train a score-head reward model on preference labels")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", type=Path, metavar="FILE",
                     help="a Label Studio or Argilla export, or a JSONL of {prompt, chosen, "
                          "rejected}")
    src.add_argument("--runs", type=_run_ids, nargs="+", metavar="IDS",
                     help="the preferences labelled on these runs of the history, e.g. 3,4")
    p.add_argument("--backbone", type=Path, metavar="MODEL.gguf",
                   help="the causal LM whose hidden states the head reads (default: embedded)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="RM.gguf")
    p.add_argument("--seed", type=int, default=0,
                   help="the held-out split and the cross-validation folds (default 0)")
    p.add_argument("--n-gpu-layers", type=int, default=0, metavar="L")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="decode threads (default: every core)")
    p.add_argument("--db", type=Path, help="history database (default: in the data dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_reward_train)

    p = sub.add_parser("reward-proof",
                       help="best-of-8 on checkable arithmetic: random, mean logprob, vote and a "
                            "reward model trained on the checker's labels")
    p.add_argument("--model", "-m", type=Path,
                   help="the generator and backbone (default: the embedded SmolLM2)")
    p.add_argument("-o", "--output", type=Path, metavar="RM.gguf",
                   help="the trained reward model (default: proof-rm.gguf in the data dir)")
    p.add_argument("--tasks", type=Path, metavar="FILE.jsonl",
                   help='{"id", "question", "answer"} per line (default: the shipped arithmetic)')
    p.add_argument("--samples", type=Path, metavar="FILE.jsonl",
                   help="read the replies from this file if it exists, else save them there")
    p.add_argument("--seed", type=int, default=17, help="sampling and the split (default 17)")
    p.add_argument("--n-gpu-layers", type=int, default=0, metavar="L")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="scoring decode threads (default: every core)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_reward_proof)

    p = sub.add_parser("info", help="describe a model, with its scale figures")
    p.add_argument("model", nargs="?", type=Path, help="a .gguf file (default: embedded)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("runs", help="list the runs in the history")
    p.add_argument("--search", default="", help="only runs whose prompt, model or tags match")
    p.add_argument("--starred", action="store_true", help="only starred runs")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--db", type=Path, help="history database (default: in the data dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("export", help="export runs for annotation or analysis")
    p.add_argument("run_ids", nargs="+", type=int, metavar="RUN_ID")
    p.add_argument("--format", "-f", required=True, choices=list(FORMATS))
    p.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    p.add_argument("--tokens", action="store_true", help="include token-level logprobs (jsonl)")
    p.add_argument("--ranking", default="mean-logprob",
                   help="ranking that pairs and orders follow (default mean-logprob)")
    p.add_argument("--pairs", default="best-vs-worst", choices=["best-vs-worst", "all-pairs"],
                   help="pairwise export: best against worst, or all pairs up to --max-pairs")
    p.add_argument("--max-pairs", type=int, default=20)
    p.add_argument("--db", type=Path, help="history database (default: in the data dir)")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("import", help="import a JSONL export into the history")
    p.add_argument("file", type=Path)
    p.add_argument("--db", type=Path, help="history database (default: in the data dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("labels", help="human labels: import them into the history")
    labels = p.add_subparsers(dest="labels_command", metavar="ACTION", required=True,
                              parser_class=_Parser)
    q = labels.add_parser("import", help="import a Label Studio or Argilla export, or a JSONL "
                                         "of {prompt, chosen, rejected}")
    q.add_argument("file", type=Path)
    q.add_argument("--db", type=Path, help="history database (default: in the data dir)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_labels_import)

    p = sub.add_parser("agreement",
                       help="how often each ranking agrees with the human labels of runs")
    p.add_argument("--runs", type=_run_ids, nargs="+", metavar="IDS",
                   help="run ids, e.g. 3,4 or 3 4 (default: every labelled run)")
    p.add_argument("--db", type=Path, help="history database (default: in the data dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_agreement)

    p = sub.add_parser("demo", help="run a demonstration from its ready scenario")
    p.add_argument("scenario", nargs="?", metavar="SCENARIO",
                   help="a scenario or demonstration name (see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    p.add_argument("--model", "-m", type=Path, help="a .gguf file (default: the embedded SmolLM2)")
    p.add_argument("--n-gpu-layers", type=int, default=0, metavar="L")
    p.add_argument("--prompt", "-p", help="replace the scenario's prompt (or question)")
    p.add_argument("-n", type=int, help="replace the scenario's number of samples")
    p.add_argument("--temperature", "-t", type=float, help="replace the scenario's temperature")
    p.add_argument("--max-tokens", type=int, help="replace the scenario's max tokens")
    p.add_argument("--seed", type=int, help="default: a fresh random seed")
    p.add_argument("--profile", choices=["small", "medium"],
                   help="the scenario's settings for a model of this size (default: by the "
                        "model's parameters)")
    p.add_argument("--no-judge", action="store_true",
                   help="hallucination: the overlap measure only, without the judge")
    p.add_argument("--base-model", type=Path, metavar="PATH",
                   help="base-vs-instruct: the base GGUF (default: Gemma 3 270M from PyPI)")
    p.add_argument("--sentence", type=int, help="tokens: which parallel sentence (from 0)")
    p.add_argument("--json", action="store_true")
    _server_options(p)
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("screenshot", help="save PNGs of the app after short real runs")
    p.add_argument("out_dir", type=Path, help="folder for the PNG files")
    p.add_argument("--size", type=_screen_size, default=(1440, 900), metavar="WxH",
                   help="the offscreen screen the window fills (default 1440x900)")
    p.set_defaults(handler=cmd_screenshot)

    p = sub.add_parser("models", help="list the models found on this machine, or download one")
    p.add_argument("paths", nargs="*", type=Path, help="more files or folders to look in")
    p.add_argument("--download", metavar="ID",
                   help="download a catalog model from the Hugging Face Hub into the data "
                        "folder, checked against the catalog's sha256 (it resumes an "
                        "unfinished download)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from playground.ui.app import main as gui

            return gui()
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
        sampler_order=args.sampler_order,
    ).validate()


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return args.prompt
    try:
        return args.prompt_file.read_text(encoding="utf-8")
    except OSError as error:
        raise PlaygroundError(f"cannot read the prompt file {args.prompt_file}: "
                              f"{error.strerror}") from None
    except UnicodeDecodeError:
        raise PlaygroundError(f"the prompt file {args.prompt_file} is not UTF-8 text") from None


def _engine(args: argparse.Namespace):
    if args.server:
        return _remote_engine(args)
    from playground.engine import load

    return load(args.model, n_gpu_layers=args.n_gpu_layers, n_ctx=args.ctx, n_threads=args.threads)


def _api_key(args: argparse.Namespace) -> str | None:
    return args.api_key or os.environ.get("PLAYGROUND_API_KEY") or None


def _remote_engine(args: argparse.Namespace):
    """The --server's engine; its notices (an ignored seed, a buffering proxy) go to stderr."""
    from playground.remote import RemoteEngine

    if getattr(args, "model", None):
        raise InvalidRequestError("give either --model or --server, not both")
    if args.timeout <= 0:
        raise InvalidRequestError(f"--timeout must be above 0, not {args.timeout:g}")
    engine = RemoteEngine(args.server, _api_key(args), timeout=args.timeout)
    _say_notices(engine)
    return engine


def _say_notices(engine: Any, said: int = 0) -> None:
    """Print the engine's notices from `said` on."""
    for notice in engine.notices[said:]:
        print(f"playground: note: {notice}", file=sys.stderr)


def _interruptible(events: Iterator, cancel_flag: list[bool]) -> Iterator:
    """Ctrl-C ends the run cleanly: the samples so far are kept, marked 'cancelled'."""
    previous = signal.signal(signal.SIGINT, lambda *_: cancel_flag.__setitem__(0, True))
    try:
        yield from events
    finally:
        signal.signal(signal.SIGINT, previous)


def _store(args: argparse.Namespace):
    """The history, opened (and checked whole) once per command."""
    from playground.store import open_store

    if getattr(args, "opened_store", None) is None:
        store, notice = open_store(args.db)
        if notice:
            print(f"playground: {notice}", file=sys.stderr)
        args.opened_store = store
    return args.opened_store


def _run(args: argparse.Namespace, n: int, on_text: Callable[[str], None] | None = None,
         engine=None):
    """Generate, recording the run in the history as it goes (unless --no-save).
    Returns the run and its id in the history (None when not saved).

    The run is recorded from its first event on: a request that fails before (a context too
    large to allocate, say) leaves nothing in the history."""
    params, prompt = _params(args), _prompt(args)
    store = None if args.no_save else _store(args)
    engine = engine or _engine(args)
    run = engine.start_run(prompt, params, n, chat=not args.raw, system=args.system)
    writer = None
    flag = [False]
    said = len(engine.notices)
    # The writer flushes what it holds even when generation fails half-way.
    with contextlib.ExitStack() as recording:
        try:
            for event in _interruptible(engine.generate(run, cancel=lambda: flag[0]), flag):
                if store and writer is None:
                    writer = recording.enter_context(store.begin(run))
                run.add(event)
                if writer:
                    writer.add(event)
                if on_text and isinstance(event, TokenRecord):
                    on_text(event.text)
        except StreamInterrupted as error:
            where = f" (run {writer.run_id} in the history)" if writer else ""
            raise StreamInterrupted(f"{error}{where}") from None
        finally:
            _say_notices(engine, said)
    return engine, run, writer.run_id if writer else None


def _saved(args: argparse.Namespace, run, run_id: int | None) -> None:
    """Record what was computed after generation (rankings, vote) and say where the run is."""
    if run_id is None:
        return
    _store(args).save_scores(run_id, run)
    if not args.json:
        print(f"(saved as run {run_id})", file=sys.stderr)


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

    engine, run, run_id = _run(args, 1, None if args.json else echo)
    sample = run.samples[0]
    if not args.json:
        sys.stdout.write("\n")
    _saved(args, run, run_id)
    if not args.json:
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
        "run_id": run_id,
        **_server_facts(engine),
    })
    return 0


def _server_facts(engine: Any) -> dict[str, Any]:
    """For a run on a server: what it can give and what the user should know, in the JSON."""
    if engine.info.server is None:
        return {}
    return {"capabilities": engine.capabilities.to_json(), "notices": list(engine.notices)}


def _reward_model(args: argparse.Namespace, engine: Any):
    """The --reward-model: a reward server (its URL, or 'server' for the --server), else what
    open_reward_model opens: a file, or the judge on `engine` (on a server, its logprobs)."""
    from playground.remote_reward import ServerRewardModel, is_server_spec

    spec = args.reward_model
    if spec == "server":
        if not args.server:
            raise InvalidRequestError("--reward-model server needs --server URL")
        spec = args.server
    if is_server_spec(spec):
        if args.rubric is not None:
            raise InvalidRequestError("a server's reward model takes no rubric")
        return ServerRewardModel(spec, _api_key(args), timeout=args.timeout)
    from playground.reward import open_reward_model

    return open_reward_model(spec, judge_engine=engine, rubric=args.rubric,
                             n_gpu_layers=args.n_gpu_layers)


def cmd_sample(args: argparse.Namespace) -> int:
    if args.rank == "reward" and not args.reward_model:
        raise InvalidRequestError("--rank reward needs --reward-model PATH or judge")
    agreement = None
    if args.reward_model:
        from playground.reward import rank_agreement, score_run

        # Opened first: a reward model that cannot be used stops the command before a run
        # is generated and saved.
        engine = _engine(args)
        with _reward_model(args, engine) as reward_model:
            _, run, run_id = _run(args, args.n, engine=engine)
            by_reward = score_run(reward_model, run)
        agreement = {"between": ["reward", "mean-logprob"],
                     **rank_agreement(by_reward, run.rank("mean-logprob"))}
    else:
        engine, run, run_id = _run(args, args.n)
    ranking = run.rank(args.rank)
    _saved(args, run, run_id)
    if args.json:
        document = run.to_json()
        _print_json({
            "model": document["model"],
            "params": document["params"],
            "prompt": run.prompt,
            "samples": document["samples"],
            "ranking": ranking.to_json(),
            **({"vote": run.vote.to_json()} if run.vote else {}),
            **({"agreement": agreement,
                "reward_model": run.reward_models["reward"].to_json()} if agreement else {}),
            "stats": document["stats"],
            "run_id": run_id,
            **_server_facts(engine),
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
    if agreement:
        print(f"reward vs mean logprob: Kendall tau {agreement['kendall_tau']:.2f}, "
              f"same best sample: {'yes' if agreement['top_agrees'] else 'no'}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from playground.engine import load
    from playground.sampling_lab import probe, probe_context, split_candidates

    candidates, prompt = split_candidates(args.candidates), _prompt(args)
    # Local only: a rank out of the whole vocabulary and teacher-forced candidates need the
    # full logits row, which no server sends.
    with load(args.model, n_gpu_layers=args.n_gpu_layers, n_ctx=args.ctx,
              n_threads=args.threads) as engine:
        context = probe_context(engine, prompt, chat=not args.raw, system=args.system,
                                prefix=args.prefix)
        scores = probe(engine, context, candidates)
    if args.json:
        _print_json({"candidates": [s.to_json() for s in scores]})
        return 0
    for s in scores:
        print(f"{s.logprob:9.3f}  rank {s.rank:>6}  {len(s.tokens)} token(s)  {s.text!r}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    responses = _read_responses(args.responses)
    judge = None
    if args.server and args.reward_model == "judge":
        judge = _remote_engine(args)
    elif args.reward_model == "judge" and args.model:
        from playground.engine import load

        judge = load(args.model, n_gpu_layers=args.n_gpu_layers)
    with _reward_model(args, judge) as model:
        results = model.score_detailed(args.prompt, responses)
        if args.json:
            _print_json({"reward_model": model.describe(),
                         "results": [r.to_json() for r in results]})
            return 0
        print(model.describe())
    for r in results:
        print(f"{r.score:9.4f}  {r.response.strip()[:100]!r}")
    return 0


def _read_responses(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise PlaygroundError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise PlaygroundError(f"{path} is not UTF-8 text") from None
    responses = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            responses.append(str(json.loads(line)["response"]))
        except (ValueError, KeyError, TypeError):
            raise PlaygroundError(
                f'{path.name} line {number}: expected a JSON object with "response"') from None
    if not responses:
        raise PlaygroundError(f"{path.name} has no responses")
    return responses


def cmd_reward_pack(args: argparse.Namespace) -> int:
    from playground.reward import pack_reward_model

    out = pack_reward_model(args.backbone, args.head, args.output, bias=args.bias,
                            source=args.source)
    print(f"wrote {out}")
    return 0


def cmd_reward_train(args: argparse.Namespace) -> int:
    from playground.engine import default_model_path
    from playground.labels import preferences_for_runs, read_preferences
    from playground.reward.training import train_reward_model

    if args.labels is not None:
        preferences = read_preferences(args.labels)
    else:
        runs = [run_id for part in args.runs for run_id in part]
        preferences = preferences_for_runs(_store(args), runs)
    report = train_reward_model(preferences, args.backbone or default_model_path(), args.output,
                                seed=args.seed, n_gpu_layers=args.n_gpu_layers,
                                n_threads=args.threads, progress=_progress_line("decoding replies"))
    if args.json:
        _print_json(report.to_json())
        return 0
    print(f"trained on {report.pairs} pairs ({report.prompts} prompts), L2 {report.l2:g} chosen "
          f"by cross-validation over {report.split_by}s")
    print(f"held-out pairwise accuracy {report.held_out_accuracy:.3f} on "
          f"{report.held_out_pairs} pairs; on the training pairs {report.train_accuracy:.3f}")
    print("learning curve (training pairs: held-out accuracy): " + ", ".join(
        f"{point.pairs}: {point.held_out_accuracy:.3f}" for point in report.learning_curve))
    print(f"wrote {report.output} (use it with --reward-model)")
    return 0


def cmd_reward_proof(args: argparse.Namespace) -> int:
    from playground.paths import data_dir
    from playground.reward.proof import METHODS, run_proof

    out = args.output or data_dir() / "proof-rm.gguf"
    lines: dict[str, Callable[[int, int], None]] = {}

    def progress(phase: str, done: int, total: int) -> None:
        lines.setdefault(phase, _progress_line(phase))(done, total)

    document = run_proof(args.model, out, seed=args.seed, tasks=args.tasks, samples=args.samples,
                         n_gpu_layers=args.n_gpu_layers, n_threads=args.threads,
                         progress=progress)
    if args.json:
        _print_json(document)
        return 0
    table, repeated = document["best_of_n"], document["repeated_splits"]
    print(f"best-of-{document['samples_per_question']} accuracy on "
          f"{document['held_out_questions']} held-out questions (trained on "
          f"{document['train_questions']}); then the mean ± sd over {repeated['splits']} more "
          "random splits:")
    for method in METHODS:
        row, more = table[method], repeated["accuracy"][method]
        print(f"  {method:<13} {row['accuracy']:6.1%}  ({row['correct']:g}/{row['questions']})"
              f"   {more['mean']:6.1%} ± {more['sd']:.1%}")
    ahead = repeated["reward_model_minus_mean_logprob"]
    print(f"reward model minus mean logprob, split by split: {ahead['mean']:+.1%} on average "
          f"(at least {ahead['min']:+.1%}), ahead on {ahead['splits_ahead']} of "
          f"{repeated['splits']} splits")
    print(f"reward model: held-out pairwise accuracy "
          f"{document['training']['held_out_accuracy']:.3f}; written to {out}")
    return 0


def _progress_line(what: str) -> Callable[[int, int], None]:
    """Progress on stderr, one line rewritten in place, when stderr is a terminal."""
    def show(done: int, total: int) -> None:
        if sys.stderr.isatty():
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\r{what}: {done}/{total}{end}")
            sys.stderr.flush()
    return show


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
        ("parameters", f"{info.parameters:,} ({human_count(info.parameters)})"),
        ("quantization", info.quantization),
        ("file size", f"{info.file_size / 2**20:,.1f} MiB"),
        ("context length", f"{info.context_length:,}"),
        ("vocabulary", f"{info.vocab_size:,}"),
        ("layers", str(info.layers)),
        ("chat template", "yes" if info.has_chat_template else "no"),
        ("license", info.license or "unknown"),
        ("Chinchilla tokens", f"{human_count(info.chinchilla_tokens)} (~20 x parameters)"),
        ("training compute", f"{info.training_flops:.2e} FLOPs (~6 x parameters x tokens)"),
        ("backend", f"{backend.accelerator} (GPU offload: {backend.gpu_offload})"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    runs = _store(args).list_runs(args.search, starred_only=args.starred, limit=args.limit)
    if args.json:
        _print_json({"runs": [{
            "id": r.id, "created_at": r.created_at.isoformat(), "status": r.status,
            "model": r.model_name, "model_path": r.model_path, "model_sha256": r.model_sha256,
            "prompt": r.prompt, "chat": r.chat, "system": r.system, "samples": r.n_samples,
            "samples_done": r.samples_done, "starred": r.starred, "tags": list(r.tags),
        } for r in runs]})
        return 0
    for r in runs:
        star = "★" if r.starred else " "
        prompt = r.prompt.strip().replace("\n", " ")
        print(f"{r.id:>5} {star} {r.created_at:%Y-%m-%d %H:%M}  {r.status:<11} "
              f"N={r.n_samples:<2} {r.model_name[:24]:<24}  {prompt[:60]}")
    if not runs:
        print("no runs yet")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from playground.export import export_stored, sidecar_path

    count = export_stored(_store(args), args.run_ids, args.format, args.output,
                          include_tokens=args.tokens, ranking=args.ranking,
                          pair_mode=args.pairs, max_pairs=args.max_pairs)
    sidecar = sidecar_path(args.output, args.format)
    beside = f" (and {sidecar.name} beside it)" if sidecar else ""
    print(f"wrote {count} records to {args.output}{beside}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from playground.export import import_jsonl

    ids = import_jsonl(args.file, _store(args))
    if args.json:
        _print_json({"run_ids": ids})
    else:
        print(f"imported {len(ids)} runs: {', '.join(map(str, ids))}")
    return 0


def _run_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a run id or a comma-separated list of them: "
                                         f"{text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("no run id given")
    return ids


def cmd_labels_import(args: argparse.Namespace) -> int:
    from playground.labels import import_labels

    result = import_labels(args.file, _store(args))
    if args.json:
        _print_json(result.to_json())
        return 0
    runs = ", ".join(map(str, result.run_ids)) or "none"
    print(f"read {result.read} labels ({result.added} new); {result.linked} matched samples "
          f"of runs: {runs}")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from playground.agreement import agreement

    runs = [run_id for part in args.runs for run_id in part] if args.runs else None
    result = agreement(_store(args), runs)
    if args.json:
        _print_json(result.to_json())
        return 0
    if not result.runs:
        print("no labelled runs yet: label a best-of-N run in the app, or `playground labels "
              "import FILE`")
        return 0
    print(f"{len(result.runs)} labelled runs, "
          f"{sum(r.labels for r in result.runs)} labels")
    for method in result.methods:
        tally = result.overall[method.key]
        accuracy = "—" if tally.pair_accuracy is None else f"{tally.pair_accuracy:.0%}"
        tau = "—" if tally.kendall_tau is None else f"{tally.kendall_tau:+.2f}"
        print(f"{method.title:<32} pairs {tally.pairs:>5}  agree {accuracy:>4}  "
              f"Kendall tau {tau} over {len(tally.taus)} rankings")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from playground.demos import DEMOS
    from playground.demos.scenario import DemoRequest, find_scenario, profile_for, scenarios

    if args.list or not args.scenario:
        every = scenarios()
        if args.json:
            _print_json({"scenarios": [{"name": s.name, "demo": s.demo, "title": s.title}
                                       for s in every]})
        else:
            for s in every:
                print(f"{s.name:32} {s.title}")
        return 0
    scenario = find_scenario(args.scenario)
    demo = DEMOS[scenario.demo]
    engine = None
    if demo.needs_engine and args.server:
        engine = _remote_engine(args)
    elif demo.needs_engine:
        from playground.engine import load

        engine = load(args.model, n_gpu_layers=args.n_gpu_layers)
    # A demonstration that loads its own models reads the small settings unless told.
    profile = args.profile or (profile_for(engine.info) if engine else "small")
    params, n = scenario.params(profile)
    request = DemoRequest(
        scenario, args.prompt if args.prompt is not None else scenario.prompt,
        _demo_params(args, params), n if args.n is None else args.n, engine, model=args.model,
        judge=not args.no_judge, sentence=args.sentence, base_model=args.base_model)
    document = demo.run(request)
    if engine is not None:
        document = {"model": engine.info.to_json(), **document}
    if args.json:
        _print_json({"scenario": scenario.name, "demo": scenario.demo, "profile": profile,
                     **document})
        return 0
    print(f"{scenario.title}\n\n{scenario.explanation}\n")
    for line in demo.summary(document):
        print(line)
    return 0


def _demo_params(args: argparse.Namespace, params: SamplingParams) -> SamplingParams:
    from dataclasses import replace

    changes = {name: value for name, value in (
        ("temperature", args.temperature), ("max_tokens", args.max_tokens), ("seed", args.seed)
    ) if value is not None}
    return replace(params, **changes).validate()


def _screen_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) >= 640 and int(height) >= 480):
        raise argparse.ArgumentTypeError(f"not a screen size of 640x480 or more: {text!r}")
    return int(width), int(height)


def cmd_screenshot(args: argparse.Namespace) -> int:
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PlaygroundError(f"cannot make the folder {args.out_dir}: {error.strerror}") from None
    from playground.ui.window_system import offscreen_platform

    os.environ.setdefault("QT_QPA_PLATFORM", offscreen_platform(*args.size))
    from playground.ui.screenshots import save_screenshots

    for path in save_screenshots(args.out_dir, args.size):
        print(path)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from playground.catalog import catalog_models, discover

    if args.download:
        return _download(args.download, args.json)
    found = discover(args.paths)
    if args.json:
        _print_json({"models": [m.to_json() for m in found]})
        return 0
    for m in found:
        desc = (f"{m.info.name}  {m.info.architecture}  {human_count(m.info.parameters)}  "
                f"{m.info.quantization}" if m.info else f"unusable: {m.problem}")
        print(f"[{m.source}] {m.path}\n    {desc}")
    if not found:
        print("no models found; put .gguf files in the models folder or pass a path")
    from playground.download import is_downloaded

    more = [m for m in catalog_models() if m.downloadable and not is_downloaded(m)]
    if more:
        print("\nin the catalog, for `playground models --download ID`:")
        for m in more:
            print(f"  {m.id:<24} {human_size(m.size_bytes or 0):>8}  {m.name} ({m.license})")
    return 0


def _download(model_id: str, as_json: bool) -> int:
    from playground.catalog import catalog_model
    from playground.download import download

    model = catalog_model(model_id)
    last = [-1]

    def progress(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent != last[0]:
            last[0] = percent
            end = "\n" if done >= total else ""
            print(f"\r{model.id}: {human_size(done)} of {human_size(total)} ({percent}%)",
                  end=end, file=sys.stderr, flush=True)

    result = download(model, progress)
    if as_json:
        _print_json({"download": result.to_json()})
    else:
        print(result.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

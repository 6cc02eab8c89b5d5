"""Files the user names: what kind of thing a path is, and writing an output without harm.

A path the user gives may be a FIFO, a device, a symlink or a directory. Writing a regular file
"atomically" (beside it, then renaming over it) would replace any of those with a regular file,
so an output is written the way a Unix user expects from `> path`:
- a regular file, or nothing yet: written beside it and renamed over it once complete, so a
  failed write leaves the old file as it was;
- a symlink (`/dev/stdout` is one), a FIFO or a character device (`/dev/null`, a terminal):
  written through, as the shell does, so the link stays a link;
- anything else (a directory, a block device, a socket) is refused with a one-line message.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from playground.errors import PlaygroundError


class FileKindError(PlaygroundError):
    """A path names something that is not a regular file where one is needed."""


def kind_of(mode: int) -> str:
    """The kind of file `mode` (from stat) describes, in words."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def require_regular(path: Path, what: str) -> None:
    """Refuse `path` unless it is a regular file (through symlinks) or does not exist yet.

    For files that are read and replaced in place, such as the history database: renaming a
    device node or a FIFO aside, or opening one as a database, is never what was meant."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise FileKindError(f"cannot use {path} as {what}: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        raise FileKindError(f"cannot use {path} as {what}: it is {kind_of(mode)}, "
                            "not a regular file")


@contextmanager
def output_file(path: Path, **open_options: object) -> Iterator[IO]:
    """Open `path` to write an output (text mode; `open_options` as for `open`), see above.

    Raises FileKindError for a path that cannot take an output and OSError when writing fails;
    the partial file of an atomic write is removed on any error.
    """
    try:
        mode: int | None = path.stat().st_mode  # through symlinks, /dev/stdout's included
    except FileNotFoundError:
        mode = None  # nothing there, or a dangling symlink (writing creates its target)
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)
                                 or stat.S_ISCHR(mode)):
        raise FileKindError(f"cannot write {path}: it is {kind_of(mode)}, not a file")
    if path.is_symlink() or (mode is not None and not stat.S_ISREG(mode)):
        with open(path, "w", **open_options) as f:  # type: ignore[call-overload]
            yield f
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(temporary, "w", **open_options) as f:  # type: ignore[call-overload]
            yield f
        if mode is not None:
            os.chmod(temporary, stat.S_IMODE(mode))  # the new file keeps the old one's mode
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise

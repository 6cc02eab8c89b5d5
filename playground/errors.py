"""Errors a user can cause. Each carries a one-line message meant to be shown as it is."""

from __future__ import annotations


class PlaygroundError(Exception):
    """Base of every error caused by input: the CLI and the GUI show `str(error)` and go on."""


class ModelFileError(PlaygroundError):
    """The model file is missing, is not a GGUF, is damaged, or is of the wrong kind."""


class UnsupportedModelError(ModelFileError):
    """A valid GGUF that this llama.cpp build cannot run (e.g. an unknown architecture)."""


class ResourceError(PlaygroundError):
    """The request does not fit: a context larger than memory, N too large, a prompt too long."""


class InvalidRequestError(PlaygroundError):
    """A parameter is out of range."""


class WindowSystemError(PlaygroundError):
    """The GUI cannot open a window: Qt's platform plugin lacks system libraries, or there is no
    display."""


class Cancelled(PlaygroundError):
    """The user stopped the work; what it would have made is not kept (nothing is written)."""

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message)


class DownloadError(PlaygroundError):
    """A model could not be downloaded: the Hub cannot be reached or lacks the file, or what
    arrived is not the catalog's file (it is deleted)."""

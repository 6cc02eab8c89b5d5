"""API keys for model servers, in the system keyring (the `keyring` package) where one exists:
macOS Keychain, Windows Credential Locker, the Secret Service on Linux desktops. A key is never
written to the settings, the history or an export; without a keyring it lives only as long as
the app is open."""

from __future__ import annotations

import keyring
import keyring.errors
from keyring.backends import fail

SERVICE = "sampling-playground"
"""The keyring's service name; the server's URL (without credentials) is the user name."""


def keyring_available() -> bool:
    """Whether a real keyring backend is there (not keyring's 'fail' stand-in)."""
    return not isinstance(keyring.get_keyring(), fail.Keyring)


def stored_key(url: str) -> str | None:
    """The key stored for `url`, or None (none stored, or no keyring)."""
    if not keyring_available():
        return None
    try:
        return keyring.get_password(SERVICE, url)
    except keyring.errors.KeyringError:
        return None  # a locked or broken keyring: ask again rather than fail


def store_key(url: str, key: str | None) -> bool:
    """Keep `key` for `url` (None or "" forgets it); False where there is no keyring."""
    if not keyring_available():
        return False
    try:
        if key:
            keyring.set_password(SERVICE, url, key)
        else:
            keyring.delete_password(SERVICE, url)
    except keyring.errors.PasswordDeleteError:
        pass  # nothing was stored
    except keyring.errors.KeyringError:
        return False
    return True

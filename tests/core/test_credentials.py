"""Server keys in the keyring: a round trip where a backend exists, and nothing kept (and no
error) where none does."""

from __future__ import annotations

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from playground import credentials


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.kept.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.kept[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.kept.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not there")


@pytest.fixture
def backend(request: pytest.FixtureRequest):
    previous = keyring.get_keyring()
    chosen = request.param()
    keyring.set_keyring(chosen)
    yield chosen
    keyring.set_keyring(previous)


@pytest.mark.parametrize("backend", [MemoryKeyring], indirect=True)
def test_a_key_round_trips_and_is_forgotten(backend: MemoryKeyring) -> None:
    url = "https://gpu.example.org:8443"
    assert credentials.keyring_available()
    assert credentials.stored_key(url) is None
    assert credentials.store_key(url, "sesame")
    assert backend.kept == {(credentials.SERVICE, url): "sesame"}
    assert credentials.stored_key(url) == "sesame"
    assert credentials.store_key(url, None) and credentials.stored_key(url) is None
    assert credentials.store_key(url, None)  # forgetting twice is no error


@pytest.mark.parametrize("backend", [fail.Keyring], indirect=True)
def test_without_a_keyring_nothing_is_kept(backend: KeyringBackend) -> None:
    assert not credentials.keyring_available()
    assert not credentials.store_key("http://x", "sesame")
    assert credentials.stored_key("http://x") is None

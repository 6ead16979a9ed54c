"""Reusable pytest fixtures: one Prosody per session, users, and connected clients.

Wire them in with, in tests/conftest.py::

    from harness.fixtures import prosody, prosody_secret, users, client_factory  # noqa: F401

Users romeo, juliet and mallory (password = localpart + "-pw") are registered once.
Tests share one server: use unique room names, and reset the roster items a test
sets (or use JIDs nobody else uses).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from .prosody import Prosody
from .xmpp_client import TestClient

USERS = ("romeo", "juliet", "mallory")


def password_of(user: str) -> str:
    return f"{user.partition('@')[0]}-pw"


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture(scope="session")
def prosody_secret() -> str:
    """The component secret the session's Prosody expects from keys.example.com."""
    return secrets.token_hex(16)


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory, prosody_secret: str) -> Iterator[Prosody]:
    """A running Prosody for the whole session, with USERS registered."""
    server = Prosody(tmp_path_factory.mktemp("prosody"), prosody_secret)
    server.start()
    try:
        for user in USERS:
            server.register(user, password_of(user))
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def users(prosody: Prosody) -> dict[str, str]:
    """Localpart -> bare JID of the registered users."""
    return {user: f"{user}@{prosody.domain}" for user in USERS}


@pytest.fixture
async def client_factory(prosody: Prosody) -> AsyncIterator[ClientFactory]:
    """``await client_factory("romeo")`` -> a connected TestClient; all disconnected at teardown."""
    clients: list[TestClient] = []

    async def make(user: str, password: str | None = None) -> TestClient:
        jid = user if "@" in user else f"{user}@{prosody.domain}"
        client = TestClient(jid, password or password_of(user), "127.0.0.1", prosody.c2s_port)
        await client.connect()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        await client.disconnect()


def make_prosody(workdir: Path, secret: str | None = None) -> Prosody:
    """A started Prosody with USERS registered, for tests that need their own server."""
    server = Prosody(workdir, secret or secrets.token_hex(16))
    server.start()
    for user in USERS:
        server.register(user, password_of(user))
    return server

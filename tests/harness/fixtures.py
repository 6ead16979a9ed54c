"""Reusable pytest fixtures: one XMPP server per kind per session, users, clients.

Wire them in with, in tests/conftest.py::

    from harness.fixtures import server, server_secret, users, client_factory  # noqa: F401

``server`` is parametrized over the servers of harness.servers.selected(): each
test that uses it runs on Prosody and on ejabberd. Users romeo, juliet and
mallory (password = localpart + "-pw") are registered once per server.
Tests share one server: use unique room names, and reset the roster items a
test sets (or use JIDs nobody else uses).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from .servers import XmppServer, make_server, selected
from .xmpp_client import TestClient

USERS = ("romeo", "juliet", "mallory")


def password_of(user: str) -> str:
    return f"{user.partition('@')[0]}-pw"


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture(scope="session")
def server_secret() -> str:
    """The component secret the session's servers expect from keys.example.com."""
    return secrets.token_hex(16)


@pytest.fixture(scope="session", params=selected())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, server_secret: str
) -> Iterator[XmppServer]:
    """A running server (one per kind) for the whole session, with USERS registered."""
    software: str = request.param
    instance = start_server(software, tmp_path_factory.mktemp(software), server_secret)
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture(scope="session")
def users(server: XmppServer) -> dict[str, str]:
    """Localpart -> bare JID of the registered users."""
    return {user: f"{user}@{server.domain}" for user in USERS}


@pytest.fixture
async def client_factory(server: XmppServer) -> AsyncIterator[ClientFactory]:
    """``await client_factory("romeo")`` -> a connected TestClient; all disconnected at teardown."""
    clients: list[TestClient] = []

    async def make(user: str, password: str | None = None, **kwargs: object) -> TestClient:
        jid = user if "@" in user else f"{user}@{server.domain}"
        client = TestClient(
            jid, password or password_of(user), "127.0.0.1", server.c2s_port, **kwargs
        )
        await client.connect()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        await client.disconnect()


def start_server(software: str, workdir: Path, secret: str | None = None) -> XmppServer:
    """A started server with USERS registered (also for tests that need their own)."""
    instance = make_server(software, workdir, secret or secrets.token_hex(16))
    instance.start()
    try:
        for user in USERS:
            instance.register(user, password_of(user))
    except Exception:
        instance.cleanup()
        raise
    return instance

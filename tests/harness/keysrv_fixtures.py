"""Fixtures for the component under test: one database for the session, and an
instance restarted only when a test asks for another configuration."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .fixtures import password_of
from .keysrv_proc import KeysrvProcess, base_config
from .servers import XmppServer


def merged(base: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    config = copy.deepcopy(base)
    for section, values in overrides.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config


class KeysrvManager:
    def __init__(self, server: XmppServer, secret: str, workdir: Path) -> None:
        self.server = server
        self.base = base_config(server, workdir, secret)
        self.instance = KeysrvProcess(workdir, self.base)
        self.instance.init()

    def ensure(self, **overrides: dict[str, Any]) -> KeysrvProcess:
        """The running instance, restarted first if its config differs."""
        wanted = merged(self.base, overrides)
        inst = self.instance
        if inst.running and inst.config == wanted:
            return inst
        if inst.running:
            assert inst.stop() == 0, inst.log()[-2000:]
        inst.write_config(wanted)
        inst.start()
        return inst

    def close(self) -> None:
        if self.instance.running:
            self.instance.stop()


@pytest.fixture(scope="session")
def keysrv_manager(
    server: XmppServer, server_secret: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeysrvManager]:
    manager = KeysrvManager(server, server_secret, tmp_path_factory.mktemp("keysrv"))
    yield manager
    manager.close()


@pytest.fixture
def keysrv(keysrv_manager: KeysrvManager) -> KeysrvProcess:
    """The component with the default test configuration."""
    return keysrv_manager.ensure()


_counter = itertools.count(1)


@pytest.fixture
def new_user(server: XmppServer) -> Callable[..., str]:
    """`new_user("romeo")` registers a fresh user (romeo-7@example.com) and returns its
    bare JID: tests that change rosters never disturb each other."""

    def make(name: str, domain: str | None = None) -> str:
        jid = f"{name}-{next(_counter)}@{domain or server.domain}"
        server.register(jid, password_of(jid))
        return jid

    return make

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keysrv.config import LimitsConfig, PolicyConfig
from keysrv.crypto import Sealer
from keysrv.service import KeyService, Settings
from keysrv.store import KeyStore

from .fakes import FakeDirectory


class Clock:
    def __init__(self) -> None:
        self.ms = 1_790_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KeyStore]:
    s = await KeyStore.open(tmp_path / "keys.sqlite3", create=True)
    yield s
    await s.close()


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_service(store: KeyStore, directory: FakeDirectory, clock: Clock):
    sealer = Sealer(secrets.token_bytes(32))

    def make(rate: float = 20.0, burst: int = 100, **policy: Any) -> KeyService:
        settings = Settings(
            domains=frozenset({"example.com"}),
            muc_services=frozenset({"conference.example.com"}),
            policy=PolicyConfig(**policy),
            limits=LimitsConfig(rate=rate, burst=burst),
        )
        return KeyService(store, directory, sealer, settings, clock)

    return make

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from keysrv.cache import TtlCache
from keysrv.crypto import CryptoError, Sealer, create_kek_file, new_key_id, read_kek_file
from keysrv.model import Conversation, NewKey
from keysrv.store import KeyStore, StoreError, inspect

CONV = Conversation.chat("romeo@example.com", "juliet@example.com")


def new(key_id: str, ms: int = 1) -> NewKey:
    return NewKey(key_id, b"sealed-" + key_id.encode(), ms, None)


async def test_one_current_key_is_a_database_constraint(store, tmp_path):
    await store.ensure_current(CONV, lambda _: False, lambda: new("k1"))
    db = sqlite3.connect(tmp_path / "keys.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO keys (id, conversation, seq, created_ms, sealed) "
                   "VALUES ('k2', ?, 2, 2, x'00')", (CONV.key,))
    db.close()


async def test_concurrent_ensure_current_converges(store):
    results = await asyncio.gather(
        *(store.ensure_current(CONV, lambda _: False, lambda i=i: new(f"k{i}")) for i in range(20))
    )
    assert len({r.id for r, _ in results}) == 1
    assert sum(made for _, made in results) == 1


async def test_rotation_retires_the_old_key_and_keeps_it(store):
    await store.ensure_current(CONV, lambda _: False, lambda: new("k1", 10))
    second, made = await store.ensure_current(CONV, lambda _: True, lambda: new("k2", 20))
    assert made and second.seq == 2
    keys = await store.get_many(["k1", "k2", "k3"])
    assert keys["k1"].retired_ms == 20 and keys["k2"].retired_ms is None and "k3" not in keys
    stats = await store.stats()
    assert (stats.keys, stats.current_keys, stats.conversations) == (2, 1, 1)


async def test_open_refuses_missing_or_foreign_databases(tmp_path):
    with pytest.raises(StoreError, match="keysrv init"):
        await KeyStore.open(tmp_path / "missing.sqlite3")
    sqlite3.connect(tmp_path / "other.sqlite3").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not a keysrv database"):
        await KeyStore.open(tmp_path / "other.sqlite3")
    with pytest.raises(StoreError, match="not a keysrv database"):
        inspect(tmp_path / "other.sqlite3")


def test_sealing_binds_id_and_conversation():
    sealer = Sealer(b"k" * 32)
    blob = sealer.seal(b"m" * 32, "id1", CONV.key)
    assert sealer.unseal(blob, "id1", CONV.key) == b"m" * 32
    with pytest.raises(CryptoError):
        sealer.unseal(blob, "id2", CONV.key)
    with pytest.raises(CryptoError):
        sealer.unseal(blob, "id1", "room r@c.d")
    with pytest.raises(CryptoError):
        Sealer(b"x" * 32).unseal(blob, "id1", CONV.key)
    assert Sealer(b"k" * 32).matches(sealer.check_value())
    assert not Sealer(b"x" * 32).matches(sealer.check_value())


def test_kek_file(tmp_path):
    path = tmp_path / "kek"
    kek = create_kek_file(path)
    assert path.stat().st_mode & 0o777 == 0o600 and read_kek_file(path) == kek
    with pytest.raises(FileExistsError):
        create_kek_file(path)
    path.write_text("dG9vIHNob3J0\n")
    with pytest.raises(CryptoError, match="32"):
        read_kek_file(path)


def test_key_ids_are_long_and_distinct():
    ids = {new_key_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 22 for i in ids)


async def test_ttl_cache_single_flight_and_expiry():
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(5, clock=lambda: now[0])
    calls = []

    async def load(key: str) -> int:
        calls.append(key)
        await asyncio.sleep(0.01)
        return len(calls)

    assert await asyncio.gather(cache.get("a", load), cache.get("a", load)) == [1, 1]
    assert await cache.get("a", load) == 1
    now[0] = 5.0
    assert await cache.get("a", load) == 2

    async def boom(key: str) -> int:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await cache.get("b", boom)
    assert await cache.get("b", load) == 3  # failures are not cached
    nocache: TtlCache[str, int] = TtlCache(0)
    await nocache.get("a", load)
    assert len(nocache) == 0

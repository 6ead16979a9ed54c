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


async def test_ttl_counts_from_the_start_of_the_load():
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(5, clock=lambda: now[0])

    async def slow(key: str) -> int:
        now[0] += 4  # the lookup itself took 4 s
        return 1

    await cache.get("a", slow)
    now[0] = 5.0
    assert await cache.get("a", slow) == 1 and now[0] == 9.0, "expired after ttl from start"


async def test_a_cancelled_caller_does_not_cancel_the_load_for_others():
    cache: TtlCache[str, int] = TtlCache(5)
    gate = asyncio.Event()

    async def load(key: str) -> int:
        await gate.wait()
        return 7

    first = asyncio.ensure_future(cache.get("a", load))
    second = asyncio.ensure_future(cache.get("a", load))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == 7
    assert await cache.get("a", load) == 7


async def test_cancelled_create_leaves_the_store_usable(store):
    started = asyncio.Event()

    def make() -> NewKey:
        started.set()
        return new("k1")

    task = asyncio.ensure_future(store.ensure_current(CONV, lambda _: False, make))
    await started.wait()
    task.cancel()
    await asyncio.sleep(0.05)
    key, made = await store.ensure_current(CONV, lambda _: False, lambda: new("k2"))
    assert (key.id, made) == ("k1", False), "the shielded transaction still committed"


async def test_history_page_and_count_agree(store):
    for i in range(5):
        await store.ensure_current(CONV, lambda _: True, lambda i=i: new(f"k{i}", i))
    page, count, index = await store.history(CONV, 2, older_than=4)
    assert [k.id for k in page] == ["k2", "k1"] and (count, index) == (5, 2)
    page, count, index = await store.history(CONV, 2, newer_than=1)
    assert [k.id for k in page] == ["k2", "k1"] and index == 2
    assert await store.history(Conversation.room("x@y.z"), 3) == ([], 0, 0)


def test_init_refusal(tmp_path):
    from keysrv.store import init_refusal

    assert init_refusal(tmp_path / "none.sqlite3") is None
    (tmp_path / "empty.sqlite3").write_bytes(b"")
    assert init_refusal(tmp_path / "empty.sqlite3") is None
    sqlite3.connect(tmp_path / "other.sqlite3").execute("CREATE TABLE t (x)").connection.close()
    assert "another application" in (init_refusal(tmp_path / "other.sqlite3") or "")

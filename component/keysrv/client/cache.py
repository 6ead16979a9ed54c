"""Where released keys are kept on the device, behind one small interface.

Released keys never change (a key id names one key forever), so a cached key is
never stale: the cache only saves round trips, it is never consulted for access
decisions. MemoryKeyCache lives as long as the process; SqliteKeyCache survives
restarts (one file per account and device) and is what `keysrv-client` uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import aiosqlite

from .model import ConversationKey


class KeyCache(Protocol):
    async def get_many(self, ids: Iterable[str]) -> dict[str, ConversationKey]: ...
    async def put_many(self, keys: Iterable[ConversationKey]) -> None: ...
    async def close(self) -> None: ...


class MemoryKeyCache:
    def __init__(self) -> None:
        self._keys: dict[str, ConversationKey] = {}

    async def get_many(self, ids: Iterable[str]) -> dict[str, ConversationKey]:
        return {i: self._keys[i] for i in ids if i in self._keys}

    async def put_many(self, keys: Iterable[ConversationKey]) -> None:
        self._keys.update((k.id, k) for k in keys)

    async def close(self) -> None:
        self._keys.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY,
  material BLOB NOT NULL,
  created TEXT NOT NULL,
  peer TEXT,
  room TEXT,
  retired TEXT
) WITHOUT ROWID
"""
_COLUMNS = "id, material, created, peer, room, retired"
_MAX_VARS = 500  # ids per SELECT, under SQLite's bound on host parameters


class SqliteKeyCache:
    """Keys in an SQLite file (mode 0600). Material is stored as released: the
    device's disk is trusted like the device itself (see docs/client.md)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteKeyCache:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(_SCHEMA)
        await db.commit()
        return cls(db)

    async def get_many(self, ids: Iterable[str]) -> dict[str, ConversationKey]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, ConversationKey] = {}
        for start in range(0, len(wanted), _MAX_VARS):
            chunk = wanted[start : start + _MAX_VARS]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {_COLUMNS} FROM keys WHERE id IN ({marks})"
            async with self._db.execute(sql, chunk) as cursor:
                async for row in cursor:
                    found[row[0]] = ConversationKey(
                        id=row[0], material=row[1], created=row[2], peer=row[3], room=row[4],
                        retired=row[5],
                    )
        return found

    async def put_many(self, keys: Iterable[ConversationKey]) -> None:
        rows = [(k.id, k.material, k.created, k.peer, k.room, k.retired) for k in keys]
        if rows:
            await self._db.executemany("INSERT OR REPLACE INTO keys VALUES (?,?,?,?,?,?)", rows)
            await self._db.commit()

    async def close(self) -> None:
        await self._db.close()


def default_cache_path(account: str) -> Path:
    """$XDG_DATA_HOME/keysrv-client/<account>.sqlite3 (default ~/.local/share/...)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    safe = re.sub(r"[^A-Za-z0-9@._-]", "_", account)
    return Path(base) / "keysrv-client" / f"{safe}.sqlite3"

"""SQLite storage of sealed keys (aiosqlite, WAL). The only module that knows SQL.

Writes go through one connection, one transaction at a time (BEGIN IMMEDIATE,
synchronous=FULL): a key is durable when a write returns. Reads use a second
connection, so a warm `release` is a single SELECT that never waits on a write.
Convergence of concurrent creates is guaranteed by the schema: at most one
non-retired key per conversation (a partial unique index), decided inside the
write transaction.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from .model import Conversation, KeyRecord, NewKey

SCHEMA_VERSION = 1

# Migration N takes the database from version N-1 to N. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE keys (
        id            TEXT PRIMARY KEY,
        conversation  TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        created_ms    INTEGER NOT NULL,
        retired_ms    INTEGER,
        sealed        BLOB NOT NULL,
        members       TEXT,
        UNIQUE (conversation, seq)
    );
    CREATE UNIQUE INDEX keys_one_current ON keys (conversation) WHERE retired_ms IS NULL;
    """,
)

_COLUMNS = "id, conversation, seq, created_ms, retired_ms, sealed, members"


class StoreError(Exception):
    """The database is missing, unreadable, or of an unknown schema."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    schema_version: int
    conversations: int
    keys: int
    current_keys: int


def _record(row: sqlite3.Row | tuple) -> KeyRecord:
    kid, conv, seq, created, retired, sealed, members = row
    return KeyRecord(
        id=kid,
        conversation=Conversation.parse(conv),
        seq=seq,
        created_ms=created,
        retired_ms=retired,
        sealed=bytes(sealed),
        members=frozenset(json.loads(members)) if members is not None else None,
    )


class KeyStore:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._w = writer
        self._r = reader
        self._write_lock = asyncio.Lock()

    # --- opening ---------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, *, create: bool = False) -> KeyStore:
        """Open (and with `create`, make or migrate) the database at `path`."""
        if not create and not path.exists():
            raise StoreError(f"no database at {path} (run `keysrv init`)")
        try:
            writer = await aiosqlite.connect(path, isolation_level=None)
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute("PRAGMA synchronous=FULL")
            await writer.execute("PRAGMA busy_timeout=5000")
            version = await _user_version(writer)
            if version > SCHEMA_VERSION:
                await writer.close()
                raise StoreError(
                    f"{path} has schema version {version}; this keysrv knows up to "
                    f"{SCHEMA_VERSION} (upgrade keysrv)"
                )
            if version < SCHEMA_VERSION:
                if not create and version == 0:
                    await writer.close()
                    raise StoreError(f"{path} is not a keysrv database (run `keysrv init`)")
                await _migrate(writer, version)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        return cls(writer, reader)

    async def close(self) -> None:
        await self._r.close()
        await self._w.close()

    # --- meta --------------------------------------------------------------------------

    async def get_meta(self, name: str) -> bytes | None:
        async with self._r.execute("SELECT value FROM meta WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    async def set_meta(self, name: str, value: bytes) -> None:
        async with self._write_lock:
            await self._w.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # --- keys --------------------------------------------------------------------------

    async def ensure_current(
        self,
        conversation: Conversation,
        replace_if: Callable[[KeyRecord], bool],
        make: Callable[[], NewKey],
    ) -> tuple[KeyRecord, bool]:
        """Return the conversation's current key, making one when there is none or
        when `replace_if(current)` holds (retiring the old one), all in one
        transaction. Returns (key, made).

        The transaction is shielded: a cancelled caller (say, at shutdown) never
        leaves it half done or the connection stuck inside it."""
        return await asyncio.shield(self._ensure_current(conversation, replace_if, make))

    async def _ensure_current(
        self,
        conversation: Conversation,
        replace_if: Callable[[KeyRecord], bool],
        make: Callable[[], NewKey],
    ) -> tuple[KeyRecord, bool]:
        async with self._write_lock:
            await self._w.execute("BEGIN IMMEDIATE")
            try:
                async with self._w.execute(
                    f"SELECT {_COLUMNS} FROM keys "
                    "WHERE conversation = ? AND retired_ms IS NULL",
                    (conversation.key,),
                ) as cur:
                    row = await cur.fetchone()
                current = _record(row) if row else None
                if current is not None and not replace_if(current):
                    await self._w.execute("COMMIT")
                    return current, False
                new = make()
                seq = 1
                if current is not None:
                    seq = current.seq + 1
                    await self._w.execute(
                        "UPDATE keys SET retired_ms = ? WHERE id = ?",
                        (max(new.created_ms, current.created_ms), current.id),
                    )
                members = json.dumps(sorted(new.members)) if new.members is not None else None
                await self._w.execute(
                    f"INSERT INTO keys ({_COLUMNS}) VALUES (?, ?, ?, ?, NULL, ?, ?)",
                    (new.id, conversation.key, seq, new.created_ms, new.sealed, members),
                )
                await self._w.execute("COMMIT")
            except BaseException:
                await self._w.execute("ROLLBACK")
                raise
        record = KeyRecord(
            new.id, conversation, seq, new.created_ms, None, new.sealed, new.members
        )
        return record, True

    async def get_many(self, ids: Sequence[str]) -> dict[str, KeyRecord]:
        """The keys among `ids` that exist, in one query."""
        marks = ",".join("?" * len(ids))
        async with self._r.execute(
            f"SELECT {_COLUMNS} FROM keys WHERE id IN ({marks})", tuple(ids)
        ) as cur:
            rows = await cur.fetchall()
        return {row[0]: _record(row) for row in rows}

    async def seq_of(self, conversation: Conversation, key_id: str) -> int | None:
        async with self._r.execute(
            "SELECT seq FROM keys WHERE conversation = ? AND id = ?",
            (conversation.key, key_id),
        ) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def history(
        self,
        conversation: Conversation,
        limit: int,
        older_than: int | None = None,
        newer_than: int | None = None,
    ) -> tuple[list[KeyRecord], int, int]:
        """A page of the conversation's keys, newest first.

        `older_than`/`newer_than` are sequence numbers (exclusive). With
        `newer_than` the page is the `limit` keys just above it. Returns the page,
        the total count, and the number of keys newer than the page's first one
        (its RSM index). The page and the count come from one statement, so they
        agree even while keys are being made.
        """
        key = conversation.key
        total = "(SELECT COUNT(*) FROM keys WHERE conversation = ?)"
        if newer_than is not None:
            where, order, bound = "AND seq > ?", "ASC", newer_than
        elif older_than is not None:
            where, order, bound = "AND seq < ?", "DESC", older_than
        else:
            where, order, bound = "AND ?", "DESC", 1
        sql = (
            f"SELECT {_COLUMNS}, {total} FROM keys WHERE conversation = ? {where} "
            f"ORDER BY seq {order} LIMIT ?"
        )
        async with self._r.execute(sql, (key, key, bound, limit)) as cur:
            rows = list(await cur.fetchall())
        if rows:
            count = int(rows[0][-1])
        else:
            async with self._r.execute(
                "SELECT COUNT(*) FROM keys WHERE conversation = ?", (key,)
            ) as cur:
                count = int((await cur.fetchone() or (0,))[0])
        page = [_record(r[:-1]) for r in rows]
        if newer_than is not None:
            page.reverse()
        # seq runs 1..count without gaps, so the newest-first index is arithmetic.
        index = count - page[0].seq if page else 0
        return page, count, index

    async def stats(self) -> StoreStats:
        async with self._r.execute(
            "SELECT COUNT(DISTINCT conversation), COUNT(*), "
            "COUNT(*) FILTER (WHERE retired_ms IS NULL) FROM keys"
        ) as cur:
            convs, keys, current = await cur.fetchone() or (0, 0, 0)
        return StoreStats(await _user_version(self._r), convs, keys, current)


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _migrate(db: aiosqlite.Connection, version: int) -> None:
    for target in range(version + 1, SCHEMA_VERSION + 1):
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target - 1].split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {target}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise


def _open_readonly(path: Path) -> sqlite3.Connection:
    """Open without writing anything. A read-only open of a WAL database creates its
    -wal and -shm files when they are missing (owned by whoever runs `check`), so
    when no -wal file exists (nobody is serving) the file is opened immutable."""
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{path}?{mode}", uri=True, timeout=5)


def init_refusal(path: Path) -> str | None:
    """Why `keysrv init` must not touch the database at `path`, or None if it may."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        db = _open_readonly(path)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            check = None
            if version > 0:
                check = db.execute("SELECT value FROM meta WHERE name = 'kek_check'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"cannot read {path}: {exc}"
    if version == 0 and tables:
        return f"{path} holds another application's tables: point storage.database elsewhere"
    if check is not None:
        return f"{path} already holds keys sealed under another KEK: restore that KEK instead"
    return None


def inspect(path: Path) -> tuple[StoreStats, bytes | None]:
    """Read-only look at a database for `keysrv check` (synchronous: the CLI has no
    event loop). Returns its statistics and the KEK check value. Changes nothing."""
    if not path.exists():
        raise StoreError(f"no database at {path} (run `keysrv init`)")
    try:
        db = _open_readonly(path)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                raise StoreError(f"{path} is not a keysrv database (run `keysrv init`)")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} has schema version {version}; this keysrv knows up to {SCHEMA_VERSION}"
                )
            convs, keys, current = db.execute(
                "SELECT COUNT(DISTINCT conversation), COUNT(*), "
                "COUNT(*) FILTER (WHERE retired_ms IS NULL) FROM keys"
            ).fetchone()
            row = db.execute("SELECT value FROM meta WHERE name = 'kek_check'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    return StoreStats(version, convs, keys, current), (bytes(row[0]) if row else None)

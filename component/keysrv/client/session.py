"""Connect a slixmpp client with the keysrv plugin: what `keysrv-client` and
the demo share. Apps that have their own ClientXMPP call register() instead."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP

from . import register
from .cache import KeyCache, SqliteKeyCache, default_cache_path
from .errors import ClientError
from .plugin import KeysrvPlugin


@dataclass
class Account:
    jid: str
    password: str
    server: str | None = None  # host; None = DNS SRV / the JID's domain
    port: int = 5222
    insecure_plaintext: bool = False  # loopback tests only: no TLS at all
    service: str | None = None  # the key service; None = discover
    cache_path: Path | None = None  # None = default_cache_path(jid); see cache.py
    plugins: tuple[str, ...] = field(default=())


class Session:
    """A connected, authenticated account with the keysrv plugin enabled."""

    def __init__(self, xmpp: ClientXMPP, keysrv: KeysrvPlugin, cache: KeyCache) -> None:
        self.xmpp, self.keysrv, self._cache = xmpp, keysrv, cache

    @classmethod
    async def open(cls, account: Account, timeout: float = 15.0) -> Session:
        cache = await SqliteKeyCache.open(account.cache_path or default_cache_path(account.jid))
        try:
            xmpp = ClientXMPP(account.jid, account.password)
            if account.insecure_plaintext:
                xmpp.enable_direct_tls = False
                xmpp.enable_starttls = False
                xmpp.enable_plaintext = True
                xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
                xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
            for name in account.plugins:
                xmpp.register_plugin(name)
            keysrv = register(xmpp, service=account.service, cache=cache)
            await _connect(xmpp, account, timeout)
        except BaseException:
            await cache.close()
            raise
        return cls(xmpp, keysrv, cache)

    async def close(self) -> None:
        try:
            await self.xmpp.disconnect(wait=2.0)
        finally:
            await self._cache.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _connect(xmpp: ClientXMPP, account: Account, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()

    def fail(reason: str) -> None:
        if not started.done():
            started.set_exception(ClientError(f"{account.jid}: {reason}"))

    def on_start(_: Any) -> None:
        if not started.done():
            started.set_result(None)

    xmpp.add_event_handler("session_start", on_start)
    xmpp.add_event_handler("failed_auth", lambda _: fail("authentication failed"))
    xmpp.add_event_handler("no_auth", lambda _: fail("no usable authentication mechanism"))
    xmpp.add_event_handler("stream_error", lambda e: fail(f"stream error: {e['condition']}"))
    xmpp.add_event_handler("connection_failed", lambda e: fail(f"cannot connect: {e}"))
    if account.server:
        xmpp.connect(account.server, account.port)
    else:
        xmpp.connect()
    try:
        await asyncio.wait_for(started, timeout)
    except BaseException as exc:
        xmpp.cancel_connection_attempt()
        if xmpp.transport is not None:
            xmpp.abort()
        if isinstance(exc, TimeoutError):
            raise ClientError(f"{account.jid}: no session within {timeout:g} s") from None
        raise
    xmpp.send_presence()

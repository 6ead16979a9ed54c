"""`keysrv run`: wire the parts together and serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import Any

from .access import CachedDirectory
from .component import KeyComponent
from .config import Config
from .crypto import Sealer
from .lookups import Privileges, XmppDirectory
from .service import KeyService, Settings
from .store import KeyStore, StoreError

log = logging.getLogger("keysrv")
KEK_CHECK = "kek_check"


class StartError(Exception):
    """keysrv cannot start; the message is one line for the admin."""


async def open_store(config: Config, sealer: Sealer) -> KeyStore:
    try:
        store = await KeyStore.open(config.storage.database)
    except StoreError as exc:
        raise StartError(str(exc)) from None
    check = await store.get_meta(KEK_CHECK)
    if check is None or not sealer.matches(check):
        await store.close()
        raise StartError(
            f"the KEK in {config.storage.kek_file} does not open the keys in "
            f"{config.storage.database}"
        )
    return store


def _notify(state: str) -> None:
    """sd_notify without a dependency: a datagram to $NOTIFY_SOCKET, if any."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("cannot notify systemd: %s", exc)


async def serve(config: Config, kek: bytes) -> int:
    """Serve until a signal (0) or a fatal condition such as a refused secret (1)."""
    sealer = Sealer(kek)
    store = await open_store(config, sealer)
    privileges = Privileges()
    xmpp = KeyComponent(config, privileges)
    directory = CachedDirectory(
        XmppDirectory(
            xmpp, privileges, config.limits.lookup_timeout, config.policy.allow_occupants
        ),
        config.cache.roster_ttl,
        config.cache.muc_ttl,
    )
    xmpp.attach(KeyService(store, directory, sealer, Settings.of(config)))
    xmpp.on_ready = lambda: _notify("READY=1\nSTATUS=serving")

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stats = await store.stats()
    log.info(
        "keysrv serving %s: %d keys in %d conversations (%s)",
        config.component.jid,
        stats.keys,
        stats.conversations,
        config.storage.database,
    )
    xmpp.start()
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    waiters: set[asyncio.Future[Any]] = {stopper, xmpp.fatal}
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    code = 0
    if xmpp.fatal.done():
        log.error("%s", xmpp.fatal.result())
        code = 1
    else:
        log.info("stopping")
        _notify("STOPPING=1")
    await xmpp.stop()
    await store.close()
    log.info("stopped")
    return code

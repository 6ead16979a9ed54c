"""The XMPP servers the integration suite runs on, behind one interface.

Every integration test that takes the ``server`` fixture runs once per server:
``prosody`` (tests/harness/prosody.py) and ``ejabberd`` (tests/harness/ejabberd.py).
``KEYSRV_TEST_SERVERS=prosody`` (comma-separated) narrows the run while developing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar, Protocol, Self

SERVERS = ("prosody", "ejabberd")
SUBSCRIPTIONS = ("none", "from", "to", "both")
AFFILIATIONS = ("owner", "admin", "member", "outcast", "none")
RosterChange = tuple[str, str, str | None, str | None]  # owner, contact, subscription, ask


class ServerError(RuntimeError):
    """A server failed to start, or an admin command failed (message has the output)."""


class ServerProcess:
    """The life cycle both harness servers share: one child process (the leader of
    its own process group), started with retries on a port clash, stopped for sure.

    Subclasses provide _start_once(), _pick_ports(), stop(), cleanup() and the
    fixture changes (set_rosters, rooms); the shared wrappers are here.
    """

    name: ClassVar[str]
    muc: ClassVar[str]
    log_path: Path
    stdout_path: Path
    error: ClassVar[type[ServerError]] = ServerError
    start_timeout: ClassVar[float] = 10.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float | None = None) -> None:
        """Start and wait until ready. If a port picked at init was taken meanwhile,
        the first start picks new ports (up to 3 tries); later starts keep the ports
        clients already know."""
        if self.running:
            raise self.error(f"{self.name} is already running")
        for attempt in range(3):
            if self._start_once(timeout or self.start_timeout):
                self._started = True
                return
            if self._started or attempt == 2:
                raise self.error(f"{self.name} could not bind its ports\n{self._tails()}")
            self._pick_ports()

    def restart(self) -> None:
        """stop() and start() on the same ports; users, rosters and rooms persist."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def set_roster(
        self, owner: str, contact: str, subscription: str | None, ask: str | None = None
    ) -> None:
        """Set (or with ``subscription=None`` remove) ``contact`` in ``owner``'s roster.

        Both are bare JIDs; ``owner`` is a local user. ``subscription`` is one of
        none/from/to/both, ``ask`` None or "subscribe" (pending outbound request).
        Takes effect at once, also for an online owner, who gets a roster push.
        """
        self.set_rosters([(owner, contact, subscription, ask)])

    def befriend(self, a: str, b: str) -> None:
        """Mutual ``both`` subscription between bare JIDs ``a`` and ``b`` (one call)."""
        self.set_rosters([(a, b, "both", None), (b, a, "both", None)])

    def room_jid(self, room: str) -> str:
        """Bare JID of a room given as localpart or bare JID on ``muc``."""
        if "@" not in room:
            return f"{room}@{self.muc}"
        if room.partition("@")[2] != self.muc:
            raise ValueError(f"{room} is not on {self.muc}")
        return room

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def _tails(self) -> str:
        return (
            f"--- {self.log_path} (tail) ---\n{self.log_tail()}\n"
            f"--- {self.stdout_path} (tail) ---\n{tail(self.stdout_path, 20)}"
        )

    def set_rosters(self, items: Iterable[RosterChange]) -> None:
        raise NotImplementedError

    def _start_once(self, timeout: float) -> bool:
        """One start; False if a port could not be bound (server stopped again)."""
        raise NotImplementedError

    def _pick_ports(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError


class XmppServer(Protocol):
    """What the tests may use of a server: both harness classes provide exactly this."""

    software: str
    domain: str
    component: str
    muc: str
    down_component: str
    other_domain: str
    upload: str
    secret: str  # keys.example.com's; down.example.com's is secret + "-down"
    c2s_port: int
    component_port: int
    down_component_port: int  # where down.example.com may connect (never does by itself)
    http_port: int
    config_path: Path

    @property
    def upload_url(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def start(self, timeout: float | None = None) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def restart(self) -> None: ...
    def cleanup(self) -> None: ...
    def register(self, user: str, password: str) -> None: ...
    def set_roster(
        self, owner: str, contact: str, subscription: str | None, ask: str | None = None
    ) -> None: ...
    def set_rosters(self, items: Iterable[RosterChange]) -> None: ...
    def befriend(self, a: str, b: str) -> None: ...
    def room_jid(self, room: str) -> str: ...
    def create_room(
        self,
        room: str,
        owner: str,
        affiliations: Mapping[str, str] | None = None,
        members_only: bool = True,
    ) -> None: ...
    def set_affiliation(self, room: str, jid: str, affiliation: str) -> None: ...
    def destroy_room(self, room: str, *, tombstone: bool = True) -> None: ...
    def log_tail(self, lines: int = 40) -> str: ...


def check_roster_change(
    owner: str, contact: str, subscription: str | None, ask: str | None
) -> None:
    check_bare(owner)
    check_bare(contact)
    if subscription is not None and subscription not in SUBSCRIPTIONS:
        raise ValueError(f"subscription must be one of {SUBSCRIPTIONS} or None")
    if ask not in (None, "subscribe"):
        raise ValueError("ask must be None or 'subscribe'")


def check_bare(jid: str) -> None:
    if not jid or "/" in jid or jid.count("@") > 1:
        raise ValueError(f"not a bare JID: {jid!r}")


def check_affiliation(affiliation: str) -> None:
    if affiliation not in AFFILIATIONS:
        raise ValueError(f"affiliation must be one of {AFFILIATIONS}")


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(missing)"
    return "\n".join(text.splitlines()[-lines:])


def read_from(path: Path, offset: int) -> str:
    """A log file's text from byte `offset` on ("" if it does not exist yet)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return ""


def selected() -> list[str]:
    """The servers to test on: $KEYSRV_TEST_SERVERS, else all of them."""
    wanted = [s.strip() for s in os.environ.get("KEYSRV_TEST_SERVERS", "").split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SERVERS))
    if unknown:
        raise ValueError(f"KEYSRV_TEST_SERVERS: unknown server(s) {unknown}; known: {SERVERS}")
    return wanted or list(SERVERS)


def make_server(software: str, workdir: Path, secret: str) -> XmppServer:
    """A configured, not yet started, server of the given kind."""
    if software == "prosody":
        from .prosody import Prosody

        return Prosody(workdir, secret)
    if software == "ejabberd":
        from .ejabberd import Ejabberd

        return Ejabberd(workdir, secret)
    raise ValueError(f"unknown server {software!r}")

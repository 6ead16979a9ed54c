"""What the service needs to know from the XMPP server, behind small interfaces.

The XMPP implementation lives in `lookups.py`; tests use in-memory fakes.
`CachedDirectory` adds the short-TTL caches (servers send no roster pushes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .cache import TtlCache

MEMBER_AFFILIATIONS = frozenset({"owner", "admin", "member"})


@dataclass(frozen=True, slots=True)
class RosterItem:
    subscription: str  # none | from | to | both
    ask: bool = False


Roster = Mapping[str, RosterItem]  # contact bare JID -> item


@dataclass(frozen=True, slots=True)
class RoomInfo:
    affiliations: Mapping[str, str]  # bare JID -> owner | admin | member | outcast
    occupants: frozenset[str] | None = field(default=None)  # real bare JIDs, if looked up

    @property
    def members(self) -> frozenset[str]:
        return frozenset(j for j, a in self.affiliations.items() if a in MEMBER_AFFILIATIONS)


class Directory(Protocol):
    async def roster(self, user: str) -> Roster:
        """The roster of a local user (bare JID). Raises errors.DirectoryError subclasses."""
        ...

    async def room(self, room: str) -> RoomInfo:
        """Affiliations (and occupants, if configured) of a room. Raises RoomNotFound etc."""
        ...


class CachedDirectory:
    """Wraps a Directory with TTL caches and single-flight lookups."""

    def __init__(self, inner: Directory, roster_ttl: float, muc_ttl: float) -> None:
        self._inner = inner
        self._rosters: TtlCache[str, Roster] = TtlCache(roster_ttl)
        self._rooms: TtlCache[str, RoomInfo] = TtlCache(muc_ttl)

    async def roster(self, user: str) -> Roster:
        return await self._rosters.get(user, self._inner.roster)

    async def room(self, room: str) -> RoomInfo:
        return await self._rooms.get(room, self._inner.room)

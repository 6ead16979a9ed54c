"""In-memory stand-ins for the XMPP side of the service (unit tests only)."""

from __future__ import annotations

from keysrv.access import RoomInfo, Roster, RosterItem
from keysrv.errors import LookupTimeout, RoomNotFound


class FakeDirectory:
    def __init__(self) -> None:
        self.rosters: dict[str, dict[str, RosterItem]] = {}
        self.rooms: dict[str, dict[str, str]] = {}
        self.occupants: dict[str, set[str]] = {}
        self.slow: set[str] = set()
        self.calls: list[str] = []

    def befriend(self, a: str, b: str, subscription: str = "both") -> None:
        back = {"from": "to", "to": "from"}.get(subscription, subscription)
        self.rosters.setdefault(a, {})[b] = RosterItem(subscription)
        self.rosters.setdefault(b, {})[a] = RosterItem(back)

    async def roster(self, user: str) -> Roster:
        self.calls.append(f"roster {user}")
        if user in self.slow:
            raise LookupTimeout(user)
        return dict(self.rosters.get(user, {}))

    async def room(self, room: str) -> RoomInfo:
        self.calls.append(f"room {room}")
        if room in self.slow:
            raise LookupTimeout(room)
        if room not in self.rooms:
            raise RoomNotFound(room)
        return RoomInfo(dict(self.rooms[room]), frozenset(self.occupants.get(room, set())))

"""What the client holds: conversation keys as released by the service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """A key of one conversation, as this account received it (material unwrapped).

    Exactly one of `peer` (a chat: the *other* party's bare JID, relative to this
    account — the service's `with`) and `room` (the room's bare JID) is set.
    """

    id: str
    material: bytes
    created: str
    peer: str | None = None
    room: str | None = None
    retired: str | None = None

    def __post_init__(self) -> None:
        if (self.peer is None) == (self.room is None):
            raise ValueError("a key belongs to exactly one chat peer or room")
        if len(self.material) != 32:
            raise ValueError("key material must be 32 bytes")

    def __repr__(self) -> str:  # never show the material
        where = f"peer={self.peer}" if self.peer else f"room={self.room}"
        return f"ConversationKey(id={self.id!r}, {where}, created={self.created!r})"

    @property
    def conversation(self) -> str:
        return f"chat:{self.peer}" if self.peer else f"room:{self.room}"

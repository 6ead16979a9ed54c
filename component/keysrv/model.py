"""Plain values of the domain: conversations, stored keys, requests and answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Kind(StrEnum):
    CHAT = "chat"
    ROOM = "room"


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat between two distinct bare JIDs, or a room (its bare JID)."""

    kind: Kind
    jids: tuple[str, ...]  # chat: the two parties, sorted; room: (room,)

    @classmethod
    def chat(cls, a: str, b: str) -> Conversation:
        return cls(Kind.CHAT, tuple(sorted((a, b))))

    @classmethod
    def room(cls, room: str) -> Conversation:
        return cls(Kind.ROOM, (room,))

    @classmethod
    def parse(cls, key: str) -> Conversation:
        kind, *jids = key.split(" ")
        return cls(Kind(kind), tuple(jids))

    @property
    def key(self) -> str:
        """The stable text form stored in the database and bound into sealing."""
        return " ".join((self.kind.value, *self.jids))

    def other(self, me: str) -> str:
        """For a chat, the party that is not `me`."""
        a, b = self.jids
        return b if a == me else a


@dataclass(frozen=True, slots=True)
class Target:
    """What a request names: `with` (a chat, relative to the requester) or `room`."""

    kind: Kind
    jid: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as stored: material only in sealed form."""

    id: str
    conversation: Conversation
    seq: int
    created_ms: int
    retired_ms: int | None
    sealed: bytes
    members: frozenset[str] | None = None  # rooms: member bare JIDs when the key was made


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    sealed: bytes
    created_ms: int
    members: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Wrapping:
    """How to present material in one answer: raw, or wrapped to a client key (§5)."""

    client_public: bytes


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as handed to a requester: `text` is the raw or wrapped material."""

    id: str
    conversation: Conversation
    peer: str  # `with` for a chat (relative to the requester), the room for a room
    created_ms: int
    retired_ms: int | None
    text: bytes | None = None
    epk: bytes | None = None


@dataclass(frozen=True, slots=True)
class ReleaseItem:
    id: str
    key: KeyView | None = None
    error: str | None = None  # "forbidden" | "item-not-found"


@dataclass(frozen=True, slots=True)
class PageRequest:
    max: int
    after: str | None = None
    before: str | None = None  # "" asks for the last page


@dataclass(frozen=True, slots=True)
class Page:
    keys: list[KeyView]
    count: int
    first_index: int | None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    target: Target
    wrap: Wrapping | None = None


@dataclass(frozen=True, slots=True)
class RotateRequest:
    target: Target
    previous: str | None = None
    wrap: Wrapping | None = None


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    ids: tuple[str, ...]
    wrap: Wrapping | None = None


@dataclass(frozen=True, slots=True)
class ListRequest:
    target: Target
    page: PageRequest


Request = CreateRequest | RotateRequest | ReleaseRequest | ListRequest


def iso(ms: int) -> str:
    """XEP-0082 DateTime in UTC, second precision."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

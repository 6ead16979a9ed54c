"""The domain: conversations, keys, access and rotation. No XMPP in here.

One public entry point, `KeyService.handle(requester, request)`, takes a parsed
request from a bare JID and returns plain values or raises ProtocolError.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from . import errors
from .access import Directory
from .config import Config, LimitsConfig, PolicyConfig
from .crypto import CryptoError, Sealer, Wrapper, new_key_id, new_material
from .errors import LookupFailed, LookupTimeout, NotReady, ProtocolError, RoomNotFound
from .jids import domain_of, is_bare_user
from .model import (
    Conversation,
    CreateRequest,
    KeyRecord,
    KeyView,
    Kind,
    ListRequest,
    NewKey,
    Page,
    ReleaseItem,
    ReleaseRequest,
    Request,
    RotateRequest,
    Target,
    Wrapping,
)
from .policy import check_room, check_roster, needs_rotation, roster_needed
from .ratelimit import RateLimiter
from .store import KeyStore

T = TypeVar("T")
LIST_MAX = 100  # most keys one `list` page carries, whatever `max` asks
# Per-key refusals in `release`: the key exists but this requester may not have it.
_REFUSALS = frozenset({"forbidden", "item-not-found", "not-allowed"})


@dataclass(frozen=True, slots=True)
class Settings:
    """The parts of the configuration the domain needs."""

    domains: frozenset[str]
    muc_services: frozenset[str]
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    @classmethod
    def of(cls, config: Config) -> Settings:
        return cls(
            frozenset(config.domains), frozenset(config.muc_services), config.policy, config.limits
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


Answer = KeyView | list[ReleaseItem] | Page


class KeyService:
    def __init__(
        self,
        store: KeyStore,
        directory: Directory,
        sealer: Sealer,
        settings: Settings,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._dir = directory
        self._sealer = sealer
        self.settings = settings
        self._clock = clock
        self._limiter = RateLimiter(settings.limits.rate, settings.limits.burst)

    async def handle(self, requester: str, request: Request) -> Answer:
        s = self.settings
        if not self._limiter.allow(requester):
            raise errors.rate_limited()
        if not s.policy.allow_remote and domain_of(requester) not in s.domains:
            raise errors.forbidden(
                f"this key service serves only users of {', '.join(sorted(s.domains))}"
            )
        if isinstance(request, ListRequest):
            return await self.list(requester, request)
        wrapper = self._wrapper(request.wrap)
        if isinstance(request, CreateRequest):
            return await self.create(requester, request, wrapper)
        if isinstance(request, RotateRequest):
            return await self.rotate(requester, request, wrapper)
        return await self.release(requester, request, wrapper)

    # --- operations ----------------------------------------------------------------

    async def create(
        self, requester: str, req: CreateRequest, wrapper: Wrapper | None = None
    ) -> KeyView:
        conv, members = await self._authorize(requester, req.target)
        now = self._clock()
        max_age = self.settings.policy.rotation_max_age
        record, _ = await self._store.ensure_current(
            conv,
            replace_if=lambda key: needs_rotation(key, now, max_age, members),
            make=lambda: self._new_key(conv, now, members),
        )
        return self._view(requester, record, wrapper)

    async def rotate(
        self, requester: str, req: RotateRequest, wrapper: Wrapper | None = None
    ) -> KeyView:
        conv, members = await self._authorize(requester, req.target)
        now = self._clock()
        previous = req.previous
        record, _ = await self._store.ensure_current(
            conv,
            replace_if=lambda key: previous is None or key.id == previous,
            make=lambda: self._new_key(conv, now, members),
        )
        return self._view(requester, record, wrapper)

    async def release(
        self, requester: str, req: ReleaseRequest, wrapper: Wrapper | None = None
    ) -> list[ReleaseItem]:
        records = await self._store.get_many(req.ids)
        convs = list({r.conversation for r in records.values()})
        allowed = await asyncio.gather(*(self._may_read(requester, c) for c in convs))
        verdict = dict(zip(convs, allowed, strict=True))
        items: list[ReleaseItem] = []
        for key_id in req.ids:
            record = records.get(key_id)
            if record is None:
                items.append(ReleaseItem(key_id, error="item-not-found"))
            elif not verdict[record.conversation]:
                items.append(ReleaseItem(key_id, error="forbidden"))
            else:
                items.append(ReleaseItem(key_id, key=self._view(requester, record, wrapper)))
        return items

    async def list(self, requester: str, req: ListRequest) -> Page:
        conv, _ = await self._authorize(requester, req.target)
        page = req.page
        older = newer = None
        if page.after is not None:
            older = await self._seq(conv, page.after)
        elif page.before == "":
            newer = 0
        elif page.before is not None:
            newer = await self._seq(conv, page.before)
        records, count, index = await self._store.history(
            conv, min(page.max, LIST_MAX), older_than=older, newer_than=newer
        )
        views = [self._view(requester, r, None, material=False) for r in records]
        return Page(views, count, index if views else None)

    # --- access ----------------------------------------------------------------------

    async def _authorize(
        self, requester: str, target: Target
    ) -> tuple[Conversation, frozenset[str] | None]:
        """The conversation a create/rotate/list names, once the requester may use it.
        For rooms, also the current members (for the rotation rule)."""
        if target.kind is Kind.CHAT:
            if target.jid == requester:
                raise errors.bad_request("'with' names the requester itself")
            if not is_bare_user(target.jid):
                raise errors.bad_request("'with' must be a user's bare JID (user@domain)")
            conv = Conversation.chat(requester, target.jid)
        else:
            if not is_bare_user(target.jid):
                raise errors.bad_request("'room' must be a room's bare JID (room@service)")
            conv = Conversation.room(target.jid)
        return conv, await self._check(requester, conv)

    async def _check(self, requester: str, conv: Conversation) -> frozenset[str] | None:
        s = self.settings
        if conv.kind is Kind.ROOM:
            room = conv.jids[0]
            if domain_of(room) not in s.muc_services:
                raise errors.foreign_conversation(
                    f"{domain_of(room)} is not a MUC service this key service is configured for"
                )
            info = await self._lookup(self._dir.room(room), f"the room {room}")
            check_room(requester, room, info, s.policy.allow_occupants)
            return info.members
        if requester not in conv.jids:
            raise errors.forbidden(f"{requester} is not a party of this chat")
        local = [p for p in conv.jids if domain_of(p) in s.domains]
        if not local:
            raise errors.foreign_conversation("neither party of this chat is served here")
        if roster_needed(s.policy.roster):
            await asyncio.gather(*(self._check_roster(p, conv.other(p)) for p in local))
        return None

    async def _check_roster(self, owner: str, contact: str) -> None:
        roster = await self._lookup(self._dir.roster(owner), f"the roster of {owner}")
        check_roster(owner, contact, roster, self.settings.policy.roster)

    async def _may_read(self, requester: str, conv: Conversation) -> bool:
        try:
            await self._check(requester, conv)
        except ProtocolError as exc:
            if exc.condition in _REFUSALS:
                return False
            raise
        return True

    @staticmethod
    async def _lookup(call: Awaitable[T], what: str) -> T:
        try:
            return await call
        except RoomNotFound as exc:
            raise errors.room_not_found(str(exc)) from None
        except LookupTimeout:
            raise errors.lookup_timeout(what) from None
        except NotReady as exc:
            raise errors.internal(f"not ready: {exc}") from None
        except LookupFailed as exc:
            raise errors.internal(f"looking up {what} failed: {exc}") from None

    # --- keys ------------------------------------------------------------------------

    async def _seq(self, conv: Conversation, key_id: str) -> int:
        seq = await self._store.seq_of(conv, key_id)
        if seq is None:
            raise errors.item_not_found(f"no key {key_id} in this conversation's history")
        return seq

    def _new_key(self, conv: Conversation, now: int, members: frozenset[str] | None) -> NewKey:
        key_id = new_key_id()
        sealed = self._sealer.seal(new_material(), key_id, conv.key)
        return NewKey(key_id, sealed, now, members)

    def _wrapper(self, wrap: Wrapping | None) -> Wrapper | None:
        if wrap is None:
            if self.settings.policy.require_wrap:
                raise errors.wrap_required()
            return None
        try:
            return Wrapper(wrap.client_public)
        except CryptoError as exc:
            raise errors.bad_request(f"<wrap/>: {exc}") from None

    def _view(
        self,
        requester: str,
        record: KeyRecord,
        wrapper: Wrapper | None,
        material: bool = True,
    ) -> KeyView:
        conv = record.conversation
        peer = conv.other(requester) if conv.kind is Kind.CHAT else conv.jids[0]
        text = epk = None
        if material:
            text = self._sealer.unseal(record.sealed, record.id, conv.key)
            if wrapper is not None:
                text, epk = wrapper.wrap(record.id, text), wrapper.epk
        return KeyView(record.id, conv, peer, record.created_ms, record.retired_ms, text, epk)

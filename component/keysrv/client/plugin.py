"""The slixmpp plugin: conversation keys from a keysrv service, and §8 messages.

    from keysrv.client import register
    plugin = register(xmpp)                      # a ClientXMPP, before connect()
    await plugin.send_text("juliet@example.com", "Hello")
    xmpp.add_event_handler("keysrv_message", on_message)   # a Decrypted or Undecryptable

Keys are fetched with every request wrapped (§5) to a fresh X25519 key, cached
on the device (keysrv.client.cache), and released in batches of the service's
max-batch for history. Failures are typed (keysrv.client.errors).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from xml.etree import ElementTree as ET

from slixmpp import Message
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.base import BasePlugin
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath

from .. import NS
from ..jids import JidError, bare
from . import discovery, errors, message, protocol
from .cache import KeyCache, MemoryKeyCache
from .mam import DELAY_NS
from .message import CLIENT_NS
from .model import ConversationKey

log = logging.getLogger(__name__)
MUC_USER_NS = "http://jabber.org/protocol/muc#user"
DEFAULT_MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Decrypted:
    """A message that passed every §8 check."""

    id: str
    sender: str  # bare JID; in a room the occupant JID (room@service/nick)
    to: str  # bare JID (the room, for groupchat)
    time: str  # the envelope's time stamp (the sender's clock)
    body: str | None
    url: str | None  # an aesgcm:// file URL, if the message shares a file
    key: str  # key id
    room: str | None = None
    ok: bool = True


@dataclass(frozen=True, slots=True)
class Undecryptable:
    """A keysrv message this account cannot read; `error` says why (show it to the user)."""

    id: str
    sender: str
    to: str
    time: str  # when the server stored it (XEP-0203 delay), if known
    key: str
    error: errors.ClientError
    room: str | None = None
    ok: bool = False


Received = Decrypted | Undecryptable


@dataclass(frozen=True, slots=True)
class Sent:
    id: str
    key: str


class KeysrvPlugin(BasePlugin):
    """Register with keysrv.client.register(xmpp, service=..., cache=...)."""

    name = "keysrv"
    description = "Conversation keys from a keysrv service (urn:xmpp:keysrv:0)"
    dependencies: ClassVar[set[str]] = {"xep_0030"}
    default_config: ClassVar[dict[str, Any]] = {
        "service": None,  # the service's JID; None = discover on the account's server
        "cache": None,  # a KeyCache; None = in memory
        "timeout": 10.0,  # seconds to wait for the service
        "fallback_body": True,  # add a plain-text hint <body/> for clients without keysrv
    }

    def plugin_init(self) -> None:
        self.cache: KeyCache = self.config.get("cache") or MemoryKeyCache()
        self._service: str | None = self.config.get("service")
        self._max_batch = DEFAULT_MAX_BATCH
        self._discovered = False
        self._timeout = float(self.config.get("timeout", 10.0))
        self.xmpp.register_handler(
            CoroutineCallback(
                "keysrv message",
                MatchXPath(f"{{{CLIENT_NS}}}message/{{{NS}}}encrypted"),
                self._on_message,
            )
        )

    def plugin_end(self) -> None:
        self.xmpp.remove_handler("keysrv message")

    # --- the service ----------------------------------------------------------------

    async def service(self) -> str:
        """The service JID: configured, or found by disco#items on the account's domain."""
        if self._service is not None and self._discovered:
            return self._service
        if self._service is None:
            self._service = await self._find_service()
        await self._read_info(self._service)
        self._discovered = True
        return self._service

    @property
    def max_batch(self) -> int:
        return self._max_batch

    async def _find_service(self) -> str:
        found = await discovery.find_component(self.xmpp, NS, self._timeout)
        if found is None:
            domain = self.xmpp.boundjid.domain
            raise errors.ServiceNotFound(f"no keysrv service among the items of {domain}")
        return found

    async def _read_info(self, jid: str) -> None:
        info = await discovery.disco_info(self.xmpp, jid, self._timeout)
        if not discovery.has_feature(info, NS):
            raise errors.ServiceNotFound(f"{jid} is not a keysrv service (disco#info)")
        assert info is not None
        for field in info.iter("{jabber:x:data}field"):
            if field.get("var") == "max-batch":
                value = field.findtext("{jabber:x:data}value", "")
                if value.isdigit() and int(value) > 0:
                    self._max_batch = int(value)

    async def _query(
        self, to: str, itype: Literal["get", "set"], payload: ET.Element
    ) -> ET.Element:
        """One IQ; returns the reply's payload element; typed errors."""
        iq = self.xmpp.make_iq(ito=to, itype=itype)
        iq.xml.append(payload)
        what = payload.tag.split("}", 1)[-1]
        try:
            reply = await iq.send(timeout=self._timeout)
        except IqError as exc:
            raise protocol.service_error(exc.iq.xml.find(f"{{{CLIENT_NS}}}error"), what) from None
        except IqTimeout:
            raise errors.ServiceUnavailable(f"{to} did not answer {what} in time") from None
        found = reply.xml[0] if len(reply.xml) else None
        return found if found is not None else ET.Element(payload.tag)

    # --- keys -----------------------------------------------------------------------

    async def current_key(
        self, *, peer: str | None = None, room: str | None = None
    ) -> ConversationKey:
        """The conversation's current key (protocol `create`): made on first use,
        replaced by the service when too old or when a room member left."""
        unwrapper = protocol.Unwrapper()
        payload = protocol.create_payload(peer, room, unwrapper)
        reply = await self._query(await self.service(), "set", payload)
        key = protocol.parse_single(reply, unwrapper)
        await self.cache.put_many([key])
        return key

    async def rotate(
        self, *, peer: str | None = None, room: str | None = None, previous: str | None = None
    ) -> ConversationKey:
        """A new current key; with `previous`, only if that is still the current one."""
        unwrapper = protocol.Unwrapper()
        payload = protocol.rotate_payload(peer, room, previous, unwrapper)
        reply = await self._query(await self.service(), "set", payload)
        key = protocol.parse_single(reply, unwrapper)
        await self.cache.put_many([key])
        return key

    async def keys(self, ids: Iterable[str]) -> protocol.Released:
        """Keys by id: from the cache, the rest released in batches of max-batch."""
        wanted = list(dict.fromkeys(ids))
        found = await self.cache.get_many(wanted)
        missing = [i for i in wanted if i not in found]
        refused: dict[str, str] = {}
        if missing:
            service = await self.service()
            for start in range(0, len(missing), self._max_batch):
                unwrapper = protocol.Unwrapper()
                batch = missing[start : start + self._max_batch]
                reply = await self._query(
                    service, "get", protocol.release_payload(batch, unwrapper)
                )
                released = protocol.parse_release(reply, unwrapper)
                await self.cache.put_many(released.keys.values())
                found.update(released.keys)
                refused.update(released.refused)
        return protocol.Released(found, refused)

    async def key(self, key_id: str) -> ConversationKey:
        """One key by id; KeyUnavailable if the service refuses it."""
        released = await self.keys([key_id])
        if key_id in released.keys:
            return released.keys[key_id]
        reason = released.refused.get(key_id, "item-not-found")
        raise errors.KeyUnavailable(_refusal(key_id, reason), key_id, reason)

    # --- sending --------------------------------------------------------------------

    async def encrypt(
        self, msg: Message, body: str | None, *, url: str | None = None
    ) -> ConversationKey:
        """Fill `msg` (to and type set; type groupchat for a room) with the §8 payload."""
        to = bare(str(msg["to"]))
        in_room = msg["type"] == "groupchat"
        key = await self.current_key(room=to) if in_room else await self.current_key(peer=to)
        me = self.xmpp.boundjid.bare
        children = message.message_children(
            key, body=body, to=to, sender=me, url=url,
            fallback=bool(self.config.get("fallback_body", True)),
        )
        for child in children:
            msg.xml.append(child)
        return key

    async def send_text(
        self, to: str, body: str | None, *, room: bool = False, url: str | None = None
    ) -> Sent:
        """Encrypt and send a chat message (or a groupchat message to room `to`)."""
        msg = self.xmpp.make_message(mto=bare(to), mtype="groupchat" if room else "chat")
        msg["id"] = secrets.token_urlsafe(12)
        key = await self.encrypt(msg, body, url=url)
        msg.send()
        return Sent(msg["id"], key.id)

    # --- receiving ------------------------------------------------------------------

    async def _on_message(self, stanza: StanzaBase) -> None:
        if stanza["type"] == "error":
            return
        (result,) = await self.decrypt_many([stanza.xml])
        self.xmpp.event("keysrv_message", result)

    async def decrypt(self, msg: Message | ET.Element) -> Decrypted:
        """Decrypt one message; raises the typed error if it fails any §8 check."""
        el = msg.xml if isinstance(msg, StanzaBase) else msg
        (result,) = await self.decrypt_many([el])
        if isinstance(result, Undecryptable):
            raise result.error
        return result

    async def decrypt_many(self, messages: Sequence[ET.Element]) -> list[Received]:
        """Decrypt a batch (e.g. an archive page), releasing the missing keys in as
        few requests as max-batch allows. One result per message, in order."""
        found: list[tuple[str, str]] = []
        for el in messages:
            try:
                found.append(message.encrypted_of(el) or ("", ""))
            except errors.MessageError:
                found.append(("", ""))
        ids = [key_id for key_id, _ in found if key_id]
        try:
            released = await self.keys(ids)
        except errors.ClientError as exc:  # the service refused, failed or is not found
            return [self._fail(el, kid, exc) for el, (kid, _) in zip(messages, found, strict=True)]
        results: list[Received] = []
        for el, (key_id, text) in zip(messages, found, strict=True):
            results.append(self._open(el, key_id, text, released))
        return results

    def _open(
        self, el: ET.Element, key_id: str, text: str, released: protocol.Released
    ) -> Received:
        try:
            if not key_id:
                message.encrypted_of(el)  # raises the precise MalformedMessage
                raise errors.MalformedMessage("the message carries no keysrv payload")
            key = released.keys.get(key_id)
            if key is None:
                reason = released.refused.get(key_id, "item-not-found")
                raise errors.KeyUnavailable(_refusal(key_id, reason), key_id, reason)
            ctx = _context(el, self.xmpp.boundjid.bare)
            env = message.open_message(
                key, text, me=self.xmpp.boundjid.bare, sender=ctx.sender, to=ctx.to,
                room=ctx.room, occupant_jid=ctx.occupant,
            )
        except errors.ClientError as exc:
            return self._fail(el, key_id, exc)
        return Decrypted(
            id=el.get("id", ""), sender=ctx.shown_sender, to=ctx.shown_to, time=env.time,
            body=env.body, url=env.url, key=key_id, room=ctx.room,
        )

    def _fail(self, el: ET.Element, key_id: str, exc: errors.ClientError) -> Undecryptable:
        try:
            ctx = _context(el, self.xmpp.boundjid.bare)
            sender, to, room = ctx.shown_sender, ctx.shown_to, ctx.room
        except errors.ClientError:
            sender, to, room = el.get("from", ""), el.get("to", ""), None
        stamp = el.find(f"{{{DELAY_NS}}}delay")
        return Undecryptable(
            id=el.get("id", ""), sender=sender, to=to,
            time=stamp.get("stamp", "") if stamp is not None else "", key=key_id, error=exc,
            room=room,
        )


@dataclass(frozen=True, slots=True)
class _Context:
    sender: str  # for the §8 checks
    to: str
    room: str | None
    occupant: str | None  # the occupant's real JID, when the room tells
    shown_sender: str  # for display: bare JID, or the occupant JID in a room
    shown_to: str


def _context(el: ET.Element, me: str) -> _Context:
    """Who sent a message to whom, and in which room, from the stanza itself."""
    try:
        frm = el.get("from") or me
        to = el.get("to") or me
        if el.get("type") == "groupchat":
            room = bare(frm)
            item = el.find(f"{{{MUC_USER_NS}}}x/{{{MUC_USER_NS}}}item")
            occupant = bare(item.get("jid", "")) if item is not None and item.get("jid") else None
            return _Context(frm, room, room, occupant, frm, room)
        return _Context(frm, to, None, None, bare(frm), bare(to))
    except JidError as exc:
        raise errors.MalformedMessage(f"the message has a bad from or to: {exc}") from None


def _refusal(key_id: str, reason: str) -> str:
    if reason == "forbidden":
        return f"the key service refuses key {key_id}: this account may not read that conversation"
    return f"the key service does not know key {key_id}"


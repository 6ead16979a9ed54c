"""XMPP implementation of the Directory: rosters through XEP-0356 (privileged
entity) and MUC affiliation/role lists through muc#admin.

Every lookup has a timeout. Caching is added on top by access.CachedDirectory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from xml.etree import ElementTree as ET

from slixmpp import ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout

from .access import RoomInfo, Roster, RosterItem
from .errors import LookupFailed, LookupTimeout, NotReady, RoomNotFound
from .jids import JidError, bare, domain_of

log = logging.getLogger(__name__)

PRIVILEGE_NAMESPACES = ("urn:xmpp:privilege:2", "urn:xmpp:privilege:1")
ROSTER_NS = "jabber:iq:roster"
MUC_ADMIN_NS = "http://jabber.org/protocol/muc#admin"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
AFFILIATIONS = ("owner", "admin", "member", "outcast")
ROLES = ("moderator", "participant", "visitor")
_UNREACHABLE = frozenset({"remote-server-timeout", "remote-server-not-found"})


class Privileges:
    """Roster access the server granted, per user domain (XEP-0356 advertisements)."""

    def __init__(self) -> None:
        self._roster: dict[str, str] = {}
        self._changed = asyncio.Event()

    def clear(self) -> None:
        """Forget grants: a new stream gets a new advertisement."""
        self._roster.clear()

    def grant(self, domain: str, roster_access: str) -> None:
        self._roster[domain] = roster_access
        self._changed.set()
        self._changed = asyncio.Event()

    def can_read_roster(self, domain: str) -> bool:
        return self._roster.get(domain) in ("get", "both")

    async def wait_roster(self, domain: str, timeout: float) -> None:
        """Wait (briefly) for roster access to `domain`: it arrives just after the handshake."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.can_read_roster(domain):
            left = deadline - loop.time()
            if left <= 0:
                raise NotReady(f"the server has not granted roster access for {domain}")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue


def parse_privilege(message: ET.Element) -> dict[str, str]:
    """The `perm` entries of an XEP-0356 advertisement (namespace :1 or :2)."""
    for ns in PRIVILEGE_NAMESPACES:
        priv = message.find(f"{{{ns}}}privilege")
        if priv is not None:
            return {
                p.get("access", ""): p.get("type", "none") for p in priv.findall(f"{{{ns}}}perm")
            }
    return {}


async def server_software(xmpp: ComponentXMPP, domain: str, timeout: float) -> str | None:
    """The name the server serving `domain` gives itself in disco#info (its `server`
    identity), lowercased: "prosody", "ejabberd", ... None if it does not say."""
    iq = xmpp.make_iq_get(ito=domain, ifrom=xmpp.boundjid.bare)
    ET.SubElement(iq.xml, f"{{{DISCO_INFO_NS}}}query")
    try:
        reply = await iq.send(timeout=timeout)
    except (IqTimeout, IqError):
        return None
    for identity in reply.xml.iter(f"{{{DISCO_INFO_NS}}}identity"):
        if identity.get("category") == "server" and identity.get("name"):
            return identity.get("name", "").strip().lower()
    return None


class XmppDirectory:
    """Directory over a connected ComponentXMPP."""

    def __init__(
        self,
        xmpp: ComponentXMPP,
        privileges: Privileges,
        timeout: float,
        with_occupants: bool,
    ) -> None:
        self._xmpp = xmpp
        self._privileges = privileges
        self._timeout = timeout
        self._with_occupants = with_occupants

    async def _query(self, to: str, ns: str, item: dict[str, str] | None = None) -> ET.Element:
        started = time.perf_counter()
        what = f"{ns.rsplit('/', 1)[-1]} {' '.join(f'{k}={v}' for k, v in (item or {}).items())}"
        iq = self._xmpp.make_iq_get(ito=to, ifrom=self._xmpp.boundjid.bare)
        query = ET.SubElement(iq.xml, f"{{{ns}}}query")
        if item is not None:
            ET.SubElement(query, f"{{{ns}}}item", item)
        try:
            reply = await iq.send(timeout=self._timeout)
        except IqTimeout:
            raise LookupTimeout(f"no answer from {to} within {self._timeout:g} s") from None
        except IqError as exc:
            condition = exc.iq["error"]["condition"]
            text = exc.iq["error"]["text"]
            if condition in _UNREACHABLE:
                raise LookupTimeout(f"{to} is unreachable ({condition})") from None
            if condition in ("item-not-found", "gone") and ns == MUC_ADMIN_NS:
                raise RoomNotFound(to) from None
            detail = f"{to} answered {condition}" + (f": {text}" if text else "")
            raise LookupFailed(detail) from None
        found = reply.xml.find(f"{{{ns}}}query")
        found = found if found is not None else ET.Element(f"{{{ns}}}query")
        ms = (time.perf_counter() - started) * 1000
        log.debug("lookup %s of %s: %d items (%.1f ms)", what.strip(), to, len(found), ms)
        return found

    async def roster(self, user: str) -> Roster:
        await self._privileges.wait_roster(domain_of(user), min(self._timeout, 2.0))
        query = await self._query(user, ROSTER_NS)
        items: dict[str, RosterItem] = {}
        for el in query.findall(f"{{{ROSTER_NS}}}item"):
            try:
                jid = bare(el.get("jid", ""))
            except JidError:
                continue
            if el.get("subscription") == "remove":
                continue
            items[jid] = RosterItem(el.get("subscription", "none"), el.get("ask") == "subscribe")
        return items

    async def room(self, room: str) -> RoomInfo:
        lists = [("affiliation", a) for a in AFFILIATIONS]
        if self._with_occupants:
            lists += [("role", r) for r in ROLES]
        results = await asyncio.gather(
            *(self._query(room, MUC_ADMIN_NS, {attr: value}) for attr, value in lists)
        )
        affiliations: dict[str, str] = {}
        occupants: set[str] = set()
        for (attr, value), query in zip(lists, results, strict=True):
            for el in query.findall(f"{{{MUC_ADMIN_NS}}}item"):
                try:
                    jid = bare(el.get("jid", ""))
                except JidError:
                    continue
                if attr == "affiliation":
                    affiliations[jid] = el.get("affiliation", value)
                else:
                    occupants.add(jid)
        return RoomInfo(affiliations, frozenset(occupants) if self._with_occupants else None)

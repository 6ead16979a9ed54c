"""Find a service on the account's server: disco#items on its domain, then the
first item whose disco#info has the wanted feature (XEP-0030)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from slixmpp.basexmpp import BaseXMPP
from slixmpp.exceptions import IqError, IqTimeout

DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"


async def disco_info(xmpp: BaseXMPP, jid: str, timeout: float) -> ET.Element | None:
    """The disco#info <query/> of `jid`, or None if it errs or stays silent."""
    iq = xmpp.make_iq_get(ito=jid)
    iq.xml.append(ET.Element(f"{{{DISCO_INFO_NS}}}query"))
    try:
        reply = await iq.send(timeout=timeout)
    except (IqError, IqTimeout):
        return None
    return reply.xml.find(f"{{{DISCO_INFO_NS}}}query")


def has_feature(info: ET.Element | None, feature: str) -> bool:
    return info is not None and any(
        f.get("var") == feature for f in info.iter(f"{{{DISCO_INFO_NS}}}feature")
    )


async def find_component(xmpp: BaseXMPP, feature: str, timeout: float) -> str | None:
    """The JID of the first item of the account's domain offering `feature`."""
    iq = xmpp.make_iq_get(ito=xmpp.boundjid.domain)
    iq.xml.append(ET.Element(f"{{{DISCO_ITEMS_NS}}}query"))
    try:
        reply = await iq.send(timeout=timeout)
    except (IqError, IqTimeout):
        return None
    for item in reply.xml.iter(f"{{{DISCO_ITEMS_NS}}}item"):
        jid = item.get("jid", "")
        if jid and has_feature(await disco_info(xmpp, jid, timeout), feature):
            return jid
    return None

"""Read a MAM archive (XEP-0313, urn:xmpp:mam:2): the last N messages of a chat
or a room, oldest first, as plain message elements ready for decrypt_many()."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ..jids import JidError, bare
from . import errors
from .message import CLIENT_NS

MAM_NS = "urn:xmpp:mam:2"
RSM_NS = "http://jabber.org/protocol/rsm"
FORWARD_NS = "urn:xmpp:forward:0"
DELAY_NS = "urn:xmpp:delay"
DATA_NS = "jabber:x:data"
MAX_MESSAGES = 10_000


@dataclass(frozen=True, slots=True)
class Archived:
    archive_id: str  # the archive's id of the entry (RSM paging)
    time: str  # when the server stored it
    message: ET.Element  # the forwarded <message/>, with a <delay/> added


def _query(queryid: str, with_: str | None, page: int, before: str) -> ET.Element:
    query = ET.Element(f"{{{MAM_NS}}}query", {"queryid": queryid})
    form = ET.SubElement(query, f"{{{DATA_NS}}}x", {"type": "submit"})
    ft = ET.SubElement(form, f"{{{DATA_NS}}}field", {"var": "FORM_TYPE", "type": "hidden"})
    ET.SubElement(ft, f"{{{DATA_NS}}}value").text = MAM_NS
    if with_ is not None:
        field = ET.SubElement(form, f"{{{DATA_NS}}}field", {"var": "with"})
        ET.SubElement(field, f"{{{DATA_NS}}}value").text = with_
    rsm = ET.SubElement(query, f"{{{RSM_NS}}}set")
    ET.SubElement(rsm, f"{{{RSM_NS}}}max").text = str(page)
    ET.SubElement(rsm, f"{{{RSM_NS}}}before").text = before or None
    return query


async def last_messages(
    xmpp: ClientXMPP,
    *,
    archive: str | None = None,
    with_: str | None = None,
    count: int = 50,
    page: int = 50,
    timeout: float = 20.0,
) -> list[Archived]:
    """The last `count` archived messages, oldest first.

    `archive` None reads the account's own archive (filtered by `with_`, a chat
    peer's bare JID); a room's bare JID reads that room's archive.
    """
    count = max(0, min(count, MAX_MESSAGES))
    owner = archive or "this account"
    me = xmpp.boundjid.bare
    archive = bare(archive) if archive else None
    collected: list[Archived] = []
    before = ""
    while len(collected) < count:
        queryid = secrets.token_hex(8)
        batch: list[Archived] = []

        def on_result(stanza: StanzaBase, queryid: str = queryid, batch: list = batch) -> None:
            result = stanza.xml.find(f"{{{MAM_NS}}}result")
            if result is None or result.get("queryid") != queryid:
                return
            try:
                sender = bare(stanza.xml.get("from") or me)
            except JidError:
                return
            if sender != (archive or me):
                return  # only the queried archive may answer (XEP-0313)
            forwarded = result.find(f"{{{FORWARD_NS}}}forwarded")
            inner = forwarded.find(f"{{{CLIENT_NS}}}message") if forwarded is not None else None
            if inner is None:
                return
            delay = forwarded.find(f"{{{DELAY_NS}}}delay") if forwarded is not None else None
            stamp = delay.get("stamp", "") if delay is not None else ""
            if delay is not None and inner.find(f"{{{DELAY_NS}}}delay") is None:
                inner.append(delay)
            batch.append(Archived(result.get("id", ""), stamp, inner))

        name = f"mam {queryid}"
        xmpp.register_handler(
            Callback(name, MatchXPath(f"{{{CLIENT_NS}}}message/{{{MAM_NS}}}result"), on_result)
        )
        iq = xmpp.make_iq_set(ito=archive)
        iq.xml.append(_query(queryid, with_, min(page, count - len(collected)), before))
        try:
            reply = await iq.send(timeout=timeout)
        except IqError as exc:
            err = exc.iq["error"]
            why = err["text"] or err["condition"]
            raise errors.ClientError(f"the archive of {owner} refused the query: {why}") from None
        except IqTimeout:
            raise errors.ClientError(f"the archive of {owner} did not answer in time") from None
        finally:
            xmpp.remove_handler(name)
        collected[:0] = batch
        fin = reply.xml.find(f"{{{MAM_NS}}}fin")
        first = fin.findtext(f"{{{RSM_NS}}}set/{{{RSM_NS}}}first", "") if fin is not None else ""
        if not batch or not first or (fin is not None and fin.get("complete") == "true"):
            break
        before = first
    return collected[-count:] if count else []

"""The wire format of urn:xmpp:keysrv:0: parse request payloads into plain
requests, and build reply payloads from plain values.

Pure ElementTree: no slixmpp, so the client library and tests share it.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

from . import NS, errors
from .crypto import WRAP_ALG, CryptoError, b64, unb64
from .jids import JidError, bare
from .model import (
    CreateRequest,
    KeyView,
    Kind,
    ListRequest,
    Page,
    PageRequest,
    ReleaseItem,
    ReleaseRequest,
    Request,
    RotateRequest,
    Target,
    Wrapping,
    iso,
)

RSM_NS = "http://jabber.org/protocol/rsm"
ALG = "A256GCM"
DEFAULT_PAGE = 50
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IQ_TYPE = {"create": "set", "rotate": "set", "release": "get", "list": "get"}
_MAX_RAW_IDS = 10_000  # bound on <key/> children read, duplicates included


def q(name: str, ns: str = NS) -> str:
    return f"{{{ns}}}{name}"


def parse_request(iq_type: str, payload: ET.Element | None, max_batch: int) -> Request:
    """Parse the child of an IQ addressed to the service; raises ProtocolError."""
    if payload is None:
        raise errors.bad_request("empty IQ: expected create, rotate, release or list")
    if not payload.tag.startswith(f"{{{NS}}}"):
        raise errors.bad_request(f"unexpected element {payload.tag}")
    name = payload.tag.split("}", 1)[1]
    want = _IQ_TYPE.get(name)
    if want is None:
        raise errors.unknown_operation(name)
    if iq_type != want:
        raise errors.bad_request(f"<{name}/> goes in an IQ of type '{want}', not '{iq_type}'")
    if name == "create":
        return CreateRequest(_target(payload), _wrap(payload))
    if name == "rotate":
        previous = payload.get("previous")
        if previous is not None:
            _check_id(previous, "previous")
        return RotateRequest(_target(payload), previous, _wrap(payload))
    if name == "release":
        return ReleaseRequest(_ids(payload, max_batch), _wrap(payload))
    return ListRequest(_target(payload), _page(payload))


def _target(el: ET.Element) -> Target:
    with_, room = el.get("with"), el.get("room")
    if (with_ is None) == (room is None):
        raise errors.bad_request("give exactly one of 'with' (a chat) or 'room'")
    kind, raw = (Kind.CHAT, with_) if with_ is not None else (Kind.ROOM, room)
    assert raw is not None
    try:
        return Target(kind, bare(raw))
    except JidError as exc:
        attr = "with" if kind is Kind.CHAT else "room"
        raise errors.jid_malformed(f"'{attr}' is not a valid JID: {exc}") from None


def _check_id(value: str, what: str) -> None:
    if not KEY_ID.match(value):
        raise errors.bad_request(f"{what}: a key id is 1-64 characters of A-Z a-z 0-9 _ -")


def _ids(el: ET.Element, max_batch: int) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for n, child in enumerate(el.iterfind(q("key"))):
        if n >= _MAX_RAW_IDS:
            raise errors.bad_request(f"too many <key/> elements (at most {max_batch} ids)")
        key_id = child.get("id")
        if key_id is None:
            raise errors.bad_request("<key/> without 'id'")
        _check_id(key_id, "id")
        seen[key_id] = None
    if not seen:
        raise errors.bad_request("<release/> names no key: give 1 to max-batch <key id=''/>")
    if len(seen) > max_batch:
        raise errors.bad_request(f"{len(seen)} ids asked, at most {max_batch} per release")
    return tuple(seen)


def _wrap(el: ET.Element) -> Wrapping | None:
    wraps = el.findall(q("wrap"))
    if not wraps:
        return None
    if len(wraps) > 1:
        raise errors.bad_request("more than one <wrap/>")
    wrap = wraps[0]
    if wrap.get("alg") != WRAP_ALG:
        raise errors.bad_request(f"<wrap/> alg must be {WRAP_ALG}")
    try:
        public = unb64((wrap.text or "").strip())
    except CryptoError:
        raise errors.bad_request("<wrap/> must hold a base64 X25519 public key") from None
    if len(public) != 32:
        raise errors.bad_request("<wrap/> must hold a 32-byte X25519 public key")
    return Wrapping(public)


def _page(el: ET.Element) -> PageRequest:
    rsm = el.find(q("set", RSM_NS))
    if rsm is None:
        return PageRequest(DEFAULT_PAGE)
    size = DEFAULT_PAGE
    max_el = rsm.find(q("max", RSM_NS))
    if max_el is not None:
        text = (max_el.text or "").strip()
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise errors.bad_request("RSM <max/> must be a whole number")
        size = int(text)
    after_el, before_el = rsm.find(q("after", RSM_NS)), rsm.find(q("before", RSM_NS))
    if after_el is not None and before_el is not None:
        raise errors.bad_request("RSM: give <after/> or <before/>, not both")
    after = before = None
    if after_el is not None:
        after = (after_el.text or "").strip()
        _check_id(after, "RSM <after/>")
    if before_el is not None:
        before = (before_el.text or "").strip()
        if before:
            _check_id(before, "RSM <before/>")
    return PageRequest(size, after, before)


# --- replies ---------------------------------------------------------------------------


def key_element(view: KeyView) -> ET.Element:
    el = ET.Element(q("key"), {"id": view.id, "alg": ALG, "created": iso(view.created_ms)})
    if view.retired_ms is not None:
        el.set("retired", iso(view.retired_ms))
    el.set("with" if view.conversation.kind is Kind.CHAT else "room", view.peer)
    if view.epk is not None:
        el.set("epk", b64(view.epk))
    if view.text is not None:
        el.text = b64(view.text)
    return el


def release_element(items: list[ReleaseItem]) -> ET.Element:
    el = ET.Element(q("release"))
    for item in items:
        if item.key is not None:
            el.append(key_element(item.key))
        else:
            ET.SubElement(el, q("key"), {"id": item.id, "error": item.error or "forbidden"})
    return el


def list_element(page: Page) -> ET.Element:
    el = ET.Element(q("list"))
    for view in page.keys:
        el.append(key_element(view))
    rsm = ET.SubElement(el, q("set", RSM_NS))
    if page.keys:
        first = ET.SubElement(rsm, q("first", RSM_NS), {"index": str(page.first_index or 0)})
        first.text = page.keys[0].id
        ET.SubElement(rsm, q("last", RSM_NS)).text = page.keys[-1].id
    ET.SubElement(rsm, q("count", RSM_NS)).text = str(page.count)
    return el

"""Client side of the keysrv wire protocol (sections 3 to 6): request payloads, reply
parsing with §5 unwrapping, and IQ errors mapped to typed exceptions.

Pure ElementTree, like keysrv.wire: the slixmpp plugin only moves these elements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .. import NS
from ..crypto import WRAP_ALG, CryptoError, b64, unb64, unwrap
from ..jids import JidError, bare
from ..wire import KEY_ID
from . import errors
from .model import ConversationKey

STANZA_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


@dataclass(frozen=True, slots=True)
class Released:
    """One release answer: the keys granted, and why each other id was refused."""

    keys: dict[str, ConversationKey]
    refused: dict[str, str]  # id -> "forbidden" | "item-not-found"


class Unwrapper:
    """A fresh X25519 key pair for one request (§5): every answer is wrapped to it."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()

    def element(self) -> ET.Element:
        wrap = ET.Element(q("wrap"), {"alg": WRAP_ALG})
        wrap.text = b64(self._private.public_key().public_bytes_raw())
        return wrap

    def material(self, el: ET.Element, key_id: str) -> bytes:
        epk = el.get("epk")
        if epk is None:
            raise errors.ServiceError(
                f"the service sent key {key_id} unwrapped; it was asked to wrap"
            )
        try:
            return unwrap(self._private, unb64(epk), key_id, unb64((el.text or "").strip()))
        except (CryptoError, ValueError):
            raise errors.ServiceError(f"key {key_id} from the service does not unwrap") from None


def target_attrs(peer: str | None, room: str | None) -> dict[str, str]:
    if (peer is None) == (room is None):
        raise ValueError("give exactly one of peer and room")
    return {"with": bare(peer)} if peer is not None else {"room": bare(room or "")}


def create_payload(peer: str | None, room: str | None, unwrapper: Unwrapper) -> ET.Element:
    el = ET.Element(q("create"), target_attrs(peer, room))
    el.append(unwrapper.element())
    return el


def rotate_payload(
    peer: str | None, room: str | None, previous: str | None, unwrapper: Unwrapper
) -> ET.Element:
    el = ET.Element(q("rotate"), target_attrs(peer, room))
    if previous is not None:
        el.set("previous", previous)
    el.append(unwrapper.element())
    return el


def release_payload(ids: Iterable[str], unwrapper: Unwrapper) -> ET.Element:
    el = ET.Element(q("release"))
    for key_id in ids:
        ET.SubElement(el, q("key"), {"id": key_id})
    el.append(unwrapper.element())
    return el


def parse_key(el: ET.Element, unwrapper: Unwrapper) -> ConversationKey:
    """A full <key/> (§3) -> ConversationKey; ServiceError if it is not one."""
    key_id = el.get("id", "")
    if el.tag != q("key") or not KEY_ID.match(key_id):
        raise errors.ServiceError("the service sent a malformed key element")
    material = unwrapper.material(el, key_id)
    try:
        peer = bare(el.get("with", "")) if el.get("with") else None
        room = bare(el.get("room", "")) if el.get("room") else None
        return ConversationKey(
            id=key_id,
            material=material,
            created=el.get("created", ""),
            peer=peer,
            room=room,
            retired=el.get("retired"),
        )
    except (JidError, ValueError):
        raise errors.ServiceError(f"key {key_id} names a bad conversation") from None


def parse_single(payload: ET.Element | None, unwrapper: Unwrapper) -> ConversationKey:
    """The <key/> answer of create or rotate."""
    if payload is None:
        raise errors.ServiceError("the service answered without a key")
    return parse_key(payload, unwrapper)


def parse_release(payload: ET.Element | None, unwrapper: Unwrapper) -> Released:
    if payload is None or payload.tag != q("release"):
        raise errors.ServiceError("the service answered release without a <release/>")
    keys: dict[str, ConversationKey] = {}
    refused: dict[str, str] = {}
    for el in payload.findall(q("key")):
        key_id = el.get("id", "")
        if el.get("error"):
            refused[key_id] = el.get("error", "")
        else:
            keys[key_id] = parse_key(el, unwrapper)
    return Released(keys, refused)


_APP_ERRORS: dict[str, type[errors.ServiceError]] = {
    "not-in-roster": errors.NotInRoster,
    "not-a-member": errors.NotAMember,
    "foreign-conversation": errors.ForeignConversation,
    "rate-limited": errors.RateLimited,
}
_CONDITION_ERRORS: dict[str, type[errors.ServiceError]] = {
    "forbidden": errors.KeyRefused,
    "item-not-found": errors.NoSuchRoom,
    "remote-server-timeout": errors.ServiceUnavailable,
    "remote-server-not-found": errors.ServiceUnavailable,
    "internal-server-error": errors.ServiceUnavailable,
    "service-unavailable": errors.ServiceUnavailable,
}


def service_error(error: ET.Element | None, what: str) -> errors.ServiceError:
    """The typed exception for an IQ <error/> element; `what` names the request."""
    if error is None:
        return errors.ServiceError(f"{what} failed without an error element")
    etype = error.get("type", "")
    condition = app = text = ""
    for child in error:
        ns, _, name = child.tag[1:].partition("}")
        if ns == STANZA_ERRORS_NS and name == "text":
            text = (child.text or "").strip()
        elif ns == STANZA_ERRORS_NS:
            condition = name
        elif ns == NS:
            app = name
    cls = _APP_ERRORS.get(app) or _CONDITION_ERRORS.get(condition, errors.ServiceError)
    detail = text or (f"{condition}/{app}" if app else condition) or "no reason given"
    return cls(f"{what} refused by the key service: {detail}", etype, condition, app)

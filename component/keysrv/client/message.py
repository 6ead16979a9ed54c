"""The encrypted message format of protocol §8: pure functions, no I/O.

Sending: `message_children` gives the elements to append to an outgoing
<message/>. Receiving: `encrypted_of` finds the key id and payload, the app
resolves the key, and `open_message` runs every §8 check and returns the
envelope. Failures raise the MessageError subclasses of `errors`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from .. import NS
from ..crypto import NONCE_BYTES, CryptoError, aead_decrypt, aead_encrypt, b64, unb64
from ..jids import JidError, bare
from ..wire import KEY_ID
from .errors import EnvelopeMismatch, MalformedMessage, TamperedMessage, WrongConversation
from .model import ConversationKey

SCE_NS = "urn:xmpp:sce:1"
EME_NS = "urn:xmpp:eme:0"
HINTS_NS = "urn:xmpp:hints"
OOB_NS = "jabber:x:oob"
CLIENT_NS = "jabber:client"
FALLBACK_BODY = "[This message is encrypted with a conversation key.]"
MAX_RPAD = 200
MAX_ENCRYPTED_CHARS = 256 * 1024  # base64 characters; about 192 KiB of ciphertext
TAG_BYTES = 16

_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decrypted XEP-0420 envelope; `to` and `sender` are normalized bare JIDs."""

    body: str | None
    url: str | None
    time: str
    to: str
    sender: str


# --- the envelope (the plaintext) ------------------------------------------------------


def envelope_xml(
    body: str | None,
    *,
    to: str,
    sender: str,
    url: str | None = None,
    stamp: str | None = None,
    rpad: str | None = None,
) -> bytes:
    """The XEP-0420 envelope as compact UTF-8, default namespaces, no XML declaration.

    `to` and `sender` are reduced to bare JIDs (JidError if they are not JIDs).
    """
    rpad = _random_rpad() if rpad is None else rpad
    if len(rpad) > MAX_RPAD:
        raise ValueError(f"rpad is at most {MAX_RPAD} characters")
    for what, text in (("body", body), ("url", url), ("rpad", rpad)):
        if text is not None and _NOT_XML_CHAR.search(text):
            raise ValueError(f"the {what} contains characters XML cannot carry")
    # Unqualified tags with an explicit xmlns attribute: ElementTree then writes the
    # default-namespace form (xmlns="...") instead of ns0: prefixes.
    root = ET.Element("envelope", xmlns=SCE_NS)
    content = ET.SubElement(root, "content")
    if body is not None:
        ET.SubElement(content, "body", xmlns=CLIENT_NS).text = body
    if url is not None:
        ET.SubElement(ET.SubElement(content, "x", xmlns=OOB_NS), "url").text = url
    ET.SubElement(root, "rpad").text = rpad
    ET.SubElement(root, "time", stamp=stamp or utc_stamp())
    ET.SubElement(root, "to", jid=bare(to))
    ET.SubElement(root, "from", jid=bare(sender))
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    # ElementTree leaves CR raw in text, and a parser turns it into LF: escape it.
    return data.replace(b"\r", b"&#13;")


def parse_envelope(data: bytes) -> Envelope:
    """Parse an envelope strictly; MalformedMessage for anything unexpected."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("The decrypted envelope is not UTF-8.") from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise MalformedMessage("The decrypted envelope contains a DOCTYPE or entity declaration.")
    try:
        parser = ET.XMLParser(encoding="utf-8")
        parser.feed(data)
        root = parser.close()
    except ET.ParseError:
        raise MalformedMessage("The decrypted envelope is not well-formed XML.") from None
    if root.tag != _q(SCE_NS, "envelope"):
        raise MalformedMessage("The decrypted payload is not an XEP-0420 envelope.")
    content = _one(root, _q(SCE_NS, "content"), "<content>")
    stamp = _one(root, _q(SCE_NS, "time"), "<time>").get("stamp", "")
    if not _STAMP.match(stamp):
        raise MalformedMessage("The envelope's <time> has no valid XEP-0082 stamp.")
    _at_most_one(root, _q(SCE_NS, "rpad"), "<rpad>")
    body_el = _at_most_one(content, _q(CLIENT_NS, "body"), "<body>")
    x = _at_most_one(content, _q(OOB_NS, "x"), "jabber:x:oob <x>")
    url = None
    if x is not None:
        url = _one(x, _q(OOB_NS, "url"), "jabber:x:oob <url>").text
        if not url:
            raise MalformedMessage("The envelope's jabber:x:oob <url> is empty.")
    return Envelope(
        body=None if body_el is None else body_el.text or "",
        url=url,
        time=stamp,
        to=_envelope_jid(root, "to"),
        sender=_envelope_jid(root, "from"),
    )


# --- the payload: base64(nonce || ciphertext || tag) ------------------------------------


def encrypt_payload(key: ConversationKey, plaintext: bytes) -> str:
    """AES-256-GCM under the key, AAD = the key id in ASCII, fresh nonce."""
    return b64(aead_encrypt(key.material, plaintext, key.id.encode("ascii")))


def decrypt_payload(key: ConversationKey, text: str) -> bytes:
    if len(text) > MAX_ENCRYPTED_CHARS:
        raise MalformedMessage(
            f"The encrypted payload is longer than {MAX_ENCRYPTED_CHARS} characters."
        )
    try:
        blob = unb64(text)
    except CryptoError:
        raise MalformedMessage("The encrypted payload is not valid base64.") from None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise MalformedMessage(
            f"The encrypted payload is truncated: {len(blob)} bytes, "
            f"at least {NONCE_BYTES + TAG_BYTES} are needed."
        )
    try:
        return aead_decrypt(key.material, blob, key.id.encode("ascii"))
    except CryptoError:
        raise TamperedMessage(
            f"The message does not authenticate under key {key.id}: "
            "it was altered or names the wrong key."
        ) from None


def seal(
    key: ConversationKey,
    *,
    body: str | None,
    to: str,
    sender: str,
    url: str | None = None,
    stamp: str | None = None,
) -> str:
    """The text of <encrypted/>: an envelope with fresh padding, encrypted."""
    return encrypt_payload(key, envelope_xml(body, to=to, sender=sender, url=url, stamp=stamp))


# --- the stanza -------------------------------------------------------------------------


def message_children(
    key: ConversationKey,
    *,
    body: str | None,
    to: str,
    sender: str,
    url: str | None = None,
    fallback: bool = True,
) -> list[ET.Element]:
    """The elements to append to an outgoing <message/> (qualified tag names).

    `to` is the peer's or the room's JID, `sender` this account's JID. With a
    `url` and no body, the envelope body is the url (XEP-0454 style); the file
    appears only inside the envelope. WrongConversation if the key is not the
    conversation's.
    """
    room = to if key.room is not None else None
    check_key_context(key, me=sender, sender=sender, to=to, room=room)
    if url is not None and body is None:
        body = url
    encrypted = ET.Element(_q(NS, "encrypted"), key=key.id)
    encrypted.text = seal(key, body=body, to=to, sender=sender, url=url)
    children = [
        encrypted,
        ET.Element(_q(EME_NS, "encryption"), namespace=NS),
        ET.Element(_q(HINTS_NS, "store")),
    ]
    if fallback:
        plain = ET.Element(_q(CLIENT_NS, "body"))
        plain.text = FALLBACK_BODY
        children.append(plain)
    return children


def encrypted_of(message: ET.Element) -> tuple[str, str] | None:
    """(key id, payload text) of a message's <encrypted/> child, or None if it has none."""
    found = message.findall(_q(NS, "encrypted"))
    if not found:
        return None
    if len(found) > 1:
        raise MalformedMessage("The message has more than one <encrypted/> element.")
    key_id = found[0].get("key")
    if key_id is None or not KEY_ID.match(key_id):
        raise MalformedMessage(
            "The <encrypted/> element has no valid key id (1-64 of A-Z a-z 0-9 _ -)."
        )
    return key_id, found[0].text or ""


# --- receiving --------------------------------------------------------------------------


def check_key_context(
    key: ConversationKey, *, me: str, sender: str, to: str, room: str | None
) -> None:
    """§8: the key must belong to the conversation the message is in (before decrypting)."""
    if room is not None:
        here = f"room:{_stanza_bare(room, 'room')}"
    else:
        me_b, sender_b = _stanza_bare(me, "own account's"), _stanza_bare(sender, "sender")
        peer = _stanza_bare(to, "recipient") if sender_b == me_b else sender_b
        here = f"chat:{peer}"
    if _key_conversation(key) != here:
        raise WrongConversation(
            f"Key {key.id} belongs to {key.conversation}, but the message is in {here}."
        )


def open_message(
    key: ConversationKey,
    text: str,
    *,
    me: str,
    sender: str,
    to: str,
    room: str | None = None,
    occupant_jid: str | None = None,
) -> Envelope:
    """The whole §8 receive path: conversation check, decrypt, parse, envelope checks.

    `sender`/`to` are the stanza's from/to. For a room message pass `room` (its bare
    JID) and, where known, the occupant's real JID as `occupant_jid`.
    """
    check_key_context(key, me=me, sender=sender, to=to, room=room)
    envelope = parse_envelope(decrypt_payload(key, text))
    if room is not None:
        want_to = _stanza_bare(room, "room")
        want_from = None if occupant_jid is None else _stanza_bare(occupant_jid, "occupant")
    else:
        want_to, want_from = _stanza_bare(to, "recipient"), _stanza_bare(sender, "sender")
    if envelope.to != want_to:
        raise EnvelopeMismatch(
            f"The envelope is addressed to {envelope.to}, but the message went to {want_to}."
        )
    if want_from is not None and envelope.sender != want_from:
        raise EnvelopeMismatch(
            f"The envelope says it is from {envelope.sender}, "
            f"but the message came from {want_from}."
        )
    return envelope


# --- helpers ----------------------------------------------------------------------------


def utc_stamp() -> str:
    """Now, as an XEP-0082 DateTime in UTC to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_rpad() -> str:
    n = secrets.randbelow(MAX_RPAD + 1)
    return secrets.token_urlsafe(MAX_RPAD)[:n]  # 64 symbols [A-Za-z0-9_-], uniform


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _at_most_one(parent: ET.Element, tag: str, what: str) -> ET.Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise MalformedMessage(f"The envelope has more than one {what}.")
    return found[0] if found else None


def _one(parent: ET.Element, tag: str, what: str) -> ET.Element:
    found = _at_most_one(parent, tag, what)
    if found is None:
        raise MalformedMessage(f"The envelope has no {what}.")
    return found


def _envelope_jid(root: ET.Element, name: str) -> str:
    jid = _one(root, _q(SCE_NS, name), f"<{name}>").get("jid", "")
    try:
        return bare(jid)
    except JidError:
        raise MalformedMessage(f"The envelope's <{name}> has no valid JID.") from None


def _stanza_bare(jid: str, what: str) -> str:
    try:
        return bare(jid)
    except JidError:
        raise MalformedMessage(f"The {what} JID is not a valid JID.") from None


def _key_conversation(key: ConversationKey) -> str:
    """The key's conversation with its JID normalized like the stanza's."""
    if key.room is not None:
        return "room:" + _stanza_bare(key.room, "key's room")
    return "chat:" + _stanza_bare(key.peer or "", "key's peer")

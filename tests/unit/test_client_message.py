from __future__ import annotations

import base64
import re
import secrets
from xml.etree import ElementTree as ET

import pytest

from keysrv.client.errors import (
    EnvelopeMismatch,
    MalformedMessage,
    MessageError,
    TamperedMessage,
    WrongConversation,
)
from keysrv.client.message import (
    CLIENT_NS,
    EME_NS,
    FALLBACK_BODY,
    HINTS_NS,
    MAX_ENCRYPTED_CHARS,
    MAX_RPAD,
    NS,
    OOB_NS,
    SCE_NS,
    check_key_context,
    decrypt_payload,
    encrypt_payload,
    encrypted_of,
    envelope_xml,
    message_children,
    open_message,
    parse_envelope,
    seal,
)
from keysrv.client.model import ConversationKey
from keysrv.crypto import b64, unb64

ROMEO, JULIET, TYBALT = "romeo@example.com", "juliet@example.com", "tybalt@example.com"
ROOM, OTHER_ROOM = "capulets@rooms.example.com", "montagues@rooms.example.com"
BODY = "Meet me at the balcony <at> midnight & bring a ladder"
KEY_ID = "q3X9v0RkT7mB2cYw"
MATERIAL = secrets.token_bytes(32)


def chat_key(peer: str, key_id: str = KEY_ID, material: bytes = MATERIAL) -> ConversationKey:
    return ConversationKey(key_id, material, "2026-11-22T10:00:00Z", peer=peer)


def room_key(room: str = ROOM, key_id: str = KEY_ID) -> ConversationKey:
    return ConversationKey(key_id, MATERIAL, "2026-11-22T10:00:00Z", room=room)


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def send(key: ConversationKey, body: str | None = BODY, **kw) -> ET.Element:
    """Build the outgoing <message/>, serialize it and parse it back as a receiver would."""
    msg = ET.Element(q(CLIENT_NS, "message"), type="chat")
    msg.extend(message_children(key, body=body, **kw))
    return ET.fromstring(ET.tostring(msg))


def payload(key: ConversationKey, body: str = BODY, **kw) -> str:
    found = encrypted_of(send(key, body, **kw))
    assert found is not None
    return found[1]


def clear(exc: pytest.ExceptionInfo[MessageError], *words: str) -> str:
    """One plain sentence, naming what it should, never key material or plaintext."""
    text = str(exc.value)
    assert text.endswith(".") and "\n" not in text and len(text) < 300
    for word in words:
        assert word in text, (word, text)
    for secret in (b64(MATERIAL), MATERIAL.hex(), base64.urlsafe_b64encode(MATERIAL).decode()):
        assert secret not in text
    assert BODY not in text and "balcony" not in text
    return text


# --- round trips ------------------------------------------------------------------------


def test_chat_round_trip_incoming():
    msg = send(chat_key(JULIET), to=JULIET, sender=f"{ROMEO}/orchard")
    found = encrypted_of(msg)
    assert found is not None and found[0] == KEY_ID
    env = open_message(
        chat_key(ROMEO), found[1], me=JULIET, sender=f"{ROMEO}/orchard", to=f"{JULIET}/balcony"
    )
    assert (env.body, env.url, env.sender, env.to) == (BODY, None, ROMEO, JULIET)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env.time)


def test_chat_round_trip_our_own_message_from_the_archive():
    text = payload(chat_key(JULIET), to=JULIET, sender=f"{ROMEO}/orchard")
    # MAM / carbons: from = us, to = the peer; the key's peer is the other party.
    env = open_message(chat_key(JULIET), text, me=ROMEO, sender=f"{ROMEO}/orchard", to=JULIET)
    assert (env.body, env.sender, env.to) == (BODY, ROMEO, JULIET)


def test_jids_are_compared_as_normalized_bare_jids():
    text = payload(chat_key(JULIET), to="Juliet@Example.COM/balcony", sender=ROMEO)
    env = open_message(chat_key("JULIET@example.com"), text, me=ROMEO, sender=ROMEO, to=JULIET)
    assert env.to == JULIET


@pytest.mark.parametrize("occupant", [f"{ROMEO}/orchard", None])
def test_room_round_trip(occupant):
    text = payload(room_key(), to=ROOM, sender=f"{ROMEO}/orchard")
    env = open_message(
        room_key(), text, me=JULIET, sender=f"{ROOM}/Romeo", to=f"{JULIET}/balcony",
        room=ROOM, occupant_jid=occupant,
    )
    assert (env.body, env.sender, env.to) == (BODY, ROMEO, ROOM)


def test_unicode_crlf_and_markup_survive():
    body = "line one\r\nline two\rthree\n\tüñí 🎭 ]]> <x/> &amp;"
    text = seal(chat_key(JULIET), body=body, to=JULIET, sender=ROMEO)
    env = open_message(chat_key(ROMEO), text, me=JULIET, sender=ROMEO, to=JULIET)
    assert env.body == body


def test_url_goes_only_inside_the_envelope():
    url = "aesgcm://upload.example.com/f/abc.jpg#" + "ab" * 44
    msg = send(chat_key(JULIET), body=None, to=JULIET, sender=ROMEO, url=url)
    assert url.encode() not in ET.tostring(msg) and b"upload.example.com" not in ET.tostring(msg)
    found = encrypted_of(msg)
    assert found is not None
    env = open_message(chat_key(ROMEO), found[1], me=JULIET, sender=ROMEO, to=JULIET)
    assert (env.body, env.url) == (url, url)


# --- the stanza -------------------------------------------------------------------------


def test_message_children():
    children = message_children(chat_key(JULIET), body=BODY, to=JULIET, sender=ROMEO)
    assert [c.tag for c in children] == [
        q(NS, "encrypted"), q(EME_NS, "encryption"), q(HINTS_NS, "store"), q(CLIENT_NS, "body"),
    ]
    encrypted, eme, store, fallback = children
    assert encrypted.attrib == {"key": KEY_ID} and unb64(encrypted.text or "")
    assert eme.attrib == {"namespace": NS}
    assert store.attrib == {} and len(store) == 0 and not store.text
    assert fallback.text == FALLBACK_BODY
    assert [c.tag for c in message_children(
        chat_key(JULIET), body=BODY, to=JULIET, sender=ROMEO, fallback=False
    )] == [q(NS, "encrypted"), q(EME_NS, "encryption"), q(HINTS_NS, "store")]


def test_sending_with_another_conversations_key_is_refused():
    with pytest.raises(WrongConversation) as info:
        message_children(chat_key(TYBALT), body=BODY, to=JULIET, sender=ROMEO)
    clear(info, KEY_ID, f"chat:{TYBALT}", f"chat:{JULIET}")
    with pytest.raises(WrongConversation):
        message_children(room_key(), body=BODY, to=OTHER_ROOM, sender=ROMEO)


def test_encrypted_of():
    plain = ET.fromstring("<message xmlns='jabber:client'><body>hi</body></message>")
    assert encrypted_of(plain) is None
    bare_ns = ET.fromstring(
        f"<message><encrypted xmlns='{NS}' key='k-1_A'>QUFB</encrypted></message>"
    )
    assert encrypted_of(bare_ns) == ("k-1_A", "QUFB")


@pytest.mark.parametrize(
    ("inner", "words"),
    [
        (f"<encrypted xmlns='{NS}'>QUFB</encrypted>", ["key id"]),
        (f"<encrypted xmlns='{NS}' key='a b'>QUFB</encrypted>", ["key id"]),
        (f"<encrypted xmlns='{NS}' key='{'a' * 65}'>QUFB</encrypted>", ["key id"]),
        (f"<encrypted xmlns='{NS}' key=''>QUFB</encrypted>", ["key id"]),
        (f"<encrypted xmlns='{NS}' key='a'/><encrypted xmlns='{NS}' key='b'/>", ["more than one"]),
    ],
)
def test_encrypted_of_refuses_a_bad_element(inner, words):
    with pytest.raises(MalformedMessage) as info:
        encrypted_of(ET.fromstring(f"<message xmlns='jabber:client'>{inner}</message>"))
    clear(info, *words)


# --- the envelope -----------------------------------------------------------------------


def test_envelope_xml_is_clean_default_namespace_xml():
    data = envelope_xml(
        BODY, to=f"{JULIET}/balcony", sender=ROMEO, url="https://h/x", stamp="2026-11-22T10:00:00Z",
        rpad="pad",
    )
    assert data.startswith(
        b'<envelope xmlns="urn:xmpp:sce:1"><content><body xmlns="jabber:client">'
    )
    assert b"ns0:" not in data and b"<?xml" not in data and b"\n" not in data
    root = ET.fromstring(data)  # plain ElementTree
    assert root.tag == q(SCE_NS, "envelope")
    names = ("content", "rpad", "time", "to", "from")
    assert [c.tag for c in root] == [q(SCE_NS, n) for n in names]
    assert [c.tag for c in root[0]] == [q(CLIENT_NS, "body"), q(OOB_NS, "x")]
    assert root[0][1][0].tag == q(OOB_NS, "url") and root[0][1][0].text == "https://h/x"
    assert root[2].get("stamp") == "2026-11-22T10:00:00Z"
    assert (root[3].get("jid"), root[4].get("jid")) == (JULIET, ROMEO)
    env = parse_envelope(data)
    assert (env.body, env.url, env.time, env.to, env.sender) == (
        BODY, "https://h/x", "2026-11-22T10:00:00Z", JULIET, ROMEO,
    )


def test_rpad_is_random_and_within_bounds():
    pads = [
        ET.fromstring(envelope_xml("x", to=JULIET, sender=ROMEO))[1].text or ""
        for _ in range(400)
    ]
    assert all(0 <= len(p) <= MAX_RPAD for p in pads)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]*", p) for p in pads)
    assert len({len(p) for p in pads}) > 50  # lengths spread over the range
    assert len(set(pads)) > 390  # and the contents differ
    assert max(len(p) for p in pads) > 150 and min(len(p) for p in pads) < 50


def test_envelope_refuses_text_xml_cannot_carry():
    with pytest.raises(ValueError, match="characters XML cannot carry"):
        envelope_xml("a\x00b", to=JULIET, sender=ROMEO)


ENV = f"<envelope xmlns='{SCE_NS}'>"
CONTENT = "<content><body xmlns='jabber:client'>hi</body></content>"
TIME = "<time stamp='2026-11-22T10:00:00Z'/>"
TO, FROM = f"<to jid='{JULIET}'/>", f"<from jid='{ROMEO}'/>"


@pytest.mark.parametrize(
    ("xml", "words"),
    [
        (f"<!DOCTYPE envelope>{ENV}{CONTENT}{TIME}{TO}{FROM}</envelope>", ["DOCTYPE"]),
        (
            f"<!DOCTYPE e [<!ENTITY x 'y'>]>{ENV}<content><body xmlns='jabber:client'>&x;"
            f"</body></content>{TIME}{TO}{FROM}</envelope>",
            ["DOCTYPE"],
        ),
        (f"{ENV}{CONTENT}{TIME}{TO}{FROM}", ["well-formed"]),
        ("<envelope>" + f"{CONTENT}{TIME}{TO}{FROM}</envelope>", ["not an XEP-0420 envelope"]),
        (f"{ENV}{TIME}{TO}{FROM}</envelope>", ["no <content>"]),
        (f"{ENV}{CONTENT}{TO}{FROM}</envelope>", ["no <time>"]),
        (f"{ENV}{CONTENT}<time stamp='yesterday'/>{TO}{FROM}</envelope>", ["stamp"]),
        (f"{ENV}{CONTENT}{TIME}{FROM}</envelope>", ["no <to>"]),
        (f"{ENV}{CONTENT}{TIME}{TO}</envelope>", ["no <from>"]),
        (f"{ENV}{CONTENT}{TIME}{TO}{TO}{FROM}</envelope>", ["more than one <to>"]),
        (f"{ENV}{CONTENT}{TIME}{TO}{FROM}{FROM}</envelope>", ["more than one <from>"]),
        (f"{ENV}{CONTENT}{TIME}<to jid='a@@b'/>{FROM}</envelope>", ["<to>", "valid JID"]),
        (f"{ENV}{CONTENT}{TIME}{TO}<from/></envelope>", ["<from>", "valid JID"]),
        (f"{ENV}<content><x xmlns='{OOB_NS}'/></content>{TIME}{TO}{FROM}</envelope>", ["<url>"]),
    ],
)
def test_parse_envelope_refuses(xml, words):
    with pytest.raises(MalformedMessage) as info:
        parse_envelope(xml.encode())
    clear(info, *words)


def test_parse_envelope_refuses_non_utf8():
    with pytest.raises(MalformedMessage) as info:
        parse_envelope(f"{ENV}{CONTENT}{TIME}{TO}{FROM}</envelope>".encode("utf-16"))
    clear(info, "UTF-8")


def test_envelope_without_body_or_url_parses():
    env = parse_envelope(f"{ENV}<content/>{TIME}{TO}{FROM}</envelope>".encode())
    assert (env.body, env.url) == (None, None)


def test_a_doctype_envelope_inside_a_valid_payload_is_refused():
    xml = f"<!DOCTYPE envelope>{ENV}{CONTENT}{TIME}{TO}{FROM}</envelope>".encode()
    with pytest.raises(MalformedMessage) as info:
        open_message(chat_key(ROMEO), encrypt_payload(chat_key(ROMEO), xml), me=JULIET,
                     sender=ROMEO, to=JULIET)
    clear(info, "DOCTYPE")


# --- tampering, truncation, wrong keys ----------------------------------------------------


def test_a_flipped_ciphertext_bit_fails_the_tag():
    blob = bytearray(unb64(payload(chat_key(JULIET), to=JULIET, sender=ROMEO)))
    blob[12 + 5] ^= 0x01  # inside the ciphertext, after the nonce
    with pytest.raises(TamperedMessage) as info:
        open_message(chat_key(ROMEO), b64(bytes(blob)), me=JULIET, sender=ROMEO, to=JULIET)
    clear(info, KEY_ID, "altered")


def test_another_key_of_the_same_chat_fails_the_tag():
    text = payload(chat_key(JULIET), to=JULIET, sender=ROMEO)
    other = chat_key(ROMEO, key_id="other-key", material=secrets.token_bytes(32))
    with pytest.raises(TamperedMessage) as info:
        open_message(other, text, me=JULIET, sender=ROMEO, to=JULIET)
    clear(info, "other-key")


def test_a_rewritten_key_attribute_fails_the_tag_even_with_the_same_material():
    # The key id is the AAD: relabelling a payload under another id never opens.
    text = payload(chat_key(JULIET), to=JULIET, sender=ROMEO)
    with pytest.raises(TamperedMessage):
        decrypt_payload(chat_key(ROMEO, key_id="relabelled"), text)


def test_a_short_payload_is_malformed():
    with pytest.raises(MalformedMessage) as info:
        decrypt_payload(chat_key(ROMEO), b64(secrets.token_bytes(27)))
    clear(info, "truncated", "27 bytes", "28")


def test_a_cut_message_is_malformed_when_short_and_tampered_when_not():
    blob = unb64(payload(chat_key(JULIET), to=JULIET, sender=ROMEO))
    with pytest.raises(MalformedMessage) as info:
        decrypt_payload(chat_key(ROMEO), b64(blob[:20]))
    clear(info, "truncated")
    for cut in (28, 40, len(blob) - 1):  # long enough to try: the tag fails
        with pytest.raises(TamperedMessage) as tampered:
            decrypt_payload(chat_key(ROMEO), b64(blob[:cut]))
        clear(tampered, KEY_ID)
    with pytest.raises(MalformedMessage) as cut_text:  # the base64 text itself cut short
        decrypt_payload(chat_key(ROMEO), b64(blob)[:-3])
    clear(cut_text, "base64")


@pytest.mark.parametrize(
    "text", ["not base64!", "QUFB\nQUFB", " QUFBQUFB", "QUFBQQ", "QUFB====", "QUFB\u00e9", ""],
)
def test_bad_base64_is_malformed(text):
    with pytest.raises(MalformedMessage) as info:
        decrypt_payload(chat_key(ROMEO), text)
    clear(info)


def test_an_oversized_payload_is_malformed():
    with pytest.raises(MalformedMessage) as info:
        decrypt_payload(chat_key(ROMEO), "A" * (MAX_ENCRYPTED_CHARS + 4))
    clear(info, "longer than")


def test_envelope_to_mismatch():
    text = seal(chat_key(ROMEO), body=BODY, to="nurse@example.com", sender=ROMEO)
    with pytest.raises(EnvelopeMismatch) as info:
        open_message(chat_key(ROMEO), text, me=JULIET, sender=ROMEO, to=f"{JULIET}/balcony")
    clear(info, "nurse@example.com", JULIET)


def test_envelope_from_mismatch():
    text = seal(chat_key(ROMEO), body=BODY, to=JULIET, sender=TYBALT)
    with pytest.raises(EnvelopeMismatch) as info:
        open_message(chat_key(ROMEO), text, me=JULIET, sender=f"{ROMEO}/orchard", to=JULIET)
    clear(info, TYBALT, ROMEO)


def test_room_envelope_mismatches():
    to_a_person = seal(room_key(), body=BODY, to=JULIET, sender=ROMEO)
    with pytest.raises(EnvelopeMismatch) as info:
        open_message(room_key(), to_a_person, me=JULIET, sender=f"{ROOM}/Romeo", to=JULIET,
                     room=ROOM)
    clear(info, ROOM)
    text = seal(room_key(), body=BODY, to=ROOM, sender=TYBALT)
    with pytest.raises(EnvelopeMismatch) as info:
        open_message(room_key(), text, me=JULIET, sender=f"{ROOM}/Romeo", to=JULIET, room=ROOM,
                     occupant_jid=f"{ROMEO}/orchard")
    clear(info, TYBALT, ROMEO)


@pytest.mark.parametrize(
    ("key", "room", "words"),
    [
        (chat_key(TYBALT), None, [f"chat:{TYBALT}", f"chat:{ROMEO}"]),  # chat key of another peer
        (room_key(), None, [f"room:{ROOM}", f"chat:{ROMEO}"]),  # a room key for a chat message
        (chat_key(ROMEO), ROOM, [f"chat:{ROMEO}", f"room:{ROOM}"]),  # a chat key in a room
        (room_key(OTHER_ROOM), ROOM, [f"room:{OTHER_ROOM}", f"room:{ROOM}"]),  # another room
    ],
)
def test_a_key_of_another_conversation_is_refused_before_decrypting(key, room, words):
    # The payload is garbage: the check must fire before any decryption is tried.
    with pytest.raises(WrongConversation) as info:
        open_message(key, "not even base64", me=JULIET, sender=f"{ROMEO}/orchard",
                     to=JULIET, room=room)
    clear(info, key.id, *words)


def test_check_key_context_for_our_own_sent_message():
    check_key_context(chat_key(ROMEO), me=JULIET, sender=f"{JULIET}/x", to=ROMEO, room=None)
    with pytest.raises(WrongConversation):
        check_key_context(chat_key(ROMEO), me=JULIET, sender=f"{JULIET}/x", to=TYBALT, room=None)


def test_bad_stanza_jids_are_malformed():
    with pytest.raises(MalformedMessage) as info:
        open_message(chat_key(ROMEO), "QUFB", me=JULIET, sender="a@@b", to=JULIET)
    clear(info, "sender", "valid JID")

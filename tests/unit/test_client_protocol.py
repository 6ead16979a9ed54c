"""The client's side of the key protocol, against the service's own wire code:
payloads parse as requests, answers parse back into keys, errors map to types."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from keysrv import NS
from keysrv.client import errors, protocol
from keysrv.client.cache import MemoryKeyCache, SqliteKeyCache, default_cache_path
from keysrv.client.model import ConversationKey
from keysrv.crypto import Wrapper, new_key_id, new_material
from keysrv.model import Conversation, KeyView, ReleaseItem, ReleaseRequest
from keysrv.wire import key_element, parse_request, release_element

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def view(conv: Conversation, peer: str, wrapper: Wrapper | None, material: bytes, kid: str):
    text = wrapper.wrap(kid, material) if wrapper else material
    return KeyView(id=kid, conversation=conv, peer=peer, created_ms=1_700_000_000_000,
                   retired_ms=None, text=text, epk=wrapper.epk if wrapper else None)


def test_release_round_trip_through_the_service_wire_code():
    unwrapper = protocol.Unwrapper()
    ids = [new_key_id(), new_key_id()]
    request = parse_request("get", protocol.release_payload(ids, unwrapper), max_batch=100)
    assert isinstance(request, ReleaseRequest) and list(request.ids) == ids
    assert request.wrap is not None
    wrapper = Wrapper(request.wrap.client_public)
    conv = Conversation.chat("romeo@example.com", "juliet@example.com")
    material = new_material()
    answer = release_element([
        ReleaseItem(ids[0], view(conv, "romeo@example.com", wrapper, material, ids[0]), None),
        ReleaseItem(ids[1], None, "forbidden"),
    ])
    released = protocol.parse_release(answer, unwrapper)
    assert released.refused == {ids[1]: "forbidden"}
    key = released.keys[ids[0]]
    assert (key.material, key.peer, key.room) == (material, "romeo@example.com", None)
    assert material.hex() not in repr(key)


def test_unwrapped_answer_to_a_wrapped_request_is_refused():
    conv = Conversation.chat("romeo@example.com", "juliet@example.com")
    kid = new_key_id()
    el = key_element(view(conv, "romeo@example.com", None, new_material(), kid))
    with pytest.raises(errors.ServiceError, match="unwrapped"):
        protocol.parse_key(el, protocol.Unwrapper())


def test_a_key_wrapped_for_another_device_does_not_open():
    other = protocol.Unwrapper()
    request = parse_request("get", protocol.release_payload(["abc"], other), max_batch=100)
    assert request.wrap is not None
    conv = Conversation.chat("romeo@example.com", "juliet@example.com")
    el = key_element(view(conv, "romeo@example.com", Wrapper(request.wrap.client_public),
                          new_material(), "abc"))
    with pytest.raises(errors.ServiceError, match="does not unwrap"):
        protocol.parse_key(el, protocol.Unwrapper())


def error(etype: str, condition: str, app: str | None = None, text: str = "") -> ET.Element:
    el = ET.Element("{jabber:client}error", {"type": etype})
    ET.SubElement(el, f"{{{STANZAS}}}{condition}")
    if text:
        ET.SubElement(el, f"{{{STANZAS}}}text").text = text
    if app:
        ET.SubElement(el, f"{{{NS}}}{app}")
    return el


@pytest.mark.parametrize(("etype", "condition", "app", "cls"), [
    ("auth", "forbidden", "not-in-roster", errors.NotInRoster),
    ("auth", "forbidden", "not-a-member", errors.NotAMember),
    ("auth", "forbidden", None, errors.KeyRefused),
    ("cancel", "not-allowed", "foreign-conversation", errors.ForeignConversation),
    ("cancel", "item-not-found", None, errors.NoSuchRoom),
    ("wait", "resource-constraint", "rate-limited", errors.RateLimited),
    ("wait", "remote-server-timeout", None, errors.ServiceUnavailable),
    ("modify", "bad-request", None, errors.ServiceError),
])
def test_service_errors_are_typed(etype, condition, app, cls):
    exc = protocol.service_error(error(etype, condition, app, "plain words"), "create")
    assert type(exc) is cls
    assert (exc.etype, exc.condition, exc.app) == (etype, condition, app or "")
    assert str(exc) == "create refused by the key service: plain words"


def test_a_key_names_one_conversation():
    with pytest.raises(ValueError):
        ConversationKey("a", new_material(), "t", peer="x@example.com", room="r@muc.example.com")
    with pytest.raises(ValueError):
        ConversationKey("a", new_material(), "t")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_caches_keep_keys(tmp_path, kind):
    keys = [ConversationKey(new_key_id(), new_material(), "2026-11-23T00:00:00Z",
                            peer="juliet@example.com"),
            ConversationKey(new_key_id(), new_material(), "2026-11-23T00:00:00Z",
                            room="verona@conference.example.com", retired="2026-11-24T00:00:00Z")]
    path = tmp_path / "c" / "cache.sqlite3"
    cache = MemoryKeyCache() if kind == "memory" else await SqliteKeyCache.open(path)
    await cache.put_many(keys)
    assert await cache.get_many([keys[1].id, "nope", keys[0].id]) == {k.id: k for k in keys}
    if kind == "sqlite":
        await cache.close()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        cache = await SqliteKeyCache.open(path)  # survives a restart
        assert (await cache.get_many([keys[0].id]))[keys[0].id] == keys[0]
    await cache.close()


def test_cache_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_cache_path("romeo@example.com") == (
        tmp_path / "keysrv-client" / "romeo@example.com.sqlite3")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_path("romeo@example.com").parent == (
        tmp_path / ".local" / "share" / "keysrv-client")

"""Request helpers for the integration tests: build keysrv payloads, read replies."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from harness.xmpp_client import TestClient, error_of

NS = "urn:xmpp:keysrv:0"
RSM = "http://jabber.org/protocol/rsm"
SERVICE = "keys.example.com"


@dataclass(frozen=True)
class Key:
    id: str
    attrs: dict[str, str]
    material: bytes | None

    @classmethod
    def of(cls, el: ET.Element) -> Key:
        assert el.tag == f"{{{NS}}}key", ET.tostring(el)
        text = (el.text or "").strip()
        return cls(el.get("id", ""), dict(el.attrib), base64.b64decode(text) if text else None)


def target(with_: str | None = None, room: str | None = None) -> str:
    return f"with='{with_}'" if with_ else f"room='{room}'"


def result_child(reply: ET.Element) -> ET.Element:
    assert reply.get("type") == "result", ET.tostring(reply).decode()
    assert len(reply) == 1, ET.tostring(reply).decode()
    return reply[0]


async def ask(client: TestClient, iq_type: str, payload: str) -> ET.Element:
    return await client.request(SERVICE, iq_type, payload)


async def create(client: TestClient, with_: str | None = None, room: str | None = None,
                 extra: str = "") -> ET.Element:
    return await ask(client, "set", f"<create xmlns='{NS}' {target(with_, room)}>{extra}</create>")


async def create_key(client: TestClient, with_: str | None = None, room: str | None = None) -> Key:
    return Key.of(result_child(await create(client, with_, room)))


async def rotate(client: TestClient, with_: str | None = None, room: str | None = None,
                 previous: str | None = None) -> Key:
    prev = f" previous='{previous}'" if previous else ""
    reply = await ask(client, "set", f"<rotate xmlns='{NS}' {target(with_, room)}{prev}/>")
    return Key.of(result_child(reply))


async def release(client: TestClient, *ids: str, extra: str = "") -> ET.Element:
    keys = "".join(f"<key id='{i}'/>" for i in ids)
    return await ask(client, "get", f"<release xmlns='{NS}'>{keys}{extra}</release>")


async def release_keys(client: TestClient, *ids: str) -> list[ET.Element]:
    el = result_child(await release(client, *ids))
    assert el.tag == f"{{{NS}}}release"
    return list(el)


async def list_keys(client: TestClient, with_: str | None = None, room: str | None = None,
                    rsm: str = "") -> ET.Element:
    rsm_el = f"<set xmlns='{RSM}'>{rsm}</set>" if rsm else ""
    return await ask(client, "get", f"<list xmlns='{NS}' {target(with_, room)}>{rsm_el}</list>")


def assert_error(reply: ET.Element, etype: str, condition: str, app: str | None = None) -> str:
    """Checks the error triple and that a plain-words text came with it; returns the text."""
    assert reply.get("type") == "error", ET.tostring(reply).decode()
    got_type, got_condition, got_app, text = error_of(reply)
    assert (got_type, got_condition, got_app) == (etype, condition, app), text
    assert text, "every error carries a <text/>"
    return text

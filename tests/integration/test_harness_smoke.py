"""Smoke tests of the test harness itself: real servers, real clients, real outcomes.

They pin down the server facts the harness and keysrv rely on, per server where
Prosody and ejabberd differ."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.fixtures import ClientFactory, start_server
from harness.keysrv_fixtures import KeysrvManager
from harness.raw_component import RawComponent
from harness.servers import ServerError, XmppServer
from harness.xmpp_client import TestClient, error_of

pytestmark = pytest.mark.integration

ROSTER_NS = "jabber:iq:roster"
MUC_ADMIN_NS = "http://jabber.org/protocol/muc#admin"
DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
PRIVILEGE_NS = ("urn:xmpp:privilege:2", "urn:xmpp:privilege:1")


def roster_of(reply: ET.Element) -> dict[str, tuple[str | None, str | None]]:
    """jid -> (subscription, ask) of a jabber:iq:roster result."""
    assert reply.get("type") == "result", ET.tostring(reply, encoding="unicode")
    return {
        item.get("jid", ""): (item.get("subscription"), item.get("ask"))
        for item in reply.iter(f"{{{ROSTER_NS}}}item")
    }


async def get_roster(client: TestClient) -> dict[str, tuple[str | None, str | None]]:
    return roster_of(await client.request("", "get", f"<query xmlns='{ROSTER_NS}'/>"))


def admin_get(affiliation: str) -> str:
    return f"<query xmlns='{MUC_ADMIN_NS}'><item affiliation='{affiliation}'/></query>"


def affiliated(reply: ET.Element) -> set[str]:
    assert reply.get("type") == "result", ET.tostring(reply, encoding="unicode")
    return {item.get("jid", "") for item in reply.iter(f"{{{MUC_ADMIN_NS}}}item")}


@pytest.fixture
async def component(
    server: XmppServer, server_secret: str, keysrv_manager: KeysrvManager
) -> AsyncIterator[RawComponent]:
    # Prosody allows one connection per component: take keysrv's place for this test
    # (the manager starts keysrv again when the next test needs it).
    if keysrv_manager.instance.running:
        assert keysrv_manager.instance.stop() == 0
    comp = await RawComponent.connect(server.component_port, server.component, server_secret)
    yield comp
    await comp.close()


# ---------------------------------------------------------------- config


def test_config_contains_admin_snippet_verbatim(server: XmppServer, server_secret: str) -> None:
    """The server runs the admin snippet as shipped: only the secret (and on ejabberd
    the component port, which the harness picks at random) differ."""
    if server.software == "prosody":
        from harness.prosody import SNIPPET_PATH

        expected = SNIPPET_PATH.read_text(encoding="utf-8").replace(
            '"CHANGE-ME-component-secret"', f'"{server_secret}"'
        )
        config = server.config_path.read_text(encoding="utf-8")
        assert expected in config
    else:
        from harness.ejabberd import SNIPPET_PATH

        expected = (
            SNIPPET_PATH.read_text(encoding="utf-8")
            .replace('"CHANGE-ME-component-secret"', f'"{server_secret}"')
            .replace("port: 5347", f"port: {server.component_port}")
        )
        config = server.config_path.read_text(encoding="utf-8")
        included = server.snippet_config_path  # type: ignore[attr-defined]
        assert f"include_config_file: {included}" in config.replace('"', "")
        assert included.read_text(encoding="utf-8") == expected
    assert '"CHANGE-ME' not in config + expected  # the placeholder was replaced


# ---------------------------------------------------------------- clients


async def test_client_connects(client_factory: ClientFactory, users: dict[str, str]) -> None:
    romeo = await client_factory("romeo")
    assert romeo.full_jid.startswith(users["romeo"] + "/")
    reply = await romeo.request(users["romeo"], "get", DISCO_INFO)
    assert reply.get("type") == "result"


async def test_wrong_password_is_refused(server: XmppServer) -> None:
    client = TestClient("romeo@example.com", "wrong", "127.0.0.1", server.c2s_port)
    with pytest.raises(Exception, match="authentication failed"):
        await client.connect(timeout=5)


# ---------------------------------------------------------------- rosters


async def test_set_roster_for_offline_user(
    server: XmppServer, client_factory: ClientFactory, users: dict[str, str]
) -> None:
    contact = "offline-contact@example.net"
    server.set_roster(users["juliet"], contact, "both")
    juliet = await client_factory("juliet")
    assert (await get_roster(juliet))[contact] == ("both", None)
    await juliet.disconnect()
    server.set_roster(users["juliet"], contact, None)
    juliet = await client_factory("juliet")
    assert contact not in await get_roster(juliet)


async def test_set_roster_for_online_user(
    server: XmppServer, client_factory: ClientFactory, users: dict[str, str]
) -> None:
    romeo = await client_factory("romeo")
    contact = users["mallory"]
    assert contact not in await get_roster(romeo)  # roster now loaded in romeo's session

    server.set_roster(users["romeo"], contact, "to")
    assert (await get_roster(romeo))[contact] == ("to", None)

    server.set_roster(users["romeo"], contact, "none", ask="subscribe")
    assert (await get_roster(romeo))[contact] == ("none", "subscribe")

    server.set_rosters(
        [(users["romeo"], contact, "both", None), (users["romeo"], "x@example.net", "from", None)]
    )
    roster = await get_roster(romeo)
    assert roster[contact] == ("both", None)
    assert roster["x@example.net"] == ("from", None)

    server.set_rosters(
        [(users["romeo"], contact, None, None), (users["romeo"], "x@example.net", None, None)]
    )
    roster = await get_roster(romeo)
    assert contact not in roster and "x@example.net" not in roster


async def test_set_roster_seen_by_privileged_component(
    server: XmppServer,
    client_factory: ClientFactory,
    component: RawComponent,
    users: dict[str, str],
) -> None:
    """The admin snippet grants roster get; changes are visible to the component at once."""
    first = await component.next()
    assert first.tag == "{jabber:component:accept}handshake", ET.tostring(first)
    advert = await component.next()
    perms = [
        (p.get("access"), p.get("type"))
        for ns in PRIVILEGE_NS
        for p in advert.iter(f"{{{ns}}}perm")
    ]
    assert ("roster", "get") in perms, ET.tostring(advert, encoding="unicode")

    async def component_roster(owner: str) -> dict[str | None, str | None]:
        component.send(
            f"<iq type='get' id='r-{owner}' from='{server.component}' to='{owner}'>"
            f"<query xmlns='{ROSTER_NS}'/></iq>"
        )
        reply = await component.next()
        assert reply.get("type") == "result", ET.tostring(reply, encoding="unicode")
        return {i.get("jid"): i.get("subscription") for i in reply.iter(f"{{{ROSTER_NS}}}item")}

    romeo, mallory = users["romeo"], users["mallory"]
    await client_factory("romeo")  # online: his roster lives in his session
    contact = "privileged-check@example.net"
    try:
        # romeo online, mallory offline (her roster ends up in Prosody's roster cache).
        for owner in (romeo, mallory):
            assert contact not in await component_roster(owner)
            server.set_roster(owner, contact, "both")
            assert (await component_roster(owner))[contact] == "both"
            server.set_roster(owner, contact, "from")
            assert (await component_roster(owner))[contact] == "from"
            server.set_roster(owner, contact, None)
            assert contact not in await component_roster(owner)
        # A user that does not exist has an empty roster, not an error.
        assert await component_roster("nobody@example.com") == {}
    finally:
        server.set_rosters([(romeo, contact, None, None), (mallory, contact, None, None)])


async def test_upload_service(server: XmppServer, client_factory: ClientFactory) -> None:
    romeo = await client_factory("romeo")
    ns = "urn:xmpp:http:upload:0"
    reply = await romeo.request(
        server.upload,
        "get",
        f"<request xmlns='{ns}' filename='a.bin' size='5' content-type='text/plain'/>",
    )
    put = reply.find(f".//{{{ns}}}put")
    get = reply.find(f".//{{{ns}}}get")
    assert put is not None and get is not None, ET.tostring(reply, encoding="unicode")
    headers = {h.get("name", ""): h.text or "" for h in put.iter(f"{{{ns}}}header")}

    def transfer() -> tuple[int, bytes]:
        request = urllib.request.Request(
            put.get("url", ""), data=b"hello", method="PUT", headers=headers
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            status = response.status
        with urllib.request.urlopen(get.get("url", ""), timeout=5) as response:
            return status, response.read()

    assert get.get("url", "").startswith(server.upload_url)
    assert await asyncio.to_thread(transfer) == (201, b"hello")


def test_set_roster_rejects_unknown_user(server: XmppServer) -> None:
    with pytest.raises(ServerError, match="no such user"):
        server.set_roster("nobody@example.com", "romeo@example.com", "both")


def test_shell_reports_lua_errors(server: XmppServer) -> None:
    if server.software != "prosody":
        pytest.skip("prosodyctl shell is Prosody's own")
    with pytest.raises(ServerError, match="boom"):
        server.shell("error('boom')")
    with pytest.raises(ServerError, match="bad"):
        server.shell("return nil, 'bad'")
    assert "Result: 3" in server.shell("return 1 + 2")


# ---------------------------------------------------------------- rooms


async def test_room_affiliations_visible_to_owner(
    server: XmppServer, client_factory: ClientFactory, users: dict[str, str]
) -> None:
    room = f"smoke-aff@{server.muc}"
    server.create_room(
        "smoke-aff",
        users["romeo"],
        {users["juliet"]: "member", users["mallory"]: "outcast", "admin@example.net": "admin"},
    )
    romeo = await client_factory("romeo")
    assert affiliated(await romeo.request(room, "get", admin_get("owner"))) == {users["romeo"]}
    assert affiliated(await romeo.request(room, "get", admin_get("admin"))) == {"admin@example.net"}
    assert affiliated(await romeo.request(room, "get", admin_get("member"))) == {users["juliet"]}
    assert affiliated(await romeo.request(room, "get", admin_get("outcast"))) == {users["mallory"]}

    server.set_affiliation(room, users["juliet"], "none")
    server.set_affiliation("smoke-aff", users["mallory"], "member")
    assert affiliated(await romeo.request(room, "get", admin_get("member"))) == {users["mallory"]}
    assert affiliated(await romeo.request(room, "get", admin_get("outcast"))) == set()

    # Not affiliated: forbidden.
    juliet = await client_factory("juliet")
    reply = await juliet.request(room, "get", admin_get("member"))
    assert error_of(reply)[:2] == ("auth", "forbidden")

    with pytest.raises(ServerError, match="room exists"):
        server.create_room("smoke-aff", users["romeo"])


async def test_component_reads_room_affiliations(
    server: XmppServer, component: RawComponent, users: dict[str, str]
) -> None:
    """admins = { "keys.example.com" } in the snippet: the component can list members."""
    await component.next()  # handshake
    await component.next()  # privilege advertisement
    server.create_room("smoke-comp", users["romeo"], {users["juliet"]: "member"})
    component.send(
        f"<iq type='get' id='m1' from='{server.component}' to='smoke-comp@{server.muc}'>"
        f"{admin_get('member')}</iq>"
    )
    reply = await component.next()
    assert affiliated(reply) == {users["juliet"]}


async def test_room_lookup_errors(
    server: XmppServer, client_factory: ClientFactory, users: dict[str, str]
) -> None:
    romeo = await client_factory("romeo")
    reply = await romeo.request(f"no-such-room@{server.muc}", "get", admin_get("member"))
    assert error_of(reply)[:2] == ("cancel", "item-not-found")

    server.create_room("smoke-gone", users["romeo"])
    server.destroy_room("smoke-gone")
    reply = await romeo.request(f"smoke-gone@{server.muc}", "get", admin_get("member"))
    # Prosody keeps a tombstone (gone) for 31 days; ejabberd forgets the room at once.
    gone = "gone" if server.software == "prosody" else "item-not-found"
    assert error_of(reply)[:2] == ("cancel", gone)

    if server.software == "prosody":
        server.create_room("smoke-gone", users["romeo"])  # clears the tombstone
        server.destroy_room("smoke-gone", tombstone=False)
        reply = await romeo.request(f"smoke-gone@{server.muc}", "get", admin_get("member"))
        assert error_of(reply)[:2] == ("cancel", "item-not-found")


async def test_room_and_roster_survive_restart(server: XmppServer, tmp_path: Path) -> None:
    own = start_server(server.software, tmp_path / server.software)
    try:
        own.create_room("durable", "romeo@example.com", {"juliet@example.com": "member"})
        own.set_roster("romeo@example.com", "juliet@example.com", "both")
        own.restart()
        romeo = TestClient("romeo@example.com", "romeo-pw", "127.0.0.1", own.c2s_port)
        await romeo.connect()
        try:
            room = f"durable@{own.muc}"
            reply = await romeo.request(room, "get", admin_get("member"))
            assert affiliated(reply) == {"juliet@example.com"}
            assert (await get_roster(romeo))["juliet@example.com"] == ("both", None)
        finally:
            await romeo.disconnect()
    finally:
        own.cleanup()
    assert not own.running


# ---------------------------------------------------------------- components


async def test_iq_to_unconnected_component(
    server: XmppServer, client_factory: ClientFactory
) -> None:
    target = server.down_component
    mallory = await client_factory("mallory")
    started = time.monotonic()
    reply = await mallory.request(target, "get", DISCO_INFO, timeout=5)
    elapsed = time.monotonic() - started
    assert reply.get("from") == target
    if server.software == "prosody":
        # Prosody's own app condition: {xmpp:prosody.im/protocol/component}not-connected
        expected = ("wait", "remote-server-timeout", "not-connected", "Component unavailable")
    else:
        # ejabberd has no route, falls back to s2s, which the test config denies.
        expected = ("auth", "forbidden", None, "Access denied by service policy")
    assert error_of(reply) == expected, ET.tostring(reply)
    assert elapsed < 1  # immediate, not a timeout


async def test_second_component_connection(server: XmppServer, component: RawComponent) -> None:
    """Prosody refuses a second connection as keys.example.com; ejabberd accepts it
    and would share the stanzas between both: keysrv must make sure it runs once."""
    assert (await component.next()).tag == "{jabber:component:accept}handshake"
    second = await RawComponent.connect(
        server.component_port, server.component, server.secret
    )
    try:
        reply = await second.next()
        if server.software == "prosody":
            assert reply.tag == "{http://etherx.jabber.org/streams}error", ET.tostring(reply)
            assert reply.find("{urn:ietf:params:xml:ns:xmpp-streams}conflict") is not None
        else:
            assert reply.tag == "{jabber:component:accept}handshake", ET.tostring(reply)
    finally:
        second.writer.close()


async def test_wrong_component_secret_is_refused(server: XmppServer) -> None:
    comp = await RawComponent.connect(server.component_port, server.component, "wrong")
    reply = await comp.next()
    assert reply.tag == "{http://etherx.jabber.org/streams}error", ET.tostring(reply)
    assert reply.find("{urn:ietf:params:xml:ns:xmpp-streams}not-authorized") is not None
    comp.writer.close()

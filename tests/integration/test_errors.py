"""Every row of the §6 error table that a client can provoke, on a real Prosody and a
real ejabberd."""

from __future__ import annotations

import base64
import time

import pytest
from kit import NS, SERVICE, ask, assert_error, create

pytestmark = pytest.mark.integration


@pytest.fixture
async def romeo(keysrv, new_user, client_factory):
    return await client_factory(new_user("romeo"))


@pytest.mark.parametrize(
    ("iq_type", "payload"),
    [
        ("set", ""),  # no child
        ("get", f"<create xmlns='{NS}' with='juliet@example.com'/>"),  # wrong IQ type
        ("set", f"<release xmlns='{NS}'><key id='abc'/></release>"),
        ("set", f"<create xmlns='{NS}'/>"),  # neither with nor room
        ("set", f"<create xmlns='{NS}' with='a@example.com' room='r@conference.example.com'/>"),
        ("get", f"<release xmlns='{NS}'/>"),  # zero ids
        ("get", f"<release xmlns='{NS}'><key id='no spaces'/></release>"),  # bad id
        ("get", f"<release xmlns='{NS}'><key id='{'x' * 65}'/></release>"),  # id too long
        ("set", f"<create xmlns='{NS}' with='a@example.com'><wrap alg='X25519-HKDF-SHA256-A256GCM'"
                ">bm90IGEga2V5</wrap></create>"),  # wrap key not 32 bytes
        ("set", f"<rotate xmlns='{NS}' with='a@example.com' previous='bad id'/>"),
        ("get", f"<list xmlns='{NS}' with='a@example.com'><set xmlns='http://jabber.org/"
                "protocol/rsm'><max>-1</max></set></list>"),
    ],
)
async def test_bad_request(romeo, iq_type, payload):
    assert_error(await ask(romeo, iq_type, payload), "modify", "bad-request")


async def test_too_many_ids(romeo):
    ids = "".join(f"<key id='k{i}'/>" for i in range(101))
    text = assert_error(await ask(romeo, "get", f"<release xmlns='{NS}'>{ids}</release>"),
                        "modify", "bad-request")
    assert "100" in text


async def test_with_is_the_requester(romeo):
    me = romeo.xmpp.boundjid
    for jid in (me.bare, me.full, me.bare.upper()):
        assert "itself" in assert_error(await create(romeo, with_=jid), "modify", "bad-request")


async def test_unknown_operation(romeo):
    reply = await ask(romeo, "set", f"<destroy-everything xmlns='{NS}'/>")
    assert_error(reply, "cancel", "service-unavailable")


@pytest.mark.parametrize("jid", ["a@b@example.com", "@example.com", "juliet@exa mple.com",
                                 "juliet@", "juliet@example.com/"])
async def test_jid_malformed(romeo, jid):
    assert_error(await create(romeo, with_=jid), "modify", "jid-malformed")
    assert_error(await create(romeo, room=jid), "modify", "jid-malformed")


async def test_foreign_conversation(keysrv, server, new_user, client_factory):
    eve = await client_factory(new_user("eve", server.other_domain))
    reply = await create(eve, with_=f"bob@{server.other_domain}")
    assert_error(reply, "cancel", "not-allowed", "foreign-conversation")
    romeo = await client_factory(new_user("romeo"))
    reply = await create(romeo, room=f"room@muc.{server.other_domain}")
    assert_error(reply, "cancel", "not-allowed", "foreign-conversation")


async def test_remote_users_follow_the_same_rules(keysrv_manager, server, new_user,
                                                  client_factory):
    keysrv_manager.ensure()
    romeo, eve = new_user("romeo"), new_user("eve", server.other_domain)
    r, e = await client_factory(romeo), await client_factory(eve)
    assert_error(await create(e, with_=romeo), "auth", "forbidden", "not-in-roster")
    server.set_roster(romeo, eve, "both")  # only the local party's roster is consulted
    reply = await create(e, with_=romeo)
    assert reply.get("type") == "result"
    assert (await create(r, with_=eve)).get("type") == "result"
    keysrv_manager.ensure(policy={"allow_remote": False})
    text = assert_error(await create(e, with_=romeo), "auth", "forbidden")
    assert "example.com" in text
    assert (await create(r, with_=eve)).get("type") == "result"


async def test_rate_limited(keysrv_manager, new_user, client_factory):
    keysrv_manager.ensure(limits={"rate": 0.01, "burst": 3})
    client = await client_factory(new_user("chatty"))
    payload = f"<release xmlns='{NS}'><key id='whatever'/></release>"
    replies = [await ask(client, "get", payload) for _ in range(4)]
    assert [r.get("type") for r in replies[:3]] == ["result"] * 3
    assert_error(replies[3], "wait", "resource-constraint", "rate-limited")


async def test_silent_muc_service_is_remote_server_timeout(keysrv_manager, server, new_user,
                                                           client_factory):
    """down.example.com connects as a component but never answers: the lookup times out."""
    from harness.raw_component import RawComponent

    base = keysrv_manager.base["muc_services"]
    keysrv_manager.ensure(muc_services=[*base, server.down_component],
                          limits={"lookup_timeout": "1s"})
    silent = await RawComponent.connect(server.down_component_port, server.down_component,
                                        server.secret + "-down")
    try:
        client = await client_factory(new_user("romeo"))
        started = time.monotonic()
        reply = await create(client, room=f"room@{server.down_component}")
        assert_error(reply, "wait", "remote-server-timeout")
        assert 1 <= time.monotonic() - started < 3
    finally:
        await silent.close()


async def test_unconnected_muc_service(keysrv_manager, server, new_user, client_factory):
    """Nobody serves down.example.com. Prosody says so (remote-server-timeout, passed on);
    ejabberd in the tests (s2s off) answers forbidden, which keysrv cannot tell from a
    refusal of the MUC service itself, so it reports an internal error naming it."""
    base = keysrv_manager.base["muc_services"]
    keysrv_manager.ensure(muc_services=[*base, server.down_component])
    client = await client_factory(new_user("romeo"))
    reply = await create(client, room=f"room@{server.down_component}")
    if server.software == "prosody":
        assert_error(reply, "wait", "remote-server-timeout")
    else:
        assert "forbidden" in assert_error(reply, "wait", "internal-server-error")


async def test_error_text_never_carries_key_material(keysrv, server, new_user, client_factory):
    romeo, juliet = new_user("romeo"), new_user("juliet")
    server.befriend(romeo, juliet)
    r = await client_factory(romeo)
    reply = await create(r, with_=juliet)
    material = reply[0].text
    assert material and base64.b64decode(material)
    bad = await ask(r, "set", f"<create xmlns='{NS}' with='{juliet}' room='{material}'/>")
    assert material not in (assert_error(bad, "modify", "bad-request"))


async def test_disco_info(keysrv, new_user, client_factory):
    client = await client_factory(new_user("romeo"))
    reply = await client.request(
        SERVICE, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    assert reply.get("type") == "result"
    q = reply[0]
    d = "{http://jabber.org/protocol/disco#info}"
    identities = [(i.get("category"), i.get("type"), i.get("name")) for i in q.iter(f"{d}identity")]
    assert identities == [("component", "keys", "Conversation key service")]
    assert NS in {f.get("var") for f in q.iter(f"{d}feature")}
    x = "{jabber:x:data}"
    form = q.find(f"{x}x")
    assert form is not None and form.get("type") == "result"
    fields = {f.get("var"): (f.get("type"), [v.text for v in f.iter(f"{x}value")])
              for f in form.iter(f"{x}field")}
    assert fields["FORM_TYPE"] == ("hidden", [f"{NS}#info"])
    assert fields["algorithms"][1] == ["A256GCM"]
    assert fields["wrap-algorithms"][1] == ["X25519-HKDF-SHA256-A256GCM"]
    assert fields["max-batch"][1] == ["100"]
    assert fields["rotation-max-age"][1] == ["604800"]


async def test_internal_error_when_the_server_grants_no_roster_access(
    keysrv_manager, server, new_user, client_factory
):
    # other.example is a VirtualHost without privileged_entities for keysrv: a
    # misconfiguration keysrv must report plainly, after waiting briefly for a grant.
    keysrv_manager.ensure(domains=[server.domain, server.other_domain])
    romeo, eve = new_user("romeo"), new_user("eve", server.other_domain)
    server.befriend(romeo, eve)
    reply = await create(await client_factory(romeo), with_=eve)
    text = assert_error(reply, "wait", "internal-server-error")
    assert "roster access for other.example" in text

"""Rooms on a real Prosody and ejabberd MUC: affiliations decide, outcasts and former members lose
access, a removal rotates the key at the next create."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from kit import Key, assert_error, create, create_key, list_keys, release_keys

pytestmark = pytest.mark.integration
_rooms = itertools.count(1)


@pytest.fixture
def people(new_user):
    return {name: new_user(name) for name in ("owner", "admin", "member", "outsider", "banned")}


@pytest.fixture
def room(server, people):
    name = f"room-{next(_rooms)}"
    server.create_room(name, people["owner"], {
        people["admin"]: "admin", people["member"]: "member", people["banned"]: "outcast"})
    return f"{name}@{server.muc}"


async def test_members_share_one_key_others_are_refused(keysrv, people, room, client_factory):
    keys = [await create_key(await client_factory(people[who]), room=room)
            for who in ("owner", "admin", "member")]
    assert len({k.id for k in keys}) == 1 and len({k.material for k in keys}) == 1
    assert keys[0].attrs["room"] == room and "with" not in keys[0].attrs
    for who in ("outsider", "banned"):
        client = await client_factory(people[who])
        text = assert_error(await create(client, room=room), "auth", "forbidden", "not-a-member")
        assert room in text
        items = await release_keys(client, keys[0].id)
        assert items[0].attrib == {"id": keys[0].id, "error": "forbidden"}
        assert_error(await list_keys(client, room=room), "auth", "forbidden", "not-a-member")


async def test_removed_member_loses_access_and_next_create_rotates(
    keysrv, server, people, room, client_factory
):
    owner = await client_factory(people["owner"])
    member = await client_factory(people["member"])
    first = await create_key(member, room=room)
    # someone joining the member list does not rotate
    server.set_affiliation(room, people["outsider"], "member")
    assert (await create_key(owner, room=room)).id == first.id
    server.set_affiliation(room, people["member"], "none")
    items = await release_keys(member, first.id)
    assert items[0].attrib == {"id": first.id, "error": "forbidden"}
    second = await create_key(owner, room=room)
    assert second.id != first.id, "a member left: the next create rotates"
    assert (await create_key(await client_factory(people["admin"]), room=room)).id == second.id
    assert_error(await create(member, room=room), "auth", "forbidden", "not-a-member")
    old = Key.of((await release_keys(owner, first.id))[0])
    assert old.material == first.material and "retired" in old.attrs


async def test_banning_a_member_rotates(keysrv, server, people, room, client_factory):
    owner = await client_factory(people["owner"])
    first = await create_key(owner, room=room)
    server.set_affiliation(room, people["admin"], "outcast")
    assert (await create_key(owner, room=room)).id != first.id


async def test_room_that_does_not_exist(keysrv, people, server, client_factory):
    client = await client_factory(people["owner"])
    reply = await create(client, room=f"no-such-room@{server.muc}")
    assert "does not exist" in assert_error(reply, "cancel", "item-not-found")


async def test_destroyed_room_keys_are_refused(keysrv, server, people, room, client_factory):
    owner = await client_factory(people["owner"])
    key = await create_key(owner, room=room)
    server.destroy_room(room)
    assert (await release_keys(owner, key.id))[0].get("error") == "forbidden"
    assert_error(await create(owner, room=room), "cancel", "item-not-found")


@pytest.mark.parametrize("allowed", [False, True])
async def test_occupants_only_when_allowed(keysrv_manager, server, new_user, allowed, tmp_path):
    from harness.fixtures import password_of
    from harness.xmpp_client import TestClient

    if allowed and server.software == "ejabberd":
        # ejabberd shows occupants' real JIDs only to occupants: keysrv refuses to start.
        await _refuses_to_start_with_occupants(keysrv_manager, tmp_path)
        return
    keysrv_manager.ensure(policy={"allow_occupants": allowed})
    owner, guest = new_user("owner"), new_user("guest")
    name = f"open-{next(_rooms)}"
    server.create_room(name, owner, members_only=False)
    room = f"{name}@{server.muc}"
    client = TestClient(guest, password_of(guest), "127.0.0.1", server.c2s_port,
                        plugins=["xep_0045"])
    await client.connect()
    try:
        await client.xmpp.plugin["xep_0045"].join_muc_wait(room, "guest", timeout=10)
        reply = await create(client, room=room)
        if allowed:
            assert Key.of(reply[0]).attrs["room"] == room
        else:
            assert_error(reply, "auth", "forbidden", "not-a-member")
    finally:
        await client.disconnect()


async def _refuses_to_start_with_occupants(keysrv_manager, tmp_path):
    from harness.keysrv_proc import KeysrvProcess

    keysrv_manager.close()  # one component connection at a time (ejabberd would share)
    config = {**keysrv_manager.base, "policy": {"allow_occupants": True},
              "storage": {"database": str(tmp_path / "db.sqlite3"),
                          "kek_file": str(tmp_path / "kek")}}
    inst = KeysrvProcess(tmp_path, config)
    inst.init()
    proc = inst.spawn()
    assert await asyncio.to_thread(proc.wait, 20) == 1
    assert "policy.allow_occupants is on, but ejabberd shows occupants' real JIDs" in inst.log()
    # Said up front, `keysrv check` refuses the same config without connecting.
    inst.write_config({**config, "component": {**config["component"], "software": "ejabberd"}})
    checked = inst.cli("check")
    assert checked.returncode == 1
    assert "policy.allow_occupants: ejabberd shows occupants' real JIDs" in checked.stdout + \
        checked.stderr

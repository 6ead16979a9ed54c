"""One-to-one chats on a real Prosody and a real ejabberd: convergence, rotation,
release, list, wrap, roster policies."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from kit import (
    NS,
    Key,
    assert_error,
    create,
    create_key,
    list_keys,
    release,
    release_keys,
    result_child,
    rotate,
)

from keysrv.crypto import WRAP_ALG, unwrap

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(server, new_user):
    """Two fresh users with a mutual subscription."""
    romeo, juliet = new_user("romeo"), new_user("juliet")
    server.befriend(romeo, juliet)
    return romeo, juliet


async def test_two_parties_and_two_devices_converge(keysrv, pair, client_factory):
    romeo, juliet = pair
    r = await client_factory(romeo)
    j1, j2 = await client_factory(juliet), await client_factory(juliet)
    assert j1.full_jid != j2.full_jid
    keys = [await create_key(r, with_=juliet), await create_key(j1, with_=romeo),
            await create_key(j2, with_=romeo)]
    assert len({k.id for k in keys}) == 1
    assert len({k.material for k in keys}) == 1 and len(keys[0].material or b"") == 32
    assert keys[0].attrs["with"] == juliet and keys[1].attrs["with"] == romeo
    assert keys[0].attrs["alg"] == "A256GCM" and keys[0].attrs["created"].endswith("Z")
    assert "retired" not in keys[0].attrs and 1 <= len(keys[0].id) <= 64


async def test_concurrent_creates_converge(keysrv, pair, client_factory):
    romeo, juliet = pair
    clients = [await client_factory(romeo), await client_factory(juliet),
               await client_factory(juliet)]
    others = [juliet, romeo, romeo]
    replies = await asyncio.gather(
        *(create_key(c, with_=o) for _ in range(5) for c, o in zip(clients, others, strict=True))
    )
    assert len({k.id for k in replies}) == 1
    assert len({k.material for k in replies}) == 1


async def test_rotate_with_and_without_previous(keysrv, pair, client_factory):
    romeo, juliet = pair
    r, j = await client_factory(romeo), await client_factory(juliet)
    first = await create_key(r, with_=juliet)
    # both saw the same reason to rotate: exactly one rotation
    a, b = await asyncio.gather(rotate(r, with_=juliet, previous=first.id),
                                rotate(j, with_=romeo, previous=first.id))
    assert a.id == b.id != first.id and a.material == b.material
    stale = await rotate(r, with_=juliet, previous=first.id)
    assert stale.id == a.id, "a stale previous returns the current key unchanged"
    forced = await rotate(j, with_=romeo)
    assert forced.id not in (first.id, a.id)
    assert (await create_key(r, with_=juliet)).id == forced.id
    old = [Key.of(el) for el in await release_keys(r, first.id, a.id)]
    assert [k.material for k in old] == [first.material, a.material]
    assert all("retired" in k.attrs for k in old)


async def test_release_batch(keysrv, server, pair, new_user, client_factory):
    romeo, juliet = pair
    mallory = new_user("mallory")
    server.befriend(romeo, mallory)
    r, j = await client_factory(romeo), await client_factory(juliet)
    ours = await create_key(r, with_=juliet)
    theirs = await create_key(r, with_=mallory)
    items = await release_keys(j, "Unknown_Id-1", theirs.id, ours.id, "Unknown_Id-1", ours.id)
    assert [(el.get("id"), el.get("error")) for el in items] == [
        ("Unknown_Id-1", "item-not-found"), (theirs.id, "forbidden"), (ours.id, None)]
    assert items[0].attrib == {"id": "Unknown_Id-1", "error": "item-not-found"}
    assert Key.of(items[2]).material == ours.material
    assert Key.of(items[2]).attrs["with"] == romeo
    too_many = [f"id{i}" for i in range(101)]
    assert_error(await release(j, *too_many), "modify", "bad-request")
    assert (await release(j, *too_many[:100])).get("type") == "result"


async def test_list_paging(keysrv, pair, client_factory):
    romeo, juliet = pair
    r = await client_factory(romeo)
    ids = [(await rotate(r, with_=juliet)).id for _ in range(5)]
    newest_first = ids[::-1]

    def page(reply):
        el = result_child(reply)
        keys = [Key.of(k) for k in el.findall(f"{{{NS}}}key")]
        rsm = el.find("{http://jabber.org/protocol/rsm}set")
        assert all(k.material is None for k in keys), "list never carries material"
        return keys, rsm

    keys, rsm = page(await list_keys(r, with_=juliet, rsm="<max>2</max>"))
    assert [k.id for k in keys] == newest_first[:2]
    assert rsm.findtext("{http://jabber.org/protocol/rsm}count") == "5"
    first = rsm.find("{http://jabber.org/protocol/rsm}first")
    assert first.text == newest_first[0] and first.get("index") == "0"
    last = rsm.findtext("{http://jabber.org/protocol/rsm}last")
    keys, rsm = page(await list_keys(r, with_=juliet, rsm=f"<max>2</max><after>{last}</after>"))
    assert [k.id for k in keys] == newest_first[2:4]
    keys, _ = page(await list_keys(r, with_=juliet, rsm="<max>2</max><before/>"))
    assert [k.id for k in keys] == newest_first[3:]
    keys, _ = page(await list_keys(r, with_=juliet))
    assert [k.id for k in keys] == newest_first
    assert "retired" not in keys[0].attrs and all("retired" in k.attrs for k in keys[1:])
    reply = await list_keys(r, with_=juliet, rsm="<after>NoSuchKey</after>")
    assert_error(reply, "cancel", "item-not-found")


def wrap_el(private: X25519PrivateKey) -> str:
    public = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    return f"<wrap xmlns='{NS}' alg='{WRAP_ALG}'>{public}</wrap>"


async def test_wrap_round_trip(keysrv, pair, client_factory):
    romeo, juliet = pair
    r, j = await client_factory(romeo), await client_factory(juliet)
    plain = await create_key(r, with_=juliet)
    device = X25519PrivateKey.generate()
    wrapped = Key.of(result_child(await create(j, with_=romeo, extra=wrap_el(device))))
    assert wrapped.id == plain.id and wrapped.material != plain.material
    epk = base64.b64decode(wrapped.attrs["epk"])
    assert unwrap(device, epk, wrapped.id, wrapped.material) == plain.material
    # release: one ephemeral key per answer, shared by its keys
    second = await rotate(r, with_=juliet)
    items = result_child(await release(j, plain.id, second.id, extra=wrap_el(device)))
    keys = [Key.of(k) for k in items]
    assert keys[0].attrs["epk"] == keys[1].attrs["epk"]
    got = [unwrap(device, base64.b64decode(k.attrs["epk"]), k.id, k.material) for k in keys]
    assert got == [plain.material, second.material]
    # wrapped to someone else's key, it does not open
    other = X25519PrivateKey.generate()
    with pytest.raises(Exception, match="authentication failed"):
        unwrap(other, epk, wrapped.id, wrapped.material)


async def test_require_wrap(keysrv_manager, pair, client_factory):
    romeo, juliet = pair
    keysrv_manager.ensure(policy={"require_wrap": True})
    r = await client_factory(romeo)
    assert_error(await create(r, with_=juliet), "modify", "not-acceptable", "wrap-required")
    reply = await create(r, with_=juliet, extra=wrap_el(X25519PrivateKey.generate()))
    key = Key.of(result_child(reply))
    assert "epk" in key.attrs
    assert_error(await release(r, key.id), "modify", "not-acceptable", "wrap-required")


ROSTER_CASES = [
    # rule, romeo's item for juliet, juliet's item for romeo, allowed
    ("both", "both", "both", True),
    ("both", "to", "from", False),
    ("both", None, None, False),
    ("either", "to", "from", True),
    ("either", "none", "none", False),
    ("item", "none", "none", True),
    ("item", None, "none", False),
    ("none", None, None, True),
]


@pytest.mark.parametrize(("rule", "mine", "theirs", "allowed"), ROSTER_CASES)
async def test_roster_policies(keysrv_manager, server, new_user, client_factory,
                               rule, mine, theirs, allowed):
    keysrv_manager.ensure(policy={"roster": rule})
    romeo, juliet = new_user("romeo"), new_user("juliet")
    server.set_roster(romeo, juliet, mine)
    server.set_roster(juliet, romeo, theirs)
    reply = await create(await client_factory(romeo), with_=juliet)
    if allowed:
        assert reply.get("type") == "result"
    else:
        text = assert_error(reply, "auth", "forbidden", "not-in-roster")
        assert "roster" in text


async def test_removing_a_contact_withdraws_access(keysrv, server, pair, client_factory):
    romeo, juliet = pair
    r, j = await client_factory(romeo), await client_factory(juliet)
    key = await create_key(r, with_=juliet)
    server.set_roster(juliet, romeo, None)  # juliet drops romeo
    # juliet's roster no longer holds romeo: neither party may read the keys
    for client in (r, j):
        items = await release_keys(client, key.id)
        assert items[0].attrib == {"id": key.id, "error": "forbidden"}
    assert_error(await create(r, with_=juliet), "auth", "forbidden", "not-in-roster")
    assert_error(await list_keys(j, with_=romeo), "auth", "forbidden", "not-in-roster")
    server.befriend(romeo, juliet)
    assert Key.of((await release_keys(j, key.id))[0]).material == key.material


async def test_roster_cache_ttl_bounds_staleness(keysrv_manager, server, pair, client_factory):
    keysrv_manager.ensure(cache={"roster_ttl": "2s", "muc_ttl": "2s"})
    romeo, juliet = pair
    r = await client_factory(romeo)
    key = await create_key(r, with_=juliet)
    server.set_roster(romeo, juliet, None)
    # within the TTL the cached roster still answers (servers send no roster pushes)...
    assert (await release_keys(r, key.id))[0].get("error") is None
    await asyncio.sleep(2.2)
    # ...and once it expires, the removal takes effect
    assert (await release_keys(r, key.id))[0].get("error") == "forbidden"


async def test_rotation_by_age(keysrv_manager, pair, client_factory):
    keysrv_manager.ensure(policy={"rotation_max_age": "2s"})
    romeo, juliet = pair
    r = await client_factory(romeo)
    first = await create_key(r, with_=juliet)
    assert (await create_key(r, with_=juliet)).id == first.id
    await asyncio.sleep(2.1)
    second = await create_key(r, with_=juliet)
    assert second.id != first.id
    old = Key.of((await release_keys(r, first.id))[0])
    assert old.material == first.material and "retired" in old.attrs

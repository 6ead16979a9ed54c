"""The domain logic with an in-memory directory and a real SQLite store."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keysrv.crypto import unwrap
from keysrv.errors import ProtocolError
from keysrv.model import (
    CreateRequest,
    Kind,
    ListRequest,
    PageRequest,
    ReleaseRequest,
    RotateRequest,
    Target,
    Wrapping,
)

ROMEO, JULIET, MALLORY = "romeo@example.com", "juliet@example.com", "mallory@example.com"
ROOM = "room@conference.example.com"


def chat(jid: str) -> Target:
    return Target(Kind.CHAT, jid)


def room(jid: str = ROOM) -> Target:
    return Target(Kind.ROOM, jid)


async def refused(coro, condition: str, app: str | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        await coro
    assert (info.value.condition, info.value.app) == (condition, app), info.value
    return info.value


async def test_both_parties_get_the_same_key(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    svc = make_service()
    a = await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    b = await svc.handle(JULIET, CreateRequest(chat(ROMEO)))
    assert a.id == b.id and a.text == b.text and len(a.text) == 32
    assert (a.peer, b.peer) == (JULIET, ROMEO)


async def test_concurrent_creates_converge(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    svc = make_service()
    views = await asyncio.gather(
        *(svc.handle(who, CreateRequest(chat(other))) for who, other in
          [(ROMEO, JULIET), (JULIET, ROMEO)] * 10)
    )
    assert len({v.id for v in views}) == 1


async def test_roster_rules(make_service, directory):
    directory.befriend(ROMEO, JULIET, "to")  # romeo sees juliet 'to', juliet sees romeo 'from'
    await refused(make_service().handle(ROMEO, CreateRequest(chat(JULIET))), "forbidden",
                  "not-in-roster")
    assert (await make_service(roster="either").handle(ROMEO, CreateRequest(chat(JULIET))))
    directory.rosters[ROMEO][JULIET] = directory.rosters[ROMEO][JULIET].__class__("none")
    await refused(make_service(roster="either").handle(ROMEO, CreateRequest(chat(JULIET))),
                  "forbidden", "not-in-roster")
    assert await make_service(roster="item").handle(ROMEO, CreateRequest(chat(JULIET)))
    assert await make_service(roster="none").handle(ROMEO, CreateRequest(chat(MALLORY)))


async def test_self_chat_and_foreign_and_remote(make_service, directory):
    svc = make_service()
    await refused(svc.handle(ROMEO, CreateRequest(chat(ROMEO))), "bad-request")
    await refused(svc.handle("a@other.org", CreateRequest(chat("b@else.org"))), "not-allowed",
                  "foreign-conversation")
    await refused(svc.handle(ROMEO, CreateRequest(room("r@muc.other.org"))), "not-allowed",
                  "foreign-conversation")
    closed = make_service(allow_remote=False)
    await refused(closed.handle("a@other.org", CreateRequest(chat(ROMEO))), "forbidden")
    directory.befriend(ROMEO, "a@other.org")
    remote = await svc.handle("a@other.org", CreateRequest(chat(ROMEO)))
    assert remote.peer == ROMEO


async def test_rotate_with_previous_rotates_once(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    svc = make_service()
    first = await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    a, b = await asyncio.gather(
        svc.handle(ROMEO, RotateRequest(chat(JULIET), previous=first.id)),
        svc.handle(JULIET, RotateRequest(chat(ROMEO), previous=first.id)),
    )
    assert a.id == b.id != first.id
    c = await svc.handle(ROMEO, RotateRequest(chat(JULIET)))
    assert c.id not in (a.id, first.id)
    page = await svc.handle(ROMEO, ListRequest(chat(JULIET), PageRequest(50)))
    assert [k.id for k in page.keys] == [c.id, a.id, first.id]
    assert page.keys[0].retired_ms is None and page.keys[1].retired_ms is not None


async def test_rotation_by_age(make_service, directory, clock):
    directory.befriend(ROMEO, JULIET)
    svc = make_service(rotation_max_age=60)
    first = await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    clock.ms += 59_000
    assert (await svc.handle(ROMEO, CreateRequest(chat(JULIET)))).id == first.id
    clock.ms += 1_000
    second = await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    assert second.id != first.id
    old = await svc.handle(ROMEO, ReleaseRequest((first.id,)))
    assert old[0].key is not None and old[0].key.retired_ms == clock.ms


async def test_room_membership_and_rotation_on_removal(make_service, directory):
    directory.rooms[ROOM] = {ROMEO: "owner", JULIET: "member", MALLORY: "outcast"}
    svc = make_service()
    key = await svc.handle(ROMEO, CreateRequest(room()))
    assert (await svc.handle(JULIET, CreateRequest(room()))).id == key.id
    await refused(svc.handle(MALLORY, CreateRequest(room())), "forbidden", "not-a-member")
    await refused(svc.handle("eve@example.com", CreateRequest(room())), "forbidden",
                  "not-a-member")
    # a newcomer joining does not rotate; a member leaving does
    directory.rooms[ROOM]["nurse@example.com"] = "member"
    assert (await svc.handle(ROMEO, CreateRequest(room()))).id == key.id
    del directory.rooms[ROOM][JULIET]
    rotated = await svc.handle(ROMEO, CreateRequest(room()))
    assert rotated.id != key.id
    items = await svc.handle(JULIET, ReleaseRequest((key.id, rotated.id)))
    assert [i.error for i in items] == ["forbidden", "forbidden"]
    await refused(svc.handle(ROMEO, CreateRequest(room("nope@conference.example.com"))),
                  "item-not-found")


async def test_occupants_only_when_allowed(make_service, directory):
    directory.rooms[ROOM] = {ROMEO: "owner"}
    directory.occupants[ROOM] = {JULIET}
    await refused(make_service().handle(JULIET, CreateRequest(room())), "forbidden",
                  "not-a-member")
    assert await make_service(allow_occupants=True).handle(JULIET, CreateRequest(room()))


async def test_release_batch_order_and_outcomes(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    directory.befriend(ROMEO, MALLORY)
    svc = make_service()
    ours = await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    theirs = await svc.handle(ROMEO, CreateRequest(chat(MALLORY)))
    items = await svc.handle(JULIET, ReleaseRequest(("unknownid", theirs.id, ours.id)))
    assert [(i.id, i.error) for i in items] == [
        ("unknownid", "item-not-found"), (theirs.id, "forbidden"), (ours.id, None)]
    assert items[2].key.text == ours.text
    # removing the contact withdraws access
    del directory.rosters[JULIET][ROMEO]
    items = await svc.handle(JULIET, ReleaseRequest((ours.id,)))
    assert items[0].error == "forbidden"
    await refused(svc.handle(JULIET, ListRequest(chat(ROMEO), PageRequest(5))), "forbidden",
                  "not-in-roster")


async def test_release_lookup_timeout_fails_the_request(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    svc = make_service()
    key = await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    directory.slow.add(JULIET)
    await refused(svc.handle(ROMEO, ReleaseRequest((key.id,))), "remote-server-timeout")


async def test_wrap_round_trip_and_require_wrap(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    svc = make_service()
    plain = await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    client = X25519PrivateKey.generate()
    wrap = Wrapping(client.public_key().public_bytes_raw())
    wrapped = await svc.handle(ROMEO, CreateRequest(chat(JULIET), wrap))
    assert wrapped.text != plain.text and wrapped.epk is not None
    assert unwrap(client, wrapped.epk, wrapped.id, wrapped.text) == plain.text
    strict = make_service(require_wrap=True)
    await refused(strict.handle(ROMEO, CreateRequest(chat(JULIET))), "not-acceptable",
                  "wrap-required")
    await refused(strict.handle(ROMEO, ReleaseRequest((plain.id,))), "not-acceptable",
                  "wrap-required")
    await refused(svc.handle(ROMEO, CreateRequest(chat(JULIET), Wrapping(bytes(32)))),
                  "bad-request")


async def test_list_paging(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    svc = make_service()
    ids = [(await svc.handle(ROMEO, RotateRequest(chat(JULIET)))).id for _ in range(7)]
    newest_first = ids[::-1]
    p1 = await svc.handle(ROMEO, ListRequest(chat(JULIET), PageRequest(3)))
    assert [k.id for k in p1.keys] == newest_first[:3] and p1.count == 7
    assert p1.first_index == 0 and all(k.text is None for k in p1.keys)
    p2 = await svc.handle(ROMEO, ListRequest(chat(JULIET), PageRequest(3, after=p1.keys[-1].id)))
    assert [k.id for k in p2.keys] == newest_first[3:6] and p2.first_index == 3
    back = await svc.handle(
        ROMEO, ListRequest(chat(JULIET), PageRequest(2, before=p2.keys[0].id)))
    assert [k.id for k in back.keys] == newest_first[1:3] and back.first_index == 1
    last = await svc.handle(ROMEO, ListRequest(chat(JULIET), PageRequest(3, before="")))
    assert [k.id for k in last.keys] == newest_first[4:] and last.first_index == 4
    empty = await svc.handle(ROMEO, ListRequest(chat(JULIET), PageRequest(0)))
    assert empty.keys == [] and empty.count == 7
    await refused(svc.handle(ROMEO, ListRequest(chat(JULIET), PageRequest(3, after="nope"))),
                  "item-not-found")


async def test_rate_limit(make_service, directory):
    directory.befriend(ROMEO, JULIET)
    svc = make_service(rate=0.001, burst=2)
    await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    await svc.handle(ROMEO, CreateRequest(chat(JULIET)))
    await refused(svc.handle(ROMEO, CreateRequest(chat(JULIET))), "resource-constraint",
                  "rate-limited")
    assert await svc.handle(JULIET, CreateRequest(chat(ROMEO)))  # per requester


async def test_with_must_be_a_user(make_service):
    err = await refused(make_service().handle(ROMEO, CreateRequest(chat("example.com"))),
                        "bad-request")
    assert "user" in err.text

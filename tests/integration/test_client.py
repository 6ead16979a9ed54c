"""The client library against a real server and keysrv: every step of the demo
story, with real sessions, real offline storage, real MAM, real rooms and a real
HTTP upload service."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from harness.fixtures import password_of
from keysrv.client import (
    Decrypted,
    EnvelopeMismatch,
    KeyUnavailable,
    NotAMember,
    NotInRoster,
    Undecryptable,
    mam,
    upload,
)
from keysrv.client.message import message_children
from keysrv.client.session import Account, Session

pytestmark = pytest.mark.integration
_rooms = itertools.count(1)
_devices = itertools.count(1)


class Device:
    """One logged-in device of a user: its own key cache, its received messages."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.keysrv = session.keysrv
        self.inbox: asyncio.Queue = asyncio.Queue()
        session.xmpp.add_event_handler("keysrv_message", self.inbox.put_nowait)

    async def receive(self, timeout: float = 10):
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def join(self, room: str) -> None:
        nick = f"{self.session.xmpp.boundjid.user}-{next(_devices)}"
        await self.session.xmpp.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0,
                                                                timeout=10)


@pytest.fixture
async def device(server, keysrv, tmp_path):
    opened: list[Session] = []

    async def make(jid: str) -> Device:
        account = Account(
            jid=jid, password=password_of(jid), server="127.0.0.1", port=server.c2s_port,
            insecure_plaintext=True, cache_path=tmp_path / f"dev-{next(_devices)}.sqlite3",
            plugins=("xep_0045",),
        )
        session = await Session.open(account)
        opened.append(session)
        return Device(session)

    yield make
    for session in opened:
        await session.close()


@pytest.fixture
def pair(server, new_user):
    romeo, juliet = new_user("romeo"), new_user("juliet")
    server.befriend(romeo, juliet)
    return romeo, juliet


async def test_chat_both_ways(pair, device):
    romeo, juliet = pair
    r, j = await device(romeo), await device(juliet)
    sent = await r.keysrv.send_text(juliet, "Hello, Juliet")
    got = await j.receive()
    assert isinstance(got, Decrypted), got
    assert (got.body, got.sender, got.to, got.key, got.id) == (
        "Hello, Juliet", romeo, juliet, sent.key, sent.id)
    reply = await j.keysrv.send_text(romeo, "Hello, Romeo")
    back = await r.receive()
    assert isinstance(back, Decrypted) and back.body == "Hello, Romeo"
    assert reply.key == sent.key  # one current key for the conversation


async def test_offline_message_arrives_and_decrypts(pair, device):
    romeo, juliet = pair
    r = await device(romeo)
    sent = await r.keysrv.send_text(juliet, "while you were away")
    await asyncio.sleep(0.2)  # stored offline by the server
    j = await device(juliet)  # comes online: the server delivers the stored message
    got = await j.receive()
    assert isinstance(got, Decrypted) and got.body == "while you were away"
    assert got.key == sent.key


async def test_new_device_reads_the_whole_history(pair, device):
    romeo, juliet = pair
    r, j = await device(romeo), await device(juliet)
    lines = [("romeo", f"line {i}") if i % 2 == 0 else ("juliet", f"line {i}") for i in range(7)]
    for who, text in lines:
        await (r if who == "romeo" else j).keysrv.send_text(juliet if who == "romeo" else romeo,
                                                           text)
    await asyncio.sleep(0.3)
    fresh = await device(juliet)  # a brand-new device: empty key cache
    entries = await mam.last_messages(fresh.session.xmpp, with_=romeo, count=50)
    results = await fresh.keysrv.decrypt_many([e.message for e in entries])
    assert [(x.sender, x.body) for x in results if isinstance(x, Decrypted)] == [
        (romeo if who == "romeo" else juliet, text) for who, text in lines]
    assert all(x.ok for x in results)


async def test_history_keys_are_released_in_batches(pair, device):
    romeo, juliet = pair
    # juliet online (so nothing waits in offline storage for the fresh device below)
    r, _ = await device(romeo), await device(juliet)
    for i in range(5):  # five keys: each message after a rotation
        key = await r.keysrv.current_key(peer=juliet)
        await r.keysrv.rotate(peer=juliet, previous=key.id)
        await r.keysrv.send_text(juliet, f"m{i}")
    await asyncio.sleep(0.3)
    fresh = await device(juliet)
    await fresh.keysrv.service()
    fresh.keysrv._max_batch = 2  # as if the service advertised max-batch 2
    releases = []
    query = fresh.keysrv._query

    async def counting(to, itype, payload):
        if payload.tag.endswith("}release"):
            releases.append(len(payload) - 1)  # <key/> children, without <wrap/>
        return await query(to, itype, payload)

    fresh.keysrv._query = counting
    entries = await mam.last_messages(fresh.session.xmpp, with_=romeo, count=10)
    results = await fresh.keysrv.decrypt_many([e.message for e in entries])
    assert [x.body for x in results] == [f"m{i}" for i in range(5)]
    assert len({x.key for x in results}) == 5
    assert releases == [2, 2, 1]
    again = await fresh.keysrv.decrypt_many([e.message for e in entries])  # all cached now
    assert [x.body for x in again] == [x.body for x in results] and releases == [2, 2, 1]


async def test_room_chat(server, new_user, device):
    owner, member = new_user("owner"), new_user("member")
    room = f"crypt-{next(_rooms)}@{server.muc}"
    server.create_room(room, owner, {member: "member"})
    o, m = await device(owner), await device(member)
    await o.join(room)
    await m.join(room)
    sent = await o.keysrv.send_text(room, "to the room", room=True)
    for dev in (m, o):  # the room reflects it to everyone, the sender too
        got = await dev.receive()
        assert isinstance(got, Decrypted), got
        assert (got.body, got.room, got.key) == ("to the room", room, sent.key)
        assert got.sender.startswith(room + "/")


async def test_file_is_shared_encrypted(pair, device, server):
    romeo, juliet = pair
    r, j = await device(romeo), await device(juliet)
    data = bytes(range(256)) * 100
    url = await upload.upload_encrypted(r.session.xmpp, data, "photo.bin",
                                        service=server.upload)
    assert url.startswith("aesgcm://") and len(url.split("#")[1]) == 88
    await r.keysrv.send_text(juliet, None, url=url)
    got = await j.receive()
    assert isinstance(got, Decrypted) and got.url == url
    assert await upload.download_decrypted(got.url) == data
    # What the upload service stores is not the file.
    fetch = url.replace("aesgcm://", "http://").split("#")[0]
    stored = await asyncio.to_thread(_http_get, fetch)
    assert data[:64] not in stored and len(stored) == len(data) + 16


def _http_get(url: str) -> bytes:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


async def test_removed_member_cannot_read_what_follows(server, new_user, device):
    owner, stays, leaves = new_user("owner"), new_user("stays"), new_user("leaves")
    room = f"crypt-{next(_rooms)}@{server.muc}"
    server.create_room(room, owner, {stays: "member", leaves: "member"})
    o, s, lv = await device(owner), await device(stays), await device(leaves)
    for dev in (o, s, lv):
        await dev.join(room)
    before = await o.keysrv.send_text(room, "before", room=True)
    assert (await lv.receive()).body == "before"
    server.set_affiliation(room, leaves, "none")  # kicked out of the room, too
    after = await o.keysrv.send_text(room, "after", room=True)
    assert after.key != before.key  # the key rotated at the next create
    got = await s.receive()
    while got.body == "before":
        got = await s.receive()
    assert isinstance(got, Decrypted) and got.body == "after"
    with pytest.raises(KeyUnavailable) as info:
        await lv.keysrv.key(after.key)
    assert info.value.reason == "forbidden"
    with pytest.raises(NotAMember):
        await lv.keysrv.current_key(room=room)


async def test_stranger_is_refused(pair, new_user, device):
    romeo, juliet = pair
    mallory = new_user("mallory")
    r, m = await device(romeo), await device(mallory)
    sent = await r.keysrv.send_text(juliet, "not for mallory")
    with pytest.raises(NotInRoster, match="roster"):
        await m.keysrv.current_key(peer=juliet)
    with pytest.raises(KeyUnavailable) as info:
        await m.keysrv.key(sent.key)
    assert info.value.reason == "forbidden" and "refuses" in str(info.value)


async def test_forged_envelope_is_reported_not_dropped(pair, device):
    """A message whose envelope claims another sender reaches the app as Undecryptable."""
    romeo, juliet = pair
    r, j = await device(romeo), await device(juliet)
    key = await r.keysrv.current_key(peer=juliet)
    msg = r.session.xmpp.make_message(mto=juliet, mtype="chat")
    msg["id"] = "forged-1"
    for child in message_children(key, body="forged", to=juliet, sender="tybalt@example.com"):
        msg.xml.append(child)
    msg.send()
    got = await j.receive()
    assert isinstance(got, Undecryptable) and not got.ok and got.id == "forged-1"
    assert isinstance(got.error, EnvelopeMismatch)


# --- keysrv-client, the command (admin-interface.md) --------------------------------


def keysrv_client(server, jid: str, home, *args: str, password: str | None = None):
    import json
    import os
    import subprocess
    import sys

    pw = home / "pw"
    home.mkdir(parents=True, exist_ok=True)
    pw.write_text((password or password_of(jid)) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "keysrv.client.cli", "--jid", jid, "--password-file", str(pw),
         "--server", "127.0.0.1", "--port", str(server.c2s_port), "--insecure-plaintext",
         *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "XDG_DATA_HOME": str(home / "data")},
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc.returncode, lines, proc.stderr


async def test_cli_send_and_history_on_a_fresh_home(server, keysrv, pair, tmp_path):
    romeo, juliet = pair
    run = asyncio.to_thread
    code, out, err = await run(keysrv_client, server, romeo, tmp_path / "r", "send", juliet,
                               "from the command line")
    assert code == 0, err
    assert set(out[0]) == {"id", "key"}
    code, hist, err = await run(keysrv_client, server, juliet, tmp_path / "j", "history", romeo)
    assert code == 0, err
    assert [(h["from"], h["to"], h["body"], h["key"], h["ok"]) for h in hist] == [
        (romeo, juliet, "from the command line", out[0]["key"], True)]
    assert hist[0]["id"] == out[0]["id"] and hist[0]["time"].endswith("Z")
    # The released key is now cached on juliet's "device" (her XDG data home).
    import sqlite3
    (db,) = (tmp_path / "j" / "data" / "keysrv-client").glob("*.sqlite3")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id FROM keys").fetchall() == [(out[0]["key"],)]


async def test_cli_room_and_max(server, keysrv, new_user, tmp_path):
    owner, member = new_user("owner"), new_user("member")
    room = f"cli-{next(_rooms)}@{server.muc}"
    server.create_room(room, owner, {member: "member"})
    run = asyncio.to_thread
    for text in ("one", "two", "three"):
        code, _, err = await run(keysrv_client, server, owner, tmp_path / "o", "send", room,
                                 text, "--room")
        assert code == 0, err
    code, hist, err = await run(keysrv_client, server, member, tmp_path / "m", "history", room,
                                "--room", "--max", "2")
    assert code == 0, err
    assert [h["body"] for h in hist] == ["two", "three"]
    assert all(h["ok"] and h["from"].startswith(room + "/") and h["to"] == room for h in hist)


async def test_cli_files(server, keysrv, pair, tmp_path):
    romeo, juliet = pair
    src = tmp_path / "note.txt"
    src.write_bytes(b"meet me at the balcony\n" * 100)
    run = asyncio.to_thread
    code, out, err = await run(keysrv_client, server, romeo, tmp_path / "r", "send-file",
                               juliet, str(src))
    assert code == 0, err
    assert out[0]["url"].startswith("aesgcm://") and out[0]["key"]
    code, hist, err = await run(keysrv_client, server, juliet, tmp_path / "j", "history", romeo)
    assert code == 0 and hist[-1]["url"] == out[0]["url"], err
    dest = tmp_path / "got.txt"
    code, got, err = await run(keysrv_client, server, juliet, tmp_path / "j", "get-file",
                               out[0]["url"], str(dest))
    assert code == 0, err
    assert dest.read_bytes() == src.read_bytes() and got == [
        {"path": str(dest), "size": len(src.read_bytes())}]


async def test_cli_failures_are_one_line(server, keysrv, pair, new_user, tmp_path):
    romeo, juliet = pair
    run = asyncio.to_thread
    code, out, err = await run(keysrv_client, server, romeo, tmp_path / "x", "send", juliet,
                               "hi", password="wrong")
    assert code == 1 and out == [] and err.count("\n") == 1 and "authentication" in err
    mallory = new_user("mallory")
    code, out, err = await run(keysrv_client, server, mallory, tmp_path / "m", "send", juliet,
                               "let me in")
    assert code == 1 and out == [] and err.count("\n") == 1
    assert "not in the roster" in err and "Traceback" not in err
    code, out, err = await run(keysrv_client, server, juliet, tmp_path / "j", "get-file",
                               "aesgcm://127.0.0.1:1/x#00", str(tmp_path / "o"))
    assert code == 1 and err.count("\n") == 1 and not (tmp_path / "o").exists()
    for bad in (("history",), ("send", juliet, "bad \x01 character"), ("frobnicate",)):
        code, out, err = await run(keysrv_client, server, juliet, tmp_path / "j", *bad)
        assert (code, out, err.count("\n")) == (1, [], 1), err
        assert "Traceback" not in err and "usage" not in err

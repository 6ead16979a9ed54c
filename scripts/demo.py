"""The keysrv demo: a real Prosody on loopback, `keysrv init` + `keysrv run` with
SQLite, and clients built on keysrv.client telling the whole story: encrypted
chat, offline delivery, history on a new device, a room, a file, a member
removed, a stranger refused. Exits 0 only if every step was verified.

Run through ./scripts/demo (which installs what is missing).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Awaitable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.keysrv_proc import KeysrvProcess, base_config  # noqa: E402
from harness.prosody import Prosody  # noqa: E402
from keysrv.client import (  # noqa: E402
    ClientError,
    Decrypted,
    KeyUnavailable,
    Received,
    mam,
    upload,
)
from keysrv.client.session import Account, Session  # noqa: E402

GREEN, RED, DIM, BOLD, END = ("\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m") if (
    sys.stdout.isatty() and not os.environ.get("NO_COLOR")) else ("",) * 5


class Demo:
    def __init__(self) -> None:
        self.steps = 0
        self.failed: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        self.steps += 1
        mark = f"{GREEN}ok{END}" if ok else f"{RED}FAILED{END}"
        self.say(f"  [{mark}] {what}" + (f"\n         {DIM}{detail}{END}" if detail else ""))
        if not ok:
            self.failed.append(what)
        return ok


class Device:
    """One device of a user: its own session, key cache and inbox."""

    def __init__(self, name: str, session: Session) -> None:
        self.name, self.session, self.keysrv = name, session, session.keysrv
        self.inbox: asyncio.Queue[Received] = asyncio.Queue()
        session.xmpp.add_event_handler("keysrv_message", self.inbox.put_nowait)

    async def receive(self, timeout: float = 10) -> Received | None:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None

    async def join(self, room: str) -> None:
        nick = self.name.split()[0]
        await self.session.xmpp.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0,
                                                                timeout=10)

    async def close(self) -> None:
        await self.session.close()


def said(msg: Received | None) -> str:
    if isinstance(msg, Decrypted):
        return f"decrypted {msg.body!r} (key {msg.key})"
    if msg is None:
        return "nothing arrived"
    return f"could not decrypt: {msg.error}"


async def main(work: Path) -> int:
    demo = Demo()
    secret = secrets.token_hex(16)
    prosody = Prosody(work / "prosody", secret)
    demo.say(f"{BOLD}keysrv demo{END}: Prosody + keysrv on loopback, keys sealed in SQLite\n")
    prosody.start()
    keysrv = None
    devices: list[Device] = []

    async def device(user: str, name: str) -> Device:
        account = Account(
            jid=f"{user}@{prosody.domain}", password=f"{user}-pw", server="127.0.0.1",
            port=prosody.c2s_port, insecure_plaintext=True,
            cache_path=work / "devices" / f"{name.replace(' ', '-')}.sqlite3",
            plugins=("xep_0045",),
        )
        dev = Device(name, await Session.open(account))
        devices.append(dev)
        return dev

    try:
        jids = {u: f"{u}@{prosody.domain}" for u in ("romeo", "juliet", "tybalt", "mallory")}
        for user, jid in jids.items():
            prosody.register(jid, f"{user}-pw")
        prosody.befriend(jids["romeo"], jids["juliet"])
        room = f"verona@{prosody.muc}"
        prosody.create_room(room, jids["romeo"], {jids["juliet"]: "member",
                                                  jids["tybalt"]: "member"})
        demo.say(f"Prosody {DIM}127.0.0.1:{prosody.c2s_port}{END}: romeo and juliet are "
                 f"mutual contacts; mallory is nobody's contact; members-only room {room}: "
                 "romeo (owner), juliet, tybalt.")
        keysrv = KeysrvProcess(work / "keysrv", base_config(prosody, work / "keysrv", secret))
        keysrv.init()
        keysrv.start()
        demo.say("keysrv: `keysrv init` made the KEK and the database; `keysrv run` serves "
                 "keys.example.com. Every key below was fetched wrapped to a one-off device "
                 "key (X25519).\n")

        romeo = await device("romeo", "romeo phone")
        phone = await device("juliet", "juliet phone")

        demo.say(f"{BOLD}1. Chat{END}")
        sent = await romeo.keysrv.send_text(jids["juliet"], "But soft, what light through "
                                            "yonder window breaks?")
        got = await phone.receive()
        demo.check(isinstance(got, Decrypted) and got.body is not None
                   and got.body.startswith("But soft"),
                   f"romeo -> juliet, key {sent.key}: juliet's phone reads it", said(got))
        await phone.keysrv.send_text(jids["romeo"], "It is the east, and Juliet is the sun?")
        back = await romeo.receive()
        demo.check(isinstance(back, Decrypted) and back.key == sent.key,
                   "juliet -> romeo with the same conversation key: romeo reads it", said(back))

        demo.say(f"\n{BOLD}2. Offline{END}")
        await phone.close()
        devices.remove(phone)
        sent = await romeo.keysrv.send_text(jids["juliet"], "Wherefore art thou?")
        await asyncio.sleep(0.3)
        laptop = await device("juliet", "juliet laptop")  # never saw this chat's key
        got = await laptop.receive()
        demo.check(isinstance(got, Decrypted) and got.body == "Wherefore art thou?",
                   "sent while juliet was offline; her laptop comes online, fetches the key "
                   "by id and reads it", said(got))

        demo.say(f"\n{BOLD}3. History on a brand-new device{END}")
        tablet = await device("juliet", "juliet tablet")
        entries = await mam.last_messages(tablet.session.xmpp, with_=jids["romeo"], count=50)
        history = await tablet.keysrv.decrypt_many([e.message for e in entries])
        for h in history:
            demo.say(f"    {DIM}{h.sender.split('@')[0]}: "
                     f"{h.body if isinstance(h, Decrypted) else h.error}{END}")
        demo.check(len(history) == 3 and all(isinstance(h, Decrypted) for h in history),
                   f"juliet's new tablet reads all {len(history)} archived messages (MAM), "
                   "keys released in one batch")

        demo.say(f"\n{BOLD}4. The room{END}")
        tybalt = await device("tybalt", "tybalt phone")
        for dev in (romeo, laptop, tybalt):
            await dev.join(room)
        sent = await romeo.keysrv.send_text(room, "Two households, both alike in dignity",
                                            room=True)
        for dev in (laptop, tybalt):
            got = await dev.receive()
            demo.check(isinstance(got, Decrypted) and got.key == sent.key,
                       f"romeo -> {room}, key {sent.key}: {dev.name} reads it", said(got))

        demo.say(f"\n{BOLD}5. A file{END}")
        photo = os.urandom(200_000)
        url = await upload.upload_encrypted(romeo.session.xmpp, photo, "balcony.jpg")
        sent = await romeo.keysrv.send_text(jids["juliet"], None, url=url)
        got = await laptop.receive()
        fetched = await upload.download_decrypted(got.url) if isinstance(
            got, Decrypted) and got.url else b""
        demo.check(fetched == photo, "romeo uploads a 200 kB photo encrypted (XEP-0363) and "
                   "sends its aesgcm:// link in a message; juliet downloads and decrypts it",
                   f"sha256 {hashlib.sha256(fetched).hexdigest()[:16]}…, key {sent.key}")

        demo.say(f"\n{BOLD}6. A member leaves the room{END}")
        old = await romeo.keysrv.current_key(room=room)
        prosody.set_affiliation(room, jids["tybalt"], "none")
        demo.say("  romeo removes tybalt from the member list (the room also kicks him)")
        sent = await romeo.keysrv.send_text(room, "A plague o' both your houses!", room=True)
        got = await laptop.receive()
        demo.check(sent.key != old.id and isinstance(got, Decrypted),
                   f"romeo's next message uses a new key {sent.key}: juliet reads it",
                   said(got))
        try:
            await tybalt.keysrv.key(sent.key)
            refused = ""
        except KeyUnavailable as exc:
            refused = str(exc)
        demo.check(bool(refused), "tybalt asks for the new key: refused", refused)

        demo.say(f"\n{BOLD}7. mallory{END}")
        mallory = await device("mallory", "mallory laptop")
        attempts = (
            ("the key of romeo and juliet's chat, by id", mallory.keysrv.key(history[0].key)),
            ("a key for a chat with juliet", mallory.keysrv.current_key(peer=jids["juliet"])),
            (f"the key of {room}", mallory.keysrv.current_key(room=room)),
        )
        for what, attempt in attempts:
            why = await refused_because(attempt)
            demo.check(bool(why), f"mallory asks for {what}: refused", why)

        demo.say(f"\n{BOLD}8. What the server stored{END}")
        stored = b"".join(p.read_bytes() for p in (work / "prosody").rglob("*") if p.is_file())
        leaked = [t for t in (b"But soft", b"Wherefore", b"Two households", b"A plague")
                  if t in stored]
        demo.check(not leaked and b"urn:xmpp:keysrv:0" in stored,
                   "Prosody's archive and offline store hold the messages, but only ciphertext",
                   f"{len(stored)} bytes in Prosody's data folder; plaintext found: "
                   f"{leaked or 'none'}")
    finally:
        for dev in devices:
            await dev.close()
        if keysrv is not None:
            code = keysrv.stop()
            demo.say(f"\nkeysrv stopped on SIGTERM (exit {code}); "
                     "its log has one line per request:")
            demo.say(f"{DIM}" + "\n".join(
                line.split(" keysrv: ", 1)[-1] for line in keysrv.log().splitlines()
                if " ms)" in line)[-3000:] + f"{END}")
        prosody.stop()
    return finish(demo)


async def refused_because(attempt: Awaitable[object]) -> str:
    """'' if the attempt succeeded, else the typed refusal the library raised."""
    try:
        await attempt
    except ClientError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def finish(demo: Demo) -> int:
    if demo.failed:
        print(f"\n{RED}{len(demo.failed)} of {demo.steps} steps failed{END}: "
              + "; ".join(demo.failed))
        return 1
    print(f"\n{GREEN}all {demo.steps} steps verified{END}")
    return 0


if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="keysrv-demo-"))
    try:
        code = asyncio.run(main(work))
    finally:
        if not os.environ.get("KEYSRV_DEMO_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)

"""The keysrv demo: a real Prosody on loopback, `keysrv init` + `keysrv run` with
SQLite, and scripted clients asking for keys, being refused, and using a key.

Run through ./scripts/demo (which installs what is missing).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from harness.keysrv_proc import KeysrvProcess, base_config  # noqa: E402
from harness.prosody import Prosody  # noqa: E402
from harness.xmpp_client import TestClient, error_of  # noqa: E402
from keysrv.crypto import WRAP_ALG, unwrap  # noqa: E402

NS = "urn:xmpp:keysrv:0"
SERVICE = "keys.example.com"
GREEN, RED, DIM, BOLD, END = ("\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m") if (
    sys.stdout.isatty() and not os.environ.get("NO_COLOR")) else ("",) * 5


class Demo:
    def __init__(self) -> None:
        self.steps = 0
        self.failed: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        self.steps += 1
        mark = f"{GREEN}ok{END}" if ok else f"{RED}FAILED{END}"
        self.say(f"  [{mark}] {what}" + (f"\n         {DIM}{detail}{END}" if detail else ""))
        if not ok:
            self.failed.append(what)


async def ask(client: TestClient, iq_type: str, payload: str):
    return await client.request(SERVICE, iq_type, payload)


def key_of(reply) -> tuple[str, bytes] | None:
    if reply.get("type") != "result":
        return None
    el = reply[0]
    if el.tag == f"{{{NS}}}release":
        el = el[0]
        if el.get("error"):
            return None
    return el.get("id", ""), base64.b64decode(el.text or "")


def refusal(reply) -> str:
    if reply.get("type") == "error":
        _etype, condition, app, text = error_of(reply)
        return f"{condition}" + (f"/{app}" if app else "") + f" ({text})"
    el = reply[0]
    if el.tag == f"{{{NS}}}release" and el[0].get("error"):
        return f"{el[0].get('error')} (per-key answer in <release/>)"
    return ""


async def main(work: Path) -> int:
    demo = Demo()
    secret = secrets.token_hex(16)
    prosody = Prosody(work / "prosody", secret)
    demo.say(f"{BOLD}keysrv demo{END}: Prosody + keysrv on loopback, keys sealed in SQLite\n")
    prosody.start()
    keysrv = None
    try:
        users = {name: f"{name}@{prosody.domain}" for name in ("romeo", "juliet", "mallory")}
        for name, jid in users.items():
            prosody.register(jid, f"{name}-pw")
        prosody.befriend(users["romeo"], users["juliet"])
        prosody.create_room("verona", users["romeo"], {users["juliet"]: "member"})
        room = f"verona@{prosody.muc}"
        demo.say(f"Prosody {DIM}127.0.0.1:{prosody.c2s_port}{END}: users romeo, juliet "
                 f"(mutual contacts) and mallory (nobody's contact); room {room} with "
                 "romeo (owner) and juliet (member).")

        keysrv = KeysrvProcess(work / "keysrv", base_config(prosody, work / "keysrv", secret))
        keysrv.init()
        keysrv.start()
        demo.say(f"keysrv: `keysrv init` made the KEK and the database; `keysrv run` "
                 f"is connected as {SERVICE} with roster access.\n")

        romeo = await connect(users["romeo"], "romeo-pw", prosody)
        juliet = await connect(users["juliet"], "juliet-pw", prosody)
        juliet2 = await connect(users["juliet"], "juliet-pw", prosody)
        mallory = await connect(users["mallory"], "mallory-pw", prosody)

        demo.say(f"{BOLD}A chat between romeo and juliet{END}")
        r = key_of(await ask(romeo, "set", f"<create xmlns='{NS}' with='{users['juliet']}'/>"))
        demo.check(r is not None, "romeo asks for the chat's key: create",
                   f"key id {r[0] if r else '-'}")
        j = key_of(await ask(juliet, "set", f"<create xmlns='{NS}' with='{users['romeo']}'/>"))
        demo.check(r is not None and j == r, "juliet asks too and gets the same key")
        if r is None:
            return finish(demo)
        key_id, material = r
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(material).encrypt(nonce, b"But soft!", key_id.encode())
        demo.say(f"  romeo sends {len(sealed)} bytes of ciphertext tagged with key {key_id}")
        got = key_of(await ask(juliet2, "get",
                               f"<release xmlns='{NS}'><key id='{key_id}'/></release>"))
        plain = AESGCM(got[1]).decrypt(sealed[:12], sealed[12:], key_id.encode()) if got else b""
        demo.check(plain == b"But soft!", "juliet's second device fetches the key by id "
                   "(release) and reads the message", f"decrypted: {plain.decode()!r}")
        device = X25519PrivateKey.generate()
        public = base64.b64encode(device.public_key().public_bytes_raw()).decode()
        reply = await ask(juliet2, "get", f"<release xmlns='{NS}'><key id='{key_id}'/>"
                          f"<wrap xmlns='{NS}' alg='{WRAP_ALG}'>{public}</wrap></release>")
        el = reply[0][0]
        unwrapped = unwrap(device, base64.b64decode(el.get("epk")), key_id,
                           base64.b64decode(el.text))
        demo.check(unwrapped == material, "the same release, wrapped to the device's X25519 "
                   "key: the server routing it sees only a wrapped blob")

        demo.say(f"\n{BOLD}mallory tries{END}")
        reply = await ask(mallory, "get", f"<release xmlns='{NS}'><key id='{key_id}'/></release>")
        demo.check(key_of(reply) is None, "mallory asks for the chat's key by id: refused",
                   refusal(reply))
        reply = await ask(mallory, "set", f"<create xmlns='{NS}' with='{users['romeo']}'/>")
        demo.check(reply.get("type") == "error", "mallory asks for a chat with romeo: refused",
                   refusal(reply))

        demo.say(f"\n{BOLD}The room {room}{END}")
        k1 = key_of(await ask(romeo, "set", f"<create xmlns='{NS}' room='{room}'/>"))
        k2 = key_of(await ask(juliet, "set", f"<create xmlns='{NS}' room='{room}'/>"))
        demo.check(k1 is not None and k1 == k2, "owner and member get the room's key",
                   f"key id {k1[0] if k1 else '-'}")
        reply = await ask(mallory, "set", f"<create xmlns='{NS}' room='{room}'/>")
        demo.check(reply.get("type") == "error", "mallory, not a member: refused",
                   refusal(reply))
        prosody.set_affiliation(room, users["juliet"], "none")
        demo.say("  romeo removes juliet from the member list")
        k3 = key_of(await ask(romeo, "set", f"<create xmlns='{NS}' room='{room}'/>"))
        demo.check(k3 is not None and k1 is not None and k3[0] != k1[0],
                   "romeo's next create rotates the room key", f"new key id {k3[0] if k3 else '-'}")
        reply = await ask(juliet, "get",
                          f"<release xmlns='{NS}'><key id='{k1[0] if k1 else 'x'}'/></release>")
        demo.check(key_of(reply) is None, "juliet can no longer fetch the room's keys",
                   refusal(reply))
        for client in (romeo, juliet, juliet2, mallory):
            await client.disconnect()
    finally:
        if keysrv is not None:
            code = keysrv.stop()
            demo.say(f"\nkeysrv stopped on SIGTERM (exit {code}); "
                     "its log has one line per request:")
            demo.say(f"{DIM}" + "\n".join(
                line.split(" keysrv: ", 1)[-1] for line in keysrv.log().splitlines()
                if " ms)" in line) + f"{END}")
        prosody.stop()
    return finish(demo)


async def connect(jid: str, password: str, prosody: Prosody) -> TestClient:
    client = TestClient(jid, password, "127.0.0.1", prosody.c2s_port)
    await client.connect()
    return client


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

"""`keysrv-client`: send, history, send-file, get-file (admin-interface.md).

One JSON object per line on stdout; exit 0 on success, 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn

from slixmpp import JID

from ..jids import JidError, bare
from . import files, mam, upload
from .errors import ClientError
from .files import is_loopback
from .plugin import Decrypted, Received
from .session import Account, Session

MAX_HISTORY = 10_000
MAX_TEXT = 64 * 1024


def _out(obj: dict[str, object]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 1, as every failure
        raise ClientError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="keysrv-client", description="Encrypted messages and files with a keysrv service."
    )
    p.add_argument("--jid", required=True, help="the account's bare JID")
    p.add_argument("--password-file", required=True, type=Path)
    p.add_argument("--server", help="XMPP server host (default: from the JID)")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--insecure-plaintext", action="store_true",
                   help="no TLS at all: loopback tests only")
    p.add_argument("--service", help="the key service JID (default: discovered)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per network step")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    send = sub.add_parser("send", help="encrypt and send TEXT to TO")
    send.add_argument("to")
    send.add_argument("text")
    send.add_argument("--room", action="store_true", help="TO is a room")
    hist = sub.add_parser("history", help="read and decrypt the archive of a chat or room")
    hist.add_argument("with_", metavar="WITH")
    hist.add_argument("--room", action="store_true", help="WITH is a room")
    hist.add_argument("--max", type=int, default=50, help="most recent N messages (default 50)")
    sf = sub.add_parser("send-file", help="encrypt, upload and send a file")
    sf.add_argument("to")
    sf.add_argument("path", type=Path)
    sf.add_argument("--room", action="store_true", help="TO is a room")
    gf = sub.add_parser("get-file", help="download and decrypt an aesgcm:// URL")
    gf.add_argument("url")
    gf.add_argument("out", type=Path)
    return p


def _account(args: argparse.Namespace) -> Account:
    try:
        password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ClientError(f"cannot read {args.password_file}: {exc.strerror}") from None
    try:
        jid = bare(args.jid)
    except JidError as exc:
        raise ClientError(f"--jid: {exc}") from None
    if args.insecure_plaintext and not is_loopback(args.server or ""):
        raise ClientError("--insecure-plaintext needs --server on a loopback address")
    return Account(
        jid=jid, password=password, server=args.server, port=args.port,
        insecure_plaintext=args.insecure_plaintext, service=args.service,
        plugins=("xep_0045",),
    )


async def _join(session: Session, room: str, timeout: float) -> None:
    """Rooms take groupchat messages from occupants only: join under a throwaway nick."""
    nick = f"{session.xmpp.boundjid.user}-{secrets.token_hex(3)}"
    muc = session.xmpp.plugin["xep_0045"]
    try:
        await muc.join_muc_wait(JID(room), nick, maxstanzas=0, timeout=timeout)
    except Exception as exc:  # slixmpp raises PresenceError / TimeoutError
        raise ClientError(f"cannot join {room}: {exc}") from None


async def cmd_send(session: Session, args: argparse.Namespace) -> None:
    if len(args.text.encode()) > MAX_TEXT:
        raise ClientError(f"TEXT is longer than {MAX_TEXT} bytes")
    to = bare(args.to)
    if args.room:
        await _join(session, to, args.timeout)
    sent = await session.keysrv.send_text(to, args.text, room=args.room)
    _out({"id": sent.id, "key": sent.key})


async def cmd_send_file(session: Session, args: argparse.Namespace) -> None:
    try:
        if (await asyncio.to_thread(args.path.stat)).st_size > files.MAX_FILE_BYTES:
            raise ClientError(f"{args.path} is larger than {files.MAX_FILE_BYTES} bytes")
        data = await asyncio.to_thread(args.path.read_bytes)
    except OSError as exc:
        raise ClientError(f"cannot read {args.path}: {exc.strerror}") from None
    to = bare(args.to)
    # The upload service sees the name: send a random one (the suffix helps apps).
    name = f"{secrets.token_hex(8)}{args.path.suffix[:16]}"
    url = await upload.upload_encrypted(session.xmpp, data, name, timeout=args.timeout)
    if args.room:
        await _join(session, to, args.timeout)
    sent = await session.keysrv.send_text(to, None, room=args.room, url=url)
    _out({"id": sent.id, "key": sent.key, "url": url})


async def cmd_history(session: Session, args: argparse.Namespace) -> None:
    if not 1 <= args.max <= MAX_HISTORY:
        raise ClientError(f"--max must be from 1 to {MAX_HISTORY}")
    peer = bare(args.with_)
    entries = await mam.last_messages(
        session.xmpp,
        archive=peer if args.room else None,
        with_=None if args.room else peer,
        count=args.max,
        timeout=args.timeout,
    )
    results = await session.keysrv.decrypt_many([e.message for e in entries])
    for entry, result in zip(entries, results, strict=True):
        _out(_history_line(result, entry.time))


def _history_line(result: Received, archived: str) -> dict[str, object]:
    line: dict[str, object] = {
        "id": result.id, "from": result.sender, "to": result.to,
        "time": result.time or archived, "key": result.key or None, "ok": result.ok,
    }
    if isinstance(result, Decrypted):
        line["body"] = result.body
        if result.url:
            line["url"] = result.url
    else:
        line["error"] = str(result.error)
    return line


async def cmd_get_file(args: argparse.Namespace) -> None:
    data = await upload.download_decrypted(args.url)
    out: Path = args.out
    tmp = out.with_name(f".{out.name}.part")
    try:
        await asyncio.to_thread(tmp.write_bytes, data)
        await asyncio.to_thread(os.replace, tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ClientError(f"cannot write {out}: {exc.strerror}") from None
    _out({"path": str(out), "size": len(data)})


_COMMANDS: dict[str, Callable[[Session, argparse.Namespace], Awaitable[None]]] = {
    "send": cmd_send,
    "send-file": cmd_send_file,
    "history": cmd_history,
}


async def _run(args: argparse.Namespace) -> None:
    if args.command == "get-file":  # no XMPP needed: the URL carries the key
        await cmd_get_file(args)
        return
    session = await Session.open(_account(args), timeout=args.timeout)
    try:
        await _COMMANDS[args.command](session, args)
    finally:
        await session.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # slixmpp's own chatter stays off stderr
    try:
        args = _parser().parse_args(argv)
        asyncio.run(_run(args))
    except (ClientError, JidError, ValueError) as exc:
        return _fail(str(exc))
    except (OSError, sqlite3.Error) as exc:
        return _fail(f"local storage: {exc}")
    except KeyboardInterrupt:
        return _fail("interrupted")
    return 0


def _fail(reason: str) -> int:
    print(f"keysrv-client: {' '.join(reason.split())}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

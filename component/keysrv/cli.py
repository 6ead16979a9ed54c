"""The `keysrv` command: init, check, run, --version (admin-interface.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from . import __version__, logs
from .config import Config, ConfigError, default_path, load_config
from .crypto import CryptoError, Sealer, create_kek_file, read_kek_file
from .instance import AlreadyRunning, InstanceLock
from .runner import KEK_CHECK, StartError, serve
from .store import KeyStore, StoreError, init_refusal, inspect


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _config(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(problem)
        return None


def cmd_init(path: Path) -> int:
    config = _config(path)
    if config is None:
        return 1
    kek_file, database = config.storage.kek_file, config.storage.database
    if kek_file.exists():
        _say(f"refusing to overwrite the existing KEK file {kek_file}")
        return 1
    refusal = init_refusal(database)
    if refusal is not None:
        _say(refusal)
        return 1
    try:
        for folder in {kek_file.parent, database.parent}:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        asyncio.run(_init_database(database, kek_file))
    except (OSError, StoreError, CryptoError) as exc:
        _say(f"init failed: {exc}")
        return 1
    print(f"created the KEK {kek_file} (mode 0600) and the database {database}")
    print(f"back up {kek_file} now, apart from the database: without it no key can be read")
    return 0


async def _init_database(database: Path, kek_file: Path) -> None:
    store = await KeyStore.open(database, create=True)
    try:
        kek = create_kek_file(kek_file)
        await store.set_meta(KEK_CHECK, Sealer(kek).check_value())
    finally:
        await store.close()


def cmd_check(path: Path) -> int:
    config = _config(path)
    if config is None:
        return 1
    problems: list[str] = []
    c, p = config.component, config.policy
    print(f"config: {config.path}")
    print(f"component: {c.jid} via {c.server}:{c.port}")
    print(f"domains: {', '.join(config.domains)}")
    print(f"muc services: {', '.join(config.muc_services) or '(none)'}")
    print(
        f"policy: roster={p.roster} allow_occupants={str(p.allow_occupants).lower()} "
        f"allow_remote={str(p.allow_remote).lower()} rotation_max_age={p.rotation_max_age:g}s "
        f"max_batch={p.max_batch} require_wrap={str(p.require_wrap).lower()}"
    )
    kek: bytes | None = None
    try:
        kek = read_kek_file(config.storage.kek_file)
        print(f"kek: {config.storage.kek_file} readable")
    except FileNotFoundError:
        problems.append(f"kek: {config.storage.kek_file} does not exist (run `keysrv init`)")
    except (OSError, CryptoError) as exc:
        problems.append(f"kek: cannot use {config.storage.kek_file}: {exc}")
    try:
        stats, check = inspect(config.storage.database)
        print(
            f"database: {config.storage.database} schema v{stats.schema_version}, "
            f"{stats.keys} keys in {stats.conversations} conversations"
        )
        if kek is not None:
            if check is None or not Sealer(kek).matches(check):
                problems.append(
                    f"kek: {config.storage.kek_file} does not open the keys in "
                    f"{config.storage.database} (wrong KEK file?)"
                )
            else:
                print("kek: matches the database")
    except StoreError as exc:
        problems.append(f"database: {exc}")
    for problem in problems:
        _say(problem)
    if problems:
        return 1
    print("all good")
    return 0


def cmd_run(path: Path) -> int:
    config = _config(path)
    if config is None:
        return 1
    logs.setup(config.log_level)
    if not config.storage.database.exists():
        _say(f"cannot start: no database at {config.storage.database} (run `keysrv init`)")
        return 1
    lock = InstanceLock(config.storage.database)
    try:
        lock.acquire()
        kek = read_kek_file(config.storage.kek_file)
        return asyncio.run(serve(config, kek))
    except AlreadyRunning as exc:
        _say(f"cannot start: {exc}")
    except FileNotFoundError as exc:
        _say(f"cannot start: {exc.filename} does not exist (run `keysrv init`)")
    except (OSError, CryptoError, StartError) as exc:
        _say(f"cannot start: {exc}")
    finally:
        lock.release()
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keysrv", description="Conversation key service")
    parser.add_argument("--version", action="version", version=f"keysrv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("init", "create the KEK file and the database"),
        ("check", "validate the config, the KEK and the database; changes nothing"),
        ("run", "run the component until SIGTERM/SIGINT"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "-c",
            "--config",
            type=Path,
            default=None,
            help="config file (default: $KEYSRV_CONFIG, else /etc/keysrv/keysrv.yml)",
        )
    args = parser.parse_args(argv)
    path = args.config or default_path()
    handlers = {"init": cmd_init, "check": cmd_check, "run": cmd_run}
    try:
        return handlers[args.command](path)
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())

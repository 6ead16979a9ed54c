"""The process around the keys: restarts and crashes lose nothing, the component
reconnects to a restarted XMPP server, one instance per database, init and check."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
import yaml
from kit import Key, create_key, release_keys

from harness.keysrv_proc import KeysrvProcess, base_config, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def pair_clients(server, new_user, client_factory):
    romeo, juliet = new_user("romeo"), new_user("juliet")
    server.befriend(romeo, juliet)
    return romeo, juliet, await client_factory(romeo)


async def test_restart_and_crash_keep_every_key(keysrv_manager, pair_clients):
    _romeo, juliet, r = pair_clients
    inst = keysrv_manager.ensure()
    first = await create_key(r, with_=juliet)
    assert inst.stop() == 0, "a clean stop exits 0"
    inst.start()
    second = await create_key(r, with_=juliet)
    assert second == first
    inst.kill()  # SIGKILL: a crash right after answering
    inst.start()
    items = [Key.of(el) for el in await release_keys(r, first.id)]
    assert items[0].material == first.material


async def test_server_restart_reconnects(keysrv_manager, server, pair_clients, client_factory):
    romeo, juliet, r = pair_clients
    inst = keysrv_manager.ensure()
    key = await create_key(r, with_=juliet)
    mark = inst.mark()
    server.restart()
    inst.wait_for_log("reconnecting in", timeout=10, after=mark)
    inst.wait_for_log("connected to the XMPP server", timeout=20, after=mark)
    inst.wait_for_log("privileges from", timeout=10, after=mark)
    assert inst.running
    fresh = await client_factory(juliet)  # the old client connections died with the server
    items = [Key.of(el) for el in await release_keys(fresh, key.id)]
    assert items[0].material == key.material
    assert (await create_key(fresh, with_=romeo)).id == key.id


async def test_second_instance_is_refused(keysrv_manager, pair_clients):
    _romeo, juliet, r = pair_clients
    inst = keysrv_manager.ensure()
    started = time.monotonic()
    second = inst.spawn()
    code = await asyncio.to_thread(second.wait, 15)
    assert code == 1 and time.monotonic() - started < 10
    assert "already serving" in inst.log()
    assert inst.running
    # The first one still serves everything: ejabberd would share stanzas between two
    # connected instances, so a second one that got as far as connecting would lose
    # some of these answers (and Prosody would have refused it with conflict).
    keys = await asyncio.gather(*(create_key(r, with_=juliet) for _ in range(20)))
    assert len({k.id for k in keys}) == 1
    assert "connected to the XMPP server" not in second_log(inst)


def second_log(inst: KeysrvProcess) -> str:
    """The shared log since the second instance was spawned (spawn() moves the mark)."""
    return inst.log(since_start=True)


async def test_wrong_secret_fails_with_a_clear_line(keysrv_manager, tmp_path):
    config = dict(keysrv_manager.base)
    other = KeysrvProcess(tmp_path / "k", {**config, "component": {
        **config["component"], "secret": "not-the-secret"},
        "storage": {"database": str(tmp_path / "k" / "db.sqlite3"),
                    "kek_file": str(tmp_path / "k" / "kek")}})
    other.init()
    proc = other.spawn()
    assert await asyncio.to_thread(proc.wait, 20) == 1
    assert "refused the component handshake" in other.log()


async def test_logs_carry_no_key_material(keysrv_manager, pair_clients):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from kit import NS, ask, result_child

    romeo, juliet, r = pair_clients
    inst = keysrv_manager.ensure(logging={"level": "debug"})
    mark = inst.mark()
    key = await create_key(r, with_=juliet)
    public = base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes_raw())
    wrap = f"<wrap xmlns='{NS}' alg='X25519-HKDF-SHA256-A256GCM'>{public.decode()}</wrap>"
    wrapped = result_child(await ask(
        r, "get", f"<release xmlns='{NS}'><key id='{key.id}'/>{wrap}</release>"))[0].text
    await release_keys(r, key.id)
    log = inst.wait_for_log("release 1 id", after=mark)
    assert key.material is not None and wrapped
    for secret in (base64.b64encode(key.material).decode(), wrapped, key.material.hex()):
        assert secret not in log
    assert "DEBUG keysrv" in log, "debug is on for keysrv's own loggers"
    assert "aiosqlite" not in log and "INSERT" not in log, "no library debug output"
    lines = [line for line in log.splitlines() if f"{romeo} " in line and "ms)" in line]
    assert len(lines) == 3 and all("-> ok" in line for line in lines), lines


# --- keysrv init / check (no server needed) -------------------------------------------


@pytest.fixture
def fresh(server, tmp_path) -> KeysrvProcess:
    inst = KeysrvProcess(tmp_path, base_config(server, tmp_path, "secret"))
    inst.init()
    return inst


def test_init_refuses_to_overwrite_a_kek(fresh):
    kek = (fresh.workdir / "kek").read_bytes()
    done = fresh.cli("init")
    assert done.returncode == 1 and "refusing to overwrite" in done.stderr
    assert (fresh.workdir / "kek").read_bytes() == kek
    assert (fresh.workdir / "kek").stat().st_mode & 0o777 == 0o600


def test_init_refuses_a_database_sealed_under_another_kek(fresh):
    (fresh.workdir / "kek").unlink()
    done = fresh.cli("init")
    assert done.returncode == 1 and "another KEK" in done.stderr
    assert not (fresh.workdir / "kek").exists()


def test_check_reports_what_it_found_and_writes_nothing(fresh):
    def snapshot():
        return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in fresh.workdir.iterdir()}

    before = snapshot()
    done = fresh.cli("check")
    assert done.returncode == 0, done.stderr
    assert "kek: matches the database" in done.stdout and "schema v1" in done.stdout
    assert snapshot() == before, "check created or changed files"


def test_init_accepts_an_empty_database_file(server, tmp_path):
    inst = KeysrvProcess(tmp_path, base_config(server, tmp_path, "secret"))
    (tmp_path / "keys.sqlite3").write_bytes(b"")
    inst.init()
    assert inst.cli("check").returncode == 0


def test_check_broken_config(fresh):
    config = dict(fresh.config)
    config["policy"] = {"roster": "friends", "max_batch": "lots"}
    config["colour"] = "blue"
    fresh.write_config(config)
    done = fresh.cli("check")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3
    for key in ("policy.roster", "policy.max_batch", "colour"):
        assert any(key in line and str(fresh.config_path) in line for line in lines), key
    fresh.config_path.write_text("component: [unclosed\n")
    done = fresh.cli("check")
    assert done.returncode == 1 and "not valid YAML" in done.stderr
    missing = run_cli("check", "-c", str(fresh.workdir / "nope.yml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_check_missing_kek(fresh):
    (fresh.workdir / "kek").unlink()
    done = fresh.cli("check")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"kek: {fresh.workdir / 'kek'} does not exist (run `keysrv init`)")


def test_check_wrong_kek(fresh):
    (fresh.workdir / "kek").write_text(base64.b64encode(b"w" * 32).decode() + "\n")
    done = fresh.cli("check")
    assert done.returncode == 1 and "does not open the keys" in done.stderr
    run = fresh.cli("run", timeout=20)
    assert run.returncode == 1 and "does not open the keys" in run.stderr


def test_check_works_while_run_is_serving(keysrv):
    before = keysrv.config_path.read_text()
    done = keysrv.cli("check")
    assert done.returncode == 0, done.stderr
    assert keysrv.running and keysrv.config_path.read_text() == before


def test_version():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("keysrv ")


def test_config_from_environment(fresh, monkeypatch):
    import subprocess
    import sys

    env = {"KEYSRV_CONFIG": str(fresh.config_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "keysrv", "check"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(fresh.config_path.read_text())["component"]["jid"] in done.stdout


async def test_tells_systemd_when_ready_and_stopping(keysrv_manager, tmp_path):
    import socket

    inst = keysrv_manager.ensure()
    assert inst.stop() == 0
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(15)
        inst.start(env={"NOTIFY_SOCKET": address})
        ready = await asyncio.to_thread(sock.recv, 1024)
        assert b"READY=1" in ready
        assert inst.stop() == 0
        assert b"STOPPING=1" in await asyncio.to_thread(sock.recv, 1024)


async def test_sigterm_while_the_server_is_unreachable(server, tmp_path):
    from harness.prosody import free_ports

    config = base_config(server, tmp_path, "secret")
    config["component"]["port"] = free_ports(1)[0]  # nothing listens there
    inst = KeysrvProcess(tmp_path, config)
    inst.init()
    inst.proc = inst.spawn()
    inst.wait_for_log("reconnecting in", timeout=10)
    inst.wait_for_log("reconnecting in", timeout=10, after=inst.mark())  # still retrying
    assert inst.running
    assert inst.stop() == 0
    assert "stopped" in inst.log()


def test_run_before_init_says_so(server, tmp_path):
    inst = KeysrvProcess(tmp_path, base_config(server, tmp_path, "secret"))
    done = inst.cli("run", timeout=20)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"cannot start: no database at {tmp_path / 'keys.sqlite3'} (run `keysrv init`)")

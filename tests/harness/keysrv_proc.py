"""`keysrv` as a separate process under test: config files, init, run, stop.

The component always runs through its real command line (`python -m keysrv`),
so every integration test also exercises the CLI, the config loader and the
signal handling.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .servers import XmppServer

READY = "connected to the XMPP server"


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keysrv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def base_config(server: XmppServer, workdir: Path, secret: str) -> dict[str, Any]:
    return {
        "component": {
            "jid": server.component,
            "server": "127.0.0.1",
            "port": server.component_port,
            "secret": secret,
        },
        "domains": [server.domain],
        "muc_services": [server.muc],
        "storage": {
            "database": str(workdir / "keys.sqlite3"),
            "kek_file": str(workdir / "kek"),
        },
        # No caching by default, so tests see roster/room changes at once;
        # the cache has tests of its own.
        "cache": {"roster_ttl": 0, "muc_ttl": 0},
        "limits": {"lookup_timeout": "3s", "rate": 1000, "burst": 1000},
        "logging": {"level": "info"},
    }


class KeysrvProcess:
    """One keysrv instance (config + database + KEK in `workdir`)."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "keysrv.yml"
        self.log_path = workdir / "keysrv.log"
        self.config: dict[str, Any] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.write_config(config)

    def write_config(self, config: dict[str, Any]) -> None:
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config))

    def cli(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return run_cli(command, "-c", str(self.config_path), timeout=timeout)

    def init(self) -> None:
        done = self.cli("init")
        assert done.returncode == 0, done.stderr

    # --- run -------------------------------------------------------------------------

    def spawn(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `keysrv run` without waiting for anything (`env` adds variables)."""
        log = self.log_path.open("ab")
        self._log_offset = self.log_path.stat().st_size
        proc = subprocess.Popen(
            [sys.executable, "-m", "keysrv", "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        log.close()
        return proc

    def start(self, timeout: float = 15, env: dict[str, str] | None = None) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = self.spawn(env)
        self.wait_for_log(READY, timeout)
        self.wait_for_log("privileges from", timeout)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError("keysrv did not stop on SIGTERM") from None
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- logs ------------------------------------------------------------------------

    def log(self, since_start: bool = False) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[self._log_offset :] if since_start else text

    def mark(self) -> int:
        return len(self.log())

    def wait_for_log(self, needle: str, timeout: float = 10, after: int | None = None) -> str:
        start = self._log_offset if after is None else after
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()[start:]
            if needle in text:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} in keysrv's log:\n{self.log()[start:][-3000:]}")

"""A real Prosody 0.12 on loopback, for integration tests.

The server configuration is the admin snippet ``config/prosody/keysrv.cfg.lua``
(secret substituted, nothing else changed) appended after test-only global
settings: loopback plaintext ports picked at random, no TLS, no s2s, no rate
limits, everything (data, log, pid, admin socket) inside ``workdir``.

Fixture changes (rosters, rooms) go through ``prosodyctl shell`` (mod_admin_shell),
acting on the running server's own in-memory state, so they take effect at once,
for online users too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from .servers import (
    RosterChange,
    ServerError,
    ServerProcess,
    check_affiliation,
    check_bare,
    check_roster_change,
    read_from,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SNIPPET_PATH = REPO_ROOT / "config" / "prosody" / "keysrv.cfg.lua"
SECRET_PLACEHOLDER = "CHANGE-ME-component-secret"


# sun_path is 108 bytes on Linux; keep a margin.
_MAX_SOCKET_PATH = 100


class ProsodyError(ServerError):
    """Prosody failed to start, or a prosodyctl command failed (message has the output)."""


def lua_str(value: str) -> str:
    """A Lua string literal for ``value``: every byte outside printable ASCII escaped."""
    out = ['"']
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    out.append('"')
    return "".join(out)


def lua_opt(value: str | None) -> str:
    return "nil" if value is None else lua_str(value)


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (free when picked; Prosody binds them soon after)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# Lua helpers shared by the shell chunks below. Each chunk is run by
# mod_admin_shell in Prosody's global environment; error() makes prosodyctl exit
# non-zero with the message on stderr.
_LUA_ROSTER = """
local rm = require "core.rostermanager";
local jid_split = require "util.jid".split;
local function set_item(owner, contact, subscription, ask)
  local user, host = jid_split(owner);
  if not user or not prosody.hosts[host] then error("not a local user: " .. owner) end
  if not require "core.usermanager".user_exists(user, host) then
    error("no such user: " .. owner)
  end
  local roster, err = rm.load_roster(user, host);
  if not roster then error("cannot load roster of " .. owner .. ": " .. tostring(err)) end
  if subscription == nil then
    roster[contact] = nil;
  else
    local item = roster[contact] or { groups = {} };
    item.subscription = subscription;
    item.ask = ask;
    item.groups = item.groups or {};
    roster[contact] = item;
  end
  local ok, serr = rm.save_roster(user, host, roster, contact);
  if not ok then error("cannot save roster of " .. owner .. ": " .. tostring(serr)) end
  rm.roster_push(user, host, contact);
end
"""

_LUA_MUC = """
local function muc_module(room_jid)
  local host = room_jid:match("@(.+)$");
  local h = host and prosody.hosts[host];
  local muc = h and h.modules.muc;
  if not muc then error("not a room on a local MUC service: " .. room_jid) end
  return muc;
end
local function get_room(room_jid)
  local room = muc_module(room_jid).get_room_from_jid(room_jid);
  if not room or room._data.destroyed then error("no such room: " .. room_jid) end
  return room;
end
local function set_aff(room, jid, affiliation)
  local ok, etype, cond = room:set_affiliation(true, jid, affiliation);
  if not ok then
    error("set_affiliation(" .. jid .. ", " .. affiliation .. ") failed: "
      .. tostring(etype) .. "/" .. tostring(cond))
  end
end
"""


class Prosody(ServerProcess):
    """One Prosody process serving example.com, keys.example.com and conference.example.com."""

    software = name = "prosody"
    error = ProsodyError
    domain = "example.com"
    component = "keys.example.com"
    muc = "conference.example.com"
    #: An external component that is configured but never connected.
    down_component = "down.example.com"
    other_domain = "other.example"  # a user domain keysrv does not serve (stands in for s2s)
    #: XEP-0363 upload service (mod_http_file_share), plain HTTP on loopback.
    upload = "upload.example.com"

    def __init__(self, workdir: Path, secret: str, *, log_level: str = "info") -> None:
        if log_level not in ("info", "debug"):
            raise ValueError("log_level must be 'info' or 'debug' (start() reads info lines)")
        self.workdir = Path(workdir).resolve()
        self.secret = secret
        self.log_level = log_level
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.log_path = self.workdir / "prosody.log"
        self.stdout_path = self.workdir / "prosody.stdout"
        self.data_dir = self.workdir / "data"
        self.cert_dir = self.workdir / "certs"
        self.pid_path = self.workdir / "prosody.pid"
        self._pick_ports()
        socket_path = self.data_dir / "prosody.sock"
        self._socket_tmpdir: Path | None = None
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            self._socket_tmpdir = Path(tempfile.mkdtemp(prefix="prosody-"))
            socket_path = self._socket_tmpdir / "prosody.sock"
        self.admin_socket = socket_path
        super().__init__()
        atexit.register(self.stop)  # never leave a server behind

    # ------------------------------------------------------------------ config

    @property
    def down_component_port(self) -> int:
        return self.component_port  # one component port for every component

    @property
    def upload_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def config_text(self) -> str:
        """The full configuration: test-only globals, the admin snippet, harness-only hosts."""
        snippet = SNIPPET_PATH.read_text(encoding="utf-8")
        quoted = f'"{SECRET_PLACEHOLDER}"'
        if snippet.count(quoted) != 1:
            raise ProsodyError(f"{SNIPPET_PATH} must contain {quoted} exactly once")
        snippet = snippet.replace(quoted, lua_str(self.secret))
        q = lua_str
        head = f"""-- Generated by tests/harness/prosody.py: loopback test server, not for use.
run_as_root = true
pidfile = {q(str(self.pid_path))}
data_path = {q(str(self.data_dir))}
certificates = {q(str(self.cert_dir))}
admin_socket = {q(str(self.admin_socket))}
log = {{ {self.log_level} = {q(str(self.log_path))} }}

interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "127.0.0.1" }}
http_ports = {{ {self.http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
https_interfaces = {{ }}

modules_enabled = {{
  "roster"; "saslauth"; "disco"; "ping"; "carbons"; "pep";
  "mam"; "offline"; "admin_shell"; "http";
}}
-- No TLS, no server-to-server, no rate limits (mod_limits is not enabled).
modules_disabled = {{ "s2s"; "tls"; "limits" }}
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
default_archive_policy = true

-- ===== config/prosody/keysrv.cfg.lua (secret substituted) =====
"""
        tail = f"""
-- ===== harness-only hosts =====
-- A user domain keysrv does not serve: its users stand in for users of other servers.
VirtualHost {q(self.other_domain)}

-- Configured but never connected: stanzas to it get an error reply.
Component {q(self.down_component)}
\tcomponent_secret = {q(self.secret + "-down")}

Component {q(self.upload)} "http_file_share"
\thttp_external_url = {q(self.upload_url)}
\t-- HTTP requests are routed by Host header; clients send "127.0.0.1".
\thttp_host = "127.0.0.1"
"""
        return head + snippet + tail

    # ------------------------------------------------------------- lifecycle

    def _pick_ports(self) -> None:
        self.c2s_port, self.component_port, self.http_port = free_ports(3)

    def _start_once(self, timeout: float) -> bool:
        """One start; False if a port could not be bound (server stopped again)."""
        for directory in (self.workdir, self.data_dir, self.cert_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.stdout_path, "ab") as out:
            self._proc = subprocess.Popen(
                ["prosody", "--config", str(self.config_path), "-F"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        ports = {"component": self.component_port, "http": self.http_port, "c2s": self.c2s_port}
        # Ready = each service logged that it listens on its port (c2s comes last), and
        # the ports accept connections. Probing ports alone is fooled by another
        # listener on a port Prosody failed to bind.
        ready_lines = [f"Activated service '{n}' on [127.0.0.1]:{p}" for n, p in ports.items()]
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ProsodyError(f"Prosody exited with code {code} during start\n{self._tails()}")
            log = read_from(self.log_path, log_offset)
            if "Failed to open server port" in log:
                self.stop()
                return False
            if all(line in log for line in ready_lines) and all(
                _port_open(p) for p in ports.values()
            ):
                return True
            if time.monotonic() > deadline:
                self.stop()
                raise ProsodyError(
                    f"Prosody did not open ports {ports} within {timeout} s\n{self._tails()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def cleanup(self) -> None:
        """stop(), and remove the out-of-tree socket directory if one was needed."""
        self.stop()
        if self._socket_tmpdir is not None:
            shutil.rmtree(self._socket_tmpdir, ignore_errors=True)

    # ----------------------------------------------------------- prosodyctl

    def prosodyctl(self, *args: str, timeout: float = 30.0) -> str:
        """``prosodyctl --config FILE ARGS...``: return stdout, raise ProsodyError on failure."""
        cmd = ["prosodyctl", "--config", str(self.config_path), *args]
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            check=False,
        )
        if result.returncode != 0 or result.stderr.strip():
            shown = " ".join(cmd[:4]) + (" ..." if len(cmd) > 4 else "")
            raise ProsodyError(
                f"{shown} failed (exit {result.returncode})\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result.stdout

    def shell(self, lua: str) -> str:
        """Run a Lua chunk in the running server's global environment (mod_admin_shell).

        The chunk may span lines. It fails (ProsodyError, with the output) if it raises
        an error or returns ``nil, message``. Returns what it printed plus
        ``Result: ...``.
        """
        if not self.running:
            raise ProsodyError("Prosody is not running")
        return self.prosodyctl("shell", "> " + lua.strip())

    def register(self, user: str, password: str) -> None:
        """Create (or reset the password of) a user: localpart or bare JID on ``domain``."""
        local, _, host = user.partition("@")
        if host and host not in (self.domain, self.other_domain):
            raise ValueError(f"{user}: users live on {self.domain} or {self.other_domain}")
        self.prosodyctl("register", local, host or self.domain, password)

    # ---------------------------------------------------------------- rosters

    def set_rosters(self, items: Iterable[RosterChange]) -> None:
        """Several set_roster() changes, in one shell invocation."""
        calls: list[str] = []
        for owner, contact, subscription, ask in items:
            check_roster_change(owner, contact, subscription, ask)
            calls.append(
                f"set_item({lua_str(owner)}, {lua_str(contact)}, "
                f"{lua_opt(subscription)}, {lua_opt(ask)});"
            )
        if calls:
            self.shell(_LUA_ROSTER + "\n".join(calls) + "\nreturn true;")

    # ------------------------------------------------------------------ rooms

    def create_room(
        self,
        room: str,
        owner: str,
        affiliations: Mapping[str, str] | None = None,
        members_only: bool = True,
    ) -> None:
        """Create a persistent room with ``owner`` and extra ``{jid: affiliation}``.

        Fails if the room exists. A tombstone left by destroy_room() is cleared first.
        """
        room_jid = self.room_jid(room)
        check_bare(owner)
        sets = [f"set_aff(room, {lua_str(owner)}, 'owner');"]
        for jid, affiliation in (affiliations or {}).items():
            check_bare(jid)
            check_affiliation(affiliation)
            sets.append(f"set_aff(room, {lua_str(jid)}, {lua_str(affiliation)});")
        lua = f"""{_LUA_MUC}
local room_jid = {lua_str(room_jid)};
local muc = muc_module(room_jid);
local old = muc.get_room_from_jid(room_jid);
if old and old._data.destroyed then old:destroy(); old = nil; end
if old then error("room exists: " .. room_jid) end
local room, err = muc.create_room(room_jid);
if not room then error("create_room failed: " .. tostring(err)) end
room:set_persistent(true);
room:set_members_only({"true" if members_only else "false"});
{chr(10).join(sets)}
room:save(true);
return true;
"""
        self.shell(lua)

    def set_affiliation(self, room: str, jid: str, affiliation: str) -> None:
        """Set ``jid``'s affiliation in an existing room (``none`` removes it)."""
        check_bare(jid)
        check_affiliation(affiliation)
        lua = f"""{_LUA_MUC}
local room = get_room({lua_str(self.room_jid(room))});
set_aff(room, {lua_str(jid)}, {lua_str(affiliation)});
room:save(true);
return true;
"""
        self.shell(lua)

    def destroy_room(self, room: str, *, tombstone: bool = True) -> None:
        """Destroy a room as its owner would.

        With ``tombstone`` (Prosody's default behaviour, ``muc_tombstones``) the
        room JID then answers ``cancel/gone`` for 31 days; without it the room is
        purged and its JID answers ``cancel/item-not-found``.
        """
        purge = "local t = muc.get_room_from_jid(room_jid); if t then t:destroy(); end"
        if tombstone:
            purge = ""
        lua = f"""{_LUA_MUC}
local room_jid = {lua_str(self.room_jid(room))};
local muc = muc_module(room_jid);
local room = get_room(room_jid);
room:destroy(nil, "destroyed by the test harness");
{purge}
return true;
"""
        self.shell(lua)

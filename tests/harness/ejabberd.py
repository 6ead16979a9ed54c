"""A real ejabberd 23.01 on loopback, for integration tests (drop-in for ``Prosody``).

Configuration: ``ejabberd.yml`` holds the test-only settings (loopback plaintext
ports picked at random, no TLS, no s2s, no shapers, the harness-only hosts) and
ends with ``include_config_file:`` naming ``keysrv.yml`` next to it: the admin
snippet ``config/ejabberd/keysrv.yml`` with exactly two substitutions, each
required to occur exactly once: ``"CHANGE-ME-component-secret"`` becomes the
quoted secret, and ``port: 5347`` becomes ``port: <component_port>``. ejabberd
(yconf) splices an included file's top-level keys into the including file, and
``econf:group_dups`` then concatenates top-level keys that occur in both
(``listen``, ``modules``, ``acl``, ...); a module, ACL or access rule configured
in both files is a startup error ("Duplicated option"), so the generated file
never configures what the snippet does (mod_privilege, mod_muc, acl/rule keysrv).

Harness-only parts, in ``ejabberd.yml``: ``down.example.com`` is a component
with its own password on a listener of its own (two listeners may not share a
port, and the snippet's listener is included verbatim); ``other.example`` gets
its own module list (``host_config``), so it has neither mod_privilege nor
MUC, as in the Prosody harness; ``upload.example.com`` is mod_http_upload,
served with the HTTP API (``/api``, commands listed in ``API_COMMANDS``, open to
127.0.0.1 without authentication) on ``http_port``.

Process: a private Erlang node (``ejabberdctl.cfg`` in ``workdir``: an
``ERLANG_NODE`` named after ``workdir``, as Mnesia data belongs to a node name;
``ERL_DIST_PORT``, so no epmd; distribution bound to 127.0.0.1; the cookie in
``workdir/home/.erlang.cookie``, never on a command line), run as
``ejabberdctl ... foreground-quiet``, a child of this process in its own process
group, with config, logs and Mnesia spool all inside ``workdir``. Ready (~1.1 s)
= the listeners logged that they accept connections, the c2s and component ports
accept connections, and an HTTP API command answers (``ejabberdctl start`` +
``started`` would poll every 2 s). stop() stops the ejabberd application and
Mnesia (all data on disk) and halts the VM through ``erl_call`` (~0.05 s;
SIGTERM, i.e. ``init:stop()``, takes ~1 s; ``ejabberdctl stop`` sleeps 1 s on
purpose and ``stopped`` polls every 2 s), then kills whatever is left of the
process group. Data (users, rosters, rooms) survives restart().

Fixture changes go through ejabberd's HTTP API (mod_http_api, ~1 ms a call; an
``ejabberdctl`` call starts a VM, ~0.5 s), acting on the running server, so they
take effect at once, for online users too (they get roster pushes). ejabberd has
no command that sets a roster item's ``ask``: ``ask="subscribe"`` runs
``mod_roster:out_subscription/1`` (what ejabberd does when the owner's client
sends a subscription request) through ``erl_call``: the owner's item gets the
pending request, the contact is not told. Differences from Prosody that tests may
see are listed in the docstrings of ``set_roster`` and ``destroy_room``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from .prosody import _port_open, free_ports
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
SNIPPET_PATH = REPO_ROOT / "config" / "ejabberd" / "keysrv.yml"
SECRET_PLACEHOLDER = "CHANGE-ME-component-secret"
#: The component port line of the snippet; the harness puts its own port there.
SNIPPET_PORT = "port: 5347"

#: The HTTP API commands the harness may call (api_permissions, from 127.0.0.1 only).
API_COMMANDS = (
    "status",
    "register",
    "change_password",
    "check_account",
    "get_roster",
    "add_rosteritem",
    "delete_rosteritem",
    "create_room_with_opts",
    "set_room_affiliation",
    "get_room_affiliations",
    "get_room_options",
    "destroy_room",
)

# Stop the ejabberd application and Mnesia (tables closed, everything on disk),
# then halt the VM. spawn(): erl_call gets its answer before the node goes away.
_ERL_HALT = "spawn(fun() -> application:stop(ejabberd), mnesia:stop(), erlang:halt(0) end), ok."

# Variables that ejabberdctl or erl would take from the environment over its
# command line or ejabberdctl.cfg.
_SCRUBBED_ENV = (
    "CONFIG_DIR",
    "LOGS_DIR",
    "SPOOL_DIR",
    "EJABBERD_CONFIG_PATH",
    "EJABBERDCTL_CONFIG_PATH",
    "EJABBERD_LOG_PATH",
    "EJABBERD_PID_PATH",
    "EJABBERD_OPTS",
    "VMARGS",
    "ERL_FLAGS",
    "ERL_AFLAGS",
    "ERL_ZFLAGS",
    "ERL_LIBS",
)

# Modules of every test vhost; example.com also gets the snippet's modules and
# the harness-only services (see config_text).
_BASE_MODULES = """\
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  mod_carboncopy: {}
  mod_offline: {}
  mod_mam:
    default: always
  mod_caps: {}
  mod_pubsub:
    plugins: [flat, pep]
  mod_admin_extra: {}
"""

# No proxy for loopback calls, whatever the environment says.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EjabberdError(ServerError):
    """ejabberd failed to start, or an admin operation failed (message has the output)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: HTTP status of a failed API call, if that is what failed.
        self.status = status


def yaml_str(value: str) -> str:
    """A YAML double-quoted scalar for ``value`` (a JSON string is one)."""
    return json.dumps(value)


def erl_binary(value: str) -> str:
    """An Erlang binary literal with the UTF-8 bytes of ``value`` (nothing to escape)."""
    return "<<" + ",".join(str(b) for b in value.encode("utf-8")) + ">>"


def _executable(name: str, *fallbacks: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for path in fallbacks:
        if os.access(path, os.X_OK):
            return path
    raise EjabberdError(f"{name} not found (is the ejabberd package installed?)")


class Ejabberd(ServerProcess):
    """One ejabberd node serving example.com (+ other.example), keys.example.com's
    component port, conference.example.com and upload.example.com."""

    software = name = "ejabberd"
    start_timeout = 20.0
    error = EjabberdError
    domain = "example.com"
    component = "keys.example.com"
    muc = "conference.example.com"
    #: An external component that is configured but never connected.
    down_component = "down.example.com"
    other_domain = "other.example"  # a user domain keysrv does not serve (stands in for s2s)
    #: XEP-0363 upload service (mod_http_upload), plain HTTP on loopback.
    upload = "upload.example.com"

    def __init__(self, workdir: Path, secret: str) -> None:
        self.workdir = Path(workdir).resolve()
        if any(c.isspace() for c in str(self.workdir)):
            # ejabberdctl passes the spool directory through unquoted word splitting.
            raise ValueError(f"ejabberd's workdir must not contain whitespace: {self.workdir}")
        self.secret = secret
        self.config_path = self.workdir / "ejabberd.yml"
        #: The admin snippet as included by config_path (secret and port substituted).
        self.snippet_config_path = self.workdir / "keysrv.yml"
        self.ctl_config_path = self.workdir / "ejabberdctl.cfg"
        self.log_path = self.workdir / "ejabberd.log"
        self.error_log_path = self.workdir / "error.log"
        self.stdout_path = self.workdir / "ejabberd.stdout"
        self.spool_dir = self.workdir / "spool"
        self.upload_dir = self.workdir / "upload"
        self.home_dir = self.workdir / "home"  # $HOME of the node: its Erlang cookie
        # Mnesia data belongs to a node name: the same workdir gets the same name.
        digest = hashlib.sha1(str(self.workdir).encode()).hexdigest()[:10]
        self.node = f"keysrv-test-{digest}@localhost"
        self._pick_ports()
        super().__init__()
        atexit.register(self.stop)  # never leave a server behind

    def _pick_ports(self) -> None:
        (
            self.c2s_port,
            self.component_port,
            self.http_port,
            self.down_component_port,
            self.dist_port,
        ) = free_ports(5)

    # ------------------------------------------------------------------ config

    @property
    def upload_url(self) -> str:
        """Prefix of every put/get URL mod_http_upload hands out."""
        return f"http://127.0.0.1:{self.http_port}/upload/"

    def snippet_text(self) -> str:
        """The admin snippet with the secret and the component port substituted."""
        snippet = SNIPPET_PATH.read_text(encoding="utf-8")
        quoted = f'"{SECRET_PLACEHOLDER}"'
        for needle in (quoted, SNIPPET_PORT):
            if snippet.count(needle) != 1:
                raise EjabberdError(f"{SNIPPET_PATH} must contain {needle!r} exactly once")
        snippet = snippet.replace(quoted, yaml_str(self.secret))
        return snippet.replace(SNIPPET_PORT, f"port: {self.component_port}")

    def config_text(self) -> str:
        """ejabberd.yml: test-only globals and harness-only hosts; includes the snippet."""
        q = yaml_str
        upload_base = self.upload_url.rstrip("/")
        commands = "\n".join(f"      - {c}" for c in API_COMMANDS)
        return f"""# Generated by tests/harness/ejabberd.py: loopback test server, not for use.
hosts:
  - {q(self.domain)}
  - {q(self.other_domain)}
loglevel: info
log_rotate_size: infinity
auth_method: internal
# As Debian's default ejabberd.yml: SASL PLAIN and SCRAM-SHA-* only.
disable_sasl_mechanisms: ["digest-md5", "x-oauth2"]
# No server-to-server: stanzas to unknown domains (and to a component that is not
# connected) get an error at once instead of waiting for DNS.
s2s_access: none

listen:
  -
    port: {self.c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    # Loopback plaintext: no TLS, no shaper (no throttling).
    starttls: false
    starttls_required: false
    shaper: none
    max_stanza_size: 262144
  -
    port: {self.http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
      /upload: mod_http_upload
  # Configured but never connected: stanzas to it get an error reply.
  -
    port: {self.down_component_port}
    ip: "127.0.0.1"
    module: ejabberd_service
    global_routes: false
    hosts:
      {q(self.down_component)}:
        password: {q(self.secret + "-down")}

api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
  "test harness":
    from:
      - mod_http_api
    who:
      ip: "127.0.0.1/32"
    what:
{commands}

modules:
{_BASE_MODULES}  mod_muc_admin: {{}}
  mod_http_api: {{}}
  mod_http_upload:
    hosts:
      - {q(self.upload)}
    put_url: {q(upload_base)}
    get_url: {q(upload_base)}
    docroot: {q(str(self.upload_dir))}
    access: all

# A user domain keysrv does not serve: its own module list replaces the global
# one (so no mod_privilege, no MUC, no upload there).
host_config:
  {q(self.other_domain)}:
    modules:
{_indent(_BASE_MODULES, 4)}
# ===== config/ejabberd/keysrv.yml (secret and component port substituted) =====
include_config_file: {q(str(self.snippet_config_path))}
"""

    def ctl_config_text(self) -> str:
        # INET_DIST_INTERFACE would make ejabberdctl start one more VM (~0.12 s) just
        # to parse the address: give the kernel option directly.
        return f"""# Generated by tests/harness/ejabberd.py: a private ejabberd node for tests.
EXEC_CMD=as_current_user
ERLANG_NODE={self.node}
ERL_DIST_PORT={self.dist_port}
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {{127,0,0,1}}"
EJABBERD_BYPASS_WARNINGS=true
"""

    def _write_files(self) -> None:
        for directory in (self.workdir, self.spool_dir, self.upload_dir, self.home_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.snippet_config_path.write_text(self.snippet_text(), encoding="utf-8")
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        self.ctl_config_path.write_text(self.ctl_config_text(), encoding="utf-8")
        (self.workdir / "inetrc").write_text('{lookup, ["file", "native"]}.\n', encoding="utf-8")
        cookie = self.home_dir / ".erlang.cookie"
        if not cookie.exists():  # Erlang insists on an owner-only cookie file
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(20).upper())

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["HOME"] = str(self.home_dir)
        return env

    # ------------------------------------------------------------- lifecycle

    def _start_once(self, timeout: float) -> bool:
        """One start; False if a port could not be bound (server stopped again)."""
        self._write_files()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        out_offset = self.stdout_path.stat().st_size if self.stdout_path.exists() else 0
        ctl = _executable("ejabberdctl", "/usr/sbin/ejabberdctl")
        with open(self.stdout_path, "ab") as out:
            self._proc = subprocess.Popen(
                [
                    ctl,
                    "--config-dir",
                    str(self.workdir),
                    "--logs",
                    str(self.workdir),
                    "--spool",
                    str(self.spool_dir),
                    "foreground-quiet",  # console: critical messages only
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        listeners = [
            (self.c2s_port, "ejabberd_c2s"),
            (self.component_port, "ejabberd_service"),
            (self.down_component_port, "ejabberd_service"),
            (self.http_port, "ejabberd_http"),
        ]
        ready_lines = [
            f"Start accepting TCP connections at 127.0.0.1:{p} for {m}" for p, m in listeners
        ]
        while True:
            log = read_from(self.log_path, log_offset)
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                text = log + read_from(self.stdout_path, out_offset)
                if not self._started and _port_clash(text):
                    return False
                raise EjabberdError(
                    f"ejabberd exited with code {code} during start\n{self._tails()}"
                )
            if (
                all(line in log for line in ready_lines)
                and _port_open(self.c2s_port)
                and _port_open(self.component_port)
                and self._api_ready()
            ):
                return True
            if time.monotonic() > deadline:
                self.stop()
                raise EjabberdError(f"ejabberd was not ready within {timeout} s\n{self._tails()}")
            time.sleep(0.02)

    def _api_ready(self) -> bool:
        try:
            self._api("status", timeout=2)
        except EjabberdError:
            return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node (data on disk), then kill anything left in its process group."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(EjabberdError, OSError, subprocess.SubprocessError):
                self._erl_call(_ERL_HALT, timeout=5)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # SIGTERM: the VM runs init:stop(), which also closes Mnesia.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        # Leftovers (the VM outliving ejabberdctl, erl_child_setup): the group is ours.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def cleanup(self) -> None:
        """stop() (everything else lives in workdir)."""
        self.stop()

    # ------------------------------------------------------------ admin calls

    def api(self, command: str, **args: Any) -> Any:
        """Call an HTTP API command (one of API_COMMANDS); return its decoded JSON result.

        Raises EjabberdError (with the HTTP status and the response body) on failure.
        """
        if not self.running:
            raise EjabberdError("ejabberd is not running")
        return self._api(command, **args)

    def _api(self, command: str, timeout: float = 10.0, **args: Any) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/{command}",
            data=json.dumps(args).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        shown = {k: v for k, v in args.items() if k not in ("password", "newpass")}
        try:
            with _HTTP.open(request, timeout=timeout) as response:
                body = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", errors="replace")
            raise EjabberdError(
                f"ejabberd API {command} {shown} failed: HTTP {exc.code}: {body}", exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise EjabberdError(f"ejabberd API {command} {shown} failed: {exc}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise EjabberdError(f"ejabberd API {command} {shown}: not JSON: {body!r}") from None

    def _rescode(self, command: str, **args: Any) -> None:
        """A command whose result is a status code: 0 is success."""
        result = self.api(command, **args)
        if result != 0:
            shown = {k: v for k, v in args.items() if k not in ("password", "newpass")}
            raise EjabberdError(f"ejabberd API {command} {shown} returned {result!r}")

    def _erl_call(self, expression: str, timeout: float = 10.0) -> str:
        """Evaluate Erlang expressions on the node; return the printed ``{ok, Result}``."""
        cmd = [
            _executable("erl_call", "/usr/lib/erlang/bin/erl_call"),
            "-address",
            f"127.0.0.1:{self.dist_port}",
            "-timeout",
            str(max(1, int(timeout))),
            "-e",
        ]
        result = subprocess.run(
            cmd,
            input=expression.strip() + "\n",
            capture_output=True,
            text=True,
            timeout=timeout + 2,
            env=self._env(),
            check=False,
        )
        if result.returncode != 0 or not result.stdout.startswith("{ok,"):
            raise EjabberdError(
                f"erl_call failed (exit {result.returncode}) for: {expression.strip()}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result.stdout

    def register(self, user: str, password: str) -> None:
        """Create (or reset the password of) a user: localpart or bare JID on ``domain``
        or ``other_domain``."""
        local, _, host = user.partition("@")
        host = host or self.domain
        if host not in (self.domain, self.other_domain):
            raise ValueError(f"{user}: users live on {self.domain} or {self.other_domain}")
        try:
            self.api("register", user=local, host=host, password=password)
        except EjabberdError as exc:
            if exc.status != 409:  # 409: "User ... already registered"
                raise
            self._rescode("change_password", user=local, host=host, newpass=password)

    # ---------------------------------------------------------------- rosters

    def set_rosters(self, items: Iterable[RosterChange]) -> None:
        """Several set_roster() changes, applied in order (all owners checked first).

        An unknown owner is EjabberdError "no such user". ejabberd keeps a pending
        request (ask="subscribe") only with subscription none or from: other
        combinations raise ValueError. Unlike Prosody, ejabberd tells the contact
        about presence changes that follow from the new subscription (an online
        owner's presence when "from" is granted, "unavailable" when it is revoked).
        Removal goes through subscription none first, so no unsubscribe presence is
        sent and the contact's own roster is never touched.
        """
        changes = list(items)
        for owner, contact, subscription, ask in changes:
            check_roster_change(owner, contact, subscription, ask)
            if ask is not None and subscription in ("to", "both"):
                raise ValueError(
                    "ejabberd keeps a pending subscription request (ask='subscribe') only "
                    f"with subscription none or from, not {subscription!r}"
                )
        # Every owner is checked (and its roster read) before anything changes.
        rosters: dict[str, dict[str, tuple[str, str | None]]] = {}
        for owner, _, _, _ in changes:
            if owner not in rosters:
                rosters[owner] = self._load_roster(owner)
        for owner, contact, subscription, ask in changes:
            roster = rosters[owner]
            key = contact.lower()
            self._set_item(owner, contact, roster.get(key), subscription, ask)
            if subscription is None:
                roster.pop(key, None)
            else:
                roster[key] = (subscription, ask)

    def _local_user(self, jid: str) -> tuple[str, str]:
        local, _, host = jid.partition("@")
        if not local or host not in (self.domain, self.other_domain):
            raise EjabberdError(f"not a local user: {jid}")
        return local, host

    def _load_roster(self, owner: str) -> dict[str, tuple[str, str | None]]:
        """contact -> (subscription, ask) of an existing local user's visible items."""
        local, host = self._local_user(owner)
        if self.api("check_account", user=local, host=host) != 0:
            raise EjabberdError(f"no such user: {owner}")
        items = self.api("get_roster", user=local, host=host)
        return {
            item["jid"].lower(): (
                item["subscription"],
                "subscribe" if item.get("ask") == "subscribe" else None,
            )
            for item in items
        }

    def _set_item(
        self,
        owner: str,
        contact: str,
        current: tuple[str, str | None] | None,
        subscription: str | None,
        ask: str | None,
    ) -> None:
        # add_rosteritem sets the subscription but keeps the item's pending 'ask'
        # (out or in), and delete_rosteritem sends unsubscribe/unsubscribed for the
        # subscription the item had: hence the detours through "none" and delete.
        if subscription is None:
            if current is not None:
                if current[0] != "none":
                    self._roster_add(owner, contact, "none")
                self._roster_delete(owner, contact)
            return
        if current is None:
            if subscription == "none":
                # A pending inbound request is stored as a hidden "none" item, which
                # would hide the new one: drop it.
                self._roster_delete(owner, contact)
        elif ask is None and current[1] is not None:
            if current[0] != "none":
                self._roster_add(owner, contact, "none")
            self._roster_delete(owner, contact)
        self._roster_add(owner, contact, subscription)
        if ask == "subscribe":
            self._ask_subscribe(owner, contact)

    def _roster_args(self, owner: str, contact: str) -> dict[str, str]:
        local, host = self._local_user(owner)
        user, _, server = contact.rpartition("@")
        return {"localuser": local, "localhost": host, "user": user, "host": server}

    def _roster_add(self, owner: str, contact: str, subscription: str) -> None:
        args = self._roster_args(owner, contact)
        self._rescode("add_rosteritem", **args, nick="", group="", subs=subscription)

    def _roster_delete(self, owner: str, contact: str) -> None:
        self._rescode("delete_rosteritem", **self._roster_args(owner, contact))

    def _ask_subscribe(self, owner: str, contact: str) -> None:
        presence = (
            f"<presence xmlns='jabber:client' type='subscribe' "
            f"from={quoteattr(owner)} to={quoteattr(contact)}/>"
        )
        expression = (
            "mod_roster:out_subscription(xmpp:decode(fxml_stream:parse_element("
            f"{erl_binary(presence)})))."
        )
        if not self.running:
            raise EjabberdError("ejabberd is not running")
        self._erl_call(expression)

    # ------------------------------------------------------------------ rooms

    def create_room(
        self,
        room: str,
        owner: str,
        affiliations: Mapping[str, str] | None = None,
        members_only: bool = True,
    ) -> None:
        """Create a persistent room with ``owner`` and extra ``{jid: affiliation}``.

        Fails (EjabberdError "room exists") if the room exists. Other room options
        are the snippet's defaults (non-anonymous).
        """
        room_jid = self.room_jid(room)
        check_bare(owner)
        extra = dict(affiliations or {})
        for jid, affiliation in extra.items():
            check_bare(jid)
            check_affiliation(affiliation)
        name, service = room_jid.split("@")
        options = [
            {"name": "persistent", "value": "true"},
            {"name": "members_only", "value": "true" if members_only else "false"},
        ]
        try:
            self._rescode(
                "create_room_with_opts",
                name=name,
                service=service,
                host=self.domain,
                options=options,
            )
        except EjabberdError as exc:
            if "already exists" in str(exc):
                raise EjabberdError(f"room exists: {room_jid}\n{exc}", exc.status) from None
            raise
        self.set_affiliation(room_jid, owner, "owner")
        for jid, affiliation in extra.items():
            self.set_affiliation(room_jid, jid, affiliation)

    def set_affiliation(self, room: str, jid: str, affiliation: str) -> None:
        """Set ``jid``'s affiliation in an existing room (``none`` removes it)."""
        check_bare(jid)
        check_affiliation(affiliation)
        name, service = self.room_jid(room).split("@")
        self._room_command(
            "set_room_affiliation", name=name, service=service, jid=jid, affiliation=affiliation
        )

    def destroy_room(self, room: str, *, tombstone: bool = True) -> None:
        """Destroy a room (occupants are told) and forget it.

        ejabberd has no tombstones: ``tombstone`` is ignored, and the room JID then
        answers ``cancel/item-not-found`` ("Conference room does not exist"), where
        Prosody's default answers ``cancel/gone``.
        """
        del tombstone
        name, service = self.room_jid(room).split("@")
        self._room_command("destroy_room", name=name, service=service)
        # The command only asks the room process to destroy itself: wait until it is
        # gone (room options {}), so that the next stanza finds no room. Until then
        # get_room_options may fail (HTTP 500, the room process is exiting).
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(EjabberdError):
                if not self.api("get_room_options", name=name, service=service):
                    return
            if time.monotonic() > deadline:
                raise EjabberdError(f"room {name}@{service} still exists 5 s after destroy_room")
            time.sleep(0.005)

    def _room_command(self, command: str, **args: str) -> None:
        try:
            self._rescode(command, **args)
        except EjabberdError as exc:
            if "doesn't exist" in str(exc):
                room_jid = f"{args['name']}@{args['service']}"
                raise EjabberdError(f"no such room: {room_jid}\n{exc}", exc.status) from None
            raise


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def _port_clash(text: str) -> bool:
    """Whether a failed start's output says a port was taken."""
    return "eaddrinuse" in text or "already in use" in text

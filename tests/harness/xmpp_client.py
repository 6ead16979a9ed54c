"""A thin async XMPP client for tests: connect, send an IQ, get the raw reply.

Runs on the pytest session event loop. Replies are returned as plain
``xml.etree.ElementTree`` elements with namespaces intact (Clark notation,
e.g. ``{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden``), errors included.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
CLIENT_NS = "jabber:client"

_ids = itertools.count(1)


class ClientConnectError(RuntimeError):
    """The client could not connect or authenticate."""


class TestClient:
    """One logged-in XMPP client session (plaintext loopback only)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        jid: str,
        password: str,
        host: str,
        port: int,
        *,
        plugins: Sequence[str] = (),
    ) -> None:
        self.jid = jid
        self.password = password
        self.host = host
        self.port = port
        self.plugins = tuple(plugins)
        self._xmpp: ClientXMPP | None = None

    @property
    def xmpp(self) -> ClientXMPP:
        """The underlying slixmpp client (after connect()), for anything beyond request()."""
        if self._xmpp is None:
            raise RuntimeError("not connected")
        return self._xmpp

    @property
    def full_jid(self) -> str:
        return str(self.xmpp.boundjid)

    async def connect(self, timeout: float = 10) -> None:
        """Connect, authenticate, bind, wait for session_start and send initial presence."""
        if self._xmpp is not None:
            raise RuntimeError("already connected")
        loop = asyncio.get_running_loop()
        xmpp = ClientXMPP(self.jid, self.password, loop=loop)
        # Loopback plaintext test server: no TLS at all, SCRAM/PLAIN in the clear.
        xmpp.enable_direct_tls = False
        xmpp.enable_starttls = False
        xmpp.enable_plaintext = True
        xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
        xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
        for plugin in self.plugins:
            xmpp.register_plugin(plugin)

        started: asyncio.Future[None] = loop.create_future()

        def fail(reason: str) -> None:
            if not started.done():
                started.set_exception(ClientConnectError(f"{self.jid}: {reason}"))

        def on_session_start(_event: object) -> None:
            if not started.done():
                started.set_result(None)

        xmpp.add_event_handler("session_start", on_session_start)
        xmpp.add_event_handler("failed_auth", lambda _e: fail("authentication failed"))
        xmpp.add_event_handler("no_auth", lambda _e: fail("no usable SASL mechanism"))
        xmpp.add_event_handler("stream_error", lambda e: fail(f"stream error: {e}"))
        self._xmpp = xmpp
        try:
            xmpp.connect(self.host, self.port)
            await asyncio.wait_for(started, timeout)
        except BaseException as exc:
            await self._abort()
            if isinstance(exc, asyncio.TimeoutError):
                raise ClientConnectError(
                    f"{self.jid}: no session within {timeout} s ({self.host}:{self.port})"
                ) from None
            raise
        xmpp.send_presence()

    async def request(self, to: str, iq_type: str, payload: str, timeout: float = 10) -> ET.Element:
        """Send ``<iq type=iq_type to=to>payload</iq>``; return the reply ``<iq/>``.

        ``payload`` is XML text (may be empty, or several elements); ``to`` may be ""
        for an IQ to the user's own account. Returns result and error replies alike;
        raises TimeoutError if nothing comes back within ``timeout`` seconds.
        """
        if iq_type not in ("get", "set"):
            raise ValueError("iq_type must be 'get' or 'set'")
        xmpp = self.xmpp
        iq = xmpp.make_iq(id=f"t{next(_ids)}", ito=to or None, itype=iq_type)
        for child in ET.fromstring(f"<wrapper>{payload}</wrapper>"):
            iq.xml.append(child)
        try:
            reply = await iq.send(timeout=timeout)
        except IqError as err:
            reply = err.iq
        except IqTimeout:
            raise TimeoutError(f"no reply to IQ {iq['id']} to {to!r} within {timeout} s") from None
        return copy.deepcopy(reply.xml)

    async def disconnect(self) -> None:
        xmpp, self._xmpp = self._xmpp, None
        if xmpp is None:
            return
        await xmpp.disconnect(wait=2.0)

    async def _abort(self) -> None:
        xmpp, self._xmpp = self._xmpp, None
        if xmpp is not None:
            xmpp.cancel_connection_attempt()
            if xmpp.transport is not None:
                xmpp.abort()

    async def __aenter__(self) -> TestClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()


def error_of(iq: ET.Element) -> tuple[str, str, str | None, str | None]:
    """(type, condition, app condition localname or None, text or None) of an error IQ.

    ``condition`` is the localname of the RFC 6120 defined condition (e.g.
    "forbidden"); the app condition is any other child of ``<error/>`` in a
    non-stanzas namespace. Raises ValueError if ``iq`` is not an error reply.
    """
    if iq.get("type") != "error":
        raise ValueError(f"not an error reply: {ET.tostring(iq, encoding='unicode')}")
    error = iq.find(f"{{{CLIENT_NS}}}error")
    if error is None:
        error = next((c for c in iq if _local(c.tag) == "error"), None)
    if error is None:
        raise ValueError(f"error reply without <error/>: {ET.tostring(iq, encoding='unicode')}")
    condition = ""
    app: str | None = None
    text: str | None = None
    for child in error:
        ns, name = _split(child.tag)
        if ns == STANZAS_NS:
            if name == "text":
                text = child.text or ""
            else:
                condition = name
        elif app is None:
            app = name
    return error.get("type", ""), condition, app, text


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _local(tag: str) -> str:
    return _split(tag)[1]

"""The XEP-0114 component: routes keysrv IQs to the service, maps errors to
stanzas, tracks XEP-0356 privileges, answers disco, and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from typing import cast
from xml.etree import ElementTree as ET

from slixmpp import ComponentXMPP, Iq
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback, CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath
from slixmpp.xmlstream.matcher.base import MatcherBase

from . import NS, errors
from .config import OCCUPANTS_ON_EJABBERD, Config
from .crypto import WRAP_ALG
from .errors import ProtocolError
from .jids import JidError, bare
from .lookups import PRIVILEGE_NAMESPACES, Privileges, parse_privilege, server_software
from .model import KeyView, Page, ReleaseRequest, Request
from .service import Answer, KeyService
from .wire import ALG, key_element, list_element, parse_request, release_element

log = logging.getLogger("keysrv")
_STANZA = "{jabber:component:accept}"


class _KeysrvIq(MatcherBase):
    """IQ get/set whose payload is in our namespace, or that has no payload at all."""

    def __init__(self) -> None:
        super().__init__(None)

    def match(self, xml: StanzaBase) -> bool:
        el = xml.xml
        if el.tag != f"{_STANZA}iq" or el.get("type") not in ("get", "set"):
            return False
        return len(el) == 0 or el[0].tag.startswith(f"{{{NS}}}")


class Backoff:
    """Exponential backoff with jitter: 0.5 s doubling up to `cap`."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap, self._next = first, cap, first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


class KeyComponent(ComponentXMPP):
    def __init__(self, config: Config, privileges: Privileges) -> None:
        c = config.component
        super().__init__(c.jid, c.secret, c.server, c.port, fix_error_ns=True)
        self._config = config
        self.privileges = privileges
        self._service: KeyService | None = None
        self._stopping = False
        self._reconnect: asyncio.TimerHandle | None = None
        self._backoff = Backoff()
        self._disco_published = False
        self._checked = False  # which server software, once (allow_occupants needs it)
        self.fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.on_ready: Callable[[], None] | None = None

        for plugin in ("xep_0030", "xep_0004", "xep_0128", "xep_0199"):
            self.register_plugin(plugin)
        self.register_handler(CoroutineCallback("keysrv", _KeysrvIq(), self._on_iq))
        for ns in PRIVILEGE_NAMESPACES:
            self.register_handler(
                Callback(
                    f"privilege {ns}",
                    MatchXPath(f"{_STANZA}message/{{{ns}}}privilege"),
                    self._on_privilege,
                )
            )
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("stream_error", self._on_stream_error)

    def attach(self, service: KeyService) -> None:
        self._service = service

    # --- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "connecting to %s:%s as %s",
            self._config.component.server,
            self._config.component.port,
            self.boundjid.bare,
        )
        self.connect()

    async def stop(self) -> None:
        self._stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        self.cancel_connection_attempt()
        if self.transport is not None:
            await self.disconnect(wait=2.0, reason="keysrv stopping")

    def _schedule_reconnect(self, why: str) -> None:
        self.privileges.clear()
        if self._stopping or self.fatal.done() or self._reconnect is not None:
            return
        delay = self._backoff.next()
        log.warning("%s; reconnecting in %.1f s", why, delay)
        self._reconnect = asyncio.get_running_loop().call_later(delay, self._do_reconnect)

    def _do_reconnect(self) -> None:
        self._reconnect = None
        if not self._stopping:
            self.connect()

    async def _on_session_start(self, _: object) -> None:
        self._backoff.reset()
        self._publish_disco()
        log.info("connected to the XMPP server as %s", self.boundjid.bare)
        c = self._config
        if c.policy.allow_occupants and c.component.software == "auto" and not self._checked:
            self._checked = True
            if not await self._occupants_visible():
                return
        if self.on_ready is not None:
            self.on_ready()

    async def _occupants_visible(self) -> bool:
        """allow_occupants needs a MUC service that shows occupants' real JIDs to
        keysrv without joining: Prosody does, ejabberd does not (docs/admin.md)."""
        domain = self._config.domains[0]
        name = await server_software(self, domain, self._config.limits.lookup_timeout)
        log.info("%s runs %s", domain, name or "an XMPP server that does not name itself")
        if name is not None and "ejabberd" in name:
            self._fail(f"policy.allow_occupants is on, but {OCCUPANTS_ON_EJABBERD}")
            return False
        return True

    def _on_disconnected(self, reason: object) -> None:
        self._schedule_reconnect(f"disconnected from the XMPP server ({reason or 'closed'})")

    def _on_connection_failed(self, reason: object) -> None:
        self.cancel_connection_attempt()  # our backoff, not slixmpp's
        self._schedule_reconnect(f"cannot reach the XMPP server ({reason})")

    def _on_stream_error(self, error: StanzaBase) -> None:
        condition = error["condition"]
        if condition == "not-authorized":
            self._fail(
                "the XMPP server refused the component handshake: "
                "check component.secret against the server's component_secret"
            )
        elif condition == "conflict":
            log.error("the XMPP server says another component is connected as %s", self.boundjid)
        else:
            log.warning("stream error from the XMPP server: %s %s", condition, error["text"])

    def _fail(self, why: str) -> None:
        if not self.fatal.done():
            self.fatal.set_result(why)

    # --- XEP-0356 ------------------------------------------------------------------

    def _on_privilege(self, msg: StanzaBase) -> None:
        domain = msg["from"].bare
        perms = parse_privilege(msg.xml)
        self.privileges.grant(domain, perms.get("roster", "none"))
        log.info(
            "privileges from %s: %s",
            domain,
            ", ".join(f"{k}={v}" for k, v in sorted(perms.items())) or "none",
        )

    # --- disco -----------------------------------------------------------------------

    def _publish_disco(self) -> None:
        """Identity, feature and the §2 form; static, so published once per process."""
        if self._disco_published:
            return
        self._disco_published = True
        disco = self.plugin["xep_0030"]
        jid = self.boundjid
        disco.del_identity(jid=jid, category="component", itype="generic")
        disco.add_identity(
            category="component", itype="keys", name="Conversation key service", jid=jid
        )
        disco.add_feature(NS, jid=jid)
        form = self.plugin["xep_0004"].make_form(ftype="result")
        form.add_field(var="FORM_TYPE", ftype="hidden", value=f"{NS}#info")
        p = self._config.policy
        for var, value in (
            ("algorithms", ALG),
            ("wrap-algorithms", WRAP_ALG),
            ("max-batch", str(p.max_batch)),
            ("rotation-max-age", str(math.ceil(p.rotation_max_age))),
        ):
            form.add_field(var=var, value=value)
        # add_, not set_: set_extended_info in slixmpp trips over its own delete step.
        self.plugin["xep_0128"].add_extended_info(jid=jid, data=form)

    # --- requests --------------------------------------------------------------------

    async def _on_iq(self, stanza: StanzaBase) -> None:
        iq = cast(Iq, stanza)  # _KeysrvIq matches IQs only
        started = time.perf_counter()
        payload = iq.xml[0] if len(iq.xml) else None
        op = payload.tag.split("}", 1)[-1] if payload is not None else "-"
        requester = str(iq["from"])
        subject = ""
        try:
            requester = bare(requester)
            if self._service is None:
                raise errors.internal("not ready: the service is starting")
            request = parse_request(iq["type"], payload, self._config.policy.max_batch)
            subject = _subject(request)
            answer = await self._service.handle(requester, request)
            reply = iq.reply(clear=True)
            reply.xml.append(_render(answer))
            outcome = _outcome(answer)
        except JidError:
            reply, outcome = self._error(iq, errors.bad_request("bad sender JID"))
        except ProtocolError as exc:
            reply, outcome = self._error(iq, exc)
        except Exception:
            log.exception("failed to handle %s from %s", op, requester)
            reply, outcome = self._error(iq, errors.internal())
        reply.send()
        ms = (time.perf_counter() - started) * 1000
        log.info("%s %s %s -> %s (%.1f ms)", requester, op, subject or "-", outcome, ms)

    @staticmethod
    def _error(iq: Iq, exc: ProtocolError) -> tuple[Iq, str]:
        reply = iq.reply(clear=True)
        reply["type"] = "error"
        reply["error"]["type"] = exc.etype
        reply["error"]["condition"] = exc.condition
        reply["error"]["text"] = exc.text
        if exc.app is not None:
            reply["error"].xml.append(ET.Element(f"{{{NS}}}{exc.app}"))
        return reply, f"error {exc.condition}" + (f"/{exc.app}" if exc.app else "")


def _render(answer: Answer) -> ET.Element:
    if isinstance(answer, KeyView):
        return key_element(answer)
    if isinstance(answer, Page):
        return list_element(answer)
    return release_element(answer)


def _subject(request: Request) -> str:
    if isinstance(request, ReleaseRequest):
        n = len(request.ids)
        return f"{n} id" if n == 1 else f"{n} ids"
    return f"{request.target.kind.value} {request.target.jid}"


def _outcome(answer: Answer) -> str:
    if isinstance(answer, KeyView):
        return f"ok key {answer.id}"
    if isinstance(answer, Page):
        return f"ok {len(answer.keys)} of {answer.count} keys"
    granted = sum(1 for item in answer if item.key is not None)
    return f"ok {granted} released, {len(answer) - granted} refused"

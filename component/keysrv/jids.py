"""Bare JID parsing and normalization (RFC 7622, as far as a key service needs it)."""

from __future__ import annotations

MAX_PART = 1023  # bytes, RFC 7622 §3.2-3.4
MAX_JID = 3071
_LOCAL_FORBIDDEN = set("\"&'/:<>@")


class JidError(ValueError):
    """Not a valid JID; the message says why."""


def bare(jid: str) -> str:
    """Return the normalized bare JID of `jid` (any resource is dropped).

    Raises JidError for anything that is not a JID a server could route.
    """
    if not isinstance(jid, str) or not jid:
        raise JidError("empty JID")
    if len(jid.encode()) > MAX_JID:
        raise JidError("JID longer than 3071 bytes")
    slash = jid.find("/")
    head = jid if slash < 0 else jid[:slash]
    if slash >= 0 and slash == len(jid) - 1:
        raise JidError(f"empty resource in {jid!r}")
    at = head.find("@")
    local, domain = (head[:at], head[at + 1 :]) if at >= 0 else ("", head)
    if at >= 0:
        _check_local(local, jid)
    domain = _check_domain(domain, jid)
    local = local.lower()
    return f"{local}@{domain}" if local else domain


def domain_of(bare_jid: str) -> str:
    return bare_jid.rsplit("@", 1)[-1]


def is_bare_user(bare_jid: str) -> bool:
    return "@" in bare_jid


def _check_local(local: str, jid: str) -> None:
    if not local:
        raise JidError(f"empty localpart in {jid!r}")
    if len(local.encode()) > MAX_PART:
        raise JidError("localpart longer than 1023 bytes")
    for ch in local:
        if ch in _LOCAL_FORBIDDEN or ch.isspace() or not ch.isprintable():
            raise JidError(f"character {ch!r} not allowed in a localpart")


def _check_domain(domain: str, jid: str) -> str:
    domain = domain.lower().rstrip(".")
    if not domain:
        raise JidError(f"empty domain in {jid!r}")
    if len(domain.encode()) > MAX_PART:
        raise JidError("domain longer than 1023 bytes")
    if domain.startswith("[") and domain.endswith("]"):
        return domain  # IPv6 literal
    for label in domain.split("."):
        if not label or len(label) > 63:
            raise JidError(f"bad domain label in {jid!r}")
        for ch in label:
            if not (ch.isalnum() or ch in "-_") or ch.isspace():
                raise JidError(f"character {ch!r} not allowed in a domain")
    return domain

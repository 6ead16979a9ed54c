"""Typed errors of the protocol (spec §6) and of the lookups behind it.

Everything here is plain Python: the XMPP glue turns a ProtocolError into an
error stanza, nothing else knows about stanzas.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A request failed; carries the stanza error to send back (RFC 6120 §8.3)."""

    def __init__(self, etype: str, condition: str, text: str, app: str | None = None) -> None:
        super().__init__(text)
        self.etype = etype
        self.condition = condition
        self.text = text
        self.app = app

    def __repr__(self) -> str:
        return f"ProtocolError({self.etype}/{self.condition}/{self.app}: {self.text})"


def bad_request(text: str) -> ProtocolError:
    return ProtocolError("modify", "bad-request", text)


def unknown_operation(name: str) -> ProtocolError:
    return ProtocolError("cancel", "service-unavailable", f"unknown operation <{name}/>")


def jid_malformed(text: str) -> ProtocolError:
    return ProtocolError("modify", "jid-malformed", text)


def not_in_roster(text: str) -> ProtocolError:
    return ProtocolError("auth", "forbidden", text, "not-in-roster")


def not_a_member(text: str) -> ProtocolError:
    return ProtocolError("auth", "forbidden", text, "not-a-member")


def forbidden(text: str) -> ProtocolError:
    return ProtocolError("auth", "forbidden", text)


def room_not_found(room: str) -> ProtocolError:
    return ProtocolError("cancel", "item-not-found", f"the room {room} does not exist")


def item_not_found(text: str) -> ProtocolError:
    return ProtocolError("cancel", "item-not-found", text)


def foreign_conversation(text: str) -> ProtocolError:
    return ProtocolError("cancel", "not-allowed", text, "foreign-conversation")


def wrap_required() -> ProtocolError:
    return ProtocolError(
        "modify",
        "not-acceptable",
        "this service only hands out wrapped keys: add <wrap/> with your X25519 public key",
        "wrap-required",
    )


def rate_limited() -> ProtocolError:
    return ProtocolError(
        "wait", "resource-constraint", "too many requests: slow down and retry", "rate-limited"
    )


def lookup_timeout(what: str) -> ProtocolError:
    return ProtocolError("wait", "remote-server-timeout", f"{what} did not answer in time")


def internal(text: str = "internal error; the service logged the details") -> ProtocolError:
    return ProtocolError("wait", "internal-server-error", text)


class DirectoryError(Exception):
    """Base of failures of a roster or room lookup."""


class RoomNotFound(DirectoryError):
    """The MUC service says the room does not exist."""


class LookupTimeout(DirectoryError):
    """The server did not answer a lookup in time (or said the target is unreachable)."""


class LookupFailed(DirectoryError):
    """The server refused or botched a lookup; the message says why (no key material)."""


class NotReady(DirectoryError):
    """The server has not (yet) granted the privilege a lookup needs."""

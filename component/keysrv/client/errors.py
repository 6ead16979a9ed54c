"""Typed failures of the client library. Every message is one plain sentence
that an app can log or show; none ever contains key material."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the client library raises."""


# --- the key service said no (protocol §6) ----------------------------------------


class ServiceError(ClientError):
    """The key service answered with an IQ error."""

    def __init__(self, message: str, etype: str = "", condition: str = "", app: str = "") -> None:
        super().__init__(message)
        self.etype, self.condition, self.app = etype, condition, app


class KeyRefused(ServiceError):
    """The service will not give this account the key (auth/forbidden)."""


class NotInRoster(KeyRefused):
    """Chat: the roster relation the service requires does not hold."""


class NotAMember(KeyRefused):
    """Room: this account is not a member (or is an outcast)."""


class ForeignConversation(ServiceError):
    """The service does not serve this chat or room."""


class NoSuchRoom(ServiceError):
    """The room does not exist."""


class RateLimited(ServiceError):
    """Too many requests: try again later."""


class ServiceUnavailable(ServiceError):
    """The service is unreachable, timed out, or failed internally."""


class ServiceNotFound(ClientError):
    """No key service was found on the server (disco#items) or at the configured JID."""


# --- a key id in a message could not be resolved -----------------------------------


class KeyUnavailable(ClientError):
    """A message names a key this account cannot get."""

    def __init__(self, message: str, key_id: str, reason: str) -> None:
        super().__init__(message)
        self.key_id, self.reason = key_id, reason  # reason: "forbidden" | "item-not-found"


# --- an incoming message failed a §8 check ------------------------------------------


class MessageError(ClientError):
    """An encrypted message was rejected; show it as 'could not be decrypted'."""


class MalformedMessage(MessageError):
    """Not a well-formed keysrv message (bad base64, truncated, bad envelope XML...)."""


class TamperedMessage(MessageError):
    """The AES-GCM tag does not verify: altered in transit, or a swapped key id."""


class EnvelopeMismatch(MessageError):
    """The envelope's <from> or <to> disagrees with the stanza (a replayed or forged message)."""


class WrongConversation(MessageError):
    """The key belongs to another chat or room than the one the message arrived in."""


class FileError(ClientError):
    """An encrypted file could not be uploaded, downloaded or decrypted."""

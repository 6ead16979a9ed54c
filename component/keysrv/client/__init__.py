"""keysrv client library: a slixmpp plugin for conversation keys (protocol.md
§4-§5) and encrypted messages and files (§8). See docs/client.md.

    from keysrv.client import register
    keysrv = register(xmpp, service="keys.example.com")   # before xmpp.connect()
"""

from __future__ import annotations

from typing import Any

from slixmpp import ClientXMPP
from slixmpp.plugins.base import register_plugin

from .cache import KeyCache, MemoryKeyCache, SqliteKeyCache, default_cache_path
from .errors import (
    ClientError,
    EnvelopeMismatch,
    FileError,
    ForeignConversation,
    KeyRefused,
    KeyUnavailable,
    MalformedMessage,
    MessageError,
    NoSuchRoom,
    NotAMember,
    NotInRoster,
    RateLimited,
    ServiceError,
    ServiceNotFound,
    ServiceUnavailable,
    TamperedMessage,
    WrongConversation,
)
from .model import ConversationKey
from .plugin import Decrypted, KeysrvPlugin, Received, Sent, Undecryptable

__all__ = [
    "ClientError",
    "ConversationKey",
    "Decrypted",
    "EnvelopeMismatch",
    "FileError",
    "ForeignConversation",
    "KeyCache",
    "KeyRefused",
    "KeyUnavailable",
    "KeysrvPlugin",
    "MalformedMessage",
    "MemoryKeyCache",
    "MessageError",
    "NoSuchRoom",
    "NotAMember",
    "NotInRoster",
    "RateLimited",
    "Received",
    "Sent",
    "ServiceError",
    "ServiceNotFound",
    "ServiceUnavailable",
    "SqliteKeyCache",
    "TamperedMessage",
    "Undecryptable",
    "WrongConversation",
    "default_cache_path",
    "register",
]


def register(xmpp: ClientXMPP, **config: Any) -> KeysrvPlugin:
    """Enable the plugin on `xmpp` (options: service, cache, timeout, fallback_body)."""
    register_plugin(KeysrvPlugin)
    xmpp.register_plugin("keysrv", config)
    plugin = xmpp.plugin.get("keysrv", None)
    assert isinstance(plugin, KeysrvPlugin)
    return plugin

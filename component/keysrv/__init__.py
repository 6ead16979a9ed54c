"""keysrv: a conversation key service for XMPP, run as an XEP-0114 external component."""

__version__ = "0.1.0"

NS = "urn:xmpp:keysrv:0"

"""Logging to stderr, with a guard that keeps keysrv payloads out of library logs."""

from __future__ import annotations

import logging
import sys

from . import NS

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class RedactStanzas(logging.Filter):
    """slixmpp logs raw stanzas (at debug, and in some warnings); any record that
    mentions our namespace could carry key material, so its text is replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("slixmpp"):
            try:
                text = record.getMessage()
            except Exception:  # a broken format string: drop the args, keep the record
                text = str(record.msg)
            if NS in text:
                record.msg, record.args = "[stanza in %s redacted]", (NS,)
        return True


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactStanzas())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # `debug` is for keysrv's own loggers only: libraries dump raw stanzas (slixmpp)
    # or SQL parameters with sealed keys (aiosqlite) at debug, so they stay at INFO.
    root.setLevel(max(_LEVELS[level], logging.INFO))
    logging.getLogger("keysrv").setLevel(_LEVELS[level])

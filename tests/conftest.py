"""Fixtures shared by the integration suite (unit tests need none of these)."""

from __future__ import annotations

from harness.fixtures import client_factory, server, server_secret, users  # noqa: F401
from harness.keysrv_fixtures import keysrv, keysrv_manager, new_user  # noqa: F401

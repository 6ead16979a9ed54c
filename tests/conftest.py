"""Shared pytest configuration: the integration-test harness fixtures."""

from harness.fixtures import client_factory, prosody, prosody_secret, users  # noqa: F401

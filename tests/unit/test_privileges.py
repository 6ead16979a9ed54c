"""XEP-0356 advertisements: Prosody sends urn:xmpp:privilege:2, ejabberd 23.01 :1."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree as ET

import pytest

from keysrv.errors import NotReady
from keysrv.lookups import Privileges, parse_privilege


@pytest.mark.parametrize("ns", ["urn:xmpp:privilege:2", "urn:xmpp:privilege:1"])
def test_both_namespaces(ns):
    msg = ET.fromstring(
        f"<message xmlns='jabber:component:accept' from='example.com' to='keys.example.com'>"
        f"<privilege xmlns='{ns}'><perm access='roster' type='get'/>"
        f"<perm access='message' type='outgoing'/></privilege></message>")
    assert parse_privilege(msg) == {"roster": "get", "message": "outgoing"}


def test_no_advertisement():
    assert parse_privilege(ET.fromstring("<message xmlns='jabber:component:accept'/>")) == {}


async def test_waiting_for_a_grant():
    privileges = Privileges()
    waiter = asyncio.ensure_future(privileges.wait_roster("example.com", 2))
    await asyncio.sleep(0.01)
    privileges.grant("other.example", "get")
    await asyncio.sleep(0.01)
    assert not waiter.done()
    privileges.grant("example.com", "get")
    await asyncio.wait_for(waiter, 1)
    privileges.grant("example.org", "none")
    with pytest.raises(NotReady, match=r"example\.org"):
        await privileges.wait_roster("example.org", 0.05)
    privileges.clear()
    assert not privileges.can_read_roster("example.com")

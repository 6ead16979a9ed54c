from __future__ import annotations

import base64
from xml.etree import ElementTree as ET

import pytest

from keysrv.errors import ProtocolError
from keysrv.model import Conversation, CreateRequest, KeyView, Kind, ListRequest, ReleaseRequest
from keysrv.wire import key_element, parse_request

NS = "urn:xmpp:keysrv:0"


def parse(iq_type: str, xml: str, max_batch: int = 100):
    return parse_request(iq_type, ET.fromstring(xml) if xml else None, max_batch)


def err(iq_type: str, xml: str, max_batch: int = 100) -> tuple[str, str]:
    with pytest.raises(ProtocolError) as info:
        parse(iq_type, xml, max_batch)
    return info.value.etype, info.value.condition


def test_create_normalizes_the_jid_and_drops_the_resource():
    req = parse("set", f"<create xmlns='{NS}' with='Juliet@Example.COM/balcony'/>")
    assert isinstance(req, CreateRequest)
    assert (req.target.kind, req.target.jid) == (Kind.CHAT, "juliet@example.com")


@pytest.mark.parametrize(
    ("iq_type", "xml", "expected"),
    [
        ("set", "", ("modify", "bad-request")),
        ("get", f"<create xmlns='{NS}' with='a@b.c'/>", ("modify", "bad-request")),
        ("set", f"<release xmlns='{NS}'><key id='abc'/></release>", ("modify", "bad-request")),
        ("set", f"<frobnicate xmlns='{NS}'/>", ("cancel", "service-unavailable")),
        ("set", f"<create xmlns='{NS}'/>", ("modify", "bad-request")),
        ("set", f"<create xmlns='{NS}' with='a@b.c' room='r@c.d'/>", ("modify", "bad-request")),
        ("set", f"<create xmlns='{NS}' with='a@@b'/>", ("modify", "jid-malformed")),
        ("set", f"<create xmlns='{NS}' room='r@c d'/>", ("modify", "jid-malformed")),
        ("get", f"<release xmlns='{NS}'/>", ("modify", "bad-request")),
        ("get", f"<release xmlns='{NS}'><key id='bad id!'/></release>", ("modify", "bad-request")),
        ("get", f"<release xmlns='{NS}'><key/></release>", ("modify", "bad-request")),
        ("set", f"<rotate xmlns='{NS}' with='a@b.c' previous='x y'/>", ("modify", "bad-request")),
        ("set", f"<create xmlns='{NS}' with='a@b.c'><wrap alg='RSA'>AAAA</wrap></create>",
         ("modify", "bad-request")),
        ("set", f"<create xmlns='{NS}' with='a@b.c'><wrap alg='X25519-HKDF-SHA256-A256GCM'>"
                "AAAA</wrap></create>", ("modify", "bad-request")),
        ("get", f"<list xmlns='{NS}' with='a@b.c'><set xmlns='http://jabber.org/protocol/rsm'>"
                "<max>lots</max></set></list>", ("modify", "bad-request")),
    ],
)
def test_bad_requests(iq_type, xml, expected):
    assert err(iq_type, xml) == expected


def test_release_collapses_duplicates_in_first_order_and_bounds_the_batch():
    req = parse("get", f"<release xmlns='{NS}'><key id='b'/><key id='a'/><key id='b'/></release>")
    assert isinstance(req, ReleaseRequest) and req.ids == ("b", "a")
    many = "".join(f"<key id='k{i}'/>" for i in range(4)) + "<key id='k0'/>"
    assert parse("get", f"<release xmlns='{NS}'>{many}</release>", max_batch=4).ids[-1] == "k3"
    assert err("get", f"<release xmlns='{NS}'>{many}<key id='k9'/></release>", 4) == (
        "modify", "bad-request")


def test_list_rsm():
    req = parse("get", f"<list xmlns='{NS}' room='r@c.d'><set xmlns='http://jabber.org/protocol/"
                       "rsm'><max>5</max><before/></set></list>")
    assert isinstance(req, ListRequest)
    assert (req.page.max, req.page.before, req.page.after) == (5, "", None)
    assert parse("get", f"<list xmlns='{NS}' with='a@b.c'/>").page.max == 50


def test_key_element():
    view = KeyView("kid", Conversation.chat("a@b.c", "d@b.c"), "d@b.c", 1_790_000_000_123,
                   None, b"\x01" * 32)
    el = key_element(view)
    assert el.tag == f"{{{NS}}}key"
    assert el.attrib == {"id": "kid", "alg": "A256GCM", "created": "2026-09-21T14:13:20Z",
                         "with": "d@b.c"}
    assert base64.b64decode(el.text) == b"\x01" * 32


def test_release_reads_only_its_own_key_children():
    xml = (f"<release xmlns='{NS}'><key id='a'/><wrap xmlns='{NS}' "
           "alg='X25519-HKDF-SHA256-A256GCM'><key id='nested'/></wrap></release>")
    with pytest.raises(ProtocolError):  # the nested one is ignored, the wrap is malformed
        parse("get", xml)
    assert parse("get", f"<release xmlns='{NS}'><x><key id='n'/></x><key id='a'/></release>"
                 ).ids == ("a",)


@pytest.mark.parametrize("value", ["²", "1_000", "+5", " ", "1234567890"])
def test_rsm_max_must_be_plain_digits(value):
    xml = (f"<list xmlns='{NS}' with='a@b.c'><set xmlns='http://jabber.org/protocol/rsm'>"
           f"<max>{value}</max></set></list>")
    assert err("get", xml) == ("modify", "bad-request")

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keysrv.client import files
from keysrv.client.errors import FileError
from keysrv.client.files import (
    SealedFile,
    aesgcm_url,
    decrypt_file,
    encrypt_file,
    parse_aesgcm_url,
)

PLAIN = b"\x89PNG a picture of a balcony" * 100
IV, KEY = bytes(range(12)), bytes(range(100, 132))
FRAGMENT = IV.hex() + KEY.hex()


def clear(info: pytest.ExceptionInfo[FileError], *words: str, key: bytes = KEY) -> None:
    text = str(info.value)
    assert text.endswith(".") and "\n" not in text
    assert key.hex() not in text and key.hex().upper() not in text
    for word in words:
        assert word in text, (word, text)


def test_round_trip_with_a_12_byte_iv():
    sealed = encrypt_file(PLAIN)
    assert (len(sealed.iv), len(sealed.key)) == (12, 32)
    assert len(sealed.data) == len(PLAIN) + 16 and PLAIN[:8] not in sealed.data
    assert decrypt_file(sealed.data, sealed.iv, sealed.key) == PLAIN
    other = encrypt_file(PLAIN)
    assert (other.key, other.iv) != (sealed.key, sealed.iv)


def test_repr_hides_key_and_iv():
    sealed = encrypt_file(b"x")
    text = repr(sealed)
    assert sealed.key.hex() not in text and sealed.iv.hex() not in text and "key" not in text
    assert isinstance(sealed, SealedFile)


def test_a_16_byte_iv_file_made_by_hand_decrypts():
    key, iv = AESGCM.generate_key(bit_length=256), os.urandom(16)
    data = AESGCM(key).encrypt(iv, PLAIN, None)
    assert decrypt_file(data, iv, key) == PLAIN
    url = aesgcm_url("https://up.example.com/f/a.png", iv, key)
    assert len(url.partition("#")[2]) == 96
    fetch, iv2, key2 = parse_aesgcm_url(url)
    assert decrypt_file(data, iv2, key2) == PLAIN and fetch == "https://up.example.com/f/a.png"


def test_tampering_fails():
    sealed = encrypt_file(PLAIN)
    flipped = bytearray(sealed.data)
    flipped[3] ^= 0x80
    for data, iv, key in [
        (bytes(flipped), sealed.iv, sealed.key),
        (sealed.data[:-1], sealed.iv, sealed.key),
        (sealed.data, sealed.iv, os.urandom(32)),
        (sealed.data, os.urandom(12), sealed.key),
    ]:
        with pytest.raises(FileError) as info:
            decrypt_file(data, iv, key)
        clear(info, "does not authenticate", key=sealed.key)


@pytest.mark.parametrize(
    ("data", "iv", "key", "words"),
    [
        (b"x" * 20, IV, KEY[:16], ["32 bytes"]),
        (b"x" * 20, IV + b"xx", KEY, ["12 or 16 bytes"]),
        (b"x" * 20, IV[:8], KEY, ["12 or 16 bytes"]),
        (b"x" * 15, IV, KEY, ["truncated"]),
    ],
)
def test_wrong_sizes_are_refused(data, iv, key, words):
    with pytest.raises(FileError) as info:
        decrypt_file(data, iv, key)
    clear(info, *words)


def test_oversized_files_are_refused(monkeypatch):
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    with pytest.raises(FileError) as info:
        encrypt_file(b"x" * 101)
    clear(info, "larger than 100 bytes")
    with pytest.raises(FileError):
        decrypt_file(b"x" * 117, IV, KEY)


def test_url_round_trip():
    get = "https://upload.example.com:8443/slot/ab%20c/photo.jpg?token=1"
    url = aesgcm_url(get, IV, KEY)
    assert url == f"aesgcm://upload.example.com:8443/slot/ab%20c/photo.jpg?token=1#{FRAGMENT}"
    assert parse_aesgcm_url(url) == (get, IV, KEY)
    assert parse_aesgcm_url(url.replace(FRAGMENT, FRAGMENT.upper()))[1:] == (IV, KEY)


@pytest.mark.parametrize(
    ("url", "fetch"),
    [
        (f"aesgcm://127.0.0.1:5280/x#{FRAGMENT}", "http://127.0.0.1:5280/x"),
        (f"aesgcm://127.8.9.10/x#{FRAGMENT}", "http://127.8.9.10/x"),
        (f"aesgcm://[::1]:5280/x#{FRAGMENT}", "http://[::1]:5280/x"),
        (f"aesgcm://localhost/x#{FRAGMENT}", "http://localhost/x"),
        (f"AESGCM://LOCALHOST:80/x#{FRAGMENT}", "http://LOCALHOST:80/x"),
        (f"aesgcm://128.0.0.1/x#{FRAGMENT}", "https://128.0.0.1/x"),
        (f"aesgcm://localhost.example.com/x#{FRAGMENT}", "https://localhost.example.com/x"),
        (f"aesgcm://127.0.0.1@evil.example/x#{FRAGMENT}", "https://127.0.0.1@evil.example/x"),
    ],
)
def test_loopback_hosts_map_to_http_and_others_to_https(url, fetch):
    assert parse_aesgcm_url(url) == (fetch, IV, KEY)


@pytest.mark.parametrize(
    "get",
    ["http://127.0.0.1:5280/x", "http://[::1]/x", "http://localhost:5280/upload/x"],
)
def test_http_upload_urls_are_allowed_for_loopback(get):
    url = aesgcm_url(get, IV, KEY)
    assert url.startswith("aesgcm://") and parse_aesgcm_url(url) == (get, IV, KEY)


@pytest.mark.parametrize(
    ("get", "words"),
    [
        ("http://upload.example.com/x", ["loopback"]),
        ("http://10.0.0.1/x", ["loopback"]),
        ("ftp://upload.example.com/x", ["https://"]),
        ("https://upload.example.com/x#frag", ["fragment"]),
        ("upload.example.com/x", ["no scheme"]),
        ("https:///x", ["no host"]),
        ("https://h:port/x", ["port"]),
        ("https://h/a b", ["whitespace"]),
    ],
)
def test_bad_upload_urls_are_refused(get, words):
    with pytest.raises(FileError) as info:
        aesgcm_url(get, IV, KEY)
    clear(info, *words)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("aesgcm://h/x", ["no fragment"]),
        (f"aesgcm://h/x#{FRAGMENT[:-1]}", ["88 or 96"]),
        (f"aesgcm://h/x#{FRAGMENT}0", ["88 or 96"]),
        (f"aesgcm://h/x#{FRAGMENT}000000000", ["88 or 96"]),
        (f"aesgcm://h/x#{FRAGMENT[:64]}", ["88 or 96"]),
        (f"aesgcm://h/x#{'g' * 88}", ["88 or 96"]),
        (f"aesgcm://h/x#{FRAGMENT[:87]} ", ["whitespace"]),
        (f"https://h/x#{FRAGMENT}", ["not an aesgcm://"]),
        (f"aesgcm:///x#{FRAGMENT}", ["no host"]),
    ],
)
def test_bad_aesgcm_urls_are_refused(url, words):
    with pytest.raises(FileError) as info:
        parse_aesgcm_url(url)
    clear(info, *words)

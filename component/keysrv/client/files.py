"""Encrypted files in the XEP-0454 style (protocol §8): pure functions, no I/O.

A file is encrypted with a fresh key and 12-byte IV (AES-256-GCM, tag
appended), uploaded with XEP-0363, and shared as
`aesgcm://host/path#<hex IV><hex key>`. The fragment carries key material:
no error message ever repeats it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import FileError

MAX_FILE_BYTES = 100 * 1024 * 1024
KEY_BYTES = 32
IV_BYTES = 12
IV_SIZES = (12, 16)  # receivers also accept the 16-byte IVs older clients send
TAG_BYTES = 16

_HEX = re.compile(r"^[0-9a-fA-F]*$")
_FRAGMENT_LENGTHS = {2 * (iv + KEY_BYTES): iv for iv in IV_SIZES}  # 88 -> 12, 96 -> 16


@dataclass(frozen=True, slots=True, repr=False)
class SealedFile:
    """An encrypted file (`data` = ciphertext || tag) and what decrypts it."""

    data: bytes
    iv: bytes
    key: bytes

    def __repr__(self) -> str:  # never show the key or IV
        return f"SealedFile(<{len(self.data)} bytes>)"


def encrypt_file(plain: bytes) -> SealedFile:
    if len(plain) > MAX_FILE_BYTES:
        raise FileError(f"The file is larger than {MAX_FILE_BYTES} bytes.")
    key, iv = AESGCM.generate_key(bit_length=256), os.urandom(IV_BYTES)
    return SealedFile(AESGCM(key).encrypt(iv, plain, None), iv, key)


def decrypt_file(data: bytes, iv: bytes, key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise FileError(f"A file key is {KEY_BYTES} bytes, not {len(key)}.")
    if len(iv) not in IV_SIZES:
        raise FileError(f"A file IV is 12 or 16 bytes, not {len(iv)}.")
    if len(data) < TAG_BYTES:
        raise FileError("The encrypted file is truncated: shorter than its 16-byte tag.")
    if len(data) > MAX_FILE_BYTES + TAG_BYTES:
        raise FileError(f"The encrypted file is larger than {MAX_FILE_BYTES} bytes.")
    try:
        return AESGCM(key).decrypt(iv, data, None)
    except InvalidTag:
        raise FileError(
            "The file does not authenticate: it was altered or the key is wrong."
        ) from None


def aesgcm_url(get_url: str, iv: bytes, key: bytes) -> str:
    """The XEP-0363 GET URL as an aesgcm:// URL carrying IV and key in the fragment."""
    if len(key) != KEY_BYTES or len(iv) not in IV_SIZES:
        raise FileError("A file key is 32 bytes and its IV 12 or 16 bytes.")
    if "#" in get_url:
        raise FileError("The upload URL already has a fragment.")
    scheme, rest = _split_scheme(get_url, "upload")
    if scheme == "http":
        _require_loopback(rest, "An http:// upload URL")
    elif scheme != "https":
        raise FileError("The upload URL must be https:// (http:// only for a loopback host).")
    return f"aesgcm://{rest}#{iv.hex()}{key.hex()}"


def parse_aesgcm_url(url: str) -> tuple[str, bytes, bytes]:
    """(URL to fetch, IV, key) of an aesgcm:// URL; https:// unless the host is loopback."""
    scheme, rest = _split_scheme(url, "file")
    if scheme != "aesgcm":
        raise FileError("The file URL is not an aesgcm:// URL.")
    rest, sep, fragment = rest.partition("#")
    if not sep:
        raise FileError("The aesgcm:// URL has no fragment with the IV and key.")
    iv_len = _FRAGMENT_LENGTHS.get(len(fragment))
    if iv_len is None or not _HEX.match(fragment):
        raise FileError(
            "The aesgcm:// fragment must be 88 or 96 hex characters (12- or 16-byte IV + key)."
        )
    raw = bytes.fromhex(fragment)
    fetch = "http" if is_loopback(_host(rest)) else "https"
    return f"{fetch}://{rest}", raw[:iv_len], raw[iv_len:]


# --- helpers ----------------------------------------------------------------------------


def _split_scheme(url: str, what: str) -> tuple[str, str]:
    """(lower-case scheme, everything after '://'), with a host present."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise FileError(f"The {what} URL contains whitespace or control characters.")
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise FileError(f"The {what} URL has no scheme.")
    _host(rest.partition("#")[0])  # refuses a URL without a host
    return scheme.lower(), rest


def _host(rest: str) -> str:
    """The host of '//'-less URL text such as 'example.com:443/path?q'."""
    try:
        parts = urlsplit("//" + rest)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise FileError("The URL has an invalid host or port.") from None
    if not parts.hostname:
        raise FileError("The URL has no host.")
    return parts.hostname


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_loopback(rest: str, what: str) -> None:
    if not is_loopback(_host(rest)):
        raise FileError(f"{what} is allowed only for a loopback host.")

"""Key material, sealing at rest under the KEK, and wrapping to a client key (§5).

Pure functions over bytes; no I/O except the KEK file helpers at the bottom,
which run once at start-up (never on the event loop while serving).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
WRAP_ALG = "X25519-HKDF-SHA256-A256GCM"
WRAP_INFO = b"urn:xmpp:keysrv:0 wrap"
_SEAL_CONTEXT = b"keysrv seal v1\x00"
_KEK_CHECK_PLAIN = b"keysrv kek check v1"


class CryptoError(Exception):
    """Authentication failed or the input is malformed."""


def new_key_id() -> str:
    """22 characters of base64url: 128 random bits, within the spec's [A-Za-z0-9_-]{1,64}."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def new_material() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def aead_encrypt(key: bytes | AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    """nonce(12) || ciphertext || tag(16), AES-256-GCM with a fresh random nonce."""
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def aead_decrypt(key: bytes | AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise CryptoError("ciphertext too short")
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise CryptoError("authentication failed") from exc


class Sealer:
    """Seals key material at rest under the key-encryption key (KEK).

    The AAD binds each sealed blob to its key id and conversation, so a blob
    copied onto another row does not open.
    """

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEY_BYTES:
            raise CryptoError("the KEK must be 32 bytes")
        self._kek = AESGCM(kek)  # one cipher object per KEK, reused for every key

    @staticmethod
    def _aad(key_id: str, conversation: str) -> bytes:
        return _SEAL_CONTEXT + key_id.encode() + b"\x00" + conversation.encode()

    def seal(self, material: bytes, key_id: str, conversation: str) -> bytes:
        return aead_encrypt(self._kek, material, self._aad(key_id, conversation))

    def unseal(self, sealed: bytes, key_id: str, conversation: str) -> bytes:
        return aead_decrypt(self._kek, sealed, self._aad(key_id, conversation))

    def check_value(self) -> bytes:
        """A value stored in the database to recognise this KEK later."""
        return aead_encrypt(self._kek, _KEK_CHECK_PLAIN, b"kek-check")

    def matches(self, check_value: bytes) -> bool:
        try:
            return aead_decrypt(self._kek, check_value, b"kek-check") == _KEK_CHECK_PLAIN
        except CryptoError:
            return False


def _wrap_key(shared: bytes, epk: bytes, client_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=epk + client_public, info=WRAP_INFO
    ).derive(shared)


class Wrapper:
    """One answer's wrapping: a fresh X25519 key pair, shared by every key in it."""

    def __init__(self, client_public: bytes) -> None:
        try:
            peer = X25519PublicKey.from_public_bytes(client_public)
        except ValueError as exc:
            raise CryptoError("not an X25519 public key") from exc
        private = X25519PrivateKey.generate()
        self.epk = private.public_key().public_bytes_raw()
        try:
            shared = private.exchange(peer)
        except ValueError as exc:  # low-order point
            raise CryptoError("unusable X25519 public key") from exc
        self._k = AESGCM(_wrap_key(shared, self.epk, client_public))

    def wrap(self, key_id: str, material: bytes) -> bytes:
        return aead_encrypt(self._k, material, key_id.encode("ascii"))


def unwrap(client_private: X25519PrivateKey, epk: bytes, key_id: str, blob: bytes) -> bytes:
    """The client side of §5."""
    client_public = client_private.public_key().public_bytes_raw()
    shared = client_private.exchange(X25519PublicKey.from_public_bytes(epk))
    return aead_decrypt(_wrap_key(shared, epk, client_public), blob, key_id.encode("ascii"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict standard base64 with padding (RFC 4648 §4); whitespace is not allowed."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise CryptoError("not valid base64") from exc


# --- the KEK file: one line of base64 of 32 bytes, mode 0600 ---------------------------


def create_kek_file(path: Path) -> bytes:
    """Write a new KEK; refuses (FileExistsError) if the file exists."""
    kek = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(b64(kek) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return kek


def read_kek_file(path: Path) -> bytes:
    """Read the KEK; raises OSError or CryptoError with a plain reason."""
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        kek = unb64(text)
    except CryptoError:
        raise CryptoError(f"{path} does not hold a base64 key") from None
    if len(kek) != KEY_BYTES:
        raise CryptoError(f"{path} holds {len(kek)} bytes, a KEK is 32")
    return kek

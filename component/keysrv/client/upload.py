"""Encrypted files: XEP-0363 upload of a client-side encrypted file, and
download + decrypt of an aesgcm:// URL. HTTP runs in a worker thread, never
on the event loop."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from xml.etree import ElementTree as ET

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

from . import discovery, errors, files

UPLOAD_NS = "urn:xmpp:http:upload:0"
HTTP_TIMEOUT = 60.0
_MAX_DOWNLOAD = files.MAX_FILE_BYTES + files.TAG_BYTES  # ciphertext || tag
_ALLOWED_HEADERS = {"authorization", "cookie", "expires"}  # XEP-0363 §5


async def _iq(xmpp: ClientXMPP, to: str, payload: ET.Element, timeout: float) -> ET.Element:
    iq = xmpp.make_iq_get(ito=to)
    iq.xml.append(payload)
    try:
        reply = await iq.send(timeout=timeout)
    except IqError as exc:
        err = exc.iq["error"]
        raise errors.FileError(f"{to} refused: {err['text'] or err['condition']}") from None
    except IqTimeout:
        raise errors.FileError(f"{to} did not answer in time") from None
    return reply.xml


async def find_upload_service(xmpp: ClientXMPP, timeout: float = 10.0) -> str:
    found = await discovery.find_component(xmpp, UPLOAD_NS, timeout)
    if found is None:
        domain = xmpp.boundjid.domain
        raise errors.FileError(f"no HTTP upload service (XEP-0363) among the items of {domain}")
    return found


async def upload_encrypted(
    xmpp: ClientXMPP,
    plain: bytes,
    filename: str,
    *,
    service: str | None = None,
    timeout: float = 10.0,
) -> str:
    """Encrypt `plain` with a fresh key and IV, upload it, return the aesgcm:// URL.

    The upload service sees `filename` and the size, never the content: pass a
    meaningless name if the name itself is private."""
    sealed = await asyncio.to_thread(files.encrypt_file, plain)  # up to 100 MiB of AES
    service = service or await find_upload_service(xmpp, timeout)
    request = ET.Element(
        f"{{{UPLOAD_NS}}}request",
        {
            "filename": filename,
            "size": str(len(sealed.data)),
            "content-type": "application/octet-stream",
        },
    )
    slot = await _iq(xmpp, service, request, timeout)
    put = slot.find(f".//{{{UPLOAD_NS}}}put")
    get = slot.find(f".//{{{UPLOAD_NS}}}get")
    if put is None or get is None or not put.get("url") or not get.get("url"):
        raise errors.FileError(f"{service} gave no upload slot")
    headers = {
        h.get("name", ""): (h.text or "").replace("\n", " ")
        for h in put.findall(f"{{{UPLOAD_NS}}}header")
        if h.get("name", "").lower() in _ALLOWED_HEADERS
    }
    url = files.aesgcm_url(get.get("url", ""), sealed.iv, sealed.key)  # checks the scheme
    await asyncio.to_thread(_put, put.get("url", ""), sealed.data, headers)
    return url


async def download_decrypted(url: str) -> bytes:
    """Fetch an aesgcm:// URL and decrypt it (12- or 16-byte IV)."""
    fetch, iv, key = files.parse_aesgcm_url(url)
    data = await asyncio.to_thread(_get, fetch)
    return await asyncio.to_thread(files.decrypt_file, data, iv, key)


def _put(url: str, data: bytes, headers: dict[str, str]) -> None:
    request = urllib.request.Request(
        url,
        data=data,
        method="PUT",
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            if response.status not in (200, 201):
                raise errors.FileError(f"the upload answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise errors.FileError(f"the upload failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise errors.FileError(f"the upload failed: {exc}") from None


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            data: bytes = response.read(_MAX_DOWNLOAD + 1)
    except urllib.error.HTTPError as exc:
        raise errors.FileError(f"the download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise errors.FileError(f"the download failed: {exc}") from None
    if len(data) > _MAX_DOWNLOAD:
        raise errors.FileError(f"the file is larger than {files.MAX_FILE_BYTES} bytes")
    return data

"""A bare-bones XEP-0114 component connection (no slixmpp): to check what a
server grants a component, or to stand in for a component that never answers."""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET


class RawComponent:
    """Bare-bones XEP-0114 connection (no slixmpp), to check what the snippet grants."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.stream_id = ""
        self.pending: list[ET.Element] = []

    @classmethod
    async def connect(cls, port: int, name: str, secret: str) -> RawComponent:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self = cls(reader, writer)
        writer.write(
            f"<stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{name}'>".encode()
        )
        while not self.stream_id:
            await self._feed()
        digest = hashlib.sha1((self.stream_id + secret).encode()).hexdigest()
        writer.write(f"<handshake>{digest}</handshake>".encode())
        return self

    async def _feed(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("stream closed")
        self.parser.feed(data)
        for event, elem in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 1:
                    self.stream_id = elem.get("id", "")
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.pending.append(elem)

    async def next(self, timeout: float = 5) -> ET.Element:
        async def wait() -> ET.Element:
            while not self.pending:
                await self._feed()
            return self.pending.pop(0)

        return await asyncio.wait_for(wait(), timeout)

    def send(self, xml: str) -> None:
        self.writer.write(xml.encode())

    async def close(self) -> None:
        self.writer.write(b"</stream:stream>")
        self.writer.close()
        await self.writer.wait_closed()

"""A small TTL cache with single-flight loading and a size bound."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Caches `loader(key)` results for `ttl` seconds (0 disables caching).

    Concurrent misses for one key share one load. Failures are not cached.
    At most `max_entries` entries are kept; the oldest go first.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    async def get(self, key: K, loader: Callable[[K], Awaitable[V]]) -> V:
        hit = self._entries.get(key)
        if hit is not None:
            if self._clock() < hit[0]:
                return hit[1]
            del self._entries[key]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await loader(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            future.set_result(value)
            if self.ttl > 0:
                self._entries[key] = (self._clock() + self.ttl, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return value
        finally:
            del self._inflight[key]

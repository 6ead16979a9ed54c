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

    async def get(self, key: K, loader: Callable[[K], Awaitable[V]]) -> V:
        hit = self._entries.get(key)
        if hit is not None:
            if self._clock() < hit[0]:
                return hit[1]
            del self._entries[key]
        task = self._inflight.get(key)
        if task is None:
            # The load is a task of its own: a caller that is cancelled does not
            # cancel it for the others waiting on the same key.
            task = asyncio.ensure_future(self._load(key, loader))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(task)

    async def _load(self, key: K, loader: Callable[[K], Awaitable[V]]) -> V:
        started = self._clock()  # the answer is as old as the question
        value = await loader(key)
        if self.ttl > 0:
            self._entries[key] = (started + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def _done(self, key: K, task: asyncio.Future[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter gets it through the shield

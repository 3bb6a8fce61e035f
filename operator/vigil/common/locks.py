"""One asyncio lock per key, kept only while a task holds or awaits it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field


class Busy(Exception):
    """The key's lock was not free within the wait asked for."""


@dataclass
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyedLocks:
    """Mutual exclusion per key (an object's reconciles); a key nobody uses costs nothing.

    Why: objects come and go (a namespace of models deleted), and a lock kept
    for each one ever seen would grow without end.
    """

    def __init__(self) -> None:
        self._held: dict[Hashable, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable, wait: float | None = None) -> AsyncIterator[None]:
        """Hold the key's lock; with ``wait``, raise Busy when it is not free that soon."""
        held = self._held.setdefault(key, _Held())
        held.users += 1
        try:
            try:
                async with asyncio.timeout(wait):
                    await held.lock.acquire()
            except TimeoutError:
                raise Busy(key) from None
            try:
                yield
            finally:
                held.lock.release()
        finally:
            held.users -= 1
            if held.users == 0:
                del self._held[key]

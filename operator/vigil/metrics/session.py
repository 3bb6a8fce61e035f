"""The HTTP session a metrics source talks through."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp


class LazySession:
    """The caller's session (the caller closes it) or, without one, a session of our own,
    opened at first use (inside the event loop) and closed by :meth:`close`."""

    def __init__(
        self,
        given: aiohttp.ClientSession | None,
        open_session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self._session = given
        self._owned = given is None
        self._open_session = open_session

    def get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._open_session()
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owned:
            await self._session.close()
        self._session = None

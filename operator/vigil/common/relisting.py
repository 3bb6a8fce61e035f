"""Which watched objects a relisting no longer shows.

A watch that cannot resume lists everything again, and kopf reports no
DELETED event for what vanished in between (nor any event at all for a
namespace left empty). The watch announces each listing as it starts and
once it is complete (vigil.operator.runtime.announce_listings); what a
complete listing did not show within a window after its start is gone. A
listing that fails (the API server unreachable) says nothing. While a
listing runs, what was seen before it may be gone already.
"""

from __future__ import annotations

from collections.abc import Callable

Key = tuple[str, str]  # namespace, name
#: How long a listing may take to show every object (its events are handled in turn).
LISTING_SECONDS = 60.0


class Relistings:
    """The objects of one watched kind, by when they were last shown, and the listings
    under way (``None``: cluster-wide)."""

    def __init__(self, clock: Callable[[], float], window: float = LISTING_SECONDS) -> None:
        self._clock = clock
        self._window = window
        self._seen: dict[Key, float] = {}
        #: Listings under way (not known complete yet) and complete ones, by their start.
        self._started: dict[str | None, float] = {}
        self._listings: dict[str | None, float] = {}

    def listing_started(self, namespace: str | None) -> None:
        self._started[namespace] = self._clock()

    def listing_done(self, namespace: str | None) -> None:
        since = self._started.pop(namespace, self._clock())
        # The newer complete listing is the authority: its window ends later.
        self._listings[namespace] = since

    def listing_open(self, namespace: str) -> bool:
        """Whether a listing covering the namespace is under way, or complete with its window
        still open (call :meth:`ghosts` first: it closes the windows that are over)."""
        return self._under_way(namespace) or namespace in self._listings or None in self._listings

    def _under_way(self, namespace: str) -> bool:
        # One started longer ago than a listing may take failed (kopf lists again): no say.
        now = self._clock()
        return any(
            now - since < self._window
            for covered, since in self._started.items()
            if covered in (None, namespace)
        )

    def seen(self, key: Key) -> None:
        self._seen[key] = self._clock()

    def forget(self, key: Key) -> None:
        self._seen.pop(key, None)

    def ghosts(self) -> list[Key]:
        """The objects a finished listing did not show (forgotten here too)."""
        now = self._clock()
        gone: list[Key] = []
        for namespace, since in list(self._listings.items()):
            if now - since < self._window:
                continue
            del self._listings[namespace]
            gone += [
                key for key, at in self._seen.items() if at < since and namespace in (None, key[0])
            ]
        for key in gone:
            self._seen.pop(key, None)
        return sorted(set(gone))

"""Failures of a fetch: permanent (retrying cannot help) or transient.

The words of a failure are the words of its cause (the server's error code
and message, the OS error), one line, so that the operator can put them in
a condition as they are.
"""

from __future__ import annotations

import copy
from typing import Any

#: A permanent failure: 404, 403, wrong credentials, digest mismatch, an
#: archive escaping its folder, a full disk, bad input.
EXIT_PERMANENT = 1
#: Transient errors went on past the last retry (unreachable host, 5xx):
#: sysexits' EX_TEMPFAIL, "try again later".
EXIT_TRANSIENT = 75


class FetchError(Exception):
    """A failure whose ``str`` is the one line the log and the pod status show."""

    permanent: bool = True

    @property
    def exit_code(self) -> int:
        return EXIT_PERMANENT if self.permanent else EXIT_TRANSIENT

    def about(self, subject: str) -> FetchError:
        """The same failure, its words prefixed with what it concerns."""
        copied = copy.copy(self)
        copied.args = (f"{subject}: {self}",)
        return copied

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException's own rebuilds a copy as cls(*args), which a subclass taking other
        # arguments (HttpStatusError's status) refuses: rebuild from the attributes instead.
        return _blank, (type(self),), {**self.__dict__, "args": self.args}


def _blank(cls: type[FetchError]) -> FetchError:
    """An instance without its __init__ run, for copy and pickle to fill."""
    return cls.__new__(cls)


class PermanentError(FetchError):
    """Retrying cannot help."""

    permanent = True


class TransientError(FetchError):
    """Worth retrying (connection reset, timeout, 5xx, 429)."""

    permanent = False


class HttpStatusError(PermanentError):
    """The server answered with an error status that retrying cannot change."""

    def __init__(self, words: str, status: int) -> None:
        super().__init__(words)
        self.status = status

"""How the commands (``make cluster-up``, ``make demo``, ...) report an expected failure: a
missing prerequisite or a failed command is one message on stderr and exit code 1, not a
traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from vigil.devcluster.common import ClusterError
from vigil.devcluster.engine import ImageError
from vigil.devcluster.network import NetworkError
from vigil.devcluster.packages import PackageError
from vigil.devcluster.reads import ReadError


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The project's errors that say what went wrong and what to do."""
    # Imported only once something failed: numpy (traffic), the image builds (seaweedfs).
    from vigil.devcluster.seaweedfs import StoreError
    from vigil.devcluster.traffic import ReadFailed

    return (
        ClusterError,
        ImageError,
        NetworkError,
        PackageError,
        ReadError,
        ReadFailed,
        StoreError,
    )


def _said(output: str | bytes | None, lines: int = 20) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else (output or "")
    return "\n".join(text.strip().splitlines()[-lines:])


def reporting_failures(prog: str, action: Callable[[], int]) -> int:
    """Run ``action``; an expected failure (a missing prerequisite, a failed command) is
    printed on stderr without a traceback and gives exit code 1."""
    try:
        return action()
    except subprocess.CalledProcessError as error:
        # KubectlError's stderr holds kubectl's (the API server's reason).
        command = error.cmd if isinstance(error.cmd, str) else " ".join(map(str, error.cmd))
        said = _said(error.stderr) or _said(error.output)
        print(
            f"{prog}: `{command}` failed with exit code {error.returncode}"
            + (f":\n{said}" if said else ""),
            file=sys.stderr,
        )
    except _expected_errors() as error:
        print(f"{prog}: {error}", file=sys.stderr)
    return 1

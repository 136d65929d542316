"""Child-process helpers shared by the multi-worker server and the endpoint router (Linux)."""

from __future__ import annotations

import ctypes
import signal
import socket
import sys

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn`: the child gets SIGTERM when its parent dies, even by SIGKILL, so no
    prediction server outlives the process that started it."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now (the child binds it a moment later; a lost race fails loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

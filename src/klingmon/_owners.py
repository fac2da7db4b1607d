"""Lease owners: who holds a claim, and whether that process is still alive."""

from __future__ import annotations

import os
import random
import socket

__all__ = ["dead_local_owner", "default_owner"]


def default_owner() -> str:
    """``host:pid:random``: unique per process, and checkable on this host."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(24):06x}"


def dead_local_owner(owner: str) -> bool:
    """An owner of this host whose process is gone (killed, crashed)."""
    host, _, rest = owner.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False

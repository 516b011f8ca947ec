"""The campaign directory lock: one process at a time may write a campaign's corpus."""

from __future__ import annotations

import fcntl
import os

from covfuzz.errors import CovfuzzError


class CampaignLocked(CovfuzzError):
    """Another process (a running campaign, a cmin) holds DIR/.lock."""


def acquire(directory: str, holder: str = "covfuzz campaign"):
    """Take DIR/.lock (flock, released when the returned handle closes or the process dies)."""
    path = os.path.join(directory, ".lock")
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise CampaignLocked(f"{directory} is in use by another {holder} (pid {owner}); "
                             "stop it first or choose another directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle

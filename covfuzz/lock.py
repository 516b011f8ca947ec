"""The campaign directory lock: one process at a time may write a campaign's corpus.

`DIR/.lock` holds the pid of the holder (flock, released when the handle closes or the process
dies). The directory may come from elsewhere, so the lock file is untrusted: it is opened without
following a symlink and must be a regular file with one link (else writing our pid into it would
write outside the directory); what is read back from it is at most `MAX_OWNER_BYTES` and shown
only when it is a pid. A lock path that is not usable is a `CampaignDataError` (one line, exit 2).
"""

from __future__ import annotations

import fcntl
import os
import stat

from covfuzz import workdir
from covfuzz.errors import CampaignDataError, CovfuzzError

MAX_OWNER_BYTES = 32  # a pid is at most 7 digits


class CampaignLocked(CovfuzzError):
    """Another process (a running campaign, a cmin) holds DIR/.lock."""


def _owner(fd: int) -> str:
    """The holder's pid as written in the lock file, or '?' when it is not a pid."""
    try:
        raw = os.pread(fd, MAX_OWNER_BYTES, 0).strip()
    except OSError:
        return "?"
    return raw.decode("ascii") if raw.isdigit() and len(raw) <= 10 else "?"


def _open(path: str, directory: str) -> int:
    fix = f"remove {path} if no covfuzz process uses {directory}"
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:  # a symlink (ELOOP), a directory (EISDIR), no permission...
        why = "a symbolic link" if os.path.islink(path) else (exc.strerror or str(exc))
        raise CampaignDataError(f"lock file {path}: cannot be used ({why}); {fix}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        why = "not a regular file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file"
        raise CampaignDataError(f"lock file {path}: {why}; {fix}")
    return fd


def acquire(directory: str, holder: str = "covfuzz campaign"):
    """Take DIR/.lock; returns the handle to close to release it."""
    path = workdir.lock_path(directory)
    fd = _open(path, directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _owner(fd)
        os.close(fd)
        raise CampaignLocked(f"{directory} is in use by another {holder} (pid {owner}); "
                             "stop it first or choose another directory") from None
    except OSError as exc:
        os.close(fd)
        raise CampaignDataError(f"lock file {path}: cannot be locked ({exc.strerror or exc})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
    return os.fdopen(fd, "r+b", buffering=0)

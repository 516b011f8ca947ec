"""Writing a command's output file (a repro, a report, exported tests, a reduced case) without
ever writing through a symbolic link.

A campaign directory may come from someone else, and so may a symlink planted where covfuzz
writes (`DIR/reduced/<id>.cfz`, `DIR/progress.png`) or in a shared output folder: following it
would write wherever it points. `check_output` refuses such a path before a command does its
work (a reduction takes minutes); `write_output` opens the final path component with
O_NOFOLLOW (and O_NONBLOCK, so a FIFO planted there cannot block the command), so a link
created in between is refused too.
"""

from __future__ import annotations

import errno
import os
import stat

from covfuzz.errors import CovfuzzError

_LINK = "is a symbolic link: covfuzz never writes through one (remove it or choose another path)"
_NOT_FILE = "exists and is not a regular file"


def check_output(path: str) -> None:
    """CovfuzzError when `path` is a symlink or an existing non-regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CovfuzzError(f"{path}: cannot write ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise CovfuzzError(f"{path}: {_LINK}")
    if not stat.S_ISREG(st.st_mode):
        raise CovfuzzError(f"{path}: {_NOT_FILE}")


def write_output(path: str, data: bytes | str, exclusive: bool = False) -> None:
    """Write `data` (str as UTF-8) to the regular file `path`, created or truncated, never
    through a symlink at its last component (CovfuzzError, one line). `exclusive`: the file
    must not exist yet (temporary files)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= os.O_EXCL if exclusive else 0
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CovfuzzError(f"{path}: {_LINK}") from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader
            raise CovfuzzError(f"{path}: {_NOT_FILE}") from None
        raise CovfuzzError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CovfuzzError(f"{path}: {_NOT_FILE}")
        os.ftruncate(fd, 0)  # only now: truncating before the check could touch a device
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)

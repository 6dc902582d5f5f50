"""Reading a user's file without hanging or running out of memory.

A path given to the tool may name a FIFO (opening it blocks until a writer comes), a device (`/dev/zero` reads
forever), a socket or a folder. Every user file is checked here before it is read: `check_regular` stats it and
refuses what is not a regular file or is larger than the caller's limit; `read_regular` then opens it with
O_NONBLOCK (so a FIFO swapped in after the stat cannot block the open), checks the opened file again (fstat) and
reads at most the limit plus one byte. `open_regular` gives the checked file object to callers that stream it
(hashing).

Each function takes the exception class to raise (PolicyError, ManifestError, DataError, ModelError, ...) and a
short name of what the file is, so the one-line message reads like the caller's own:
`policy.yaml: not a regular file (a FIFO); the policy must be a regular file`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from audit.errors import AuditError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def _refuse(path: Path, st: os.stat_result, max_bytes: int | None, what: str, error: type[AuditError]) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, expected a {what if what.endswith('file') else what + ' file'}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file ({_kind(st.st_mode)}); the {what} must be a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: {what} is {st.st_size:,} bytes; more than {max_bytes:,} is not a {what}")


def check_regular(path: str | Path, max_bytes: int | None, what: str, error: type[AuditError] = AuditError) -> int:
    """The size of `path` if it is a regular file of at most `max_bytes` (None: any size); else `error`."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    _refuse(path, st, max_bytes, what, error)
    return st.st_size


def open_regular(path: str | Path, what: str, error: type[AuditError] = AuditError,
                 max_bytes: int | None = None) -> BinaryIO:
    """`path` opened for binary reading, after the checks of `check_regular`, on the descriptor itself."""
    path = Path(path)
    check_regular(path, max_bytes, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        _refuse(path, os.fstat(fd), max_bytes, what, error)  # the file opened is the file checked
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, max_bytes: int, what: str, error: type[AuditError] = AuditError) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; anything else is one line raised as `error`."""
    path = Path(path)
    with open_regular(path, what, error, max_bytes) as fh:
        try:
            raw = fh.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    if len(raw) > max_bytes:  # it grew after the check
        raise error(f"{path}: {what} is more than {max_bytes:,} bytes; that is not a {what}")
    return raw

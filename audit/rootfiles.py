"""The files of an output root and of a run folder that the ledger (audit.ledger), publication (audit.publish) and
the recovery of an interrupted publication (audit.recovery) share: their names, reading a regular file only, and
replacing `ledger.head` atomically. Nothing here reads or writes the chain itself."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

EVIDENCE = "evidence.json"
SIGNATURE = "signature.json"
LEDGER = "ledger.jsonl"
HEAD = "ledger.head"
MARKER = ".audit-run"


class NotAFile(OSError):
    """A path that is not a regular file (a folder, a FIFO, a device, a socket): never opened for reading."""


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")


def _open_regular(path: Path) -> int:
    """A file descriptor of `path` when it is a regular file. O_NONBLOCK: opening a FIFO does not wait for a
    writer; the fstat after the open then refuses it (no window between a check and the open)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotAFile(f"{path}: {_kind(mode)}, not a regular file")
    return fd


def read_regular(path: Path) -> bytes:
    with os.fdopen(_open_regular(path), "rb") as fh:
        return fh.read()


def sha256_regular(path: Path) -> str:
    digest = hashlib.sha256()
    with os.fdopen(_open_regular(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_head(root: Path, text: str) -> None:
    """Replace `root/ledger.head` atomically (a temporary file, fsynced, renamed)."""
    import secrets

    path = Path(root) / HEAD
    tmp = path.with_name(f".{HEAD}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()

"""Finishing or undoing a publication that a killed process left half done, and removing the temporaries of dead
processes (audit.publish describes the step and its intent file). The ledger's check (audit.ledger.check_ledger)
and publication both call `recover` first, holding the ledger lock; this module reads and writes only the files
that audit.rootfiles names, so neither of them is imported here."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from audit.rootfiles import EVIDENCE, LEDGER, read_regular, write_head

TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|pub)-(?P<pid>\d+)-(?P<tag>[0-9a-f]{8})(?:\.json)?$")


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def temps(root: Path) -> list[tuple[Path, re.Match]]:
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return [(root / n, m) for n in names if (m := TEMP.match(n))]


def clean_stale(root: Path) -> None:
    """Remove the temporary folders and files (`.NAME.tmp-PID-*`, `.NAME.old-PID-*`) of dead processes in
    `root`; not while an interrupted publication there waits for `recover` (it may need an `.old-` folder)."""
    found = temps(root)
    if any(m["kind"] == "pub" and not pid_alive(int(m["pid"])) for _, m in found):
        return
    for p, m in found:
        if m["kind"] in ("tmp", "old") and not pid_alive(int(m["pid"])):
            remove(p)


def pending(root: Path) -> list[Path]:
    """Intent files of publications whose process died before finishing them."""
    return sorted(p for p, m in temps(root) if m["kind"] == "pub" and not pid_alive(int(m["pid"])))


def holds(folder: Path, digest: str) -> bool:
    try:
        return json.loads(read_regular(folder / EVIDENCE)).get("digest") == digest
    except (OSError, ValueError, AttributeError):
        return False


def recover(root: Path) -> list[str]:
    """Finish or undo the publications in `root` that a killed process left half done; call holding the ledger
    lock. Returns one line for each."""
    done = []
    for intent_path in pending(root):
        try:
            intent = json.loads(read_regular(intent_path))
            target, tmp, backup = (root / intent[k] for k in ("name", "tmp", "backup"))
            written, size, digest = intent["write"].encode("utf-8"), int(intent["ledger_size"]), intent["digest"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            remove(intent_path)  # written but not complete: the publication had not begun
            continue
        ledger = root / LEDGER
        try:
            data = read_regular(ledger) if ledger.exists() else b""
        except OSError:
            continue  # leave it; the ledger check names the problem
        appended = data[size:size + len(written)] == written
        if not appended and len(data) > size and written.startswith(data[size:]):
            os.truncate(ledger, size)  # a torn append: our own half line
            data = data[:size]
        if not appended and len(data) == size and holds(target, digest):
            with open(ledger, "ab") as fh:  # the folder is in place: finish the step
                fh.write(written)
                fh.flush()
                os.fsync(fh.fileno())
            appended = True
        if appended:
            write_head(root, intent["head"])
            remove(backup)
            done.append(f"finished recording {target.name} (its process was killed after publishing it)")
        else:
            if not os.path.lexists(target) and backup.is_dir():
                os.replace(backup, target)  # the old folder goes back
            done.append(f"undid the interrupted publication of {target.name}")
        remove(tmp)
        remove(intent_path)
    return done

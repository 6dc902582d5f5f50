"""Publishing a run folder and recording it in the ledger: one step that either completes or leaves nothing.

The run folder is first written in full to a hidden sibling `.<name>.tmp-<pid>-<hex>` (audit.render.outputs).
Then, holding the ledger lock of the root (the folder that holds the run folders, and `ledger.jsonl`):

1. publications that a killed process left half done are finished or undone (`audit.recovery.recover`), and temporary folders
   of dead processes are removed (`clean_stale`);
2. the ledger and its head are checked: a broken ledger stops the run here, with nothing published;
3. with SIGINT and SIGTERM deferred: an intent file `.<name>.pub-<pid>-<hex>.json` records the step (the
   ledger line, the new head, the folders involved); an existing run folder is moved aside to
   `.<name>.old-<pid>-<hex>`; the new one is renamed into place; the ledger line is appended and fsynced;
   `ledger.head` is replaced; the intent is removed. If the append fails, the new folder is taken away again
   and the old one put back.

A SIGKILL can stop the process at any instruction. The intent file lets the next audit command that reads the
root (`run`, `history`, `verify`) finish the step (the new folder is in place: its ledger line is appended) or
undo it (it is not: the old folder is put back), so the root is always either as before the run or as after it.
A temporary folder is removed only when the process whose id its name carries is gone.

Nothing here replaces what audit did not write: `check_replaceable` accepts an empty folder or a run folder
(the marker `.audit-run`, and only regular files whose names audit writes there), nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import OutputError
from audit.recovery import TEMP, clean_stale, pending, pid_alive, recover  # noqa: F401  (read from here too)
from audit.recovery import remove as _remove
from audit.rootfiles import EVIDENCE, LEDGER, MARKER, read_regular

# the files audit writes in a run folder besides those its evidence.json lists (report.pdf: older versions
# printed it into the folder)
ALWAYS = frozenset({"result.json", "report.html", "junit.xml", "summary.md", "predictions.csv", "README.md",
                    "evidence.json", "signature.json", MARKER, "report.pdf"})
ANY = object()  # publish(expect=ANY): no expectation about what the target holds

PUBLISHED: list[Path] = []  # run folders this process has published and recorded (the CLI's interrupt message)


def temp_path(target: Path, kind: str) -> Path:
    suffix = ".json" if kind == "pub" else ""
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


class signals_deferred:
    """Block SIGINT and SIGTERM for a few renames; they are delivered when the block ends (POSIX only)."""

    def __enter__(self):
        import signal

        self._mask = None
        if hasattr(signal, "pthread_sigmask"):
            import threading

            if threading.current_thread() is threading.main_thread():
                self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        return self

    def __exit__(self, *exc):
        import signal

        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)


def _reached(step: str) -> None:
    """A named point of the publication (tests stop a forked process here to play a SIGKILL)."""


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the files themselves are synced
    finally:
        os.close(fd)


# ---------------------------------------------------------------- what may be replaced


def audit_names(folder: Path) -> set[str]:
    """The file names audit writes in the run folder `folder`: the fixed ones and those its evidence.json lists."""
    names = set(ALWAYS)
    try:
        listed = json.loads(read_regular(folder / EVIDENCE)).get("files")
    except (OSError, ValueError, AttributeError):
        return names
    if isinstance(listed, dict):
        names |= {n for n in listed if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..")}
    return names


def foreign_entry(folder: Path) -> str | None:
    """Why `folder` (an existing folder) is not an empty folder or a run folder audit wrote; None when it is."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        return f"it cannot be listed ({e.strerror})"
    if not entries:
        return None
    if not any(e.name == MARKER for e in entries):
        e = entries[0]
        return f"it holds the {'folder' if e.is_dir(follow_symlinks=False) else 'file'} {e.name} and no {MARKER} marker"
    known = audit_names(folder)
    for e in entries:
        kind = e.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(kind):
            return f"it holds the folder {e.name}"
        if not stat.S_ISREG(kind):
            return f"it holds {e.name}, which is not a regular file"
        if e.name not in known:
            return f"it holds the file {e.name}"
    return None


def _precious(real: Path) -> bool:
    cwd = Path.cwd().resolve()
    return real == Path(real.anchor) or real == Path.home().resolve() or real == cwd or real in cwd.parents


def check_replaceable(target: Path) -> None:
    """Refuse a `target` that exists and is not an empty folder or a folder that audit wrote."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as e:
        raise OutputError(f"cannot write the run folder {target}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"will not replace {target}: it is a symbolic link; give the folder itself")
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write the run folder {target}: a file of that name is in the way")
    if _precious(target.resolve()):
        raise OutputError(f"will not replace {target}: it is the file-system root, the home folder, or the working "
                          "folder or one above it; choose another output folder")
    why = foreign_entry(target)
    if why:
        raise OutputError(f"will not replace {target}: {why} (audit did not write it); choose a new folder name "
                          "or an empty folder")


def fingerprint(target: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(target)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class Target:
    """An output folder checked before the run: its path and what stood there then (None: nothing)."""

    path: Path
    seen: tuple[int, int] | None
    unique: bool = False  # a default name: if it is taken at publication, another free name is chosen


def check_out_dir(out: Path, *, inputs: list[Any] = (), model_dir: Path | None = None,
                  unique: bool = False, ledger: bool = True) -> Target:
    """Check an output folder before the run does any work (fail fast).

    Refused: a folder that holds anything audit did not write (`check_replaceable`); a folder that is, contains
    or lies inside the model folder; one that is or contains any input file or folder; one inside a run folder;
    and (with `ledger`) a root whose ledger is broken."""
    target = Path(os.path.abspath(out))
    real = Path(os.path.realpath(target))
    if model_dir is not None:
        m = Path(os.path.realpath(model_dir))
        if real == m or m in real.parents or real in m.parents:
            how = "is" if real == m else "lies inside" if m in real.parents else "contains"
            raise OutputError(f"will not write the run folder {out}: it {how} the model folder {model_dir}; "
                              "choose an output folder outside it")
    for p in inputs:
        if p is None or str(p) == "":
            continue
        rp = Path(os.path.realpath(p))
        if rp == real or real in rp.parents:
            raise OutputError(f"will not write the run folder {out}: it {'is' if rp == real else 'contains'} the "
                              f"input {p}; choose another output folder")
    for parent in real.parents:
        if (parent / MARKER).is_file():
            raise OutputError(f"will not write the run folder {out}: it lies inside the run folder {parent}")
    check_replaceable(target)
    if ledger and real.parent.is_dir():
        from audit.ledger import check_ledger

        _, problems, _ = check_ledger(real.parent)
        if problems:
            raise OutputError(f"{real.parent / LEDGER}: the ledger is broken ({problems[0]}); not recording a run "
                              "in it (nothing was written)")
    return Target(target, fingerprint(target), unique)


# ---------------------------------------------------------------- the publication


@dataclass
class Record:
    """What the ledger entry of a published run needs."""

    result: dict
    digest: str
    sign_key: Path | None = None


def _swap(tmp: Path, target: Path, aside: Path | None = None) -> Path | None:
    """Move an existing `target` aside (to `aside`, or a fresh temporary name), rename `tmp` in; on failure put
    the old one back. Returns the backup."""
    backup = None
    if os.path.lexists(target):
        backup = aside or temp_path(target, "old")
        os.replace(target, backup)
        _reached("moved aside")
    try:
        os.replace(tmp, target)
    except OSError:
        if backup is not None:
            os.replace(backup, target)
        raise
    _reached("renamed")
    return backup


def publish(tmp: Path, target: Path, record: Record | None = None, *, expect: Any = ANY,
            unique: bool = False) -> Path:
    """Rename the complete folder `tmp` to `target` and, with `record`, append its ledger entry, as one step (see
    the module docstring). Returns the folder published (another free name when `unique` and `target` is taken).
    Raises OutputError when the target may not be replaced or the ledger is broken; `tmp` is left to the caller."""
    root = target.parent
    if record is None:
        with signals_deferred():  # SIGINT/SIGTERM between the two renames would lose the old folder
            check_replaceable(target)
            backup = _swap(tmp, target)
        fsync_dir(root)
        if backup is not None:
            _remove(backup)
        return target
    from audit import ledger as lg

    with lg.ledger_lock(root):
        recover(root)
        clean_stale(root)
        entries, problems, _ = lg.check_ledger(root, locked=True)
        if problems:
            raise OutputError(f"{root / lg.LEDGER}: the ledger is broken ({problems[0]}); not recording a run in "
                              "it (nothing was written)")
        while unique and os.path.lexists(target):
            target = root / f"{target.name.rsplit('-', 1)[0]}-{secrets.token_hex(3)}"
        if expect is not ANY:
            now = fingerprint(target)
            if now is not None and now != expect:
                raise OutputError(f"{target}: another run was published there while this one ran; not replacing "
                                  "it (nothing of this run was written)")
        check_replaceable(target)
        entry = lg.new_entry(root, target, record.result, record.digest, entries)
        ledger = root / lg.LEDGER
        size = ledger.stat().st_size if ledger.exists() else 0
        written = ("\n" if size and not lg.ends_with_newline(ledger) else "") + json.dumps(entry, sort_keys=True) + "\n"
        head = lg.head_text(len(entries) + 1, entry["hash"], record.sign_key)
        intent = temp_path(target, "pub")
        with signals_deferred():
            backup_name = temp_path(target, "old").name
            with open(intent, "w", encoding="utf-8") as fh:
                json.dump({"pid": os.getpid(), "name": target.name, "tmp": tmp.name, "backup": backup_name,
                           "ledger_size": size, "write": written, "head": head, "digest": record.digest}, fh)
            _reached("intent")
            try:
                backup = _swap(tmp, target, root / backup_name)
                try:
                    with open(ledger, "ab") as fh:
                        fh.write(written.encode("utf-8"))
                        fh.flush()
                        os.fsync(fh.fileno())
                    _reached("appended")
                    lg.write_head(root, head)
                    _reached("head")
                except OSError:
                    os.replace(target, tmp)  # take the new folder away again; the caller removes tmp
                    if backup is not None:
                        os.replace(backup, target)
                        backup = None
                    if ledger.exists() and ledger.stat().st_size > size:
                        os.truncate(ledger, size)
                    raise
            finally:
                intent.unlink(missing_ok=True)
            PUBLISHED.append(target)
    fsync_dir(root)
    if backup is not None:
        _remove(backup)
    return target

"""The run folder, written all at once or not at all.

`write_run` renders every file into memory first; only then does it touch the disk: it writes a hidden sibling
folder `<parent>/.<name>.tmp-<pid>-<random>`, fsyncs each file, and renames it into place. An existing folder
is moved aside to `.<name>.old-<pid>-<random>`, the new one renamed in, and the old one deleted; if the rename
fails, the old one is put back. So a crash or a rendering error never leaves a half-written report where a good
one stood.

An existing folder is replaced whole (stale files go). To avoid deleting someone's work, a folder without the
marker file `.audit-run` (written into every run folder) is refused when it holds a sub-folder or is the
file-system root, the home folder, the working folder or one above it.

OS failures (read-only disk, no permission, disk full) become `OutputError` with one readable line.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from audit.errors import DataError, OutputError
from audit.render.governance import model_card_markdown
from audit.render.html import render_html
from audit.render.junit import render_junit
from audit.render.markdown import render_markdown

RESULT = "result.json"
REPORT = "report.html"
JUNIT = "junit.xml"
SUMMARY = "summary.md"
PREDICTIONS = "predictions.csv"
MODEL_CARD = "README.md"  # the model card, Hugging Face style, to ship beside the model
MARKER = ".audit-run"


def json_safe(x: Any) -> Any:
    """A deep copy that `json.dumps(allow_nan=False)` accepts: NaN and infinities become None, numpy scalars
    plain numbers, tuples lists, paths strings."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    item = getattr(x, "item", None)  # numpy scalars, without importing numpy
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    if hasattr(x, "tolist"):
        return json_safe(x.tolist())
    return x


def result_json(result: dict) -> str:
    return json.dumps(json_safe(result), indent=1, sort_keys=False, allow_nan=False, ensure_ascii=False) + "\n"


def render_all(result: dict, template_dirs: list[Path] | None = None) -> tuple[dict, dict[str, str]]:
    """Every file of a run folder, in memory: (the JSON-safe result, {file name: text})."""
    clean = json_safe(result)
    files = {
        RESULT: result_json(clean),
        REPORT: render_html(clean, template_dirs),
        JUNIT: render_junit(clean),
        SUMMARY: render_markdown(clean),
        MODEL_CARD: model_card_markdown(clean),
    }
    return clean, files


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _fsync_dir(path: Path) -> None:
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


def _write_file(path: Path, data: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace what is plainly not a run folder: a file, the file-system root, the home folder, the
    working folder or one above it, a repository, or a folder that holds sub-folders and no audit marker."""
    if not out_dir.is_dir():
        raise OutputError(f"cannot write the run folder {out_dir}: a file of that name is in the way")
    entries = list(out_dir.iterdir())
    if any(p.name == MARKER for p in entries):
        return
    real, cwd = out_dir.resolve(), Path.cwd().resolve()
    precious = real == Path(real.anchor) or real == Path.home().resolve() or real == cwd or real in cwd.parents
    folder = next((p.name for p in entries if p.is_dir()), None)
    if precious or folder:
        why = f"it holds the folder {folder}" if folder else "it is not a run folder"
        raise OutputError(f"will not replace {out_dir}: {why} and audit did not write it; "
                          "choose another output folder")


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`, moving an existing `out_dir` aside first and deleting it after."""
    backup = None
    if out_dir.exists() or out_dir.is_symlink():
        _check_replaceable(out_dir)
        backup = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(out_dir, backup)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if backup is not None:
            os.replace(backup, out_dir)
        raise
    _fsync_dir(out_dir.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


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


def write_files(out_dir: Path, files: dict[str, str]) -> Path:
    """Write `files` ({name: text}) as the whole content of `out_dir`, atomically (see the module docstring)."""
    out_dir = Path(out_dir)
    target = Path(os.path.abspath(out_dir))  # "." and "runs/.." have a real name and parent this way
    parent = target.parent
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        os.mkdir(tmp)
        for name, data in files.items():
            _write_file(tmp / name, data)
        _fsync_dir(tmp)
        with signals_deferred():  # SIGINT/SIGTERM between the two renames would lose the old folder
            _swap_in(tmp, target)
            tmp = None
    except OSError as e:
        raise OutputError(f"cannot write the run folder {out_dir}: {_why(e)}"
                          + (f" ({e.filename})" if e.filename else "")) from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def write_run(out_dir: Path, result: dict, predictions_csv: str | None,
              template_dirs: list[Path] | None = None, extra: dict[str, str] | None = None,
              sign_key: Path | None = None) -> Path:
    """Write result.json, report.html, junit.xml, summary.md and predictions.csv (when given) to `out_dir`,
    with evidence.json (the sha256 of each file) and, with `sign_key`, signature.json.

    Everything is rendered before the disk is touched; a rendering error raises with nothing written.
    `extra` adds more text files ({name: text}) to the folder. Returns `out_dir`."""
    clean, files = render_all(result, template_dirs)
    if predictions_csv is not None:
        files[PREDICTIONS] = predictions_csv
    for name, data in (extra or {}).items():
        if Path(name).name != name or name.startswith("."):
            raise OutputError(f"cannot write {name!r} in the run folder: not a plain file name")
        files[name] = data
    from audit.ledger import evidence_files

    files.update(evidence_files(files, clean, sign_key))  # sealed: the sha256 of every file, signed when asked
    files[MARKER] = f"written by audit; run {(clean.get('run') or {}).get('id', '')}\n"
    return write_files(Path(out_dir), files)


def load_result(path: Path) -> dict:
    """A result.json read back, with a one-line DataError when it is missing or is not one."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"cannot read {path}: {_why(e)}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(result, dict) or "verdict" not in result or "findings" not in result:
        raise DataError(f"{path} is not an audit result.json (it lacks 'verdict' and 'findings')")
    return result


def _replace_file(path: Path, data: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _write_file(tmp, data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def rerender(result_json_path: Path, out: Path | None = None, template_dirs: list[Path] | None = None,
             report_url: str | None = None) -> Path:
    """Re-render report.html, junit.xml and summary.md from a result.json alone (`audit report result.json`).

    With `out` None or the folder that holds the JSON, the three files are replaced there one by one, each
    atomically, and result.json itself is left as it is. With another `out`, a whole run folder is written
    there as `write_run` does, carrying predictions.csv along when it sits next to the JSON. Returns the
    folder written."""
    result_json_path = Path(result_json_path)
    result = load_result(result_json_path)
    if report_url:  # `audit report --report-url`: summary.md links under the published run folder
        result = {**result, "links": {**(result.get("links") or {}), "report_url": report_url}}
    source = result_json_path.parent
    target = Path(out) if out is not None else source
    if target.resolve() != source.resolve():
        predictions = source / PREDICTIONS
        try:
            csv = predictions.read_text(encoding="utf-8") if predictions.is_file() else None
        except OSError as e:
            raise DataError(f"cannot read {predictions}: {_why(e)}") from e
        return write_run(target, result, csv, template_dirs)
    _, files = render_all(result, template_dirs)
    try:
        for name in (REPORT, JUNIT, SUMMARY, MODEL_CARD):
            _replace_file(target / name, files[name])
        _fsync_dir(target)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {_why(e)}" + (f" ({e.filename})" if e.filename else "")) from e
    return target

"""The run folder, written all at once or not at all.

`write_run` renders every file into memory first; only then does it touch the disk: it writes a hidden sibling
folder `<parent>/.<name>.tmp-<pid>-<random>`, fsyncs each file, and hands it to audit.publish, which renames it
into place (an existing run folder moved aside, then deleted) and, for a run, appends the ledger entry in the
same step. So a crash, a signal or a rendering error never leaves a half-written report where a good one stood,
and never a run folder that the ledger does not record.

Nothing audit did not write is replaced: an existing `--out` must be an empty folder or a run folder (the
marker `.audit-run` and only the files audit writes there); `check_out_dir` also refuses an output folder that
is, holds or lies inside the model folder, holds an input, or lies inside another run folder, before the run
does any work.

OS failures (read-only disk, no permission, disk full) become `OutputError` with one readable line.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

from audit.errors import DataError, OutputError
from audit.ledger import EVIDENCE, evidence_files
from audit.publish import (
    ANY,
    MARKER,
    Record,
    Target,
    check_out_dir,
    check_replaceable,
    clean_stale,
    fsync_dir,
    publish,
    signals_deferred,
    temp_path,
)
from audit.render.format import json_safe, result_json  # noqa: F401  (read from here too)
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
__all__ = ["MARKER", "check_out_dir", "signals_deferred", "write_run", "write_files", "rerender", "load_result"]




def render_all(result: dict, template_dirs: list[Path] | None = None,
               decisions: list[dict] | None = None) -> tuple[dict, dict[str, str]]:
    """Every file of a run folder, in memory: (the JSON-safe result, {file name: text}). `decisions`: the sign-off
    decisions the ledger records on the run, for the report's sign-off block (None: not read)."""
    clean = json_safe(result)
    text = result_json(clean)
    files = {
        RESULT: text,
        REPORT: render_html(clean, template_dirs, decisions=decisions, result_text=text),
        JUNIT: render_junit(clean),
        SUMMARY: render_markdown(clean),
        MODEL_CARD: model_card_markdown(clean),
    }
    return clean, files


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__




def _write_file(path: Path, data: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_files(out_dir: Path | Target, files: dict[str, str], record: Record | None = None) -> Path:
    """Write `files` ({name: text}) as the whole content of `out_dir`, atomically; with `record`, publish and
    append the ledger entry as one step (audit.publish). `out_dir` may be a Target that `check_out_dir` returned
    before the run began: a folder that another run published there meanwhile is then not replaced."""
    expect, unique = ANY, False
    if isinstance(out_dir, Target):
        expect, unique, out_dir = out_dir.seen, out_dir.unique, out_dir.path
    out_dir = Path(out_dir)
    target = Path(os.path.abspath(out_dir))  # "." and "runs/.." have a real name and parent this way
    parent = target.parent
    tmp: Path | None = None
    try:
        check_replaceable(target)  # before anything is written
        parent.mkdir(parents=True, exist_ok=True)
        if record is None:
            clean_stale(parent)
        tmp = temp_path(target, "tmp")
        os.mkdir(tmp)
        for name, data in files.items():
            _write_file(tmp / name, data)
        fsync_dir(tmp)
        published = publish(tmp, target, record, expect=expect, unique=unique)
        tmp = None
    except OSError as e:
        raise OutputError(f"cannot write the run folder {out_dir}: {_why(e)}"
                          + (f" ({e.filename})" if e.filename else "")) from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir if published == target else published


def write_run(out_dir: Path, result: dict, predictions_csv: str | None,
              template_dirs: list[Path] | None = None, extra: dict[str, str] | None = None,
              sign_key: Path | None = None, record: bool = False, decisions: list[dict] | None = None) -> Path:
    """Write result.json, report.html, junit.xml, summary.md and predictions.csv (when given) to `out_dir`,
    with evidence.json (the sha256 of each file) and, with `sign_key`, signature.json.

    Everything is rendered before the disk is touched; a rendering error raises with nothing written.
    `extra` adds more text files ({name: text}) to the folder. `out_dir` may be a Target (see write_files).
    With `record`, the run is appended to the ledger of the folder that holds `out_dir`, in the same step as the
    folder is published. Returns the folder written."""
    clean, files = render_all(result, template_dirs, decisions)
    if predictions_csv is not None:
        files[PREDICTIONS] = predictions_csv
    for name, data in (extra or {}).items():
        if Path(name).name != name or name.startswith("."):
            raise OutputError(f"cannot write {name!r} in the run folder: not a plain file name")
        files[name] = data
    where = out_dir.path if isinstance(out_dir, Target) else Path(out_dir)
    sealed = evidence_files(files, clean, sign_key, where)  # the sha256 of every file, signed when asked
    files.update(sealed)
    files[MARKER] = f"written by audit; run {(clean.get('run') or {}).get('id', '')}\n"
    rec = Record(clean, json.loads(sealed[EVIDENCE])["digest"], sign_key) if record else None
    return write_files(out_dir, files, rec)


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


SIGNED_OFF = "{name}.signed-off.html"  # beside a sealed run folder: its report with the decisions made on it


def rerender(result_json_path: Path, out: Path | None = None, template_dirs: list[Path] | None = None,
             report_url: str | None = None) -> Path:
    """`rerender_run`, returning the folder written."""
    return rerender_run(result_json_path, out, template_dirs, report_url)[0]


def rerender_run(result_json_path: Path, out: Path | None = None, template_dirs: list[Path] | None = None,
                 report_url: str | None = None) -> tuple[Path, Path, int]:
    """Re-render report.html, junit.xml and summary.md from a result.json alone (`audit report result.json`).

    With `out` None or the folder that holds the JSON, the three files are replaced there one by one, each
    atomically, and result.json itself is left as it is. With another `out`, a whole run folder is written
    there as `write_run` does, carrying predictions.csv along when it sits next to the JSON. Returns the
    folder written.

    The report shows every sign-off decision that the ledger beside the run folder records on the run. The run's
    own report.html is sealed (evidence.json) and was written before anyone decided; a decision never rewrites
    it. So when the decisions change the report, re-rendering in place writes it beside the folder, as
    `<folder>.signed-off.html`, and leaves the sealed report.html as it is; with another `out`, the new folder's
    report.html carries them. Returns (the folder written, the report with the decisions, their number)."""
    from audit.ledger import decisions_for_run

    result_json_path = Path(result_json_path)
    result = load_result(result_json_path)
    decisions = decisions_for_run(result_json_path.parent, (result.get("run") or {}).get("id"))
    if report_url:  # `audit report --report-url`: summary.md links under the published run folder
        result = {**result, "links": {**(result.get("links") or {}), "report_url": report_url}}
    source = result_json_path.parent
    target = Path(out) if out is not None else source
    if target.resolve() != source.resolve():
        checked = check_out_dir(target, inputs=[source], ledger=False)  # not over or around the source
        predictions = source / PREDICTIONS
        try:
            csv = predictions.read_text(encoding="utf-8") if predictions.is_file() else None
        except OSError as e:
            raise DataError(f"cannot read {predictions}: {_why(e)}") from e
        written = write_run(checked, result, csv, template_dirs, decisions=decisions)
        return written, Path(written) / REPORT, len(decisions or [])
    _, files = render_all(result, template_dirs)
    report = target / REPORT
    try:
        if decisions:
            _, signed = render_all(result, template_dirs, decisions)
            folder = Path(os.path.abspath(target))
            report = folder.parent / SIGNED_OFF.format(name=folder.name)
            _replace_file(report, signed[REPORT])
        for name in (REPORT, JUNIT, SUMMARY, MODEL_CARD):
            _replace_file(target / name, files[name])
        fsync_dir(target)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {_why(e)}" + (f" ({e.filename})" if e.filename else "")) from e
    return target, report, len(decisions or [])

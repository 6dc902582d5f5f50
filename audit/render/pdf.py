"""PDF from the HTML report with headless Chromium (Debian's `chromium` package; offline, vector charts).

Chromium prints the same self-contained report.html with its print stylesheet, so page breaks and the SVG
charts carry over. It runs with no network (`--disable-background-networking`, a fresh profile) and a time
limit. The PDF is written beside the report through a temp file and a rename.

On paper nothing can be unfolded, so the copy that is printed has its `<details>` open (a temporary copy in
a folder of its own: the report itself is not touched). The print stylesheet puts the run id and "page X of Y"
in the footer of every page (CSS @page margin boxes), and Chromium writes the PDF's outline (bookmarks) from
the headings, beside the report's own table of contents.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from audit.errors import OutputError, UsageError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--no-pdf-header-footer", "--generate-pdf-document-outline")
_DETAILS = re.compile(r"<details(?=[\s>])(?![^>]*\bopen\b)(?![^>]*data-print=\"closed\")")


def opened(html: str) -> str:
    """The report with every <details> open for print, except those marked `data-print="closed"` (the rule and
    clauses of a finding that passed: its sentence is the summary that shows). The report's text is escaped, so
    every `<details` in it is a tag the templates wrote."""
    return _DETAILS.sub("<details open", html)


def find_chromium() -> str:
    explicit = os.environ.get("AUDIT_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise UsageError("--pdf needs Chromium: install it (Debian/Ubuntu: apt-get install chromium) or set "
                     "AUDIT_CHROMIUM to its path")


def html_to_pdf(report: Path, pdf: Path, timeout: float = 120.0) -> Path:
    browser = find_chromium()
    report = Path(report).resolve()
    pdf = Path(pdf)
    tmp_pdf = pdf.with_name(f".{pdf.name}.tmp-{os.getpid()}")
    try:
        html = report.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{report}: cannot read the report to print it ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="audit-chromium-") as profile:
        page = Path(profile) / "print" / "report.html"
        page.parent.mkdir()
        page.write_text(opened(html), encoding="utf-8")
        cmd = [browser, *FLAGS, f"--user-data-dir={Path(profile) / 'profile'}", f"--print-to-pdf={tmp_pdf}",
               page.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            tmp_pdf.unlink(missing_ok=True)
            raise OutputError(f"{pdf}: Chromium did not finish printing within {timeout:.0f} s") from None
        except OSError as exc:
            raise UsageError(f"cannot start Chromium ({browser}): {exc.strerror}") from None
    if proc.returncode != 0 or not tmp_pdf.exists() or tmp_pdf.stat().st_size == 0:
        tmp_pdf.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise OutputError(f"{pdf}: Chromium could not print the report (exit {proc.returncode}): {last}")
    os.replace(tmp_pdf, pdf)
    return pdf

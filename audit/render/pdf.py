"""PDF from the HTML report with headless Chromium (Debian's `chromium` package; offline, vector charts).

Chromium prints the same self-contained report.html with its print stylesheet, so page breaks and the SVG
charts carry over. It runs with no network (`--disable-background-networking`, a fresh profile) and a time
limit. The PDF is written beside the report through a temp file and a rename.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from audit.errors import OutputError, UsageError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--no-pdf-header-footer")


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
    with tempfile.TemporaryDirectory(prefix="audit-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={tmp_pdf}", report.as_uri()]
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

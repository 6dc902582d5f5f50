"""summary.md: the verdict and the findings in a form that fits a pull-request comment (under ~60 lines).

Every piece of text that comes from the result (titles, ids, messages, refs, names) passes through `md`, which
turns `&`, `<` and `>` into entities, backslash-escapes the Markdown punctuation that can start emphasis, code, links, HTML, tables or math
(`:` too, so "http://" is not autolinked), defuses @mentions and flattens newlines, so a hostile string can
neither break the table nor inject links, HTML or pings. Dataset rows never appear here.
"""

from __future__ import annotations

import re

from audit.render.statistics_view import statistics_line
from audit.render.views import STATUSES, evidence_text, finding_observed, part_views, threshold_text, verdict_view

MAX_ROWS = 25  # findings shown in the table; passing ones are dropped first
MARKER = "<!-- audit-summary -->"  # first line: a CI step finds its earlier pull-request comment by it
_SPECIAL = re.compile(r"([\\`*_{}\[\]|~!:$])")
_SPACE = re.compile(r"\s+")


def md(value: object) -> str:
    """Data-derived text made inert for GitHub/GitLab Markdown, on one line."""
    s = _SPACE.sub(" ", str(value)).strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # A zero-width space after "@" stops GitHub and GitLab from turning "@name" into a mention.
    return _SPECIAL.sub(r"\\\1", s).replace("@", "@\u200b")


def report_url(url: str) -> str:
    """`--report-url`: the http(s) address where the run folder is published, checked and made safe to stand in
    a Markdown link (spaces, quotes, parentheses and brackets percent-encoded). Raises UsageError."""
    from urllib.parse import quote, urlsplit

    from audit.errors import UsageError

    url = str(url).strip()
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(f"--report-url {url!r}: give the http(s) address of the published run folder, "
                         "e.g. https://example.org/audits/run-42")
    if parts.username or parts.password:
        raise UsageError("--report-url: the address carries a user name or password; it would be shown in the "
                         "pull-request comment")
    if parts.query or parts.fragment or _SPACE.search(url):
        raise UsageError(f"--report-url {url!r}: give the run folder's address without ?query, #fragment or "
                         "spaces; each file's link is the address followed by /report.html, /result.json, …")
    return quote(url.rstrip("/"), safe="/:%-._~!$&*+,;=@")


def _links(result: dict) -> dict[str, str]:
    """Each linked file's address: under the published run folder when the run names one, else relative."""
    base = (result.get("links") or {}).get("report_url") if isinstance(result.get("links"), dict) else None
    names = ("report.html", "result.json", "junit.xml")
    if not base:
        return {name: name for name in names}
    base = report_url(base)  # re-checked: result.json may have been edited by hand
    return {name: f"{base}/{name}" for name in names}


def render_markdown(result: dict, report_href: str | None = None) -> str:
    """The summary for a PR comment. Its links are relative to the run folder, or absolute under the address
    in result["links"]["report_url"] (`--report-url`); `report_href` overrides the report's own link."""
    links = _links(result)
    report_href = report_href or links["report.html"]
    policy = result.get("policy") or {}
    model = result.get("model") or {}
    confidence = policy.get("confidence")
    v = verdict_view(result)
    findings = [f for f in result.get("findings") or [] if isinstance(f, dict)]
    findings.sort(key=lambda f: STATUSES.index(f["status"]) if f.get("status") in STATUSES else -1)

    lines = [MARKER, f"## Audit verdict: **{md(v.headline)}**", ""]
    about = f"Model {md(model.get('name') or model.get('path') or 'n/a')} against policy " \
            f"{md(policy.get('name') or 'n/a')} {md(policy.get('version') or '')}".rstrip()
    counts = ", ".join(f"{c.n} {c.status}" for c in v.counts if c.n)
    lines += [about + ". " + md(v.detail) + (f" Findings: {counts}." if counts else ""), ""]
    from_stats = statistics_line(result)
    if from_stats:  # a federated or prediction-log run: say where the numbers came from
        lines += [md(from_stats), ""]

    if v.blocking:
        lines += ["**What stops the release:**", ""]
        lines += [f"- {md(s)}" for s in v.blocking[:10]]
        if len(v.blocking) > 10:
            lines.append(f"- and {len(v.blocking) - 10} more (see the report)")
        lines.append("")

    if findings:
        shown = findings[:MAX_ROWS]
        lines += ["| Status | Check | Observed | Threshold |", "|---|---|---|---|"]
        for f in shown:
            unit = str(f.get("unit") or "")
            conf = f.get("confidence", confidence)
            status = md(f.get("status") or "")
            if f.get("severity") != "block" and f.get("status") != "WARN":
                status += " (warn only)"
            observed = finding_observed(f, confidence)
            size = evidence_text(f.get("n"), f.get("evidence"))
            lines.append(
                f"| {status} | {md(f.get('title') or f.get('check_id') or '')} (`{md_code(f.get('check_id'))}`) "
                f"| {md(observed)}{md(f'; {size}') if size else ''} "
                f"| {md(threshold_text(f.get('min'), f.get('max'), f.get('basis'), conf, unit))} |")
            for p in part_views(f, confidence):  # each attribute, intersection or list judged on its own
                why = f"; {p.reason}" if p.reason else ""
                lines.append(f"| ↳ {md(p.status)} | {md(p.name)} | {md(p.observed)}"
                             f"{md(f'; {p.evidence}') if p.evidence else ''}{md(why)} | |")
        if len(findings) > len(shown):
            lines.append(f"\n{len(findings) - len(shown)} more findings, all listed in the report.")
        lines.append("")
    else:
        lines += ["The policy has no rules, so nothing was judged.", ""]

    warnings = result.get("warnings") or []
    if warnings:
        lines.append(f"{len(warnings)} note{'s' if len(warnings) != 1 else ''} on the data and the run: see the report.")
    if links["result.json"] == "result.json":
        lines.append(f"Full report: [report.html]({report_href}) · machine-readable: `result.json`, `junit.xml`")
    else:
        lines.append(f"Full report: [report.html]({report_href}) · machine-readable: "
                     f"[result.json]({links['result.json']}), [junit.xml]({links['junit.xml']})")
    return "\n".join(lines) + "\n"


def md_code(value: object) -> str:
    """Text inside an inline code span: backticks and pipes cannot be escaped there, so they are replaced."""
    return _SPACE.sub(" ", str(value or "")).replace("`", "'").replace("|", "/")

"""The Python API: `audit.run` audits a model and returns an `AuditResult`; `audit.load` reads one back.

    >>> import audit
    >>> result = audit.run("model/", policy="fin", data="eval.csv", out="reports/run-1")
    >>> result.verdict, result.exit_code          # (<Verdict.PASS: 'PASS'>, 0)
    >>> result.findings[0].status                 # a Finding, as in result.json
    >>> result.measurements["performance.roc_auc"].ci_low
    >>> result.files.report                       # Path('reports/run-1/report.html')
    >>> audit.load("reports/run-1").verdict       # the same result, read from result.json

Both return values show a compact HTML summary in a notebook (`_repr_html_`), built from the report's own
view-models (audit/render/views.py), every string escaped. Errors are `audit.errors.AuditError`s with a one-line
message, as the CLI prints them; nothing here exits the interpreter. `audit run` is a thin layer over `run`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.result import Finding, Measurement, Verdict


@dataclass(frozen=True)
class RunFiles:
    """The files of a run folder. `predictions` and `signature` are None when the run did not write them."""

    folder: Path
    report: Path
    result: Path
    junit: Path
    summary: Path
    model_card: Path
    evidence: Path
    predictions: Path | None = None
    signature: Path | None = None

    @classmethod
    def of(cls, folder: str | Path) -> RunFiles:
        from audit.render.outputs import JUNIT, MODEL_CARD, PREDICTIONS, REPORT, RESULT, SUMMARY

        f = Path(folder)
        optional = {name: f / file if (f / file).is_file() else None
                    for name, file in (("predictions", PREDICTIONS), ("signature", "signature.json"))}
        return cls(folder=f, report=f / REPORT, result=f / RESULT, junit=f / JUNIT, summary=f / SUMMARY,
                   model_card=f / MODEL_CARD, evidence=f / "evidence.json", **optional)


@dataclass
class AuditResult:
    """One audit: the verdict, the exit code the CLI would end with, the findings and measurements as typed
    values (audit/result.py), the run folder's files, and the whole result.json document (`document`)."""

    verdict: Verdict
    exit_code: int
    findings: list[Finding]
    measurements: dict[str, Measurement]
    files: RunFiles
    run_id: str
    warnings: list[str] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict, repr=False)
    mlflow_run_id: str | None = None  # the MLflow run this audit was logged to (`mlflow=`), if any

    @property
    def out_dir(self) -> Path:
        return self.files.folder

    @property
    def result(self) -> dict[str, Any]:
        """The result.json document (the name the runner's RunOutcome gives it)."""
        return self.document

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS and self.exit_code == 0

    def finding(self, check_id: str) -> Finding:
        """The finding of one check; KeyError naming the check when the run has none."""
        for f in self.findings:
            if f.check_id == check_id:
                return f
        raise KeyError(f"no finding for {check_id!r} in run {self.run_id}")

    def _repr_html_(self) -> str:
        return summary_html(self.document, self.files)

    def __repr__(self) -> str:
        return (f"AuditResult(verdict={self.verdict.value}, exit_code={self.exit_code}, "
                f"findings={len(self.findings)}, run_id={self.run_id!r}, folder={str(self.files.folder)!r})")

    @classmethod
    def from_document(cls, document: dict[str, Any], folder: str | Path) -> AuditResult:
        from audit.errors import DataError

        try:
            v = document["verdict"]
            return cls(
                verdict=Verdict(v["status"]), exit_code=int(v["exit_code"]),
                findings=[_finding(f, (document.get("policy") or {}).get("confidence"))
                          for f in document.get("findings") or []],
                measurements={cid: Measurement.from_dict(m) for cid, m in (document.get("measurements") or {}).items()},
                files=RunFiles.of(folder), run_id=str((document.get("run") or {}).get("id") or ""),
                warnings=[str(w) for w in document.get("warnings") or []], document=document)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{Path(folder)}: result.json does not read as an audit result "
                            f"({type(exc).__name__}: {exc})") from None


def _finding(d: dict[str, Any], confidence: Any) -> Finding:
    """A finding of result.json as a Finding; an older result that lacks a field gets its neutral value."""
    cid = str(d.get("check_id") or "")
    defaults = {"family": cid.split(".", 1)[0], "title": cid, "severity": "block", "min": None, "max": None,
                "basis": "point", "value": None, "ci_low": None, "ci_high": None, "observed": None,
                "confidence": confidence, "refs": [], "message": "", "meaning": ""}
    return Finding.from_dict({**defaults, **d})


def load(run_dir: str | Path) -> AuditResult:
    """Read a run back from its folder (or its result.json). Raises DataError when it is not one."""
    from audit.render.outputs import RESULT, load_result

    p = Path(run_dir)
    path = p / RESULT if p.is_dir() else p
    return AuditResult.from_document(load_result(path), path.parent)


FLAG_OF = {"labels": "--labels", "positive_label": "--positive-label", "label_column": "--label-column",
           "text": "--text-column/--template", "max_length": "--max-length", "protected_attributes": "--protected"}


def _flag_error(exc) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "manifest"
    flag = FLAG_OF.get(str(err["loc"][0]) if err["loc"] else "", where)
    return f"{flag}: {err['msg'].removeprefix('Value error, ')}"


def manifest_from_flags(label_column: str | None, positive_label: str | None, text_column: str | None,
                        template: str | None, labels: str | Sequence[str] | None, name: str, max_length: int | None,
                        protected: dict | None = None):
    """A manifest for a model that `audit train` did not make, from the CLI's flags (or `run`'s keywords)."""
    from audit.errors import UsageError
    from audit.manifest import Manifest, TextRecipe

    if not (label_column and positive_label and labels and (text_column or template)):
        missing = [flag for flag, v in (("--labels", labels), ("--label-column", label_column),
                                        ("--positive-label", positive_label),
                                        ("--text-column or --template", text_column or template)) if not v]
        raise UsageError(f"without audit-model.yaml, give --labels, --label-column, --positive-label and "
                         f"--text-column or --template (missing: {', '.join(missing)}); or write the manifest "
                         "once with 'audit init MODEL_DIR --data FILE'")
    from pydantic import ValidationError

    try:
        return Manifest(name=name, labels=_labels(labels), positive_label=positive_label,
                        label_column=label_column, text=TextRecipe(column=text_column, template=template),
                        max_length=max_length or 128, protected_attributes=protected or {})
    except ValidationError as exc:
        raise UsageError(_flag_error(exc)) from None


def _labels(labels: str | Sequence[str]) -> list[str]:
    names = labels.split(",") if isinstance(labels, str) else [str(x) for x in labels]
    return [x.strip() for x in names]


def _protected(protected) -> dict | None:
    """`protected=`: a mapping of names to ProtectedAttribute (or dicts), or `--protected` strings."""
    if not protected:
        return None
    if isinstance(protected, dict):
        return dict(protected)
    from audit.errors import UsageError
    from audit.manifest import parse_protected

    out = {}
    for item in [protected] if isinstance(protected, str) else protected:
        try:
            name, attr = parse_protected(str(item))
        except ValueError as exc:
            raise UsageError(f"--protected {item!r}: {exc}") from None
        out[name] = attr
    return out


def run(model_dir: str | Path, policy: str | Path, *, data: str | Path | None = None, out: str | Path | None = None,
        current: str | Path | None = None, strict: bool = False, manifest: str | Path | Any | None = None,
        label_column: str | None = None, positive_label: str | None = None,
        labels: str | Sequence[str] | None = None, text_column: str | None = None, template: str | None = None,
        max_length: int | None = None, templates: str | Path | None = None, batch_size: int | None = None,
        sign: str | Path | None = None, baseline: str | Path | None = None, engine: str | Any = "local",
        address: str | None = None, precision: str = "auto", all_checks: bool = False,
        report_url: str | None = None, predictions: str | Path | None = None, score_column: str = "score",
        id_column: str | None = None, reference_stats: Sequence[str | Path] = (), progress: bool = False,
        mlflow: str | bool | None = None, command: list[str] | None = None,
        adverse_action: str | Path | None = None, protected: Sequence[str] | dict | None = None) -> AuditResult:
    """Audit `model_dir` against `policy` (a YAML file or a bundled pack name) and write the run folder.

    The keywords are `audit run`'s options: `data` (default: the manifest's held-out split), `out` (default
    reports/<model>-<time>/), `current`, `strict`, `manifest` (an audit-model.yaml path or a Manifest) or
    `label_column`/`positive_label`/`labels`/`text_column`/`template`/`max_length`/`protected` (a model without
    one needs the first five; beside a manifest each replaces only its own key, `protected` merged by name),
    `templates`, `batch_size`, `sign`, `baseline`, `engine`/`address`, `precision`, `all_checks`, `report_url`,
    `predictions` (a prediction log, with `score_column`, `id_column`, `reference_stats`), `progress` (bars on
    stderr; off by default here) and `mlflow` (a tracking URI, or True for $MLFLOW_TRACKING_URI: one MLflow run
    is logged per audit; needs `pip install 'audit[mlflow]'`). `adverse_action`: a CSV file for the declined rows'
    adverse-action reasons (the policy must rule an adverse-action check; never written over an input).
    `command` is what result.json records as the command line. Returns the result whatever the verdict; raises AuditError when the audit cannot run."""
    for key, value in (("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_OFFLINE", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(key, value)
    if report_url is not None:
        from audit.render.markdown import report_url as check_url

        report_url = check_url(report_url)  # a bad address fails before anything loads
    tracker = None
    if mlflow is not None and mlflow is not False:
        from audit.tracking import MlflowTracker

        tracker = MlflowTracker.open(None if mlflow is True else str(mlflow))  # no mlflow: exit 2 before the model
    model_dir = Path(model_dir)
    if adverse_action is not None:
        _check_adverse_action(adverse_action, policy, model_dir, [data, current, manifest, predictions, sign,
                                                                  baseline])
    flags = (label_column, positive_label, labels, text_column, template, max_length, _protected(protected))
    template_dirs = [Path(templates)] if templates else None
    command = command or _api_command(model_dir, policy)
    if predictions is not None:
        _refuse_with_predictions(data, current, sign, baseline, engine)
        manifest_obj, manifest_path = _manifest(manifest, flags, model_dir)
        from audit.streaming import run_predictions

        outcome = run_predictions(model_dir, policy, Path(predictions), out_dir=out, strict=strict,
                                  manifest=manifest_obj, manifest_path=manifest_path, id_column=id_column,
                                  score_column=score_column, reference_stats=[Path(p) for p in reference_stats] or None,
                                  command=command, template_dirs=template_dirs, progress=False, report_url=report_url)
    else:
        from audit.engines import make_engine
        from audit.runner import run_audit

        engine = make_engine(engine, address)  # an --address without --engine ray, or Ray missing: fails now
        manifest_obj, manifest_path = _manifest(manifest, flags, model_dir)
        outcome = run_audit(model_dir, policy, data_path=data, out_dir=out, current_path=current, strict=strict,
                            progress=progress, template_dirs=template_dirs, manifest=manifest_obj,
                            manifest_path=manifest_path, batch_size=batch_size, command=command, sign_key=sign,
                            baseline_dir=baseline, engine=engine, precision=precision, every_check=all_checks,
                            report_url=report_url)
    if adverse_action is not None:
        from audit.checks.adverse_action import notices_of
        from audit.reasons import write_notices_csv

        write_notices_csv(adverse_action, notices_of(outcome.result.get("measurements") or {}))
    result = AuditResult.from_document(outcome.result, outcome.out_dir)
    result.exit_code = outcome.exit_code  # the runner's own code (it already counts --strict)
    if tracker is not None:
        tracker.log_audit(result)
    return result


def _check_adverse_action(path, policy, model_dir: Path, inputs: list) -> None:
    """`--adverse-action FILE` before anything loads: the policy must rule an adverse-action check (their notices
    are what the file holds), and the file must be safe to write (audit.reasons.check_notices_out)."""
    from audit.checks import all_checks
    from audit.errors import UsageError
    from audit.policy import load_policy
    from audit.reasons import check_notices_out

    p = load_policy(policy)
    specs = all_checks()
    if not any(specs[cid].cost == "adverse_action" for cid in p.checks if cid in specs):
        raise UsageError(f"--adverse-action {path}: the policy {p.source} rules no adverse-action check "
                         "(explainability.adverse_action_*), so there are no notices to write")
    check_notices_out(path, [p.source, *[x for x in inputs if isinstance(x, (str, Path))]], model_dir)


def _manifest(manifest, flags, model_dir: Path):
    """(a Manifest or None, a manifest path or None) from `manifest=` and the label/text keywords. Beside a
    manifest (`manifest=`, or the folder's audit-model.yaml) a keyword replaces only its own key; without one the
    keywords make the whole manifest."""
    from pydantic import ValidationError

    from audit.errors import UsageError
    from audit.manifest import MANIFEST_NAME, Manifest, load_manifest, override

    label_column, positive_label, labels, text_column, template, max_length, protected = flags
    given = any(v is not None for v in flags)
    if not given:
        return (manifest, None) if isinstance(manifest, Manifest) else (
            None, Path(manifest) if manifest is not None else None)
    if isinstance(manifest, Manifest):
        base = manifest
    elif manifest is not None:
        base = load_manifest(Path(manifest))
    elif (model_dir / MANIFEST_NAME).exists():
        base = load_manifest(model_dir / MANIFEST_NAME)
    else:
        return manifest_from_flags(label_column, positive_label, text_column, template, labels, model_dir.name,
                                   max_length, protected), None
    if text_column is not None and template is not None:
        raise UsageError("give one of --text-column or --template")
    from audit.manifest import TextRecipe

    try:
        text = (TextRecipe(column=text_column) if text_column is not None
                else TextRecipe(template=template) if template is not None else None)
        return override(base, label_column=label_column, positive_label=positive_label,
                        labels=_labels(labels) if labels is not None else None, text=text, max_length=max_length,
                        protected_attributes=protected), None
    except ValidationError as exc:
        raise UsageError(_flag_error(exc)) from None


def _api_command(model_dir: Path, policy) -> list[str]:
    return ["audit.run", str(model_dir), "--policy", str(policy)]


def _refuse_with_predictions(data, current, sign, baseline, engine) -> None:
    """`predictions=` (`audit run --predictions LOG`) audits a log of scores (audit/streaming.py): the options
    that feed the scoring pass do not apply."""
    from audit.errors import UsageError

    clash = [name for name, v in (("--data", data), ("--current", current), ("--sign", sign),
                                  ("--baseline", baseline)) if v]
    if clash or engine != "local":
        raise UsageError(f"--predictions audits a log of scores; it does not take {', '.join(clash) or '--engine'}")


# ---------------------------------------------------------------- the notebook summary

_SUMMARY = """\
<div class="audit-summary" style="font-family: system-ui, sans-serif; max-width: 60em">
<p style="margin: 0 0 .4em 0"><strong style="{{ badge(v.status) }}">{{ v.status }}</strong>
 {{ v.headline }} <span style="color: #555">· {{ v.detail }}</span></p>
<p style="margin: 0 0 .4em 0; color: #555">Model {{ model }} against the policy {{ policy }}{% if run_id %}
 · run <code>{{ run_id }}</code>{% endif %}</p>
{% if v.blocking %}<ul style="margin: 0 0 .4em 1.2em; padding: 0">
{% for s in v.blocking %}<li>{{ s }}</li>
{% endfor %}</ul>
{% endif %}{% if findings %}<table style="border-collapse: collapse; font-size: 90%">
<thead><tr><th style="text-align: left">Status</th><th style="text-align: left">Check</th>
<th style="text-align: left">Observed</th><th style="text-align: left">Threshold</th></tr></thead>
<tbody>
{% for f in findings %}<tr><td><span style="{{ badge(f.status) }}">{{ f.status }}</span></td>
<td>{{ f.title }} <code>{{ f.check_id }}</code></td>
<td>{% if f.part %}{{ f.part }}: {% endif %}{{ f.observed }}</td><td>{{ f.threshold }}</td></tr>
{% endfor %}</tbody></table>
{% else %}<p>The policy has no rules, so nothing was judged.</p>
{% endif %}{% if more %}<p style="color: #555">{{ more }} more findings in the report.</p>
{% endif %}<p style="margin: .4em 0 0 0; color: #555">Report: <code>{{ report }}</code></p>
</div>
"""
_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "ERROR": "#cf222e",
            "INCONCLUSIVE": "#8250df", "WAIVED": "#57606a", "SKIPPED": "#57606a"}
MAX_FINDINGS = 30  # rows in the notebook table; the report has them all


def _badge(status: str) -> str:
    return (f"color: #fff; background: {_COLOURS.get(status, '#57606a')}; padding: 0 .4em; border-radius: 3px; "
            "font-size: 90%")


def summary_html(document: dict[str, Any], files: RunFiles | None = None) -> str:
    """The compact notebook summary of a result dict: the verdict and a findings table, from the report's
    view-models (verdict_view, finding_view), autoescaped (every string from the result is hostile)."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    from audit.render.views import STATUSES, finding_view, verdict_view

    findings = [f for f in document.get("findings") or [] if isinstance(f, dict)]
    findings.sort(key=lambda f: STATUSES.index(f["status"]) if f.get("status") in STATUSES else -1)
    confidence = (document.get("policy") or {}).get("confidence")
    views = [finding_view(f, confidence) for f in findings[:MAX_FINDINGS]]
    env = SandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined)
    model, policy = document.get("model") or {}, document.get("policy") or {}
    return env.from_string(_SUMMARY).render(
        v=verdict_view(document), findings=views, more=max(0, len(findings) - MAX_FINDINGS), badge=_badge,
        model=str(model.get("name") or model.get("path") or "n/a"),
        policy=f"{policy.get('name') or 'n/a'} {policy.get('version') or ''}".rstrip(),
        run_id=str((document.get("run") or {}).get("id") or ""),
        report=str(files.report) if files else "report.html")

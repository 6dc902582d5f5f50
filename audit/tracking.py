"""MLflow tracking: `audit run --mlflow [URI]` and `audit train --mlflow [URI]` (pip install 'audit[mlflow]').

One MLflow run per audit, in the experiment $MLFLOW_EXPERIMENT_NAME (default "audit"):
- params: the policy (name, version, sha256, confidence, threshold, ...), the model (name, weights sha256, base
  model and its sha256), the eval data's sha256 and rows, and the run's settings (seed, strict, engine,
  precision, batch size, tool version);
- metrics: every measurement's value and interval bounds (`check_id`, `check_id.ci_low`, `check_id.ci_high`)
  and each part's (`check_id.part`, `check_id.part.ci_low`, ...), names made safe for MLflow;
- tags: the verdict, the exit code, the run id, and each finding's status (`audit.status.check_id`);
- artifacts: the whole run folder, under `audit-run/`.
A training run logs the hyperparameters as params and the loss curve as metric steps (one per epoch).

The client API is used, never mlflow's global "active run", so the API can be called from a notebook that
tracks its own runs. Nothing is chosen for the user: without a URI and without $MLFLOW_TRACKING_URI the run is
refused, and MLflow's telemetry is switched off. A `file:` store (which MLflow 3 puts in maintenance mode and
refuses unless MLFLOW_ALLOW_FILE_STORE is set) is allowed when the user names one.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from audit.errors import OutputError, UsageError

INSTALL_HINT = "pip install 'audit[mlflow]'"
DEFAULT_EXPERIMENT = "audit"
ARTIFACT_DIR = "audit-run"
MAX_KEY = 250  # MLflow's limit on a param, metric or tag key
MAX_PARAM = 6000  # ... on a param value
MAX_TAG = 8000
BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # log_batch's limits per call
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]")  # MLflow allows these on every platform (':' and '/' not on all)
_WORDS = (("<=", "le"), (">=", "ge"), ("≤", "le"), ("≥", "ge"), ("<", "lt"), (">", "gt"), ("=", "eq"),
          (" × ", "_x_"), ("×", "_x_"), ("–", "-"), ("—", "-"), ("/", "_"), (":", "_"))


def _import_mlflow():
    # DO_NOT_TRACK=1 does not switch MLflow's telemetry off (it reads "true" only): say it in MLflow's own words
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no "Creating initial MLflow database tables..."
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise UsageError(f"--mlflow needs MLflow, which is not installed ({exc}): {INSTALL_HINT}") from None
    return MlflowClient


def tracking_uri(uri: str | None) -> str:
    """The tracking URI: the one given, else $MLFLOW_TRACKING_URI; refused when neither is there."""
    uri = (uri or "").strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        raise UsageError("--mlflow: give a tracking URI (e.g. --mlflow sqlite:///mlflow.db or --mlflow "
                         "file:./mlruns) or set MLFLOW_TRACKING_URI; audit does not pick a store for you")
    return uri


def _is_file_store(uri: str) -> bool:
    scheme = uri.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri) else ""
    return scheme in ("", "file") or len(scheme) == 1  # a bare path (a Windows drive letter too)


def _one_line(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= 300 else msg[:297] + "..."


def metric_key(name: str) -> str:
    """`name` made acceptable to MLflow as a key: comparison signs spelled out, other characters '_'."""
    for sign, word in _WORDS:
        name = name.replace(sign, word)
    name = _UNSAFE.sub("_", name).strip()
    if not name or name.startswith(".."):
        name = "_" + name
    return name[:MAX_KEY]


class _Keys:
    """Unique MLflow keys for names that sanitize to the same text: the second gets '_2', and so on."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, name: str) -> str:
        key = metric_key(name)
        n = 2
        while key in self.used:
            suffix = f"_{n}"
            key, n = metric_key(name)[:MAX_KEY - len(suffix)] + suffix, n + 1
        self.used.add(key)
        return key


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def audit_params(doc: dict[str, Any]) -> dict[str, str]:
    """The params of an audit run: what was audited against what, with which settings."""
    policy, model, run = doc.get("policy") or {}, doc.get("model") or {}, doc.get("run") or {}
    scoring, verdict = doc.get("scoring") or {}, doc.get("verdict") or {}
    evals = (doc.get("data") or {}).get("eval") or {}
    weights = next((i for i in doc.get("inputs") or [] if i.get("role") in ("adapter weights", "weights")), {})
    manifest = next((i for i in doc.get("inputs") or [] if i.get("role") == "manifest"), {})
    out = {
        "policy.name": policy.get("name"), "policy.version": policy.get("version"),
        "policy.sha256": policy.get("sha256"), "policy.confidence": policy.get("confidence"),
        "policy.decision_threshold": policy.get("decision_threshold"),
        "policy.min_group_size": policy.get("min_group_size"), "policy.inconclusive": policy.get("inconclusive"),
        "policy.bootstrap_replicates": policy.get("replicates"),
        "model.name": model.get("name"), "model.sha256": weights.get("sha256"),
        "model.manifest_sha256": manifest.get("sha256"), "model.base_model": model.get("base_model"),
        "model.base_model_sha256": model.get("base_model_sha256"), "model.num_parameters": model.get("num_parameters"),
        "model.positive_label": model.get("positive_label"),
        "data.eval.sha256": evals.get("sha256"), "data.eval.rows": evals.get("rows"),
        "data.eval.source": evals.get("source"),
        "settings.seed": run.get("seed"), "settings.strict": verdict.get("strict"),
        "settings.engine": scoring.get("engine"), "settings.precision": scoring.get("precision"),
        "settings.batch_size": scoring.get("batch_size"), "settings.max_length": scoring.get("max_length"),
        "audit.version": (doc.get("tool") or {}).get("version"),
    }
    for name, d in (doc.get("data") or {}).items():
        if name != "eval" and isinstance(d, dict) and d.get("sha256"):
            out[f"data.{name}.sha256"] = d["sha256"]
    return {metric_key(k): str(v)[:MAX_PARAM] for k, v in out.items() if v is not None and v != ""}


def audit_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """Every measurement's value and interval bounds, and each part's: {MLflow key: number}."""
    keys, out = _Keys(), {}
    for cid, m in (doc.get("measurements") or {}).items():
        if not isinstance(m, dict):
            continue
        rows = [(cid, m)] + [(f"{cid}.{p.get('name')}", p) for p in m.get("parts") or [] if isinstance(p, dict)]
        for name, d in rows:
            for suffix in ("", ".ci_low", ".ci_high"):
                value = _finite(d.get(suffix.lstrip(".") or "value"))
                if value is not None:
                    out[keys(name + suffix)] = value
    return out


def audit_tags(doc: dict[str, Any]) -> dict[str, str]:
    verdict, run = doc.get("verdict") or {}, doc.get("run") or {}
    tags = {"audit.kind": "audit", "audit.verdict": verdict.get("status"), "audit.exit_code": verdict.get("exit_code"),
            "audit.run_id": run.get("id"), "audit.policy": (doc.get("policy") or {}).get("name"),
            "audit.blocking_failures": ", ".join(verdict.get("blocking_failures") or []) or None}
    for f in doc.get("findings") or []:
        if isinstance(f, dict) and f.get("check_id"):
            tags[f"audit.status.{f['check_id']}"] = f.get("status")
    return {metric_key(k): str(v)[:MAX_TAG] for k, v in tags.items() if v is not None}


def training_params(manifest) -> dict[str, str]:
    t = dict(manifest.training)
    out: dict[str, Any] = {k: v for k, v in t.items() if k not in ("loss_curve", "peft", "dp") and v is not None}
    for group in ("peft", "dp"):
        for k, v in (t.get(group) or {}).items():
            if isinstance(v, (str, int, float, bool)):
                out[f"{group}.{k}"] = v
            elif isinstance(v, list):
                out[f"{group}.{k}"] = ",".join(map(str, v))
    out["model.name"] = manifest.name
    if manifest.base_model:
        out["base_model"], out["base_model.sha256"] = manifest.base_model.name, manifest.base_model.sha256
    if manifest.data:
        s = manifest.data.split
        out.update({"data.sha256": manifest.data.source.sha256, "data.rows": manifest.data.source.rows,
                    "split.train_rows": s.train_rows, "split.eval_rows": s.eval_rows,
                    "split.eval_fraction": s.eval_fraction, "split.seed": s.seed})
    out.update({"labels": ",".join(manifest.labels), "positive_label": manifest.positive_label,
                "max_length": manifest.max_length})
    return {metric_key(k): str(v)[:MAX_PARAM] for k, v in out.items()}


class MlflowTracker:
    """A tracking store opened before the audit starts (a missing mlflow or a bad URI fails before the model
    loads), that then logs one run."""

    def __init__(self, client, uri: str, experiment_id: str) -> None:
        self.client, self.uri, self.experiment_id = client, uri, experiment_id

    @classmethod
    def open(cls, uri: str | None = None, experiment: str | None = None) -> MlflowTracker:
        client_cls = _import_mlflow()
        uri = tracking_uri(uri)
        if _is_file_store(uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the user named a file store: use it
        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        try:
            client = client_cls(tracking_uri=uri)
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
        except Exception as exc:  # MlflowException and whatever the store's driver raises
            raise UsageError(f"--mlflow {uri}: cannot open the tracking store: {_one_line(exc)}") from None
        return cls(client, uri, experiment_id)

    def _log(self, run_name: str, params: dict[str, str], metrics: dict[str, float], tags: dict[str, str],
             steps: list[tuple[str, float, int]] = (), artifacts: list[tuple[Path, str | None]] = ()) -> str:
        import time

        from mlflow.entities import Metric, Param, RunTag

        run_id = None
        try:
            run = self.client.create_run(self.experiment_id, run_name=run_name[:250])
            run_id = run.info.run_id
            now = int(time.time() * 1000)
            items = ([Metric(k, v, now, 0) for k, v in metrics.items()]
                     + [Metric(k, v, now, step) for k, v, step in steps])
            for i in range(0, len(items), BATCH["metrics"]):
                self.client.log_batch(run_id, metrics=items[i:i + BATCH["metrics"]])
            ps = [Param(k, v) for k, v in params.items()]
            for i in range(0, len(ps), BATCH["params"]):
                self.client.log_batch(run_id, params=ps[i:i + BATCH["params"]])
            ts = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, len(ts), BATCH["tags"]):
                self.client.log_batch(run_id, tags=ts[i:i + BATCH["tags"]])
            for path, under in artifacts:
                if Path(path).is_dir():
                    self.client.log_artifacts(run_id, str(path), under)
                else:
                    self.client.log_artifact(run_id, str(path), under)
            self.client.set_terminated(run_id, "FINISHED")
        except Exception as exc:
            if run_id is not None:
                try:
                    self.client.set_terminated(run_id, "FAILED")
                except Exception:
                    pass  # the first error is the one to report
            raise OutputError(f"--mlflow {self.uri}: could not log the run ({_one_line(exc)})") from None
        return run_id

    def log_audit(self, result) -> str:
        """Log an `AuditResult` (audit/api.py); returns the MLflow run id and records it on the result."""
        doc = result.document
        name = f"{(doc.get('model') or {}).get('name') or 'model'} {result.run_id}".strip()
        try:
            run_id = self._log(name, audit_params(doc), audit_metrics(doc), audit_tags(doc),
                               artifacts=[(result.files.folder, ARTIFACT_DIR)])
        except OutputError as exc:
            raise OutputError(f"{exc.message}; the run folder {result.files.folder} was written (verdict "
                              f"{result.verdict.value})") from None
        result.mlflow_run_id = run_id
        return run_id

    def log_training(self, manifest, model_dir: Path) -> str:
        """Log `audit train`: hyperparameters as params, each epoch's train and held-out loss as metric steps."""
        steps = []
        for point in manifest.training.get("loss_curve") or []:
            for key in ("train_loss", "eval_loss", "epoch_seconds"):
                value = _finite(point.get(key))
                if value is not None:
                    steps.append((key, value, int(point.get("epoch", len(steps)))))
        dp = manifest.training.get("dp") or {}
        final = {"dp.epsilon": _finite(dp.get("epsilon"))} if dp else {}
        manifest_file = Path(model_dir) / "audit-model.yaml"
        return self._log(f"train {manifest.name}", training_params(manifest),
                         {k: v for k, v in final.items() if v is not None},
                         {"audit.kind": "train", "audit.model": manifest.name[:MAX_TAG]}, steps=steps,
                         artifacts=[(manifest_file, None)] if manifest_file.is_file() else [])

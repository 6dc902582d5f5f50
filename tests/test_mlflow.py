"""MLflow tracking (audit/tracking.py), against a real local tracking store read back with MlflowClient:
`audit run --mlflow URI` logs one run (params, every measurement and its bounds, part metrics, tags, the run
folder as artifacts); `audit train --mlflow` logs the loss curve; the API's `mlflow=`; a missing mlflow or a
missing URI is one line and exit 2 before the model loads; nothing reaches the network."""

import hashlib
import json
import socket
import sys

import pytest
from click.testing import CliRunner

from audit.cli import cli

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'audit[mlflow]')")
from mlflow.tracking import MlflowClient  # noqa: E402

POLICY = """\
policy: tracked
version: "2.1"
min_group_size: 5
checks:
  performance.roc_auc: {min: 0.6, basis: point}
  performance.accuracy: {min: 0.5, severity: warn}
  fairness.selection_rate_ratio: {min: 0.5, attributes: [sex, age], intersections: ["sex×age"], severity: warn}
budget: {bootstrap: 100, seed: 0}
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A file store in tmp_path, named explicitly (also as MLFLOW_TRACKING_URI), and a network that refuses."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    real_connect = socket.socket.connect

    def no_network(sock, address):
        if sock.family == socket.AF_UNIX:
            return real_connect(sock, address)
        raise AssertionError(f"the MLflow logging tried to reach the network: {address}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return uri


def only_run(uri):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("audit")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_run_logs_params_metrics_tags_and_artifacts(tiny_model, tmp_path, store):
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--out", str(out), "--no-progress",
                                   "--mlflow", store], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    client, run = only_run(store)
    assert res.output.splitlines()[-1] == f"mlflow: run {run.info.run_id}"
    assert run.info.status == "FINISHED"
    doc = json.loads((out / "result.json").read_text())
    p = run.data.params
    assert (p["policy.name"], p["policy.version"]) == ("tracked", "2.1")
    assert p["policy.sha256"] == hashlib.sha256(pol.read_bytes()).hexdigest()
    assert p["model.sha256"] == hashlib.sha256((tiny_model / "model.safetensors").read_bytes()).hexdigest()
    assert p["data.eval.sha256"] == doc["data"]["eval"]["sha256"] and p["data.eval.rows"] == "120"
    assert (p["settings.seed"], p["settings.strict"], p["settings.engine"]) == ("0", "False", "local")
    assert p["policy.bootstrap_replicates"] == "100" and p["policy.confidence"] == "0.95"

    metrics = run.data.metrics
    expected = {}
    for cid, m in doc["measurements"].items():
        for key in ("value", "ci_low", "ci_high"):
            if m[key] is not None:
                expected[cid if key == "value" else f"{cid}.{key}"] = m[key]
        for part in m["parts"]:
            name = part["name"].replace(" × ", "_x_").replace("×", "_x_")  # a part per attribute, intersection
            for key in ("value", "ci_low", "ci_high"):
                if part[key] is not None:
                    expected[f"{cid}.{name}" if key == "value" else f"{cid}.{name}.{key}"] = part[key]
    assert metrics == pytest.approx(expected, abs=0)
    auc = [metrics[f"performance.roc_auc{s}"] for s in (".ci_low", "", ".ci_high")]
    assert auc == sorted(auc) and auc[0] < auc[2]
    assert set(expected) >= {"performance.roc_auc", "performance.accuracy.ci_high", "fairness.selection_rate_ratio"}

    tags = run.data.tags
    assert tags["audit.verdict"] == doc["verdict"]["status"] == "PASS" and tags["audit.exit_code"] == "0"
    assert tags["audit.run_id"] == doc["run"]["id"]
    assert {k.removeprefix("audit.status."): v for k, v in tags.items() if k.startswith("audit.status.")} == \
           {f["check_id"]: f["status"] for f in doc["findings"]}

    logged = {a.path.removeprefix("audit-run/") for a in client.list_artifacts(run.info.run_id, "audit-run")}
    assert logged == {f.name for f in out.iterdir()}
    back = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="audit-run/result.json",
                                               dst_path=str(tmp_path / "dl"), tracking_uri=store)
    assert open(back, "rb").read() == (out / "result.json").read_bytes()


def test_the_api_logs_to_the_uri_it_is_given(tiny_model, tmp_path, store, policy_file, monkeypatch):
    import audit

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    other = (tmp_path / "other-store").as_uri()
    r = audit.run(tiny_model, policy=policy_file(POLICY), out=tmp_path / "o", mlflow=other)
    client, run = only_run(other)
    assert r.mlflow_run_id == run.info.run_id
    assert run.data.tags["audit.verdict"] == r.verdict.value
    assert run.data.metrics["performance.roc_auc"] == r.measurements["performance.roc_auc"].value
    assert not (tmp_path / "mlruns").exists()  # the store named, and no other


def test_train_logs_the_loss_curve_and_hyperparameters(tiny_base, credit_csv, tmp_path, store):
    out = tmp_path / "m"
    res = CliRunner().invoke(cli, ["train", str(credit_csv), "--out", str(out), "--text-column", "text",
                                   "--label-column", "label", "--positive-label", "good", "--base-model",
                                   str(tiny_base), "--epochs", "3", "--batch-size", "32", "--lr", "0.002",
                                   "--max-length", "32", "--no-progress", "--mlflow"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    client, run = only_run(store)
    assert res.output.splitlines()[-1] == f"mlflow: run {run.info.run_id}"
    import yaml

    curve = yaml.safe_load((out / "audit-model.yaml").read_text())["training"]["loss_curve"]
    assert [c["epoch"] for c in curve] == [1, 2, 3]
    for key in ("train_loss", "eval_loss"):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(c["epoch"], c[key]) for c in curve]
    p = run.data.params
    assert (p["epochs"], p["batch_size"], p["learning_rate"], p["max_length"]) == ("3", "32", "0.002", "32")
    assert p["data.sha256"] == hashlib.sha256(credit_csv.read_bytes()).hexdigest()
    assert p["split.train_rows"] == "280" and run.data.tags["audit.kind"] == "train"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["audit-model.yaml"]


def test_missing_mlflow_is_one_line_and_exit_2_before_the_model_loads(tiny_model, tmp_path, monkeypatch, store):
    from audit.model import ModelBundle

    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    monkeypatch.setattr(ModelBundle, "load", lambda self: pytest.fail("the model was loaded"))
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    for args in (["run", str(tiny_model), "--policy", str(pol), "--out", str(tmp_path / "o"), "--mlflow", store],
                 ["train", "x.csv", "--out", str(tmp_path / "m"), "--text-column", "t", "--label-column", "l",
                  "--mlflow"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --mlflow needs MLflow, which is not installed")
        assert lines[0].endswith("pip install 'audit[mlflow]'")
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()


def test_no_uri_and_no_env_is_refused_before_the_model_loads(tiny_model, tmp_path, monkeypatch, store):
    from audit.model import ModelBundle

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ModelBundle, "load", lambda self: pytest.fail("the model was loaded"))
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    res = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--out", str(tmp_path / "o"),
                                   "--mlflow"])
    assert res.exit_code == 2
    assert res.output == ("error: --mlflow: give a tracking URI (e.g. --mlflow sqlite:///mlflow.db or --mlflow "
                          "file:./mlruns) or set MLFLOW_TRACKING_URI; audit does not pick a store for you\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]  # no mlruns/, no mlflow.db, no run folder


def test_a_store_that_cannot_open_is_exit_2(tiny_model, tmp_path, policy_file):
    res = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(policy_file(POLICY)), "--out",
                                   str(tmp_path / "o"), "--mlflow", "nosuchscheme://x"])
    assert res.exit_code == 2 and res.output.startswith("error: --mlflow nosuchscheme://x: cannot open the tracking "
                                                         "store: ")
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_hostile_names_become_valid_distinct_keys(tmp_path, store):
    from mlflow.utils.validation import _validate_metric_name

    from audit.tracking import MlflowTracker, audit_metrics, metric_key

    names = ["<25", ">=25", "25–40", "a/b", "../up", "", "é", "x:y", "sex × age", "sex×age", "ci_low", "a b", "a\nb",
             "a" * 300, "a" * 300 + "b"]
    doc = {"measurements": {"fairness.x": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                                           "parts": [{"name": n, "value": i / 10} for i, n in enumerate(names)]}}}
    m = audit_metrics(doc)
    assert len(m) == 3 + len(names)  # every part kept, none overwritten
    for key in m:
        _validate_metric_name(key)  # MLflow's own rule
        assert len(key) <= 250
    assert metric_key("fairness.x.<25") == "fairness.x.lt25" and metric_key("fairness.x.>=25") == "fairness.x.ge25"
    assert metric_key("fairness.x.sex × age") == "fairness.x.sex_x_age" and "fairness.x.sex_x_age_2" in m
    tracker = MlflowTracker.open(store)
    run_id = tracker._log("hostile", {}, m, {})
    assert MlflowClient(tracking_uri=store).get_run(run_id).data.metrics == pytest.approx(m)


def test_sqlite_store_when_sqlalchemy_is_there(tiny_model, tmp_path, policy_file, monkeypatch):
    pytest.importorskip("sqlalchemy", reason="a sqlite:/// store needs sqlalchemy and alembic (full mlflow)")
    pytest.importorskip("alembic", reason="a sqlite:/// store needs sqlalchemy and alembic (full mlflow)")
    import audit

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # a database store keeps its artifacts in ./mlruns (MLflow's default root)
    r = audit.run(tiny_model, policy=policy_file(POLICY), out=tmp_path / "o", mlflow=True)
    client, run = only_run(uri)
    assert run.info.run_id == r.mlflow_run_id and run.data.params["policy.name"] == "tracked"
    assert run.data.metrics["performance.roc_auc"] == r.measurements["performance.roc_auc"].value
    assert {a.path for a in client.list_artifacts(run.info.run_id, "audit-run")} >= {"audit-run/result.json",
                                                                                    "audit-run/report.html"}


def test_a_store_that_fails_while_logging_names_the_written_run_folder(tiny_model, tmp_path, store, policy_file,
                                                                       monkeypatch):
    import audit
    from audit.errors import OutputError

    def broken(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(MlflowClient, "log_artifacts", broken)
    with pytest.raises(OutputError, match=r"could not log the run \(disk full\); the run folder .* was written "
                                          r"\(verdict PASS\)"):
        audit.run(tiny_model, policy=policy_file(POLICY), out=tmp_path / "o", mlflow=store)
    assert (tmp_path / "o" / "result.json").is_file()
    _, run = only_run(store)
    assert run.info.status == "FAILED"

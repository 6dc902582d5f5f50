"""The Python API (audit/api.py): `audit.run` returns a typed result, `audit.load` reads it back, both show a
compact escaped HTML summary; the README's example runs as written (paths substituted); `import audit` stays
light; library errors are AuditErrors, never an exit."""

import copy
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from sklearn import metrics as skm

import audit
from audit.errors import DataError, PolicyError, UsageError
from audit.result import Finding, Measurement, Status, Verdict
from tests.conftest import MIN_POLICY

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "result_sample.json"


@pytest.fixture(scope="module")
def api_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    pol = tmp / "p.yaml"
    pol.write_text(MIN_POLICY)
    return audit.run(tiny_model, policy=pol, out=tmp / "out")


def test_import_audit_does_not_import_torch():
    code = "import sys, audit; audit.__version__; print(sorted(m for m in ('torch', 'transformers', 'numpy', " \
           "'pandas', 'audit.api', 'audit.runner') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    assert set(audit.__all__) >= {"run", "load", "AuditResult", "RunFiles", "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        audit.nope  # noqa: B018


def test_run_returns_a_typed_result(api_run):
    r = api_run
    assert isinstance(r, audit.AuditResult)
    assert r.verdict is Verdict.PASS and r.exit_code == 0 and r.passed
    assert [type(f) for f in r.findings] == [Finding, Finding]
    assert {f.check_id: f.status for f in r.findings} == {"performance.roc_auc": Status.PASS,
                                                          "performance.accuracy": Status.PASS}
    assert all(isinstance(m, Measurement) for m in r.measurements.values())
    assert r.finding("performance.roc_auc").blocking
    with pytest.raises(KeyError, match="fairness.nope"):
        r.finding("fairness.nope")
    files = r.files
    for p in (files.report, files.result, files.junit, files.summary, files.model_card, files.evidence,
              files.predictions):
        assert p is not None and p.is_file() and p.parent == files.folder
    assert files.signature is None  # not signed
    assert r.out_dir == files.folder
    doc = json.loads(files.result.read_text())
    assert r.run_id == doc["run"]["id"] and r.document == doc
    assert doc["run"]["command"][:2] == ["audit.run", str(Path(r.document["model"]["path"]))]


def test_measurements_equal_sklearn_on_the_written_predictions(api_run):
    p = pd.read_csv(api_run.files.predictions, dtype={"row_id": str})
    y = (p["true_label"] == "good").astype(int)
    auc = api_run.measurements["performance.roc_auc"]
    assert auc.value == pytest.approx(skm.roc_auc_score(y, p["score"]), abs=1e-12)
    assert auc.ci_low <= auc.value <= auc.ci_high
    acc = api_run.measurements["performance.accuracy"]
    assert acc.value == pytest.approx(skm.accuracy_score(y, p["predicted_label"] == "good"), abs=1e-12)
    assert api_run.finding("performance.roc_auc").value == auc.value


def test_load_reads_the_same_result_back(api_run):
    for where in (api_run.files.folder, api_run.files.result, str(api_run.files.folder)):
        back = audit.load(where)
        assert back.verdict is api_run.verdict and back.exit_code == api_run.exit_code
        assert [f.to_dict() for f in back.findings] == [f.to_dict() for f in api_run.findings]
        assert {k: m.to_dict() for k, m in back.measurements.items()} == \
               {k: m.to_dict() for k, m in api_run.measurements.items()}
        assert back.files == api_run.files and back.run_id == api_run.run_id
    assert back._repr_html_() == api_run._repr_html_()


def test_load_reads_an_older_result_that_lacks_fields(tmp_path):
    doc = json.loads(SAMPLE.read_text())
    for f in doc["findings"]:
        for key in ("observed", "meaning", "refs", "family", "basis"):
            f.pop(key, None)
    (tmp_path / "result.json").write_text(json.dumps(doc))
    r = audit.load(tmp_path)
    assert [f.check_id for f in r.findings] == [f["check_id"] for f in doc["findings"]]
    assert r.findings[0].family == "performance" and r.findings[0].observed is None and r.findings[0].refs == []
    assert r.files.predictions is None and r.files.report == tmp_path / "report.html"


def test_load_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        audit.load(tmp_path)
    (tmp_path / "result.json").write_text('{"verdict": {"status": "MAYBE", "exit_code": 0}, "findings": []}')
    with pytest.raises(DataError, match="does not read as an audit result"):
        audit.load(tmp_path)


def test_failing_and_inconclusive_runs_return_their_exit_code(tiny_model, tmp_path, policy_file):
    fail = policy_file("policy: t\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.999}\n"
                       "budget: {bootstrap: 50, seed: 0}\n")
    r = audit.run(tiny_model, policy=fail, out=tmp_path / "f")
    assert r.verdict is Verdict.FAIL and r.exit_code == 1 and not r.passed
    assert r.finding("performance.roc_auc").status is Status.FAIL
    warn = policy_file("policy: t\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.999, severity: warn}\n"
                       "budget: {bootstrap: 50, seed: 0}\n", "w.yaml")
    assert audit.run(tiny_model, policy=warn, out=tmp_path / "w").exit_code == 0
    strict = audit.run(tiny_model, policy=warn, out=tmp_path / "s", strict=True)
    assert strict.exit_code == 1 and strict.verdict is Verdict.PASS  # the verdict stays; --strict fails the gate


def test_bad_input_raises_an_audit_error_not_an_exit(tiny_model, tmp_path, policy_file):
    bad = policy_file("policy: t\nversion: '1'\nchecks:\n  performance.roc_aux: {min: 0.5}\n")
    with pytest.raises(PolicyError, match="roc_aux"):
        audit.run(tiny_model, policy=bad, out=tmp_path / "x")
    with pytest.raises(UsageError, match="--report-url"):
        audit.run(tiny_model, policy=bad, report_url="ftp://example.org/x")
    with pytest.raises(UsageError, match="--address is for --engine ray"):
        audit.run(tiny_model, policy=policy_file(MIN_POLICY, "ok.yaml"), address="127.0.0.1:1")
    # beside the folder's manifest a keyword replaces only its own key, and the result is validated again
    with pytest.raises(UsageError, match="--positive-label: positive_label 'great' is not one of the labels"):
        audit.run(tiny_model, policy=policy_file(MIN_POLICY, "ok.yaml"), positive_label="great")
    with pytest.raises(UsageError, match="--predictions audits a log of scores; it does not take --data"):
        audit.run(tiny_model, policy=policy_file(MIN_POLICY, "ok.yaml"), predictions=tmp_path / "p.csv",
                  data=tmp_path / "d.csv")
    assert not (tmp_path / "x").exists()


def test_a_model_without_manifest_from_keywords(tiny_model, tmp_path, policy_file, credit_csv):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare, ignore=shutil.ignore_patterns("audit-model.yaml"))
    r = audit.run(bare, policy=policy_file(MIN_POLICY), data=credit_csv, out=tmp_path / "o",
                  label_column="label", positive_label="good", labels=["bad", "good"], text_column="text",
                  max_length=32)
    assert r.document["data"]["eval"]["rows"] == 400 and r.document["model"]["labels"] == ["bad", "good"]


# ---------------------------------------------------------------- the notebook summary


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_repr_html_shows_verdict_and_findings(api_run):
    html = api_run._repr_html_()
    p = _Tags()
    p.feed(html)
    text = " ".join(p.text)
    assert "PASS" in text and "performance.roc_auc" in text and "performance.accuracy" in text
    assert "PASS — 1 of 1 blocking finding passed" in text  # the report's verdict_view headline
    auc = api_run.finding("performance.roc_auc")
    assert f"{auc.value:.3f}" in text and "≥ 0.600 on the point estimate" in text  # the report's finding_view
    assert str(api_run.files.report) in text
    assert p.tags.count("tr") == 1 + len(api_run.findings)
    assert "script" not in p.tags and "style" not in p.tags  # inline styles only: a notebook keeps them


def test_repr_html_escapes_hostile_text():
    doc = json.loads(SAMPLE.read_text())
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&'
    doc["model"]["name"] = evil
    doc["policy"]["name"] = evil
    doc["run"]["id"] = evil
    doc["verdict"]["status"] = "FAIL"
    f = copy.deepcopy(doc["findings"][0])
    f.update(title=evil, check_id=evil, status="FAIL", severity="block", message=evil, part=evil)
    doc["findings"].append(f)
    html = audit.AuditResult.from_document(doc, "/tmp/x")._repr_html_()
    p = _Tags()
    p.feed(html)
    assert set(p.tags) <= {"div", "p", "strong", "span", "code", "ul", "li", "table", "thead", "tbody", "tr", "th",
                           "td"}
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert evil in "".join(p.text)  # shown as text, whole


def test_repr_html_caps_a_long_findings_table():
    from audit.api import MAX_FINDINGS

    doc = json.loads(SAMPLE.read_text())
    doc["findings"] = [dict(doc["findings"][0], check_id=f"performance.c{i}") for i in range(MAX_FINDINGS + 7)]
    html = audit.AuditResult.from_document(doc, ".")._repr_html_()
    assert html.count("<tr>") == 1 + MAX_FINDINGS and "7 more findings in the report." in html


# ---------------------------------------------------------------- the README's example


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's Python API section has one ```python example"
    return blocks[0]


def test_readme_example_runs(tiny_model, credit_csv, tmp_path):
    code = readme_example()
    pol = tmp_path / "policy.yaml"
    pol.write_text(MIN_POLICY)
    subs = {'"model/"': repr(str(tiny_model)), '"policies/release.yaml"': repr(str(pol)),
            '"data/eval.csv"': repr(str(credit_csv)), '"reports/first-audit"': repr(str(tmp_path / "first-audit"))}
    for placeholder, real in subs.items():
        assert placeholder in code, f"the README example no longer says {placeholder}"
        code = code.replace(placeholder, real)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = audit.load(tmp_path / "first-audit")
    lines = out.stdout.splitlines()
    assert lines[0] == f"{r.verdict.value} {r.exit_code}"
    auc = r.measurements["performance.roc_auc"]
    assert f"{auc.value:.3f}" in out.stdout and f"{auc.ci_low:.3f}" in out.stdout

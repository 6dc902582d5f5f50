"""Hostile inputs and faults: every input gets one clear line and exit 2, or a correct run; runs that are
killed or run side by side never lose or corrupt an earlier result. The corpus is under tests/corpus/."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.cli import cli
from audit.errors import DataError, PolicyError
from audit.policy import load_policy
from tests.conftest import MIN_POLICY, make_frame

CORPUS = Path(__file__).parent / "corpus"

POLICY_CORPUS = {
    "alias_bomb.yaml": "alias_bomb.yaml: more than 20,000 values once aliases are expanded; refusing to read it",
    "deep_nesting.yaml": "deep_nesting.yaml: policy is nested too deeply",
    "duplicate_keys.yaml": "duplicate_keys.yaml:5: checks.performance.roc_auc: duplicate key (first given on line 4)",
    "huge_number.yaml": "huge_number.yaml:4: checks.performance.roc_auc.min: expected a finite number, got inf",
    "inf_threshold.yaml": "inf_threshold.yaml:4: checks.performance.roc_auc.min: expected a finite number, got inf",
    "int_key.yaml": "int_key.yaml:3: 1: keys must be text, got 1 (quote it)",
    "nonstring_key.yaml": "nonstring_key.yaml:4: checks: keys must be plain text",
    "tabs.yaml": "tabs.yaml:4: invalid YAML: found character '\\t' that cannot start any token",
    "utf16.yaml": "utf16.yaml: UTF-16 text; save the policy as UTF-8",
}


@pytest.mark.parametrize("name", sorted(POLICY_CORPUS))
def test_policy_corpus(name):
    path = CORPUS / "policies" / name
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{CORPUS / 'policies'}/{POLICY_CORPUS[name]}"


def test_policy_with_bom_loads():
    assert load_policy(CORPUS / "policies" / "bom_ok.yaml").policy == "p"


def test_oversized_policy_is_not_read(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("policy: p\n# " + "x" * 1_100_000 + "\n")
    with pytest.raises(PolicyError, match=r"big.yaml: policy is 1,100,013 bytes; more than 1,000,000 is not a policy"):
        load_policy(p)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers(-10**30, 10**30) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)

known_keys = st.sampled_from(["policy", "version", "checks", "confidence", "inconclusive", "min_group_size", "budget",
                              "waivers", "performance.roc_auc", "min", "max", "basis", "severity", "refs", "bins",
                              "decision_threshold", "max_rows", "bootstrap", "seed", "baseline", "max_drop"])
policy_like = st.recursive(
    yaml_values, lambda children: st.dictionaries(known_keys | st.text(max_size=8), children, max_size=6),
    max_leaves=25)


def _loads_or_refuses(path: Path) -> None:
    try:
        load_policy(path)
    except PolicyError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(str(path)), msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=policy_like)
def test_fuzz_policy_structures(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _loads_or_refuses(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
def test_fuzz_policy_bytes(tmp_path, raw):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(MIN_POLICY.encode()[: len(raw) % 80] + raw)
    _loads_or_refuses(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400))
def test_fuzz_data_bytes(tmp_path, raw):
    from audit.data import make_texts, read_table
    from audit.manifest import TextRecipe

    path = tmp_path / "fuzz.csv"
    path.write_bytes(b"id,text,label\n" + raw)
    try:
        make_texts(read_table(path), TextRecipe(column="text"), path)
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


DATA_CORPUS = {
    "latin1.csv": ":2: not UTF-8 text (byte 20); save the file as UTF-8",
    "utf16.csv": ": UTF-16 text; save the file as UTF-8",
    "ragged.csv": ": cannot parse data file: Error tokenizing data. C error: Expected 3 fields in line 3, saw 4",
}


def _run(model, policy, out, data):
    return CliRunner().invoke(cli, ["run", str(model), "--policy", str(policy), "--out", str(out), "--data", str(data),
                                    "--no-progress"], catch_exceptions=False)


@pytest.mark.parametrize("name", sorted(DATA_CORPUS))
def test_data_corpus_refused(tiny_model, tmp_path, policy_file, name):
    data = CORPUS / "data" / name
    r = _run(tiny_model, policy_file(MIN_POLICY), tmp_path / "out", data)
    assert r.exit_code == 2 and r.output == f"error: {data}{DATA_CORPUS[name]}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["quoted_newlines.csv", "zero_width_rtl.csv", "formula_names.csv"])
def test_data_corpus_runs(tiny_model, tmp_path, policy_file, name):
    """Odd but valid files give a correct run (the AUC needs both classes: each file has one row of each)."""
    r = _run(tiny_model, policy_file(MIN_POLICY.replace("bootstrap: 200", "bootstrap: 0")), tmp_path / "out",
             CORPUS / "data" / name)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "result.json").read_text())
    assert res["data"]["eval"]["rows"] == 2


def test_huge_cell_is_truncated_and_reported(tiny_model, tmp_path, policy_file):
    data = tmp_path / "huge.csv"
    data.write_text("id,text,label\na1," + "late " * 210_000 + ",bad\na2,pays on time,good\n")
    r = _run(tiny_model, policy_file(MIN_POLICY.replace("bootstrap: 200", "bootstrap: 0")), tmp_path / "out", data)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "result.json").read_text())
    assert res["scoring"]["truncated"] == 1
    assert any("1 of 2 texts were longer than the model's window (32 tokens)" in w for w in res["warnings"])


def test_spreadsheet_formulas_are_neutralized(tiny_model, tmp_path, policy_file):
    f = make_frame(40, seed=3)
    f.loc[0, "id"] = "=HYPERLINK(\"http://x\",\"y\")"
    f.loc[1, "id"] = "+1"
    f.loc[2, "id"] = "-2"
    f.loc[3, "id"] = "@SUM(A1)"
    f.loc[4, "id"] = "\tx"
    data = tmp_path / "ids.csv"
    f.to_csv(data, index=False)
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    m = yaml.safe_load((model / "audit-model.yaml").read_text())
    assert m["id_column"] == "id"
    r = _run(model, policy_file(MIN_POLICY), tmp_path / "out", data)
    assert r.exit_code == 0, r.output
    import csv

    rows = list(csv.reader((tmp_path / "out" / "predictions.csv").open()))
    ids = [row[0] for row in rows[1:6]]
    assert sorted(ids) == sorted(["'=HYPERLINK(\"http://x\",\"y\")", "'+1", "'-2", "'@SUM(A1)", "'\tx"])
    for row in rows[1:]:
        assert row[0][:1] not in ("=", "+", "-", "@", "\t", "\r")


def test_output_path_that_cannot_be_written(tiny_model, tmp_path, policy_file):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(policy_file(MIN_POLICY)), "--out",
                                 str(blocker / "out"), "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 2 and r.output.startswith(f"error: cannot write the run folder {blocker / 'out'}")


def _spawn(model, policy, out):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "audit", "run", str(model), "--policy", str(policy), "--out",
                             str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_killed_runs_leave_the_previous_report_untouched(tiny_model, tmp_path, policy_file):
    """Real runs into one folder, killed at seeded random points (anywhere from start-up to publishing): after
    each, the folder holds a whole run the ledger records, the ledger is whole, and no half-written folder is in
    sight; the temporary folders a SIGKILL leaves are gone after the next run."""
    import random

    from audit.ledger import read_ledger
    from audit.publish import TEMP

    pol = policy_file(MIN_POLICY)
    root = tmp_path / "runs"
    out = root / "current"
    def run_here():  # in this process (torch is imported already): quicker than a fresh process
        r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--out", str(out), "--no-progress"])
        assert r.exit_code == 0, r.output

    run_here()
    t0 = time.perf_counter()
    proc = _spawn(tiny_model, pol, tmp_path / "timing" / "run")
    assert proc.wait(120) == 0
    span = time.perf_counter() - t0  # how long one run takes here: the kills fall across all of it
    rng = random.Random(22)
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGKILL):
        before = json.loads((out / "result.json").read_text())["run"]["id"]
        proc = _spawn(tiny_model, pol, out)
        time.sleep(rng.uniform(0.2, 1.1 * span))
        proc.send_signal(sig)
        code = proc.wait(120)
        err = proc.stderr.read().decode()
        # 130: the clean-up ran; -SIGINT/-SIGTERM: the signal came before Python could install its handlers
        assert code in (0, 130, -signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT), (sig, code, err)
        assert code == -signal.SIGINT or "Traceback" not in err, err  # (Python prints one for a very early ^C)
        history = CliRunner().invoke(cli, ["history", str(root)])  # completes a recording a KILL cut short
        assert history.exit_code == 0, history.output
        now = json.loads((out / "result.json").read_text())["run"]["id"]
        entries, problems = read_ledger(root / "ledger.jsonl")
        assert problems == [] and entries[-1]["run_id"] == now  # the run in place is the last one recorded
        assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0
        if code == 130:  # the message says whether the run had been published
            assert ("after the run folder" in err) == (now != before), err
        visible = [p.name for p in root.iterdir() if not p.name.startswith(".")]
        assert sorted(visible) == ["current", "ledger.head", "ledger.jsonl", "ledger.jsonl.lock"]
        if code != -signal.SIGKILL:  # a catchable signal cleans its temporary folder up
            assert not [p.name for p in root.iterdir() if TEMP.match(p.name)]
    run_here()
    assert not [p.name for p in root.iterdir() if TEMP.match(p.name)]  # what the KILLs left is gone
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0


def test_two_runs_into_one_root_at_once(tiny_model, tmp_path, policy_file):
    pol = policy_file(MIN_POLICY)
    procs = [_spawn(tiny_model, pol, tmp_path / "root" / name) for name in ("a", "b")]
    assert [p.wait(180) for p in procs] == [0, 0]
    r = CliRunner().invoke(cli, ["history", str(tmp_path / "root")])
    assert r.exit_code == 0 and len(r.output.splitlines()) == 2, r.output
    for name in ("a", "b"):
        assert CliRunner().invoke(cli, ["verify", str(tmp_path / "root" / name)]).exit_code == 0


# ---------------------------------------------------------------- issue 22: nothing executed


def test_label_names_in_predictions_csv_are_neutralized(tiny_model, tmp_path, policy_file):
    import csv
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    m = yaml.safe_load((model / "audit-model.yaml").read_text())
    names = {"bad": "-2+3", "good": "@SUM(A1)"}
    m.update(labels=[names[x] for x in m["labels"]], positive_label=names[m["positive_label"]])
    (model / "audit-model.yaml").write_text(yaml.safe_dump(m))
    f = make_frame(40, seed=3)
    f["label"] = f["label"].map(names)
    data = tmp_path / "labels.csv"
    f.to_csv(data, index=False)
    r = _run(model, policy_file(MIN_POLICY), tmp_path / "out", data)
    assert r.exit_code == 0, r.output
    rows = list(csv.reader((tmp_path / "out" / "predictions.csv").open()))
    assert rows[0] == ["row_id", "score", "predicted_label", "true_label"]
    predicted = {row[2] for row in rows[1:]}
    assert predicted <= {"'-2+3", "'@SUM(A1)"} and predicted, predicted
    assert {row[3] for row in rows[1:]} == {"'-2+3", "'@SUM(A1)"}


ESCAPES = {
    "mro.html": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals.html": "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "self.html": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch PWNED') }}",
    "open.html": "{{ r.__class__.__init__.__globals__['__builtins__']['open']('PWNED', 'w').write('x') }}",
    "repeat.html": "{{ 'x' * 3000000000 }}",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_user_templates_render_in_a_sandbox(tmp_path, name, monkeypatch):
    """A --templates override that reaches for os, open() or unbounded memory: exit 2 naming the template file
    and line, and no file written."""
    sample = Path(__file__).parent / "fixtures" / "result_sample.json"
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_bytes(sample.read_bytes())
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "base.html").write_text("<html><body>\n" + ESCAPES[name] + "\n{% block content %}{% endblock %}</body></html>")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["report", str(run / "result.json"), "--out", str(tmp_path / "copy"), "--templates",
                                 str(tpl)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and line.startswith(f"error: template {tpl / 'base.html'}:2: refused by the sandbox"), line
    assert not (tmp_path / "PWNED").exists() and not (run / "PWNED").exists()
    assert not (tmp_path / "copy").exists()


HOSTILE_TEMPLATES = {
    "{{ 'x' * 3000000000 }}": "SecurityError: a repetition of 3,000,000,000 characters or items",
    "{{ 'x' * 3e9 }}": "TypeError: can't multiply sequence by non-int of type 'float'",
    "{{ 2 ** 100000000 }}": "SecurityError: a power too large for a template",
    "{{ '%9999999999s' % text }}": "SecurityError: a format string with a width or precision above",
    "{{ '{:>99999999}'.format(text) }}": "SecurityError: a format string with a width or precision above",
    "{{ text|center(10000000000) }}": "SecurityError: the number 10000000000 is above the template limit",
    "{{ text.ljust(10000000000) }}": "SecurityError: the number 10000000000 is above the template limit",
    "{{ ('x' * 1000000)|replace('', 'yyyyyyyy') }}": "SecurityError: a replace whose result would exceed",
    "{{ text.__class__.__mro__ }}": "SecurityError: access to attribute '__class__' of 'str' object is unsafe",
}


@pytest.mark.parametrize("template", sorted(HOSTILE_TEMPLATES))
def test_text_templates_are_bounded(tmp_path, template):
    from audit.data import make_texts
    from audit.manifest import TextRecipe

    frame = make_frame(3)
    started = time.perf_counter()
    with pytest.raises(DataError) as exc:
        make_texts(frame, TextRecipe(template=template), "f.csv")
    assert time.perf_counter() - started < 5
    assert str(exc.value).startswith("f.csv: text template failed on row 0: ")
    assert HOSTILE_TEMPLATES[template] in str(exc.value)


LOOPING_TEMPLATES = {
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}":
        "text: text template line 1: loops ({% for %}) are not allowed in a text template",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}": "text: text template line 1: macros are not allowed",
    "{{ self }}": "text: text template line 1: 'self' is a name jinja2 reserves; it cannot read a column called "
                  "'self' (rename the column)",
}


@pytest.mark.parametrize("template", sorted(LOOPING_TEMPLATES))
def test_manifest_refuses_loops_and_reserved_names(tmp_path, template):
    from audit.errors import ManifestError
    from audit.manifest import load_manifest

    path = tmp_path / "audit-model.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "labels": ["bad", "good"], "positive_label": "good",
                                    "label_column": "label", "text": {"template": template}}))
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    assert str(exc.value).startswith(f"{path}:"), str(exc.value)
    assert LOOPING_TEMPLATES[template] in str(exc.value), str(exc.value)


def test_every_column_name_renders_in_a_template():
    """Columns named like jinja2's globals or a reserved word of the CLI render as their values."""
    import pandas as pd

    from audit.data import make_texts
    from audit.manifest import TextRecipe

    frame = pd.DataFrame({"range": ["r1", "r2"], "loop": ["l1", "l2"], "lipsum": ["x", "y"], "namespace": ["n", "m"],
                          "dict": ["d", "e"], "cycler": ["c", "c"]})
    texts = make_texts(frame, TextRecipe(template="{{ range }} {{ loop }} {{ lipsum }} {{ namespace }} {{ dict }} "
                                                  "{{ cycler }}"), "f.csv")
    assert texts == ["r1 l1 x n d c", "r2 l2 y m e c"]
    # a template over no column makes one text per row (it made none)
    assert make_texts(frame, TextRecipe(template="fixed {{ 1 + 1 }}"), "f.csv") == ["fixed 2", "fixed 2"]


# ---------------------------------------------------------------- issue 22: fuzzing the CLI's numbers and manifests

numbers = (st.integers(min_value=-2**70, max_value=2**70).map(str) | st.floats(allow_nan=True).map(repr)
           | st.sampled_from(["nan", "inf", "-inf", "0", "-0", "1e400", "", "x", "0x10", "1_000"]))
NUMERIC_OPTIONS = {
    ("run", "M", "--policy", "P"): ["--batch-size", "--max-length"],
    ("train", "D", "--out", "O"): ["--epochs", "--batch-size", "--lr", "--max-length", "--eval-fraction", "--seed",
                                   "--lora-r", "--lora-alpha", "--lora-dropout", "--dp-epsilon", "--dp-delta",
                                   "--max-grad-norm"],
    ("stats", "M", "--data", "D", "--out", "O"): ["--epsilon", "--score-bins", "--threshold-bins", "--replicates",
                                                  "--seed", "--batch-size"],
    ("demo",): ["--epochs"],
}
option_calls = st.sampled_from(sorted(NUMERIC_OPTIONS)).flatmap(
    lambda cmd: st.tuples(st.just(cmd), st.sampled_from(NUMERIC_OPTIONS[cmd]), numbers))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=option_calls)
def test_fuzz_numeric_options(tmp_path, monkeypatch, call):
    """Any value of a numeric option: refused at the edge (exit 2, no traceback) or accepted and then stopped by
    the missing files: never an internal error. Nothing is loaded: the paths do not exist."""
    import audit.demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(audit.demo, "run_demo", lambda *a, **k: (_ for _ in ()).throw(DataError("stub demo")))
    cmd, option, value = call
    r = CliRunner().invoke(cli, [*cmd, option, value])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)  # refused, or stopped by a missing path
    assert "internal error" not in r.output and "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


manifest_keys = st.sampled_from(["name", "labels", "positive_label", "label_column", "text", "column", "template",
                                 "id_column", "max_length", "protected_attributes", "bins", "labels", "map", "age",
                                 "data", "source", "split", "eval_fraction", "card", "base_model", "training"])
manifest_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.sampled_from(
    ["{{ x }}", "{% for i in range(9) %}{% endfor %}", "{{ 'a' * 99999999999 }}", "{{ self }}", "{{", ".nan"])
manifest_like = st.recursive(manifest_values, lambda children: st.lists(children, max_size=4)
                             | st.dictionaries(manifest_keys | st.text(max_size=6), children, max_size=6),
                             max_leaves=25)
VALID_MANIFEST = {"name": "m", "labels": ["bad", "good"], "positive_label": "good", "label_column": "label",
                  "text": {"template": "{{ text }}"}, "protected_attributes": {"age": {"column": "age", "bins": [25]}}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patch=st.dictionaries(manifest_keys, manifest_like, max_size=4), whole=st.booleans())
def test_fuzz_manifests(tmp_path, patch, whole):
    """Random YAML structures, alone or over a valid manifest: a ManifestError of one line naming the file, or a
    manifest whose texts render (or are refused as a DataError) on a small frame."""
    from audit.data import make_texts
    from audit.errors import ManifestError
    from audit.manifest import load_manifest

    path = tmp_path / "audit-model.yaml"
    path.write_text(yaml.safe_dump(patch if whole else {**VALID_MANIFEST, **patch}, allow_unicode=True))
    try:
        m = load_manifest(path)
    except ManifestError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path)), str(exc)
        return
    try:
        make_texts(make_frame(3), m.text, "f.csv")
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("f.csv"), str(exc)

"""The CLI edge: fast start, train flags, one-line errors."""

import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from audit.cli import cli, parse_protected
from audit.errors import UsageError


def test_help_imports_no_heavy_library():
    code = ("import sys; from click.testing import CliRunner; from audit.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0; "
            "heavy = [m for m in ('torch', 'transformers', 'pandas', 'numpy', 'sklearn', 'shap', 'evidently', "
            "'fairlearn') if m in sys.modules]; print(heavy); assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_help_lists_commands():
    r = CliRunner().invoke(cli, ["--help"])
    for cmd in ("run", "train", "demo", "policy", "report", "checks"):
        assert cmd in r.output
    assert "Exit codes: 0 PASS, 1 FAIL, 2 could not run, 3 INCONCLUSIVE." in r.output


def test_parse_protected():
    attrs = parse_protected(["age=age_in_years:25,60", "sex=sex"])
    assert attrs["age"].column == "age_in_years" and attrs["age"].bins == [25.0, 60.0]
    assert attrs["age"].group_names() == ["<25", "25–<60", ">=60"]
    assert attrs["sex"].bins is None
    with pytest.raises(UsageError, match="expected NAME=COLUMN"):
        parse_protected(["age"])
    with pytest.raises(UsageError, match="bins must be increasing"):
        parse_protected(["age=age:60,25"])


def _train(args, tmp_path):
    return CliRunner().invoke(cli, ["train", *args, "--no-progress"], catch_exceptions=False)


def test_train_needs_a_text_source(credit_csv, tmp_path):
    r = _train([str(credit_csv), "--out", str(tmp_path / "m"), "--label-column", "label"], tmp_path)
    assert r.exit_code == 2
    assert r.output == ("error: say where the text comes from: --text-column, --template, --template-file or "
                        "--recipe\n")


def test_train_of_many_labels_asks_which_is_favourable(credit_csv, tmp_path, tiny_base):
    """A label column of many values trains a multi-class model only once the favourable label is named; a
    column of one value cannot train a classifier. Both refused before anything is written."""
    r = _train([str(credit_csv), "--out", str(tmp_path / "m2"), "--text-column", "text", "--label-column", "age",
                "--base-model", str(tiny_base)], tmp_path)
    assert r.exit_code == 2 and "give --positive-label" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m2").exists()
    import pandas as pd

    one = tmp_path / "one.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}).to_csv(one, index=False)
    r = _train([str(one), "--out", str(tmp_path / "m3"), "--text-column", "text", "--label-column", "label",
                "--base-model", str(tiny_base)], tmp_path)
    assert r.exit_code == 2 and "has 1 distinct value(s)" in r.output and "needs at least 2" in r.output
    assert not (tmp_path / "m3").exists()


def test_train_template_with_unknown_column(credit_csv, tmp_path, tiny_base):
    r = _train([str(credit_csv), "--out", str(tmp_path / "m"), "--template", "{{ job }} aged {{ agee }}",
                "--label-column", "label", "--base-model", str(tiny_base)], tmp_path)
    assert r.exit_code == 2
    assert r.output == f"error: {credit_csv}: missing template column 'agee' (did you mean 'age'?)\n"


def test_template_is_sandboxed(credit_csv, tmp_path, tiny_base):
    evil = "{{ job.__class__.__mro__[1].__subclasses__() }}"
    r = _train([str(credit_csv), "--out", str(tmp_path / "m"), "--template", evil, "--label-column", "label",
                "--base-model", str(tiny_base)], tmp_path)
    assert r.exit_code == 2 and "text template failed" in r.output


def test_train_with_template_and_protected_flags(credit_csv, tmp_path, tiny_base):
    out = tmp_path / "m"
    r = _train([str(credit_csv), "--out", str(out), "--template", "{{ text }}; job {{ job }}", "--label-column",
                "label", "--positive-label", "good", "--protected", "age=age:25", "--base-model", str(tiny_base),
                "--epochs", "1", "--max-length", "24", "--seed", "3"], tmp_path)
    assert r.exit_code == 0, r.output
    m = yaml.safe_load((out / "audit-model.yaml").read_text())
    assert m["text"] == {"template": "{{ text }}; job {{ job }}"}
    assert m["protected_attributes"]["age"]["bins"] == [25.0]
    assert m["training"]["epochs"] == 1 and m["max_length"] == 24 and m["data"]["split"]["seed"] == 3


def test_train_refuses_existing_nonempty_out(credit_csv, tmp_path, tiny_base):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    r = _train([str(credit_csv), "--out", str(out), "--text-column", "text", "--label-column", "label",
                "--base-model", str(tiny_base)], tmp_path)
    assert r.exit_code == 2 and "output folder exists and is not empty" in r.output
    assert (out / "keep.txt").read_text() == "x"


def test_train_base_model_must_be_local(credit_csv, tmp_path):
    r = _train([str(credit_csv), "--out", str(tmp_path / "m"), "--text-column", "text", "--label-column", "label",
                "--base-model", str(tmp_path / "bert-base-uncased")], tmp_path)
    assert r.exit_code == 2
    assert "base model folder not found or has no config.json (models are never downloaded)" in r.output


def test_policy_validate_errors_exit_2(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: high}\n")
    r = CliRunner().invoke(cli, ["policy", "validate", str(p)])
    assert r.exit_code == 2
    assert r.output == f"error: {p}:4: checks.performance.roc_auc.min: expected a number, got 'high'\n"


def test_checks_lists_registry():
    r = CliRunner().invoke(cli, ["checks"])
    assert r.exit_code == 0 and "performance.roc_auc" in r.output


def test_train_needs_the_positive_label_unless_the_labels_say_it(tmp_path, tiny_base):
    import pandas as pd

    from tests.conftest import make_frame

    frame = make_frame(40)
    frame["deny"] = ["yes" if lab == "bad" else "no" for lab in frame["label"]]
    data = tmp_path / "deny.csv"
    frame.to_csv(data, index=False)
    r = _train([str(data), "--out", str(tmp_path / "m"), "--text-column", "text", "--label-column", "deny",
                "--base-model", str(tiny_base)], tmp_path)
    assert r.exit_code == 2
    assert r.output == (f"error: {data}: give --positive-label (or positive_label in the recipe): label column "
                        "'deny' has the values 'no', 'yes', and which one is the favourable outcome cannot be told "
                        "from the names (only 0/1 and false/true are taken as given)\n")
    assert not (tmp_path / "m").exists()
    assert pd.read_csv(data)["deny"].nunique() == 2


def test_obvious_positive_labels():
    from audit.train import obvious_positive

    assert obvious_positive(["0", "1"]) == "1"
    assert obvious_positive(["False", "True"]) == "True" and obvious_positive(["false", "true"]) == "true"
    for pair in (["no", "yes"], ["bad", "good"], ["0", "2"], ["1", "true"], ["N", "Y"]):
        assert obvious_positive(pair) is None, pair

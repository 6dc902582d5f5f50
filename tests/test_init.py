"""Bring your own model: `audit init` writes audit-model.yaml for a folder `audit train` did not make, and what a
new user hit auditing such a folder (the first error's flags, protected attributes on `audit run`, a "did you mean"
that pointed at the wrong column, one flag that discarded the whole manifest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from audit.cli import cli
from tests.conftest import MIN_POLICY, make_frame

POLICY = MIN_POLICY.replace("checks:\n", "checks:\n  fairness.selection_rate_ratio: {min: 0.0, attributes: [sex]}\n")


def invoke(args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kw)


def one_line(result) -> str:
    lines = [s for s in result.output.splitlines() if s.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture
def byom(tiny_base, tmp_path) -> Path:
    """A folder `audit train` did not make: the tiny random BERT with id2label bad, good, and no manifest."""
    dst = tmp_path / "byom"
    shutil.copytree(tiny_base, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(id2label={"0": "bad", "1": "good"}, label2id={"bad": 0, "good": 1})
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("init-data") / "eval.csv"
    make_frame(80, seed=5).to_csv(path, index=False)
    return path


def test_without_a_terminal_every_missing_answer_is_one_line(byom, small_csv):
    """No flags, stdin not a terminal: exit 2, one line naming every flag to give, with the guesses to confirm;
    the favourable label is not guessed; nothing is written."""
    r = invoke(["init", byom, "--data", small_csv])
    assert one_line(r) == (
        "error: stdin is not a terminal, so nothing can be asked or confirmed: give "
        "--text-column text (guessed: the one column of free text); "
        "--label-column label (guessed: its values are the model's labels); "
        "--positive-label (one of: bad, good; which label is favourable is never guessed); "
        "--eval-split whole|FILE|none")
    assert not (byom / "audit-model.yaml").exists()


def test_flags_write_a_manifest_that_audit_run_reads(byom, small_csv, tmp_path):
    """All flags: the manifest takes labels and their order from id2label, records the eval file with its sha256,
    and `audit run` without --data audits exactly those rows, with the protected attributes given."""
    from audit.data import sha256_file
    from audit.manifest import load_manifest

    r = invoke(["init", byom, "--data", small_csv, "--text-column", "text", "--label-column", "label",
                "--positive-label", "good", "--protected", "sex", "--protected", "age=age:25",
                "--eval-split", "whole", "--id-column", "id"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith(f"wrote {byom / 'audit-model.yaml'}: labels bad, good (favourable: "
                                               "good), text from column 'text', labels from column 'label'")
    m = load_manifest(byom / "audit-model.yaml")
    assert m.labels == ["bad", "good"] and m.positive_label == "good" and m.id_column == "id"
    assert m.protected_attributes["age"].bins == [25.0] and m.protected_attributes["sex"].column == "sex"
    assert m.eval_data.source.sha256 == sha256_file(small_csv) and m.eval_data.source.rows == 80
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    out = tmp_path / "run"
    r = invoke(["run", byom, "--policy", pol, "--out", out, "--no-progress"])
    assert r.exit_code in (0, 1, 3), r.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["measurements"]["performance.roc_auc"]["n"] == 80
    assert set(doc["model"]["protected_attributes"]) == {"sex", "age"}
    recorded = doc["model"]["eval_data"]  # result.json says which file the manifest named as eval data
    assert recorded["rows"] == "whole" and recorded["source"]["sha256"] == sha256_file(small_csv)
    assert recorded["source"]["rows"] == 80
    groups = doc["measurements"]["fairness.selection_rate_ratio"]["details"]["attributes"][0]["groups"]
    frame = make_frame(80, seed=5)
    assert {g["group"]: g["count"] for g in groups} == frame["sex"].value_counts().to_dict()  # a hand count
    # the recorded file changed: refused, not silently audited
    small = tmp_path / "copy.csv"
    shutil.copy(small_csv, small)
    m2 = m.model_copy(deep=True)
    m2.eval_data.source.path = str(small)
    (byom / "audit-model.yaml").write_text(m2.to_yaml())
    small.write_text(small.read_text() + "app-9999,applicant pays on time,stable job,30,male,good\n")
    line = one_line(invoke(["run", byom, "--policy", pol, "--out", tmp_path / "run2", "--no-progress"]))
    assert line.startswith(f"error: {small}: eval data file changed since 'audit init' recorded it")


def test_never_overwrites_without_force(byom, small_csv):
    args = ["init", byom, "--data", small_csv, "--text-column", "text", "--label-column", "label",
            "--eval-split", "none"]
    assert invoke([*args, "--positive-label", "good"]).exit_code == 0
    before = (byom / "audit-model.yaml").read_text()
    assert one_line(invoke([*args, "--positive-label", "bad"])) == (
        f"error: {byom / 'audit-model.yaml'}: already exists; give --force to overwrite it")
    assert (byom / "audit-model.yaml").read_text() == before
    assert invoke([*args, "--positive-label", "bad", "--force"]).exit_code == 0
    assert yaml.safe_load((byom / "audit-model.yaml").read_text())["positive_label"] == "bad"
    assert "eval_data" not in yaml.safe_load((byom / "audit-model.yaml").read_text())


def test_placeholder_id2label_needs_labels_and_a_contradiction_is_refused(tiny_base, byom, small_csv, tmp_path):
    """A config whose id2label is LABEL_0, LABEL_1 names nothing: --labels is asked for. Labels that contradict a
    real id2label are refused (every score would be read backwards)."""
    bare = tmp_path / "bare"
    shutil.copytree(tiny_base, bare)
    base = ["--data", small_csv, "--text-column", "text", "--label-column", "label", "--positive-label", "good",
            "--eval-split", "none"]
    assert one_line(invoke(["init", bare, *base])) == (
        "error: stdin is not a terminal, so nothing can be asked or confirmed: give --labels L0,L1,… (in the "
        "model's output order: config.json's id2label names none)")
    assert invoke(["init", bare, *base, "--labels", "bad,good"]).exit_code == 0
    line = one_line(invoke(["init", byom, *base, "--labels", "good,bad"]))
    assert line.startswith(f"error: {byom / 'config.json'}: id2label names the model's outputs 0=bad, 1=good")
    assert one_line(invoke(["init", byom, *base[:-1], "nowhere.csv"])) == (
        "error: --eval-split: nowhere.csv: eval data file not found (give whole, none or a file)")
    assert one_line(invoke(["init", byom, *base[:3], "txt", *base[4:]])).startswith(
        f"error: {small_csv}: missing text column 'txt' (did you mean 'text'?)")
    assert one_line(invoke(["init", byom, *base, "--protected", "age=age:old"])) == (
        "error: --protected 'age=age:old': bin edges must be numbers, got 'old'")


def test_a_terminal_confirms_the_guesses(byom, small_csv, monkeypatch):
    """On a terminal the guesses are the defaults of the questions (Enter accepts them) and the favourable label is
    asked with no default."""
    monkeypatch.setattr("audit.cli._interactive", lambda: True)
    r = invoke(["init", byom, "--data", small_csv], input="\n\nbad\nsex age=age:25,50\nwhole\n")
    assert r.exit_code == 0, r.output
    assert "Text column (the one column of free text) [text]:" in r.output
    assert "Favourable (positive) label (bad, good):" in r.output
    m = yaml.safe_load((byom / "audit-model.yaml").read_text())
    assert m["text"] == {"column": "text"} and m["label_column"] == "label"
    assert m["positive_label"] == "bad"  # the person's answer, not a guess
    assert m["protected_attributes"]["age"]["bins"] == [25.0, 50.0] and m["eval_data"]["rows"] == "whole"


def test_protected_value_maps_and_bins_parse():
    from audit.manifest import parse_protected

    assert parse_protected("sex") == ("sex", parse_protected("sex=sex")[1])
    name, attr = parse_protected("sex=code:1=male,2=female")
    assert (name, attr.column, attr.map) == ("sex", "code", {"1": "male", "2": "female"})
    name, attr = parse_protected("age_years:25,65")
    assert (name, attr.column, attr.bins, attr.group_names()) == ("age_years", "age_years", [25.0, 65.0],
                                                                  ["<25", "25–<65", ">=65"])
    for bad, why in (("age:65,25", "bins must be increasing edges"), ("x:1=a,2", "mixes bin edges"),
                     ("=col", "expected NAME=COLUMN")):
        with pytest.raises(ValueError, match=why):
            parse_protected(bad)


@pytest.mark.parametrize("name, column, expected", [
    ("text", "Text", 1.0), ("text", "TEXT", 1.0), ("review_text", "reviewText", 1.0),
    ("text", "review_text", 0.9), ("text", "txt", 6 / 7), ("text", "test", 0.75), ("age", "agee", 6 / 7),
    ("label", "id", 0.0)])
def test_name_similarity_against_a_hand_count(name, column, expected):
    """difflib's ratio is 2·matches / total length: 'text'/'txt' 2·3/7, 'text'/'test' 2·3/8 (t, e, t)."""
    from audit.data import name_similarity

    assert name_similarity(name, column) == pytest.approx(expected)


def test_did_you_mean_points_at_the_renamed_text_column(tiny_model, tmp_path):
    """The text column renamed to 'review_text' beside a 0/1 column 'test': difflib's closest name was 'test'
    (ratio 0.75 against 0.53); the column that holds the text is offered, also when no name is alike."""
    pol = tmp_path / "p.yaml"
    pol.write_text(MIN_POLICY)
    df = make_frame(40).rename(columns={"text": "review_text"})
    df.insert(1, "test", ["0", "1"] * 20)
    data = tmp_path / "renamed.csv"
    df.to_csv(data, index=False)
    r = invoke(["run", tiny_model, "--policy", pol, "--data", data, "--out", tmp_path / "o", "--no-progress"])
    assert one_line(r) == f"error: {data}: missing text column 'text' (did you mean 'review_text'?)"
    df.rename(columns={"review_text": "body"}).to_csv(data, index=False)
    r = invoke(["run", tiny_model, "--policy", pol, "--data", data, "--out", tmp_path / "o", "--no-progress"])
    assert one_line(r) == (f"error: {data}: missing text column 'text' (did you mean 'body'? it is the one column "
                           "of free text)")


def test_one_flag_beside_a_manifest_overrides_only_that_key(tiny_model, tmp_path):
    """`--positive-label bad` beside the folder's manifest: the held-out split, the protected attributes and the
    id column stay the manifest's (before, the flag built a whole new manifest and the run stopped asking for
    --labels); `--protected` adds an attribute to the manifest's, by name."""
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    out = tmp_path / "o"
    r = invoke(["run", tiny_model, "--policy", pol, "--positive-label", "bad", "--protected", "job=job",
                "--out", out, "--no-progress"])
    assert r.exit_code in (0, 1, 3), r.output
    doc = json.loads((out / "result.json").read_text())
    model = doc["model"]
    assert model["positive_label"] == "bad" and model["labels"] == ["bad", "good"]
    assert set(model["protected_attributes"]) == {"age", "sex", "job"}
    assert model["protected_attributes"]["age"]["bins"] == [25.0]
    trained = yaml.safe_load((tiny_model / "audit-model.yaml").read_text())
    assert doc["measurements"]["performance.roc_auc"]["n"] == trained["data"]["split"]["eval_rows"]


def test_without_a_manifest_the_first_error_names_every_flag(byom, tmp_path, small_csv):
    pol = tmp_path / "p.yaml"
    pol.write_text(MIN_POLICY)
    r = invoke(["run", byom, "--policy", pol, "--data", small_csv, "--out", tmp_path / "o", "--no-progress"])
    line = one_line(r)
    assert all(flag in line for flag in ("--labels", "--label-column", "--positive-label", "--text-column",
                                         "--template", "audit init"))
    r = invoke(["run", byom, "--policy", pol, "--data", small_csv, "--label-column", "label",
                "--out", tmp_path / "o", "--no-progress"])
    assert one_line(r) == (
        "error: without audit-model.yaml, give --labels, --label-column, --positive-label and --text-column or "
        "--template (missing: --labels, --positive-label, --text-column or --template); or write the manifest "
        "once with 'audit init MODEL_DIR --data FILE'")


def test_the_readme_quick_start_runs_as_written(tiny_base, tmp_path):
    """The README's "Your own model in three commands", run as written (paths, and the policy of the last command,
    substituted) on a folder audit train did not make."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Your own model in three commands", 1)[1].split("\n\n", 2)[2]
    code = re.match(r"((?: {4}.*\n)+)", block + "\n").group(1)
    commands = [shlex.split(c.strip()) for c in code.replace("\\\n", " ").splitlines() if c.strip()]
    assert [c[:2] for c in commands] == [["audit", "init"], ["audit", "policy"], ["audit", "run"]]
    model = tmp_path / "model"
    shutil.copytree(tiny_base, model)
    config = json.loads((model / "config.json").read_text())
    config.update(id2label={"0": "denied", "1": "approved"}, label2id={"denied": 0, "approved": 1})
    (model / "config.json").write_text(json.dumps(config))
    df = make_frame(60, seed=8).rename(columns={"text": "review", "label": "outcome", "sex": "gender",
                                                "age": "age_years"})
    df["outcome"] = df["outcome"].map({"bad": "denied", "good": "approved"})
    data = tmp_path / "eval.csv"
    df.to_csv(data, index=False)
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY)
    swap = {"model/": str(model), "eval.csv": str(data), "fin": str(pol)}
    for argv in commands:
        args = [swap.get(a, a) for a in argv[1:]]
        if args[0] == "run":
            args += ["--out", str(tmp_path / "run"), "--no-progress"]
        r = invoke(args)
        assert r.exit_code in ((0, 1, 3) if args[0] == "run" else (0,)), (argv, r.output)
    doc = json.loads((tmp_path / "run" / "result.json").read_text())
    assert doc["model"]["positive_label"] == "approved"
    assert set(doc["model"]["protected_attributes"]) == {"sex", "age"}
    assert doc["measurements"]["performance.roc_auc"]["n"] == 60

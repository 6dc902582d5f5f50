"""Privacy family: the PII scanner and its validators, redaction everywhere output is written, and the
membership-inference attack (against scikit-learn, and on a tiny model trained briefly or for many epochs)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn import metrics as skm

from audit import pii
from audit.checks import all_checks
from audit.cli import cli
from audit.context import CheckContext, Scored
from tests.conftest import WORDS, make_frame

FIXTURE = Path(__file__).parent / "fixtures" / "pii_labelled.jsonl"


# ---------------------------------------------------------------- validators, checked by hand


def test_luhn_on_hand_checked_numbers():
    # 79927398713 (the textbook example): from the right 3 1 7 8 9 3 7 2 9 9 7, every second doubled
    # (1->2, 8->16->7, 3->6, 2->4, 9->18->9): 3+2+7+7+9+6+7+4+9+9+7 = 70, a multiple of 10.
    assert pii.luhn_valid("79927398713")
    assert not pii.luhn_valid("79927398710")
    # 1234567812345670: undoubled 0+6+4+2+8+6+4+2 = 32, doubled 7 5 3 1 7 5 3 1 -> 5+1+6+2+5+1+6+2 = 28; 60.
    assert pii.luhn_valid("1234567812345670")
    assert not pii.luhn_valid("1234567812345678")  # 68
    assert not pii.luhn_valid("12a4") and not pii.luhn_valid("")


@pytest.mark.parametrize("number,valid", [
    ("4111 1111 1111 1111", True),  # Visa test number
    ("5500-0000-0000-0004", True),  # Mastercard test number
    ("3782 822463 10005", True),  # American Express test number (15 digits)
    ("6011111111111117", True),  # Discover test number
    ("2223003122003222", True),  # Mastercard 2-series
    ("4111111111111112", False),  # last digit changed: fails Luhn (an order number, not a card)
    ("1234567812345670", False),  # passes Luhn, but no card network starts with 1
    ("0000000000000000", False),  # one repeated digit
    ("411111111111", False),  # 12 digits: too short
])
def test_card_validator(number, valid):
    assert pii.card_valid(number) is valid


def test_a_16_digit_order_number_that_fails_luhn_is_not_a_card():
    for text in ("order 4111 1111 1111 1112 shipped", "order 4111111111111112 shipped",
                 "ref 1234-5678-1234-5678 paid"):
        assert "[CARD]" not in pii.redact(text), text
    assert pii.redact("card 4111 1111 1111 1111 expires 2027") == "card [CARD] expires 2027"


def test_iban_mod97_by_hand():
    # GB82 WEST 1234 5698 7654 32: move "GB82" to the end and letters to numbers (W=32 E=14 S=28 T=29 G=16 B=11):
    assert int("3214282912345698765432161182") % 97 == 1
    assert pii.iban_valid("GB82 WEST 1234 5698 7654 32")
    assert pii.iban_valid("DE89370400440532013000")
    assert pii.iban_valid("NO9386011117947")  # the shortest (15)
    assert not pii.iban_valid("GB83 WEST 1234 5698 7654 32")  # check digits changed
    assert not pii.iban_valid("GB82 WEST 1234 5698 7654 3")  # one short of GB's 22
    assert not pii.iban_valid("XX82 WEST 1234 5698 7654 32")  # no such country
    assert not pii.iban_valid("DE89 3704 0044 0532 0130 01")  # last digit changed


@pytest.mark.parametrize("ssn,valid", [
    ("123-45-6789", True), ("219-09-9999", True), ("078-05-1120", True), ("665-01-0001", True),
    ("000-12-3456", False),  # area 000
    ("666-12-3456", False),  # area 666
    ("900-12-3456", False), ("999-99-9999", False),  # area 9xx
    ("123-00-4567", False),  # group 00
    ("123-45-0000", False),  # serial 0000
    ("12-345-6789", False), ("1234567890", False),
])
def test_ssn_rules(ssn, valid):
    assert pii.ssn_valid(ssn) is valid
    if "-" in ssn and len(ssn) == 11:
        assert ("[SSN]" in pii.redact(f"form {ssn} received")) is valid


def test_redaction_tokens_and_context():
    text = ("mail jane.doe@example.com or call +44 20 7946 0958; card 4111-1111-1111-1111, IBAN DE89 3704 0044 "
            "0532 0130 00, SSN 219-09-9999, from 192.168.0.1 and 2001:db8::1, born on 12/05/1985. "
            "Loan of $12,500.00 in 2019, 36 months, order 4111111111111112.")
    assert pii.redact(text) == (
        "mail [EMAIL] or call [PHONE]; card [CARD], IBAN [IBAN], SSN [SSN], from [IP] and [IP], born on [DOB]. "
        "Loan of $12,500.00 in 2019, 36 months, order 4111111111111112.")
    assert pii.redact("born in 1985, paid 1,250,000 on 01-02-2020") == "born in 1985, paid 1,250,000 on 01-02-2020"
    assert pii.redact("version 1.2.3.4 at 10:30:00, host 10.0.0.256") == "version 1.2.3.4 at 10:30:00, host 10.0.0.256"
    assert pii.redact("call +442079460958 or 0044 20 7946 0958") == "call [PHONE] or [PHONE]"
    assert pii.redact("account 12345678, sort code 20-00-00, 1 250 000 DM") == \
        "account 12345678, sort code 20-00-00, 1 250 000 DM"
    t0 = time.perf_counter()
    pii.redact("+" + "1" * 5000 + "a " + "0" + "1 " * 3000 + "x")  # long digit runs: no catastrophic backtracking
    assert time.perf_counter() - t0 < 1.0
    assert pii.redact("x", types=["email"]) == "x"
    assert pii.redact("a@example.com 415-555-2671", types=["phone"]) == "a@example.com [PHONE]"
    with pytest.raises(ValueError, match="unknown PII type 'name'"):
        pii.redact("x", types=["name"])


def test_snippet_never_shows_a_find_and_keeps_context():
    text = "SSN: 219099999 " + "x" * 60 + " reach me at bob@example.org please " + "y" * 60
    f = next(f for f in pii.find(text) if f.kind == "email")
    snip = pii.snippet(text, f, width=20)
    assert "[EMAIL]" in snip and "bob@" not in snip and "219099999" not in snip
    first = pii.find(text)[0]
    assert first.kind == "ssn" and pii.snippet(text, first, width=5).startswith("SSN: [SSN]")


# ---------------------------------------------------------------- the scanner on a labelled fixture


def labelled() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


def precision_recall(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Entity level: a find counts when it overlaps a labelled value of the same type."""
    tp_found = dict.fromkeys(pii.TYPES, 0)
    found = dict.fromkeys(pii.TYPES, 0)
    tp_gold = dict.fromkeys(pii.TYPES, 0)
    gold_n = dict.fromkeys(pii.TYPES, 0)
    for row, finds in zip(rows, pii.find_all([r["text"] for r in rows])):
        gold = []
        for p in row["pii"]:
            a = row["text"].index(p["value"])
            gold.append((p["type"], a, a + len(p["value"])))
        for f in finds:
            found[f.kind] += 1
            tp_found[f.kind] += any(t == f.kind and a < f.end and f.start < b for t, a, b in gold)
        for t, a, b in gold:
            gold_n[t] += 1
            tp_gold[t] += any(f.kind == t and a < f.end and f.start < b for f in finds)
    return {t: {"precision": tp_found[t] / found[t] if found[t] else float("nan"),
                "recall": tp_gold[t] / gold_n[t], "labelled": gold_n[t], "found": found[t]} for t in pii.TYPES}


def test_scanner_precision_and_recall_per_type(capsys):
    rows = labelled()
    assert len(rows) >= 200 and sum(not r["pii"] for r in rows) >= 50  # hard negatives included
    scores = precision_recall(rows)
    with capsys.disabled():
        print("\nPII scanner on tests/fixtures/pii_labelled.jsonl (entity level):")
        for t, s in scores.items():
            print(f"  {t:6} labelled {s['labelled']:3}  found {s['found']:3}  precision {s['precision']:.3f}  "
                  f"recall {s['recall']:.3f}")
    for t, s in scores.items():
        assert s["labelled"] >= 20, t
        assert s["precision"] >= 0.95, (t, s)
        assert s["recall"] >= 0.95, (t, s)


def test_gates_never_change_what_is_found():
    """The literal and numpy gates only skip rows: every find of the ungated patterns is still found."""
    rows = [r["text"] for r in labelled()]
    rng = np.random.default_rng(3)
    alphabet = list("0123456789 -./()+@:aAbB#é٣,\n")
    junk = ["".join(rng.choice(alphabet, size=int(rng.integers(5, 60)))) for _ in range(4000)]
    mixed = [rows[i][: int(rng.integers(1, 120))] + " " + rows[j] for i, j in rng.integers(0, len(rows), (1500, 2))]
    for texts in (rows, junk, mixed):
        assert pii.find_all(texts) == pii.find_all(texts, gated=False)


def test_scan_counts_rows_and_redact_many():
    texts = ["a@example.com and b@example.com", "no pii here", "SSN 219-09-9999 and c@example.com", "", "x\x00y"]
    s = pii.scan(texts)
    assert s.n_rows == 5 and s.counts["email"] == 3 and s.rows["email"] == 2 and s.rows["ssn"] == 1
    assert s.rows_any == 2 and s.any_row.tolist() == [True, False, True, False, False]
    assert pii.redact_many(texts) == [pii.redact(t) for t in texts]
    assert pii.scan(["a@example.com 219-09-9999"], types=["ssn"]).counts == {"ssn": 1}


def test_scan_speed_100k_rows(capsys):
    rows = [r["text"] for r in labelled()]
    rng = np.random.default_rng(0)
    base = ("Checking account: 0 <= ... < 200 DM. Savings: unknown. Credit of {amount} DM for 24 months, purpose "
            "car (new). History: existing credits paid back duly till now. Employed 1 <= ... < 4 years. Housing: "
            "own; property: real estate. Applicant: male : single, age 35, foreign worker: yes.")
    texts = [rows[rng.integers(len(rows))] if rng.random() < 0.1 else base.format(amount=rng.integers(250, 20000))
             for _ in range(100_000)]
    t0 = time.perf_counter()
    s = pii.scan(texts)
    seconds = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nPII scan: {len(texts):,} rows ({sum(map(len, texts)) / 1e6:.1f} M characters) in {seconds:.2f} s, "
              f"{s.rows_any:,} rows with PII")
    assert s.rows_any > 5000
    assert seconds < 30  # about 1.5 s on an idle core; the bound only catches a quadratic slip


# ---------------------------------------------------------------- the checks on hand-made contexts


def ctx_with(train_loss, eval_loss, *, train_texts=None, eval_texts=None, replicates=300, seed=0, **kw):
    n_train, n_eval = len(train_loss), len(eval_loss)
    train_texts = train_texts if train_texts is not None else [f"train row {i}" for i in range(n_train)]
    eval_texts = eval_texts if eval_texts is not None else [f"eval row {i}" for i in range(n_eval)]
    scored = Scored("train", None, train_texts, np.zeros(n_train, int), SimpleNamespace(loss=np.asarray(train_loss)))
    return CheckContext(y_true=np.r_[np.ones(n_eval // 2), np.zeros(n_eval - n_eval // 2)].astype(int),
                        score=np.full(n_eval, 0.5), texts=eval_texts, replicates=replicates, seed=seed,
                        loader=lambda name: scored if name == "train" else None,
                        predictions=SimpleNamespace(loss=np.asarray(eval_loss)), **kw)


def run(check_id, ctx, **params):
    spec = all_checks()[check_id]
    return spec.fn(ctx, **{**spec.params, **params})


def test_mia_auc_equals_sklearn_on_the_same_losses():
    rng = np.random.default_rng(1)
    members = np.round(rng.gamma(2.0, 0.2, 400), 2)  # rounded: ties between members and non-members
    non = np.round(rng.gamma(2.0, 0.3, 400), 2)
    ctx = ctx_with(members, non)
    m = run("privacy.membership_inference_auc", ctx)
    y = np.r_[np.ones(400), np.zeros(400)]
    attack = -np.r_[members, non]  # lower loss = member
    assert m.value == pytest.approx(skm.roc_auc_score(y, attack), abs=1e-12)
    assert m.ci_low < m.value < m.ci_high and m.n == 400 and m.inconclusive is None
    fpr, tpr, _ = skm.roc_curve(y, attack, drop_intermediate=False)
    d = m.details
    assert d["advantage"]["value"] == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    for row in d["tpr_at_fpr"]:
        assert row["value"] == pytest.approx(tpr[fpr <= row["fpr"] + 1e-12].max(), abs=1e-12)
    t = run("privacy.mia_tpr_at_1pct_fpr", ctx)
    assert t.value == pytest.approx(tpr[fpr <= 0.01 + 1e-12].max(), abs=1e-12) and t.inconclusive is None
    assert d["members"] == d["non_members"] == 400 and d["mean_loss_members"] < d["mean_loss_non_members"]
    again = run("privacy.membership_inference_auc", ctx_with(members, non))
    assert json.dumps(again.to_dict(), allow_nan=False) == json.dumps(m.to_dict(), allow_nan=False)


def test_mia_equal_sizes_and_duplicates_left_out():
    rng = np.random.default_rng(2)
    train_texts = [f"t{i}" for i in range(300)]
    eval_texts = [f"e{i}" for i in range(100)]
    eval_texts[:10] = train_texts[:10]  # the same inputs on both sides
    m = run("privacy.membership_inference_auc",
            ctx_with(rng.random(300), rng.random(100), train_texts=train_texts, eval_texts=eval_texts))
    d = m.details
    assert d["non_members_dropped"] == d["members_dropped"] == 10  # left out of both sides
    assert d["members"] == d["non_members"] == 90 and m.n == 90
    assert 0.3 < m.value < 0.7  # same distribution: near chance
    t = run("privacy.mia_tpr_at_1pct_fpr",
            ctx_with(rng.random(300), rng.random(100), train_texts=train_texts, eval_texts=eval_texts))
    assert t.inconclusive.startswith("only 90 non-members")


def test_no_training_data_is_inconclusive_with_the_reason():
    ctx = CheckContext(y_true=np.array([0, 1, 1]), score=np.array([0.2, 0.7, 0.9]), texts=["a", "b", "c"])
    for cid in ("privacy.membership_inference_auc", "privacy.mia_tpr_at_1pct_fpr", "privacy.pii_in_training_text"):
        m = run(cid, ctx)
        assert m.value is None and m.inconclusive == "no training data was given to the checks", cid
    few = run("privacy.membership_inference_auc", ctx_with(np.ones(5), np.ones(50)))
    assert few.inconclusive.startswith("too few rows for the attack: 5 training rows and 50 eval rows")


def test_pii_rate_measures_eval_and_train_without_keeping_the_data():
    train_texts = ["mail a@example.com", "nothing", "SSN 219-09-9999", "ok"]
    eval_texts = ["call +44 20 7946 0958 now", "fine", "fine too", "card 4111 1111 1111 1111"]
    ctx = ctx_with(np.ones(4), np.ones(4), train_texts=train_texts, eval_texts=eval_texts, replicates=200)
    ev = run("privacy.pii_rate", ctx)
    assert ev.value == 0.5 and ev.ci_low <= 0.5 <= ev.ci_high and ev.n == 4
    by = {r["type"]: r for r in ev.details["by_type"]}
    assert by["phone"]["rows"] == 1 and by["card"]["finds"] == 1 and by["email"]["rows"] == 0
    assert [e["text"] for e in ev.details["examples"]] == ["call [PHONE] now", "card [CARD]"]
    tr = run("privacy.pii_in_training_text", ctx)
    assert tr.value == 0.5 and tr.details["dataset"] == "train"
    assert run("privacy.pii_rate", ctx, dataset="train").value == 0.5
    only = run("privacy.pii_rate", ctx, types=["card"], examples=0)
    assert only.value == 0.25 and only.details["examples"] == [] and only.details["types"] == ["card"]
    dumped = json.dumps([m.to_dict() for m in (ev, tr, only)])
    for value in ("a@example.com", "219-09-9999", "7946 0958", "4111 1111"):
        assert value not in dumped
    with pytest.raises(ValueError, match="dataset must be 'eval' or 'train'"):
        run("privacy.pii_rate", ctx, dataset="test")


def _judge(m, rule_yaml: str, tmp_path):
    """The finding of a measurement under a policy written here: policy -> judge."""
    import datetime as dt

    from audit.judge import judge_one
    from audit.policy import load_policy

    p = tmp_path / "p.yaml"
    p.write_text(f"policy: t\nversion: '1'\nchecks:\n  {m.check_id}: {rule_yaml}\n")
    policy = load_policy(p)
    return judge_one(all_checks()[m.check_id], policy.checks[m.check_id], m, policy, dt.date(2026, 1, 1))


def test_pii_reports_the_rows_that_could_hold_each_type():
    texts = ["no digits here", "write to home@", "tel 12", "order 1234567 shipped", "born in spring",
             "mail a@b.co", "v 1.2.3 build", "plain"]
    ctx = ctx_with(np.ones(2), np.ones(len(texts)), eval_texts=texts, replicates=50)
    m = run("privacy.pii_rate", ctx)
    by = {r["type"]: r for r in m.details["by_type"]}
    # hand counts with plain Python, not the scanner's gates
    seven = [bool(re.search(r"\d{7}", t)) for t in texts]
    assert by["email"]["could_hold"] == sum("@" in t for t in texts) == 2
    assert by["card"]["could_hold"] == sum(seven) == 1
    assert by["phone"]["could_hold"] == sum(a or "tel" in t for a, t in zip(seven, texts)) == 2
    assert by["dob"]["could_hold"] == sum("born" in t for t in texts) == 1
    assert by["ip"]["could_hold"] == 1 and by["iban"]["could_hold"] == 0 and by["ssn"]["could_hold"] == 0
    assert by["email"]["rows"] == 1 and by["email"]["could_hold_means"] == "rows with an @"
    assert m.details["rows_could_hold_any"] == 6 and m.n == len(texts) == m.details["rows"]
    assert all_checks()["privacy.pii_rate"].evidence == "rows scanned"
    assert all_checks()["privacy.pii_in_training_text"].evidence == "training rows scanned"
    # every row with a find is a row that could hold it
    s = pii.scan(texts)
    assert not (s.flags & ~s.candidates).any()


def test_pii_on_text_that_cannot_hold_any_says_so_and_min_evidence_decides(tmp_path):
    texts = ["no digits here", "none at all", "plain words only", "nothing to find"]
    ctx = ctx_with(np.ones(2), np.ones(len(texts)), eval_texts=texts, replicates=50)
    m = run("privacy.pii_rate", ctx)
    assert m.value == 0.0 and m.n == 4 and m.details["rows_could_hold_any"] == 0
    assert {r["could_hold"] for r in m.details["by_type"]} == {0}
    f = _judge(m, "{max: 0}", tmp_path)
    assert f.status.value == "PASS" and f.n == 4 and f.evidence == "rows scanned"
    f = _judge(m, "{max: 0, min_evidence: 10}", tmp_path)
    assert f.status.value == "INCONCLUSIVE"
    assert f.reason == "only 4 rows scanned, the policy asks for at least 10 before a pass counts"
    assert "only 4 rows scanned" in f.message
    assert _judge(m, "{max: 0, min_evidence: 4}", tmp_path).status.value == "PASS"
    # the training-set twin counts its own rows
    train = ["a@example.com here", "x", "y"]
    tr = run("privacy.pii_in_training_text", ctx_with(np.ones(3), np.ones(2), train_texts=train))
    assert tr.n == 3 and tr.value == pytest.approx(1 / 3)
    f = _judge(tr, "{max: 0, min_evidence: 2}", tmp_path)
    assert f.status.value == "FAIL" and f.n == 3 and f.evidence == "training rows scanned"
    # PII found in 3 rows is PII in the training text, however few rows were scanned: min_evidence only stops a pass
    f = _judge(tr, "{max: 0, min_evidence: 5}", tmp_path)
    assert f.status.value == "FAIL" and f.n == 3


# ---------------------------------------------------------------- end to end: nothing in the outputs spreads PII


def luhn_complete(body: str) -> str:
    for d in "0123456789":
        if pii.luhn_valid(body + d):
            return body + d
    raise AssertionError


def iban_de(i: int) -> str:
    bban = f"37040044{i:010d}"
    check = 98 - int(bban + "131400") % 97  # D=13 E=14, check digits 00
    compact = f"DE{check:02d}{bban}"
    return " ".join(compact[k: k + 4] for k in range(0, len(compact), 4))


def planted_frame(n: int = 160) -> tuple[pd.DataFrame, list[str]]:
    """make_frame rows with personal data planted in every other row; returns the rows and every planted value."""
    df = make_frame(n, seed=5)
    planted: list[str] = []
    texts = []
    for i, text in enumerate(df["text"]):
        if i % 2:
            values = {"email": f"applicant.{i}@example-bank.com", "phone": f"+44 20 7946 {i:04d}",
                      "card": " ".join(re.findall(".{4}", luhn_complete(f"453914880{i:06d}"))),
                      "iban": iban_de(i), "ssn": f"{100 + i:03d}-{i % 98 + 1:02d}-{1000 + i:04d}"}
            kinds = list(values) if i % 10 == 1 else [list(values)[(i // 2) % 5]]
            extra = " ".join(f"{k} {values[k]}" for k in kinds)
            text = f"{text} contact {extra} thanks"
            planted += [values[k] for k in kinds]
        texts.append(text)
    df["text"] = texts
    assert all(pii.redact(v) != v for v in planted)  # every planted value is one the scanner must catch
    return df, planted


PRIVACY_POLICY = """\
policy: privacy-e2e
version: "1"
checks:
  performance.roc_auc: {min: 0.5, severity: warn}
  privacy.pii_rate: {max: 0.0, severity: warn, refs: ["GDPR Art. 5(1)(c)"]}
  privacy.pii_in_training_text: {max: 0.0, refs: ["GDPR Art. 5(1)(c)"]}
  privacy.membership_inference_auc: {max: 0.60, basis: ci_high, refs: ["GDPR Art. 32"]}
  privacy.mia_tpr_at_1pct_fpr: {max: 0.05, severity: warn}
budget: {bootstrap: 100, seed: 0}
"""


def forms(value: str) -> set[str]:
    """A planted value as written and as its bare digits or characters (a CSV or JSON might drop separators)."""
    out = {value, value.replace(" ", ""), value.replace("-", "")}
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 8:
        out.add(digits)
    return out


def assert_no_planted_value(folder: Path, planted: list[str], also: str = "") -> int:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    needles = set().union(*(forms(v) for v in planted))
    for p in files:
        data = p.read_text(encoding="utf-8", errors="replace")
        leaked = sorted(n for n in needles if n in data)
        assert not leaked, f"{p.relative_to(folder)} holds planted personal data: {leaked[:3]}"
    assert not [n for n in needles if n in also]
    return len(files)


def train_tiny(base: Path, data: Path, out: Path, **kw) -> Path:
    import torch

    from audit.manifest import TextRecipe
    from audit.train import TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many short steps: one thread avoids oversubscription on a busy machine
    try:
        cfg = TrainConfig(text=TextRecipe(column="text"), label_column="label", positive_label="good",
                          id_column="id", base_model=str(base), batch_size=8, max_length=64, seed=0, **kw)
        train(data, out, cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def test_planted_pii_never_reaches_an_output(tiny_model, tiny_base, tmp_path):
    df, planted = planted_frame()
    data = tmp_path / "planted.csv"
    df.to_csv(data, index=False)
    pol = tmp_path / "policy.yaml"
    pol.write_text(PRIVACY_POLICY)
    runs = tmp_path / "runs"  # every output (run folders, ledger) lands here, and nothing else does

    # 1. the tiny model audited on a --data file with personal data planted in the eval text
    a = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(pol), "--out", str(runs / "a"),
                                 "--data", str(data), "--no-progress"], catch_exceptions=False)
    assert a.exit_code == 3, a.output
    r = json.loads((runs / "a" / "result.json").read_text())
    m = r["measurements"]["privacy.pii_rate"]
    assert m["value"] == pytest.approx(0.5) and m["details"]["rows_with_pii"] == 80
    counts = {t["type"]: t["rows"] for t in m["details"]["by_type"]}
    assert all(counts[t] > 0 for t in ("email", "phone", "card", "iban", "ssn")), counts
    assert r["measurements"]["privacy.pii_in_training_text"]["value"] == 0.0  # credit.csv has none
    html = (runs / "a" / "report.html").read_text()
    assert "Rows with personal data" in html and ("[EMAIL]" in html or "[CARD]" in html or "[IBAN]" in html)

    # 2. a model trained on that data (the personal data is in its training text), audited on its own split
    model = train_tiny(tiny_base, data, tmp_path / "model", epochs=2, learning_rate=2e-3, eval_fraction=0.5)
    b = CliRunner().invoke(cli, ["run", str(model), "--policy", str(pol), "--out", str(runs / "b"), "--no-progress"],
                           catch_exceptions=False)
    assert b.exit_code == 1, b.output  # PII in training text blocks
    r = json.loads((runs / "b" / "result.json").read_text())
    assert r["measurements"]["privacy.pii_in_training_text"]["value"] > 0.3
    assert r["measurements"]["privacy.membership_inference_auc"]["value"] is not None
    assert "privacy.pii_in_training_text" in r["verdict"]["blocking_failures"]

    n = assert_no_planted_value(runs, planted, also=a.output + b.output)
    assert n >= 10  # two run folders (report, result, junit, summary, predictions, evidence …) and the ledger


def test_model_without_training_data_is_inconclusive(tiny_model, credit_csv, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    (model / "audit-model.yaml").unlink()
    pol = tmp_path / "p.yaml"
    pol.write_text(PRIVACY_POLICY)
    result = CliRunner().invoke(cli, [
        "run", str(model), "--policy", str(pol), "--out", str(tmp_path / "out"), "--no-progress", "--data",
        str(credit_csv), "--label-column", "label", "--positive-label", "good", "--labels", "bad,good",
        "--text-column", "text"], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    r = json.loads((tmp_path / "out" / "result.json").read_text())
    f = {f["check_id"]: f for f in r["findings"]}
    for cid in ("privacy.membership_inference_auc", "privacy.pii_in_training_text"):
        assert f[cid]["status"] == "INCONCLUSIVE"
        assert f[cid]["reason"].startswith("no training data: the model's manifest records no training split")
    assert f["privacy.pii_rate"]["status"] == "PASS"
    assert "no training split" in (tmp_path / "out" / "report.html").read_text()


# ---------------------------------------------------------------- the attack measures memorisation


def test_mia_overtrained_model_scores_clearly_higher_than_a_briefly_trained_one(tiny_base, tmp_path, capsys):
    """Random labels on random word strings: nothing to generalise, only to memorise. One short epoch leaves the
    model at chance; 20 epochs at a high rate memorise the training rows, which the attack then sees."""
    from audit.runner import run_audit

    rng = np.random.default_rng(0)
    words = sorted(set(WORDS))
    n = 120
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [" ".join(rng.choice(words, 8)) for _ in range(n)],
                  "label": rng.choice(["good", "bad"], n)}).to_csv(tmp_path / "d.csv", index=False)
    pol = tmp_path / "p.yaml"
    pol.write_text("policy: mia\nversion: '1'\nchecks:\n  privacy.membership_inference_auc: {max: 0.6, basis: ci_high}"
                   "\nbudget: {bootstrap: 200, seed: 0}\n")
    auc = {}
    for name, epochs, lr in (("brief", 1, 1e-4), ("overtrained", 20, 3e-3)):
        model = train_tiny(tiny_base, tmp_path / "d.csv", tmp_path / name, epochs=epochs, learning_rate=lr,
                           eval_fraction=0.5)
        out = run_audit(model, pol, out_dir=tmp_path / f"{name}-out", progress=False)
        auc[name] = out.result["measurements"]["privacy.membership_inference_auc"]
    with capsys.disabled():
        for name, m in auc.items():
            d = m["details"]
            print(f"\nMIA {name}: AUC {m['value']:.3f} (95% CI {m['ci_low']:.3f}-{m['ci_high']:.3f}), mean loss "
                  f"members {d['mean_loss_members']:.3f} vs non-members {d['mean_loss_non_members']:.3f}")
    brief, over = auc["brief"], auc["overtrained"]
    assert brief["details"]["members"] == over["details"]["members"] == 60
    assert abs(brief["value"] - 0.5) < 0.1
    assert over["value"] > brief["value"] + 0.15 and over["ci_low"] > 0.6
    assert over["details"]["mean_loss_members"] < 0.5 * over["details"]["mean_loss_non_members"]


# ---------------------------------------------------------------- the report section, from result.json alone


def test_privacy_section_renders_from_the_result_and_redacts_again():
    from audit.render import render_html

    r = json.loads((Path(__file__).parent / "fixtures" / "result_sample.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(0)
    ctx = ctx_with(rng.gamma(2, 0.2, 150), rng.gamma(2, 0.3, 150),
                   eval_texts=["<script>alert(1)</script> mail x@example.com"] + [f"e{i}" for i in range(149)])
    for cid in ("privacy.pii_rate", "privacy.membership_inference_auc", "privacy.mia_tpr_at_1pct_fpr"):
        r["measurements"][cid] = run(cid, ctx).to_dict()
    # an example written by another tool, not redacted: the view redacts it before it reaches the page
    r["measurements"]["privacy.pii_rate"]["details"]["examples"].append(
        {"row": 7, "types": ["ssn"], "text": "SSN 219-09-9999 here"})
    r["measurements"]["privacy.pii_in_training_text"] = {"check_id": "privacy.pii_in_training_text", "value": None,
                                                        "inconclusive": "no training data was given to the checks"}
    html = render_html(r)
    section = html[html.index('id="family-privacy"'):]
    assert "1 of 150 eval rows (0.7%) holds personal data" in section
    assert "1 of the 150 rows could hold any of them at all" in section  # only the row with an @
    assert "<td>1 (rows with an @)</td>" in section and "<td>0 (rows with a birth word (born, birth, dob))</td>" in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt; mail [EMAIL]" in section and "<script>alert" not in html
    assert "219-09-9999" not in html and "SSN [SSN] here" in section
    assert "no training data was given to the checks" in section
    assert 'id="chart-mia-roc"' in section and "Attack ROC-AUC" in section
    m = r["measurements"]["privacy.membership_inference_auc"]
    assert f"{m['value']:.3f} (95% CI {m['ci_low']:.3f}–{m['ci_high']:.3f})" in section
    # a result without privacy details still renders
    for cid in list(r["measurements"]):
        if cid.startswith("privacy."):
            r["measurements"][cid] = {"check_id": cid, "value": None}
    assert 'id="family-privacy"' in render_html(r)

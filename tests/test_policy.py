"""Policy loading: every bad policy gives one exact line naming file:line and the key."""

import subprocess
import sys

import pytest

from audit.cites import clause_key, parse_ref
from audit.errors import PolicyError
from audit.policy import bundled_policies, load_policy
from tests.conftest import MIN_POLICY

BAD = [
    # (policy text, expected message after "<file>:")
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: high\n",
     "5: checks.performance.roc_auc.min: expected a number, got 'high'"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_aux: {min: 0.7}\n",
     "4: checks.performance.roc_aux: unknown check 'performance.roc_aux' (did you mean 'performance.roc_auc'?)"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {severity: block}\n",
     "4: checks.performance.roc_auc: missing threshold: give min or max"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: 0.9\n    max: 0.5\n",
     "5: checks.performance.roc_auc.min: min (0.9) is above max (0.5)"),
    ("policy: p\nversion: '1'\nconfidance: 0.9\nchecks:\n  performance.roc_auc: {min: 0.7}\n",
     "3: confidance: unknown key 'confidance' (did you mean 'confidence'?)"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7, basis: lower}\n",
     "4: checks.performance.roc_auc.basis: expected one of 'point', 'ci_low' or 'ci_high', got 'lower'"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7, severity: fatal}\n",
     "4: checks.performance.roc_auc.severity: expected one of 'block' or 'warn', got 'fatal'"),
    ("policy: p\nversion: 1.0\nchecks:\n  performance.roc_auc: {min: 0.7}\n",
     '2: version: expected a string, got 1.0 (quote it: "1.0")'),
    ("version: '1'\nchecks:\n  performance.roc_auc: {min: 0.7}\n",
     "1: policy: missing required key"),
    ("policy: p\nversion: '1'\nconfidence: 1.5\nchecks:\n  performance.roc_auc: {min: 0.7}\n",
     "3: confidence: must be < 1, got 1.5"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.ece: {max: 0.1, bins: ten}\n",
     "4: checks.performance.ece.bins: expected a number, got 'ten'"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.ece: {max: 0.1, binz: 5}\n",
     "4: checks.performance.ece.binz: unknown key 'binz' for performance.ece (did you mean 'bins'?)"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7}\n  performance.roc_auc: {min: 0.8}\n",
     "5: checks.performance.roc_auc: duplicate key (first given on line 4)"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: .nan}\n",
     "4: checks.performance.roc_auc.min: expected a number, got NaN"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7}\nwaivers:\n"
     "  - {check: performance.roc_auc, reason: r, approved_by: a, expires: soon}\n",
     "6: waivers[0].expires: expected a date (YYYY-MM-DD), got 'soon'"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7}\nwaivers:\n"
     "  - {check: performance.f1, reason: r, approved_by: a, expires: 2030-01-01}\n",
     "6: waivers[0].check: waives 'performance.f1', which the policy does not check"),
    ("policy: p\nversion: '1'\nchecks: {}\n", "3: checks: the policy lists no checks"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7\n",
     "5: invalid YAML: expected ',' or '}', but got '<stream end>'"),
    ("- a\n- b\n", "1: a policy must be a mapping of keys, got a list"),
    # citations: a bad refs / scope / not_covered item is named at its own line
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: 0.7\n    refs:\n      - SR 11-7\n"
     "      - {clase: '12 CFR 1002.4(a)'}\n",
     "8: checks.performance.roc_auc.refs[1]: unknown key 'clase' (did you mean 'clause'?) "
     "(known: clause, regulation, text, partial)"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: 0.7\n    refs: ['']\n",
     "6: checks.performance.roc_auc.refs[0]: a reference must name its clause, got an empty string"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: 0.7\n    refs: [5]\n",
     "6: checks.performance.roc_auc.refs[0]: expected a string or a mapping with clause, regulation, text and "
     "partial, got 5"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: 0.7\n    refs:\n"
     "      - {text: 'outcomes analysis'}\n",
     "7: checks.performance.roc_auc.refs[0]: clause: missing required key"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: 0.7\n    refs:\n"
     "      - {clause: SR 11-7, partial: maybe}\n",
     "7: checks.performance.roc_auc.refs[0]: partial: expected true or false, got 'maybe'"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7}\nscope:\n  - SR 11-7\n"
     "  - {regulation: GDPR}\n",
     "7: scope[1]: clause: missing required key"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7}\nnot_covered:\n"
     "  - {clause: EU AI Act Art. 14}\n",
     "6: not_covered[0]: reason: missing required key"),
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.7}\nnot_covered:\n  - EU AI Act Art. 14\n",
     "6: not_covered[0]: expected a mapping with clause, regulation, text and reason, got 'EU AI Act Art. 14'"),
    # a clause cannot be both tested in full and not covered (spelled differently: still one clause)
    ("policy: p\nversion: '1'\nchecks:\n  performance.roc_auc:\n    min: 0.7\n"
     "    refs: [{clause: 'EU AI Act Article 15 (3)'}]\nnot_covered:\n"
     "  - clause: EU AI Act Art. 15(3)\n    reason: accuracy levels are not declared\n",
     "8: not_covered[0].clause: 'EU AI Act Art. 15(3)' is listed as not covered, but "
     "checks.performance.roc_auc.refs[0] cites it as tested in full: mark that citation `partial: true`, or drop "
     "it here"),
    ("policy: p\nversion: '1'\nchecks:\n  fairness.counterfactual_flip_rate: {max: 0.02, swaps: genderr}\n",
     "4: checks.fairness.counterfactual_flip_rate: unknown swap list 'genderr' (bundled: age, gender, marital_status, "
     "national_origin, race, religion; or give the path of a .yaml file of pairs)"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[e.split(": ", 1)[1][:40] for _, e in BAD])
def test_bad_policy_exact_message(policy_file, text, expected):
    path = policy_file(text, "fin.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}:{expected}"


def test_missing_and_empty_policy(tmp_path):
    with pytest.raises(PolicyError, match=r"nope.yaml: policy not found$"):
        load_policy(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(PolicyError, match=r"empty.yaml: policy is empty$"):
        load_policy(tmp_path / "empty.yaml")


def test_yaml_cannot_build_objects(policy_file):
    path = policy_file("policy: !!python/object/apply:os.system ['echo hacked']\nversion: '1'\nchecks: {}\n")
    with pytest.raises(PolicyError, match="invalid YAML: could not determine a constructor"):
        load_policy(path)


def test_valid_policy_and_bundled_pack(policy_file):
    p = load_policy(policy_file(MIN_POLICY))
    assert p.checks["performance.roc_auc"].min == 0.6
    assert p.checks["performance.accuracy"].severity == "warn"
    assert p.budget.bootstrap == 200 and len(p.sha256) == 64
    fin = load_policy("fin")
    assert fin.policy == "consumer-credit-release"
    assert all(rule.refs for rule in fin.checks.values()), "every rule in fin.yaml names its clause"


def test_validate_does_not_import_torch(tmp_path):
    code = ("import sys; from audit.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['policy', 'validate', 'fin']); print(r.output); "
            "assert r.exit_code == 0, r.output; assert 'torch' not in sys.modules; "
            "assert 'transformers' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "valid policy 'consumer-credit-release'" in out.stdout


# ---------------------------------------------------------------- citations


def test_string_refs_are_parsed_into_clauses():
    cites = parse_ref("ECOA / Regulation B (12 CFR 1002.4(a), 1002.6(b)): sex may not be a factor")
    assert [(c.clause, c.regulation, c.text) for c in cites] == [
        ("12 CFR 1002.4(a)", "ECOA / Regulation B", "sex may not be a factor"),
        ("12 CFR 1002.6(b)", "ECOA / Regulation B", "sex may not be a factor")]
    assert [(c.clause, c.text) for c in parse_ref("SR 11-7: model validation (outcomes analysis)")] == [
        ("SR 11-7", "model validation (outcomes analysis)")]
    # words without a digit in the parentheses are a gloss, not a clause
    assert [(c.clause, c.text) for c in parse_ref("SR 11-7 (model validation)")] == [("SR 11-7", "model validation")]
    assert [c.clause for c in parse_ref("GLBA Safeguards Rule (16 CFR 314.4)")] == ["16 CFR 314.4"]
    assert [c.clause for c in parse_ref("EEOC Uniform Guidelines, 29 CFR 1607.4(D): four-fifths")] == [
        "EEOC Uniform Guidelines, 29 CFR 1607.4(D)"]
    assert parse_ref("  ") == []
    same = ["EU AI Act Art. 10(2)(f)", "EU AI Act Article 10 (2)(f)", "eu ai act  art 10(2)(f)"]
    assert len({clause_key(c) for c in same}) == 1
    assert clause_key("12 CFR 1002.6(a)") != clause_key("12 CFR 1002.6(b)")


def test_mapping_refs_references_scope_and_not_covered(policy_file):
    p = load_policy(policy_file("""\
policy: p
version: "1"
checks:
  performance.roc_auc:
    min: 0.7
    refs:
      - "SR 11-7: outcomes analysis"
      - {clause: "12 CFR 1002.6(a)", regulation: "ECOA / Regulation B", text: "a screen", partial: true}
    references: ["Someone et al. 2020, A paper"]
scope:
  - {clause: "EU AI Act Art. 14"}
  - "GDPR Art. 32"
not_covered:
  - {clause: "EU AI Act Art. 14", text: "human oversight", reason: "not a property of the model"}
"""))
    rule = p.checks["performance.roc_auc"]
    assert [(c.clause, c.partial) for c in rule.cites] == [("SR 11-7", False), ("12 CFR 1002.6(a)", True)]
    assert rule.ref_labels == ["SR 11-7: outcomes analysis", "ECOA / Regulation B (12 CFR 1002.6(a)), in part: a screen"]
    assert rule.references == ["Someone et al. 2020, A paper"]
    assert [c.clause for c in p.scope_cites] == ["EU AI Act Art. 14", "GDPR Art. 32"]
    assert [(n.clause, n.reason) for n in p.not_covered_items] == [("EU AI Act Art. 14", "not a property of the model")]


def test_the_judge_carries_clauses_references_and_note_into_result_json(policy_file):
    import json

    from audit.checks import all_checks
    from audit.judge import judge
    from audit.result import Finding, Measurement
    from audit.runner import policy_section

    p = load_policy(policy_file("""\
policy: p
version: "1"
checks:
  performance.roc_auc:
    min: 0.7
    note: Better than chance.
    refs: [{clause: "SR 11-7, validation: outcomes analysis", text: "held-out AUC"}]
    references: ["A paper"]
not_covered:
  - {clause: "EU AI Act Art. 14", reason: "not tested"}
"""))
    [f] = judge(p, all_checks(), {"performance.roc_auc": Measurement("performance.roc_auc", 0.8)})
    back = Finding.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back.note == "Better than chance."
    assert back.clauses == [{"clause": "SR 11-7, validation: outcomes analysis", "regulation": "", "text": "held-out AUC",
                             "partial": False}]
    assert back.refs == ["SR 11-7, validation: outcomes analysis: held-out AUC"] and back.references == ["A paper"]
    section = json.loads(json.dumps(policy_section(p, 200)))
    assert section["not_covered"] == [{"clause": "EU AI Act Art. 14", "regulation": "", "text": "",
                                       "reason": "not tested"}]
    assert section["scope"] == []


# Which clause each check family may serve: a clause is cited only for what the check tests. A prefix of the
# clause key (clause_key: lower case, "Art. " spelled one way). A check id's own entry replaces its family's.
MAY_SERVE = {
    "performance": ["sr 11-7, validation: outcomes analysis"],
    "fairness": ["12 cfr 1002.4(a)", "12 cfr 1002.6(a)", "eu ai act art. 10(2)(f)", "eu ai act art. 10(2)(g)",
                 "sr 11-7, validation: outcomes analysis"],
    # only the word swap speaks to taking sex into account (and only in part)
    "fairness.counterfactual_flip_rate": ["12 cfr 1002.6(b)(1)", "eu ai act art. 10(2)(f)"],
    # a global word ranking: a prohibited basis in evaluating creditworthiness, never an applicant's reasons
    "explainability": ["12 cfr 1002.6(b)(1)", "sr 11-7, validation: conceptual soundness", "eu ai act art. 13(1)"],
    # the reasons the model gives for each decline: the model's side of the adverse-action notice, in part
    "explainability.adverse_action_protected_reasons": ["12 cfr 1002.9(b)(2)", "12 cfr 1002.6(b)(1)"],
    "explainability.adverse_action_specific_reasons": ["12 cfr 1002.9(b)(2)"],
    "explainability.adverse_action_reason_stability": ["12 cfr 1002.9(b)(2)", "sr 11-7, validation: conceptual soundness"],
    "privacy": ["gdpr art. 5(1)(c)", "gdpr art. 5(1)(f)", "gdpr art. 25", "gdpr art. 32", "16 cfr 314.4"],
    # membership inference is an attack on the training data's confidentiality: Art. 15(5)
    "privacy.membership_inference_auc": ["gdpr art. 32", "gdpr art. 5(1)(f)", "16 cfr 314.4",
                                         "eu ai act art. 15(5)"],
    "privacy.mia_tpr_at_1pct_fpr": ["gdpr art. 32", "eu ai act art. 15(5)"],
    "drift": ["sr 11-7, validation: ongoing monitoring", "eu ai act art. 72", "eu ai act art. 15(1)"],
    # harmless perturbations of the input: sensitivity analysis, and one kind of input inconsistency
    "robustness": ["sr 11-7, validation: conceptual soundness", "eu ai act art. 15(4)"],
    # the eval set examined for errors; only the training overlap speaks to the held-out outcomes analysis
    "quality": ["eu ai act art. 10(3)"],
    "quality.train_overlap_share": ["sr 11-7, validation: outcomes analysis", "eu ai act art. 10(3)"],
}
# what every citation of these must say: it tests only part of the clause
MUST_BE_PARTIAL = {"12 cfr 1002.6(b)(1)", "eu ai act art. 10(2)(f)", "eu ai act art. 10(2)(g)", "eu ai act art. 15(5)",
                   "eu ai act art. 15(4)", "eu ai act art. 10(3)", "12 cfr 1002.9(b)(2)"}


def misplaced(policy) -> list[str]:
    """Each citation of the policy that its check may not serve, or that claims in full what it tests in part."""
    out = []
    for cid, rule in policy.checks.items():
        allowed = MAY_SERVE.get(cid, MAY_SERVE.get(cid.split(".")[0], []))
        for c in rule.cites:
            if not any(c.key == a or c.key.startswith(a) for a in allowed):
                out.append(f"{cid} cites {c.clause}")
            elif c.key in MUST_BE_PARTIAL and not c.partial:
                out.append(f"{cid} cites {c.clause} in full")
    return out


def test_bundled_pack_cites_each_clause_only_for_what_its_check_tests(tmp_path):
    fin = load_policy("fin")
    assert misplaced(fin) == []
    keys = {c.key for rule in fin.checks.values() for c in rule.cites}
    citing = {cid for cid, rule in fin.checks.items() for c in rule.cites if c.key.startswith("12 cfr 1002.9")}
    assert citing and all(".adverse_action_" in cid for cid in citing), "only the adverse-action rules test reasons"
    assert not any("ponomareva" in k or "eeoc" in k for k in keys), "a paper or guideline is not a clause"
    assert any("Ponomareva" in r for r in fin.checks["privacy.dp_epsilon"].references)
    # the table bites: cite the adverse-action clause for a SHAP rule again, or the sex clause in full
    src = bundled_policies()["fin"].read_text(encoding="utf-8")
    head = "  explainability.prohibited_terms_in_top_k:\n    max: 0\n    top_k: 20\n"
    assert src.count(head) == 1

    def cite_again(ref: str) -> str:
        return src.replace(head + "    term_lists: [gender, marital_status, national_origin]\n    severity: block\n"
                           "    refs:\n", head + "    term_lists: [gender, marital_status, national_origin]\n"
                           "    severity: block\n    refs:\n      - " + ref + "\n", 1)

    as_string = cite_again('"ECOA / Regulation B (12 CFR 1002.9(b)(2)): adverse-action notices state the reasons"')
    assert as_string != src
    (tmp_path / "string.yaml").write_text(as_string)
    with pytest.raises(PolicyError, match=r"not_covered\[0\]\.clause: '12 CFR 1002\.9\(b\)\(2\)' is listed as "
                                          r"not covered, but checks\.explainability\.prohibited_terms_in_top_k\.refs\[0\]"):
        load_policy(tmp_path / "string.yaml")  # the loader refuses a clause cited in full and listed as not covered
    (tmp_path / "partial.yaml").write_text(cite_again('{clause: "12 CFR 1002.9(b)(2)", partial: true}'))
    assert misplaced(load_policy(tmp_path / "partial.yaml")) == [
        "explainability.prohibited_terms_in_top_k cites 12 CFR 1002.9(b)(2)"]
    full = src.replace('- {clause: "12 CFR 1002.6(b)(1)", regulation: "ECOA / Regulation B", partial: true,',
                       '- {clause: "12 CFR 1002.6(b)(1)", regulation: "ECOA / Regulation B",', 1)
    assert full != src
    (tmp_path / "full.yaml").write_text(full)
    assert misplaced(load_policy(tmp_path / "full.yaml")) == [
        "fairness.counterfactual_flip_rate cites 12 CFR 1002.6(b)(1) in full"]


def test_bundled_pack_states_what_it_does_not_cover():
    fin = load_policy("fin")
    served = {c.key for rule in fin.checks.values() for c in rule.cites}
    reasons = {n.key: n.reason for n in fin.not_covered_items}
    # every clause of its scope is served by a rule or has a reason for not being covered
    assert [c.clause for c in fin.scope_cites if c.key not in served and c.key not in reasons] == []
    for clause in ("12 CFR 1002.9(b)(2)", "EU AI Act Art. 14", "EU AI Act Art. 12", "EU AI Act Art. 15(4)",
                   "SR 11-7, validation: conceptual soundness", "EU AI Act Art. 10(2)(f)"):
        assert reasons.get(clause_key(clause)), clause
    # every rule says what it requires in plain words
    assert [cid for cid, rule in fin.checks.items() if not rule.note] == []

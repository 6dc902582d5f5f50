"""Policy loading: every bad policy gives one exact line naming file:line and the key."""

import subprocess
import sys

import pytest

from audit.errors import PolicyError
from audit.policy import load_policy
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
    ("policy: p\nversion: '1'\nchecks:\n  fairness.counterfactual_flip_rate: {max: 0.02, swaps: genderr}\n",
     "4: checks.fairness.counterfactual_flip_rate: unknown swap list 'genderr' (bundled: age, gender, marital_status, "
     "national_origin; or give the path of a .yaml file of pairs)"),
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

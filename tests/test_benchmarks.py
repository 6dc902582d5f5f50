"""The benchmark scripts' arithmetic and tables (benchmarks/peer.py, benchmarks/scale.py) on fixed numbers, worked
out by hand. No model runs and nothing is timed here: timings live in benchmarks/, never in tests."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    if str(BENCH) not in sys.path:  # as when the script runs: its folder (benchmarks/children.py) importable
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


peer = _load("peer")
scale = _load("scale")


def _run(wall: float, rss: float, cpu: float) -> dict:
    return {"wall_s": wall, "peak_rss_mib": rss, "cpu_s": cpu, "exit_code": 0, "load1_at_start": 1.0}


RUNS = {
    "audit": [_run(30.0, 1000.0, 50.0), _run(10.0, 1100.0, 20.0), _run(20.0, 900.0, 40.0)],
    "handwritten": [_run(44.0, 950.0, 70.0), _run(40.0, 1000.0, 60.0), _run(38.0, 980.0, 66.0)],
    "scan": [_run(25.0, 700.0, 30.0), _run(27.0, 740.0, 33.0), _run(26.0, 720.0, 31.0)],
}


def test_peer_medians_and_ratios_by_hand():
    s = peer.summarise(RUNS)
    # medians: audit 20 s / 1000 MiB / 40 s CPU; handwritten 40 s / 980 MiB; scan 26 s / 720 MiB
    assert s["medians"]["audit"] == {"wall_s": 20.0, "peak_rss_mib": 1000.0, "cpu_s": 40.0}
    assert s["medians"]["handwritten"]["wall_s"] == 40.0
    assert s["medians"]["scan"]["peak_rss_mib"] == 720.0
    r = s["ratios"]["audit"]
    assert r["wall_to_handwritten"] == pytest.approx(0.5)
    assert r["wall_to_scan"] == pytest.approx(20 / 26)
    assert r["rss_to_handwritten"] == pytest.approx(1000 / 980)
    assert set(s["ratios"]) == {"audit"}  # ratios are of the audit's arms only


def test_peer_ratios_without_the_scan_arm_are_none():
    s = peer.summarise({k: v for k, v in RUNS.items() if k != "scan"})
    assert s["ratios"]["audit"]["wall_to_scan"] is None
    assert s["ratios"]["audit"]["wall_to_handwritten"] == pytest.approx(0.5)


def test_peer_markdown_rows_and_targets():
    s = peer.summarise(RUNS)
    text = peer.markdown(s, RUNS, [1.04, 1.2, 1.3], [2.0, 1.5, 1.4], "benchmarks/peer.py --rounds 3",
                         "2026-12-02 05:00 UTC")
    lines = text.splitlines()
    assert lines[0].startswith("`benchmarks/peer.py --rounds 3`, 2026-12-02 05:00 UTC, load average 1.0 1.2 1.3 "
                               "before, 2.0 1.5 1.4 after")
    assert ("| `audit run` (default, `--precision auto`) | 30.0, 10.0, 20.0 s | 20.0 s | 1,000 MiB | 40.0 s | 0.50 "
            "| 0.77 |") in lines
    assert "| handwritten peer | 44.0, 40.0, 38.0 s | 40.0 s | 980 MiB | 66.0 s | 1.00 | 1.54 |" in lines
    assert "| scan tool (giskard 2.19.2) | 25.0, 27.0, 26.0 s | 26.0 s | 720 MiB | 31.0 s | 0.65 | 1.00 |" in lines
    target = lines[-1]
    assert "wall / handwritten 0.50 (target ≤ 0.5: met)" in target
    assert "wall / scan tool 0.77 (target ≤ 0.7: not met)" in target
    assert "peak RSS / handwritten 1.02 (target ≤ 1.0: not met)" in target


def test_peer_markdown_says_not_measured_without_the_scan_tool():
    runs = {k: v for k, v in RUNS.items() if k != "scan"}
    text = peer.markdown(peer.summarise(runs), runs, [1, 1, 1], [1, 1, 1], "c", "w")
    assert "wall / scan tool not measured" in text
    assert "| 0.50 | – |" in text


def test_peer_model_time_floor_by_hand(tmp_path):
    """The audit arm's forward-pass seconds (forward_timer's line) against the peers' wall times: 12 s of model
    time (median of 10, 12, 14) over the handwritten peer's 40 s is 0.30, over the scan tool's 26 s 0.46."""
    runs = {**RUNS, "audit": [dict(r, model_s=m) for r, m in zip(RUNS["audit"], (14.0, 10.0, 12.0))]}
    s = peer.summarise(runs)
    assert s["medians"]["audit"]["model_s"] == 12.0 and "model_s" not in s["medians"]["handwritten"]
    assert s["ratios"]["audit"]["model_to_handwritten"] == pytest.approx(0.3)
    assert s["ratios"]["audit"]["model_to_scan"] == pytest.approx(12 / 26)
    text = peer.markdown(s, runs, [1, 1, 1], [1, 1, 1], "c", "w")
    assert text.splitlines()[-1] == (
        "The audit's forward passes alone (median 12.0 s, benchmarks/forward_timer.py) are 0.30 of the handwritten "
        "peer's wall time and 0.46 of the scan tool's: with no other work at all the ratios could not go below these.")
    log, folder = tmp_path / "audit-1.log", tmp_path / "audit"
    folder.mkdir()
    log.write_text('verdict: FAIL\nFORWARD {"model_s": 12.5, "forward_calls": 86, "wall_s": 80.0}\n')
    (folder / "result.json").write_text('{"run": {"timings": {"scoring_s": 3.9, "checks_s": {"a": 1.0}}}}')
    assert peer.audit_times(log, folder) == {"model_s": 12.5, "forward_calls": 86, "scoring_s": 3.9,
                                             "checks_s": {"a": 1.0}}
    log.write_text("no timer line\n")
    assert peer.audit_times(log, folder)["model_s"] is None


GOT = {  # one run at 1,000 rows: 100 s in the process, 90 s in run_audit
    "wall_s": 100.0, "run_duration_s": 90.0, "model_s": 40.0,
    "timings": {"scoring_s": 10.0, "checks_s": {
        "explainability.additivity_error": 30.0, "explainability.adverse_action_reason_stability": 5.0,
        "robustness.flip_rate": 8.0, "fairness.counterfactual_flip_rate": 4.0, "drift.embedding_auc": 12.0,
        "performance.roc_auc": 1.0}},
}


def test_scale_breakdown_and_shares_by_hand():
    b = scale.breakdown(GOT)
    # start-up 100 - 90; SHAP 30 + 5; re-scoring 8 + 4; other 12 + 1; rest 90 - 10 - 60
    assert b == {"start_up_s": 10.0, "scoring_s": 10.0, "shap_s": 35.0, "rescoring_s": 12.0, "other_checks_s": 13.0,
                 "rest_of_run_s": 20.0}
    assert sum(b.values()) == pytest.approx(GOT["wall_s"])
    sh = scale.shares(GOT)
    assert sh["forward"] == pytest.approx((100 - 40) / 40)  # 1.5
    assert sh["model_json_s"] == pytest.approx(57.0)  # 10 + 35 + 12
    assert sh["result_json"] == pytest.approx((100 - 57) / 57)
    assert math.isinf(scale.share(5.0, 0.0))


def test_scale_estimate_by_hand():
    # 10k rows from 1k: start-up 10 and SHAP 35 fixed; robustness capped at 2,000 rows: 8 x 2; the rest x 10:
    # scoring 10, counterfactual 4, drift 12, roc 1, rest of run 20 -> 47 x 10 = 470
    assert scale.estimate(GOT, 1000, 10000) == pytest.approx(10 + 35 + 16 + 470)
    assert scale.estimate(GOT, 1000, 1000) == pytest.approx(GOT["wall_s"])  # the run itself, nothing scaled


def test_scale_markdown_row_and_target():
    got = {**GOT, "eval_rows": 9990, "mean_tokens": 61.2, "peak_rss_mib": 1234.4}
    text = scale.markdown([(10000, got)], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], "benchmarks/scale.py M", "w")
    assert ("| 10,000 (9,990 after exclusions) | 61.2 | 100.0 s | 1,234 MiB | 40.0 s | 150% | 57.0 s | 75% |"
            in text.splitlines())
    assert "non-model ≤ 25% of model time: 150% counted by forward passes (not met), 75% by result.json (not met)" \
        in text

"""Scoring engines: `--engine ray` writes the same result.json as the local engine; without it Ray is never imported.

Ray is slow to start and each actor pool starts worker processes that import torch and load the model, so the
module shares one local Ray with 1 CPU (one actor per pool), and the Ray work is done in two passes that several
tests read: `cli_runs` (`audit run` with the local engine and with --engine ray, one policy for both the scoring
and the statistics tests) and `one_pass` (one `score_many` over three sets, one of them with statistics and
duplicate and truncated texts).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from audit.cli import cli
from tests.conftest import make_frame

TOL = 1e-6  # largest difference allowed between the engines' scores and measurements (measured: 0 here)

# One policy for both CLI runs: the scoring checks (membership inference reads the training split's losses, so
# the training split is scored in the same Ray pass) and every check a distributed run takes from its workers'
# statistics, with fairness rules that need the per-group tables.
POLICY = """\
policy: engines
version: "1"
decision_threshold: 0.5
checks:
  performance.accuracy: {min: 0.5}
  performance.balanced_accuracy: {min: 0.5}
  performance.precision: {min: 0.5, severity: warn}
  performance.recall: {min: 0.5, severity: warn}
  performance.f1: {min: 0.5, severity: warn}
  performance.brier_score: {max: 0.3}
  performance.ece: {max: 0.2, bins: 8}
  performance.roc_auc: {min: 0.6, basis: ci_low}
  fairness.selection_rate_ratio: {min: 0.8}
  fairness.demographic_parity_difference: {max: 0.2, attributes: [sex]}
  fairness.equalized_odds_difference: {max: 0.3}
  fairness.predictive_parity_difference: {max: 0.3, severity: warn}
  fairness.equal_opportunity_difference: {max: 0.3, intersections: ["sex×age"]}
  privacy.membership_inference_auc: {max: 0.9, basis: point}
budget: {bootstrap: 100, seed: 3, batch_size: 4}
"""


@pytest.fixture(scope="module")
def ray_local():
    pytest.importorskip("ray.data", reason="Ray is an optional extra: pip install 'audit[ray]'")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import logging

    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def _run(model, policy, out, *extra):
    return CliRunner().invoke(cli, ["run", str(model), "--policy", str(policy), "--out", str(out), "--no-progress",
                                    *extra], catch_exceptions=False)


@pytest.fixture(scope="module")
def cli_runs(ray_local, tiny_model, tmp_path_factory) -> tuple[dict, dict, Path]:
    """result.json of `audit run` with the local engine and with --engine ray, same policy; same exit code."""
    folder = tmp_path_factory.mktemp("engines")
    pol = folder / "p.yaml"
    pol.write_text(POLICY)
    local = _run(tiny_model, pol, folder / "local")
    dist = _run(tiny_model, pol, folder / "ray", "--engine", "ray")
    assert local.exit_code == dist.exit_code, (local.output, dist.output)
    return (json.loads((folder / "local" / "result.json").read_text()),
            json.loads((folder / "ray" / "result.json").read_text()), folder)


def test_ray_run_writes_the_local_result(cli_runs):
    """The eval set and the training split (membership inference reads its losses) are scored on Ray."""
    a, b, folder = cli_runs
    assert a["scoring"]["engine"] == "local" and set(a["scoring"]) - set(b["scoring"]) == set()
    assert b["scoring"]["engine"] == "ray" and b["scoring"]["workers"] == 1
    assert {k: v for k, v in b["scoring"].items() if k not in ("engine", "workers", "cpus_per_worker", "statistics")} == \
        {k: v for k, v in a["scoring"].items() if k != "engine"}
    assert a["verdict"] == b["verdict"]
    assert [(f["check_id"], f["status"]) for f in a["findings"]] == [(f["check_id"], f["status"]) for f in b["findings"]]
    assert a["measurements"].keys() == b["measurements"].keys()
    mia = a["measurements"]["privacy.membership_inference_auc"]["details"]  # the training split was scored
    assert mia["members_available"] + mia["members_dropped"] == 280
    assert b["measurements"]["privacy.membership_inference_auc"]["details"]["members_available"] == \
        mia["members_available"]
    for cid, m in a["measurements"].items():
        assert m.get("error") is None and b["measurements"][cid].get("error") is None, cid
        if m["value"] is None:
            assert b["measurements"][cid]["value"] is None, cid
        else:
            assert b["measurements"][cid]["value"] == pytest.approx(m["value"], abs=TOL), cid
    assert a["data"] == b["data"]
    pa = pd.read_csv(folder / "local" / "predictions.csv", dtype={"row_id": str})
    pb = pd.read_csv(folder / "ray" / "predictions.csv", dtype={"row_id": str})
    assert (pa["row_id"] == pb["row_id"]).all() and (pa["predicted_label"] == pb["predicted_label"]).all()
    assert np.abs(pa["score"] - pb["score"]).max() <= TOL


@pytest.fixture(scope="module")
def one_pass(ray_local, tiny_model):
    """ONE `score_many` pass on Ray over three sets, and the local engine's scores of each. The eval set has
    duplicate texts (20 texts twice, as different rows), three identical texts longer than the model's window,
    and a statistics request (protected attribute sex, one row without a value); the current set keeps no
    embeddings. Small partitions (8 rows), so every set is cut into several."""
    from audit.engines import LocalEngine, RayEngine, ScoringJob, StatsRequest
    from audit.mergeable import Grid
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model).load()
    frame = make_frame(90, seed=5)
    base = [f"{t} {' '.join(str(i))}" for i, t in enumerate(frame["text"])]  # 90 distinct texts
    long = " ".join(["applicant pays on time"] * 20)
    ev = base + base[:20] + [long] * 3
    n = len(ev)
    sex = np.array(frame["sex"].tolist() + frame["sex"].tolist()[:20] + ["female"] * 3, dtype=object)
    sex[5] = None  # a row with no value
    y = (np.arange(n) % 3 == 0).astype(int)
    req = StatsRequest(Grid(replicates=50, seed=1), {"sex": []}, [f"r{i}" for i in range(n)], y, {"sex": sex})
    other = [f"{t} {' '.join(str(i))}" for i, t in enumerate(make_frame(70, seed=9)["text"])]
    sets = {"eval": ev, "train": other[:50] + ev[:5], "current": other[50:]}
    labels = {"eval": y, "train": np.arange(55) % 2, "current": np.arange(20) % 2}
    jobs = {k: ScoringJob(v, labels[k], k != "current", req if k == "eval" else None) for k, v in sets.items()}
    engine = RayEngine(partition_rows=8)
    got = engine.score_many(bundle, jobs, batch_size=8, progress=False)
    engine.close()  # leaves the caller's Ray running
    assert ray_local.is_initialized()
    local = {k: LocalEngine().score(bundle, v, batch_size=8, labels=labels[k], embeddings=k != "current",
                                    progress=False, stats=req if k == "eval" else None) for k, v in sets.items()}
    return {"sets": sets, "ray": got, "local": local, "y": y}


def test_ray_engine_equals_local_scoring_row_by_row(one_pass):
    """Many small partitions, duplicates, truncated texts: every per-row array matches the local engine."""
    dist, local = one_pass["ray"]["eval"], one_pass["local"]["eval"]
    assert dist.meta["unique_texts"] == 90 + 1
    assert dist.meta["partitions"] == -(-dist.meta["unique_texts"] // 8) and dist.meta["workers"] == 1
    assert np.abs(dist.probs - local.probs).max() <= TOL
    assert np.abs(dist.loss - local.loss).max() <= TOL
    assert np.abs(dist.embeddings - local.embeddings).max() <= TOL
    assert (dist.lengths == local.lengths).all() and dist.truncated == local.truncated == 3
    assert dist.score[-1] == dist.score[-2]  # a repeated text is scored once: ties stay ties
    assert (dist.score[90:110] == dist.score[:20]).all()


def test_a_worker_refuses_a_model_folder_that_changed(ray_local, tiny_model):
    from audit.engines import RayEngine
    from audit.errors import ModelError
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model).load()
    bundle.hashes["model.safetensors"] = "0" * 64  # as if the weights changed after the driver checked them
    with pytest.raises(ModelError, match="the model folder a Ray worker sees differs.*model.safetensors"):
        RayEngine(workers=1).score(bundle, ["applicant pays on time"], batch_size=8, progress=False)


def test_partitions_hold_whole_batches():
    from audit.engines import partition

    assert partition(100, 16, 3) == [(0, 48), (48, 96), (96, 100)]
    assert partition(10, 16, 8) == [(0, 10)]
    assert partition(64, 16, 4, rows=20) == [(0, 32), (32, 64)]


def test_address_without_ray_engine_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(cli, ["run", str(tmp_path), "--policy", "fin", "--address", "auto"])
    assert r.exit_code == 2
    assert r.output.strip() == "error: --address is for --engine ray (the address of a Ray cluster)"


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    r = CliRunner().invoke(cli, ["run", str(tmp_path), "--policy", "fin", "--engine", "ray"])
    assert r.exit_code == 2
    assert r.output.startswith("error: --engine ray needs Ray Data, which is not installed")
    assert r.output.rstrip().endswith("pip install 'audit[ray]'") and "Traceback" not in r.output


def test_the_local_engine_never_imports_ray(tiny_model, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text("policy: t\nversion: '1'\nchecks:\n  performance.accuracy: {min: 0.5}\nbudget: {bootstrap: 20}\n")
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from audit.cli import cli\n"
            "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
            "help_ok = 'ray' not in sys.modules and 'torch' not in sys.modules\n"
            f"r = CliRunner().invoke(cli, ['run', {str(tiny_model)!r}, '--policy', {str(pol)!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--no-progress'])\n"
            "print(help_ok, r.exit_code, 'ray' in sys.modules)\n")
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.split() == ["True", "0", "False"], out.stdout + out.stderr
    r = json.loads((tmp_path / "out" / "result.json").read_text())
    assert r["scoring"]["engine"] == "local" and "workers" not in r["scoring"]


def test_an_address_reaches_ray_init_and_a_dead_one_fails_fast(monkeypatch):
    pytest.importorskip("ray.data")
    import socket

    from audit.engines import RayEngine

    calls = []

    class FakeRay:  # records what the engine asks of Ray, without starting one
        def is_initialized(self):
            return False

        def init(self, **kwargs):
            calls.append(kwargs)

        def cluster_resources(self):
            return {"CPU": 6.0}

        def shutdown(self):
            calls.append("shutdown")

    engine = RayEngine(address="auto")
    engine._ray = FakeRay()
    engine.start()
    assert calls[0]["address"] == "auto" and calls[0]["include_dashboard"] is False and "num_cpus" not in calls[0]
    assert engine.describe() == {"engine": "ray", "workers": 6, "cpus_per_worker": 1, "address": "auto"}
    engine.close()
    assert calls[-1] == "shutdown" and os.environ["RAY_USAGE_STATS_ENABLED"] == "0"

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = CliRunner().invoke(cli, ["run", "model", "--policy", "fin", "--engine", "ray", "--address", f"127.0.0.1:{port}"])
    assert r.exit_code == 2
    assert r.output.startswith(f"error: --address 127.0.0.1:{port}: no Ray cluster answers there")


def _differences(a, b, path="", tol=1e-9):
    """Paths where two JSON values differ (numbers: by more than tol)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only on one side" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += _differences(a[k], b[k], f"{path}.{k}", tol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]", tol)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return [] if abs(a - b) <= tol * max(1.0, abs(a)) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_ray_workers_compute_the_statistics_and_the_result_is_the_local_one(cli_runs):
    """With --engine ray the workers compute each partition's statistics (bootstrap replicate counts included),
    the driver merges them and judges the count-based checks from them: every measurement, interval and detail
    equals the local engine's, which computes them from the rows."""
    from audit.checks import all_checks

    exact = sorted(cid for cid, spec in all_checks().items() if spec.stats_form == "exact")
    a, b, _ = cli_runs
    assert "statistics" not in a["scoring"]
    st = b["scoring"]["statistics"]
    assert st["partitions"] >= 2  # more than one partition was merged
    # the count-based performance checks came from the merged statistics
    assert st["checks"] == exact and exact == [
        "performance.accuracy", "performance.balanced_accuracy", "performance.brier_score", "performance.ece",
        "performance.f1", "performance.precision", "performance.recall"]
    assert a["verdict"] == b["verdict"]
    diffs = _differences(a["measurements"], b["measurements"])
    assert diffs == [], "\n".join(diffs)
    diffs = _differences(a["findings"], b["findings"])  # float sums (Brier, ECE) agree to rounding
    assert diffs == [], "\n".join(diffs)


def test_worker_statistics_merge_to_the_one_partition_statistics(one_pass):
    """Partitions of deduplicated, length-sorted texts (rows sharing a text fall in one partition) merge to
    exactly the statistics of all rows computed at once, replicate counts included."""
    dist, one = one_pass["ray"]["eval"], one_pass["local"]["eval"].stats
    y, n = one_pass["y"], len(one_pass["sets"]["eval"])
    assert dist.meta["stats_partitions"] == dist.meta["partitions"] >= 5
    got = dist.stats
    assert got.rows == one.rows == n
    assert np.array_equal(got.scores.counts.point, one.scores.counts.point)
    assert np.array_equal(got.scores.counts.reps, one.scores.counts.reps)
    assert sorted(got.groups["sex"].groups) == one.groups["sex"].groups == ["female", "male"]
    # partitions arrive in any order, so groups may be listed in another order; the counts are the same
    assert np.array_equal(got.groups["sex"].aligned(["female", "male"]).counts.reps, one.groups["sex"].counts.reps)
    assert got.groups["sex"].missing == 1
    assert np.allclose(got.calibration.sums.point, one.calibration.sums.point, rtol=1e-12, atol=0)
    # a hand count: positives scored at or above 0.5
    assert got.scores.counts.point[1, 500:].sum() == int(((dist.score >= 0.5) & (y == 1)).sum())
    assert one_pass["ray"]["train"].stats is None  # statistics only where a job asks for them


def test_one_pass_scores_every_set_with_one_actor_pool(one_pass):
    """`score_many` scores the eval set, the training split and a current set in one Ray Data pass: the same
    worker process (one model load) scores all three, and each set's rows equal the local engine's."""
    got, local = one_pass["ray"], one_pass["local"]
    pids = {k: set(p.meta["worker_pids"]) for k, p in got.items()}
    assert len(pids["eval"] | pids["train"] | pids["current"]) == 1  # one pool of 1 actor for the three sets
    for name, t in one_pass["sets"].items():
        assert np.abs(got[name].probs - local[name].probs).max() <= TOL, name
        assert np.abs(got[name].loss - local[name].loss).max() <= TOL, name
        assert got[name].meta["partitions"] == -(-len(set(t)) // 8), name
        if name == "current":
            assert got[name].embeddings is None
        else:
            assert np.abs(got[name].embeddings - local[name].embeddings).max() <= TOL, name


def test_both_engines_keep_the_protocol():
    from audit.engines import Engine, LocalEngine, make_engine
    from audit.errors import UsageError

    assert isinstance(LocalEngine(), Engine) and LocalEngine.distributed is False
    pytest.importorskip("ray.data")
    from audit.engines import RayEngine

    assert RayEngine.distributed is True and all(callable(getattr(RayEngine, k)) for k in
                                                 ("score", "score_many", "describe", "close"))

    class Half:  # scores, but says nothing of how: not an engine
        name = "half"

        def score(self, *a, **k):
            return None

    with pytest.raises(UsageError, match=r"engine Half: not a scoring engine \(lacks distributed, score_many, "
                                         r"describe, close; see audit.engines.Engine\)"):
        make_engine(Half())


def test_local_engine_scores_a_text_once_per_run(tiny_model):
    """A --current file that repeats eval rows: those rows get the eval set's scores and embeddings bit for bit,
    the rest what a fresh engine gives, and only the new texts reach the model. A text first scored without
    embeddings is scored again when embeddings are asked for; another model object starts a new memo."""
    from audit.engines import LocalEngine
    from audit.model import open_bundle

    bundle = open_bundle(tiny_model).load()
    frame = make_frame(60, seed=7)
    ev = [f"{t} {' '.join(str(i))}" for i, t in enumerate(frame["text"])]
    long = " ".join(["applicant pays on time"] * 20)  # longer than the window: truncated wherever it is scored
    fresh = [f"new row {i} " + t for i, t in enumerate(ev[:15])]
    current = ev[40:] + fresh + [long] + ev[:5]
    engine = LocalEngine()
    first = engine.score(bundle, ev + [long], batch_size=8, labels=np.arange(61) % 2, embeddings=True,
                         progress=False)
    again = engine.score(bundle, current, batch_size=8, labels=np.arange(len(current)) % 2, embeddings=True,
                         progress=False)
    assert again.meta["scored_texts"] == len(fresh) and again.meta["unique_texts"] == len(current)
    alone = LocalEngine().score(bundle, current, batch_size=8, labels=np.arange(len(current)) % 2,
                                embeddings=True, progress=False)
    assert alone.meta["scored_texts"] == len(current)
    reused = list(range(20)) + [35] + list(range(36, 41))  # ev[40:], the long text, ev[:5]
    from_eval = list(range(40, 60)) + [60] + list(range(5))
    assert (again.probs[reused] == first.probs[from_eval]).all()
    assert (again.embeddings[reused] == first.embeddings[from_eval]).all()
    assert np.abs(again.probs - alone.probs).max() <= TOL
    assert np.abs(again.embeddings - alone.embeddings).max() <= TOL
    assert np.abs(again.loss - alone.loss).max() <= TOL
    assert (again.lengths == alone.lengths).all() and again.truncated == alone.truncated == 1
    assert np.allclose(again.loss, -np.log(again.probs[np.arange(len(current)), np.arange(len(current)) % 2]))
    no_emb = LocalEngine()
    no_emb.score(bundle, ev, batch_size=8, embeddings=False, progress=False)
    assert no_emb.score(bundle, ev, batch_size=8, embeddings=True, progress=False).meta["scored_texts"] == 60
    assert no_emb.score(bundle, ev, batch_size=8, embeddings=False, progress=False).meta["scored_texts"] == 0
    other = open_bundle(tiny_model).load()
    assert engine.score(other, ev[:5], batch_size=8, progress=False).meta["scored_texts"] == 5
    engine.close()
    assert engine.score(other, ev[:5], batch_size=8, progress=False).meta["scored_texts"] == 5

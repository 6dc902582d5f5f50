"""`audit run` with the fin policy at 1k, 10k and 30k eval rows of free text of varying length.

The text is generated here, seeded, from the bundled German credit rows (no download): each row is said in a
random subset of a dozen clause forms, in random order, with 0 to 6 sentences of free-form remarks, so texts run
from a few words to past the model's window. Each row keeps the German credit columns (the demo manifest's
protected attributes and label) and the aliases the test fixtures' tiny model reads (`sex`, `age`, `label`,
`id`), so the same data serves the demo model and a tiny one. The manifest is the model's own with
`text: {column: text}` (and, where the model was trained on templated text, its training file copied with a
`text` column of the texts it was trained on, since the audit reads the training file with the same recipe: the
training-overlap rule and membership inference); the policy is policies/fin.yaml with `budget.max_rows` raised to the largest size; the
current set (for the drift family) is 1,000 rows generated with another seed.

Per size, one fresh process (a child of this one, in its process group) runs `audit.api.run` with the model's
forward pass timed (a wrapper around the loaded model's `forward`); its peak RSS comes from the kernel (`os.wait4`'s
rusage of the child). Printed per size: wall time, peak RSS, and the share of non-model work, (wall - model time)
/ model time (target: at most 25% at 10k rows, growing linearly), with model time counted two ways:
- `forward`: the time inside the model's forward passes, all of them (eval, training and current sets, SHAP's
  masked evaluations, counterfactual swaps, robustness perturbations): what the model itself costs;
- `result.json`: from the run's own timings, eval scoring (`scoring_s`) + the explainability checks (SHAP's masked
  evaluations with shap's own Python around them) + the re-scoring checks (counterfactual swaps, robustness
  perturbations). Training and current sets are scored inside whichever check first needs them, mixed with that
  check's own work, so they count as non-model here; the breakdown of the rest is printed with it.
Then an estimate of the wall time at 10k and 30k rows from the smallest size run (start-up, explanations and the
adverse-action reasons fixed; robustness capped at its `rows`; everything else linear in eval rows), a markdown
block for benchmarks/README.md, and a JSON file (`--json`, default WORK/scale-<UTC time>.json).

    .venv/bin/python benchmarks/scale.py MODEL_DIR [--manifest M] [--sizes 1000 10000 30000] [--precision auto]
    .venv/bin/python benchmarks/scale.py MODEL_DIR --quick    # 1k rows only: the smoke test, and the estimate

MODEL_DIR: an audit model folder, e.g. the demo's (`audit demo --out D` trains D/model).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from children import run_child  # benchmarks/children.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
FIXED_PREFIXES = ("explainability.",)  # a seeded sample of rows (and the declines' reasons): not eval-row bound
CAPPED = {"robustness.": 2000}  # at most `rows` eval rows (policies/fin.yaml)
RESCORING = ("robustness.", "fairness.counterfactual_flip_rate")  # checks that score changed texts again
TARGET_SHARE, TARGET_ROWS = 0.25, 10000
ROOT = HERE.parent
GERMAN = ROOT / "audit" / "data" / "german_credit" / "german_credit.csv"

REMARKS = ("I have been with my employer for several years and my income is steady.",
           "The loan would replace an older, more expensive credit.", "I pay my rent on time every month.",
           "My partner also contributes to the household income.", "I had one late payment two years ago.",
           "I would like to repay early if possible.", "Please call me in the evening.",
           "The amount covers the full price including delivery.", "I have no other debts at the moment.",
           "My savings are small but growing.", "I recently moved to a larger flat.",
           "I am asking for the shortest duration I can afford.")


def clauses(row) -> list[str]:
    r = row
    return [f"My checking account status is {r['status_of_existing_checking_account']}.",
            f"I would like {r['credit_amount']} DM over {r['duration_in_month']} months.",
            f"The money is for {r['purpose']}.", f"Credit history: {r['credit_history']}.",
            f"Savings: {r['savings_account_and_bonds']}.", f"I have been employed {r['present_employment_since']}.",
            f"Housing: {r['housing']}; property: {r['property']}.", f"I am {r['age_in_years']} years old.",
            f"Personal status: {r['personal_status_and_sex']}.", f"Foreign worker: {r['foreign_worker']}.",
            f"Other debtors or guarantors: {r['other_debtors_or_guarantors']}.",
            f"Job: {r['job']}; telephone: {r['telephone']}."]


def free_text(n: int, seed: int):
    """n rows of free text of varying length, drawn with replacement from the German credit rows (seeded)."""
    import numpy as np
    import pandas as pd

    base = pd.read_csv(GERMAN, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), size=n)
    rows = base.iloc[pick].reset_index(drop=True)
    texts = []
    for _, r in rows.iterrows():
        parts = clauses(r)
        keep = rng.permutation(len(parts))[: int(rng.integers(2, len(parts) + 1))]
        said = [parts[i] for i in keep]
        said += [REMARKS[i] for i in rng.integers(0, len(REMARKS), size=int(rng.integers(0, 7)))]
        rng.shuffle(said)
        texts.append(" ".join(said))
    rows["text"] = texts
    rows["row_id"] = [f"s{seed}-{i:06d}" for i in range(n)]
    rows["id"] = rows["row_id"]
    rows["label"] = rows["creditability"]
    rows["age"] = rows["age_in_years"]
    rows["sex"] = rows["personal_status_and_sex"].str.split(" :").str[0]
    return rows


def training_source(model: Path, manifest: dict, work: Path) -> dict:
    """The manifest's training file with a `text` column: each row's text as the model read it in training (the
    manifest's own recipe). The eval rows here are free text in a `text` column, and the manifest has one text
    recipe for both, which the audit applies to the training file too (training overlap, membership inference).
    The training split's row numbers are kept; the returned `data.source` names the copy and its sha256."""
    from types import SimpleNamespace

    import pandas as pd

    from audit.data import find_source, make_texts, read_table, sha256_file

    recorded = manifest["data"]["source"]
    src = find_source(recorded["path"], model)
    text = manifest["text"]
    recipe = SimpleNamespace(column=text.get("column"), template=text.get("template"))
    texts = make_texts(read_table(src), recipe, src)
    raw = pd.read_csv(src, dtype=str, keep_default_na=False)
    raw["text"] = texts
    out = work / "training-source.csv"
    raw.to_csv(out, index=False)
    return {**recorded, "path": str(out), "sha256": sha256_file(out), "rows": len(raw), "bytes": out.stat().st_size}


def prepare(model: Path, sizes: list[int], work: Path, manifest_path: Path | None = None
            ) -> tuple[Path, Path, dict[int, Path], Path]:
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    manifest = yaml.safe_load((manifest_path or model / "audit-model.yaml").read_text())
    if manifest.get("data") and manifest.get("text", {}).get("column") != "text":
        manifest["data"]["source"] = training_source(model, manifest, work)
    manifest["text"] = {"column": "text"}
    manifest["id_column"] = "row_id"
    mpath = work / "audit-model.yaml"
    mpath.write_text(yaml.safe_dump(manifest, sort_keys=False))
    policy = yaml.safe_load((ROOT / "policies" / "fin.yaml").read_text())
    policy.setdefault("budget", {})["max_rows"] = max(sizes + [20000])
    ppath = work / "fin-scale.yaml"
    ppath.write_text(yaml.safe_dump(policy, sort_keys=False, allow_unicode=True))
    data = {}
    for n in sizes:
        p = work / f"eval-{n}.csv"
        if not p.exists():
            free_text(n, seed=n).to_csv(p, index=False)
        data[n] = p
    current = work / "current.csv"
    if not current.exists():
        free_text(1000, seed=1).to_csv(current, index=False)
    return mpath, ppath, data, current


CHILD = r"""
import time
T0 = time.perf_counter()
import json, sys
sys.path.insert(0, sys.argv[9])
from forward_timer import install  # benchmarks/forward_timer.py

MODEL = install()
import audit
model, manifest, policy, data, current, out, precision, progress = sys.argv[1:9]
r = audit.run(model, policy, manifest=manifest, data=data, current=current, out=out, precision=precision,
              progress=progress == "1")
print("SCALE " + json.dumps({"wall_s": time.perf_counter() - T0, "model_s": MODEL[0], "forward_calls": MODEL[1],
                             "exit_code": r.exit_code}), flush=True)
"""


def one(model: Path, manifest: Path, policy: Path, data: Path, current: Path, out: Path, precision: str,
        progress: bool = False) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-c", CHILD, str(model), str(manifest), str(policy), str(data), str(current), str(out),
           precision, "1" if progress else "0", str(Path(__file__).resolve().parent)]
    log = out.parent / f"{out.name}.log"
    print(f"  running (output in {log})", flush=True)
    wall, code, usage = run_child(cmd, env, ROOT, log)
    text = log.read_text(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("SCALE ")), None)
    if line is None:
        raise SystemExit(f"audit run failed ({code}; log {log}): {text[-1500:]}")
    got = json.loads(line[len("SCALE "):])
    got["process_wall_s"] = wall
    got["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    got["cpu_s"] = usage.ru_utime + usage.ru_stime
    result = json.loads((out / "result.json").read_text())
    got["eval_rows"] = result["data"]["eval"]["rows"]
    got["mean_tokens"] = result["scoring"]["mean_tokens"]
    got["truncated"] = result["scoring"].get("truncated")
    got["run_duration_s"] = result["run"]["duration_s"]
    got["timings"] = result["run"]["timings"]
    checks = got["timings"]["checks_s"]
    got["slowest_checks"] = sorted(checks.items(), key=lambda kv: -kv[1])[:4]
    return got


def breakdown(got: dict) -> dict[str, float]:
    """The process's wall time in parts, from result.json's timings: start-up (before run_audit), eval scoring,
    the explainability checks (SHAP), the re-scoring checks, the other checks, and the rest of the run (data,
    judge, report)."""
    checks = got["timings"]["checks_s"]
    shap = sum(v for k, v in checks.items() if k.startswith(FIXED_PREFIXES))
    rescoring = sum(v for k, v in checks.items() if k.startswith(RESCORING))
    other = sum(checks.values()) - shap - rescoring
    scoring = got["timings"]["scoring_s"]
    return {"start_up_s": got["wall_s"] - got["run_duration_s"], "scoring_s": scoring, "shap_s": shap,
            "rescoring_s": rescoring, "other_checks_s": other,
            "rest_of_run_s": got["run_duration_s"] - scoring - sum(checks.values())}


def share(wall: float, model: float) -> float:
    """Non-model work over model time: (wall - model) / model."""
    return (wall - model) / model if model > 0 else float("inf")


def shares(got: dict) -> dict[str, float]:
    b = breakdown(got)
    model_json = b["scoring_s"] + b["shap_s"] + b["rescoring_s"]
    return {"forward": share(got["wall_s"], got["model_s"]), "result_json": share(got["wall_s"], model_json),
            "model_json_s": model_json}


def estimate(got: dict, rows_from: int, rows_to: int) -> float:
    """Wall seconds at `rows_to` eval rows from a run at `rows_from`: start-up and the explainability checks
    fixed, the robustness checks capped at their rows, everything else linear in eval rows. Rough: a step that
    grows faster than linearly is not caught, and the training and current sets (fixed sizes, scored inside
    checks) are scaled with the rest, which overstates them."""
    k = rows_to / rows_from
    checks = got["timings"]["checks_s"]
    total = got["wall_s"] - got["run_duration_s"]
    for cid, sec in checks.items():
        if cid.startswith(FIXED_PREFIXES):
            total += sec
            continue
        cap = next((c for p, c in CAPPED.items() if cid.startswith(p)), None)
        total += sec * (min(rows_to, cap) / min(rows_from, cap) if cap else k)
    return total + (got["run_duration_s"] - sum(checks.values())) * k


def markdown(rows: list[tuple[int, dict]], load_before, load_after, command: str, when: str) -> str:
    lines = [f"`{command}`, {when}, load average {' '.join(f'{x:.1f}' for x in load_before)} before, "
             f"{' '.join(f'{x:.1f}' for x in load_after)} after:", "",
             "| eval rows | mean tokens | wall | peak RSS | model time (forward) | non-model / model (forward) "
             "| model time (result.json) | non-model / model (result.json) |", "|---|---|---|---|---|---|---|---|"]
    for n, got in rows:
        sh = shares(got)
        lines.append(f"| {n:,} ({got['eval_rows']:,} after exclusions) | {got['mean_tokens']} | {got['wall_s']:.1f} s "
                     f"| {got['peak_rss_mib']:,.0f} MiB | {got['model_s']:.1f} s | {sh['forward']:.0%} "
                     f"| {sh['model_json_s']:.1f} s | {sh['result_json']:.0%} |")
    at = dict(rows).get(TARGET_ROWS)
    if at is not None:
        sh = shares(at)
        lines += ["", f"Target at {TARGET_ROWS:,} rows: non-model ≤ {TARGET_SHARE:.0%} of model time: "
                      f"{sh['forward']:.0%} counted by forward passes "
                      f"({'met' if sh['forward'] <= TARGET_SHARE else 'not met'}), {sh['result_json']:.0%} by "
                      f"result.json ({'met' if sh['result_json'] <= TARGET_SHARE else 'not met'})."]
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT))  # this checkout's audit, also without PYTHONPATH (the children get it too)
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--manifest", type=Path, help="The model's audit-model.yaml when it is not in the folder.")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 30000])
    ap.add_argument("--quick", action="store_true", help="Only 1,000 rows (a smoke test), and the estimate.")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--progress", action="store_true", help="The audit's progress bars, into each run's log.")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "audit-scale-bench")
    ap.add_argument("--json", type=Path, help="Where to write the results (default WORK/scale-<UTC time>.json).")
    args = ap.parse_args()
    sizes = [1000] if args.quick else sorted(set(args.sizes))
    t_prep = time.perf_counter()
    manifest, policy, data, current = prepare(args.model, sizes, args.work, args.manifest)
    print(f"data ready in {time.perf_counter() - t_prep:.1f} s under {args.work}", flush=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    load_before = list(os.getloadavg())
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in load_before)}; nice {os.nice(0)}", flush=True)
    rows = []
    for n in sizes:
        got = one(args.model, manifest, policy, data[n], current, args.work / f"run-{n}", args.precision,
                  args.progress)
        sh = shares(got)
        got["non_model_share"] = sh["forward"]
        got["non_model_share_result_json"] = sh["result_json"]
        got["breakdown_s"] = breakdown(got)
        rows.append((n, got))
        print(f"{n:>6} rows (eval {got['eval_rows']}, mean {got['mean_tokens']} tokens, {got['truncated']} "
              f"truncated): wall {got['wall_s']:.1f} s (process {got['process_wall_s']:.1f} s, CPU "
              f"{got['cpu_s']:.1f} s), peak RSS {got['peak_rss_mib']:.0f} MiB; model {got['model_s']:.1f} s in "
              f"{got['forward_calls']} forward passes: non-model work {sh['forward']:.0%} of it; by result.json "
              f"{sh['model_json_s']:.1f} s: {sh['result_json']:.0%}; exit {got['exit_code']}", flush=True)
        print("        " + ", ".join(f"{k} {v:.1f}" for k, v in got["breakdown_s"].items())
              + f"; slowest checks {got['slowest_checks']}", flush=True)
    load_after = list(os.getloadavg())
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in load_after)}")
    n0, got0 = rows[0]
    estimates = {m: estimate(got0, n0, m) for m in (10000, 30000) if m > n0}
    if estimates:
        print(f"estimated wall time from the {n0:,}-row run (start-up and explanations fixed, robustness capped, "
              f"the rest linear; rough): " + ", ".join(f"{m:,} rows ≈ {s / 60:.1f} min" for m, s in estimates.items()))
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["benchmarks/scale.py", *sys.argv[1:]])
    print("\n" + markdown(rows, load_before, load_after, command, when) + "\n")
    path = args.json or args.work / f"scale-{stamp}.json"
    path.write_text(json.dumps({"command": command, "finished": when, "model": str(args.model),
                                "precision": args.precision, "nice": os.nice(0), "load_average_before": load_before,
                                "load_average_after": load_after, "sizes": {str(n): g for n, g in rows},
                                "estimated_wall_s": {str(m): s for m, s in estimates.items()}}, indent=1))
    print(f"results: {path}")


if __name__ == "__main__":
    main()

"""`audit run` with the fin policy at 1k, 10k and 30k eval rows of free text of varying length.

The text is generated here, seeded, from the bundled German credit rows (no download): each row is said in a
random subset of a dozen clause forms, in random order, with 0 to 6 sentences of free-form remarks, so texts run
from a few words to past the model's window. Each row keeps the German credit columns (the demo manifest's
protected attributes and label) and the aliases the test fixtures' tiny model reads (`sex`, `age`, `label`,
`id`), so the same data serves the demo model and a tiny one. The manifest is the model's own with
`text: {column: text}`; the policy is policies/fin.yaml with `budget.max_rows` raised to the largest size; the
current set (for the drift family) is 1,000 rows generated with another seed.

Per size, one fresh process runs `audit.api.run` with the model's forward pass timed (a wrapper around the
loaded model's `forward`), under /usr/bin/time for the peak RSS. Printed: wall time, peak RSS, model time (all
forward passes: eval, training and current sets, SHAP, counterfactual swaps) and the share of non-model work,
(wall - model time) / model time: target at most 25% at 10k rows, growing linearly.

    .venv/bin/python benchmarks/scale.py MODEL_DIR [--manifest M] [--sizes 1000 10000 30000] [--precision auto]

MODEL_DIR: an audit model folder, e.g. the demo's (`audit demo --out D` trains D/model). Validate on a small size
first: `benchmarks/scale.py D/model --sizes 200`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
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


def prepare(model: Path, sizes: list[int], work: Path, manifest_path: Path | None = None
            ) -> tuple[Path, Path, dict[int, Path], Path]:
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    manifest = yaml.safe_load((manifest_path or model / "audit-model.yaml").read_text())
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
from pathlib import Path
import audit.model as M

MODEL = [0.0, 0]
load = M.ModelBundle.load

def timed_load(self):
    out = load(self)
    model = self.model
    forward = model.forward

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return forward(*args, **kwargs)
        finally:
            MODEL[0] += time.perf_counter() - t
            MODEL[1] += 1

    model.forward = timed
    return out

M.ModelBundle.load = timed_load
import audit
model, manifest, policy, data, current, out, precision = sys.argv[1:8]
r = audit.run(model, policy, manifest=manifest, data=data, current=current, out=out, precision=precision)
print("SCALE " + json.dumps({"wall_s": time.perf_counter() - T0, "model_s": MODEL[0], "forward_calls": MODEL[1],
                             "exit_code": r.exit_code}), flush=True)
"""


def one(model: Path, manifest: Path, policy: Path, data: Path, current: Path, out: Path, precision: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    tool = Path("/usr/bin/time")
    cmd = [sys.executable, "-c", CHILD, str(model), str(manifest), str(policy), str(data), str(current), str(out),
           precision]
    full = [str(tool), "-f", "MAXRSS_KB %M", *cmd] if tool.exists() else cmd
    start = time.perf_counter()
    proc = subprocess.run(full, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    line = next((x for x in proc.stdout.splitlines() if x.startswith("SCALE ")), None)
    if line is None:
        raise SystemExit(f"audit run failed ({proc.returncode}): {proc.stderr[-1500:]}")
    got = json.loads(line[len("SCALE "):])
    rss = [x.split()[1] for x in proc.stderr.splitlines() if x.startswith("MAXRSS_KB ")]
    got["process_wall_s"] = wall
    got["peak_rss_mib"] = int(rss[-1]) / 1024 if rss else None
    result = json.loads((out / "result.json").read_text())
    got["eval_rows"] = result["data"]["eval"]["rows"]
    got["mean_tokens"] = result["scoring"]["mean_tokens"]
    checks = result["run"]["timings"]["checks_s"]
    got["slowest_checks"] = sorted(checks.items(), key=lambda kv: -kv[1])[:4]
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--manifest", type=Path, help="The model's audit-model.yaml when it is not in the folder.")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 30000])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "audit-scale-bench")
    args = ap.parse_args()
    manifest, policy, data, current = prepare(args.model, args.sizes, args.work, args.manifest)
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for n in args.sizes:
        got = one(args.model, manifest, policy, data[n], current, args.work / f"run-{n}", args.precision)
        share = (got["wall_s"] - got["model_s"]) / got["model_s"] if got["model_s"] > 0 else float("inf")
        got["non_model_share"] = share
        rows.append((n, got))
        rss = f"{got['peak_rss_mib']:.0f} MiB" if got["peak_rss_mib"] else "n/a"
        print(f"{n:>6} rows (eval {got['eval_rows']}, mean {got['mean_tokens']} tokens): wall {got['wall_s']:.1f} s "
              f"(process {got['process_wall_s']:.1f} s), peak RSS {rss}, model {got['model_s']:.1f} s in "
              f"{got['forward_calls']} forward passes, non-model work {share:.0%} of model time; exit "
              f"{got['exit_code']}; slowest checks {got['slowest_checks']}", flush=True)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

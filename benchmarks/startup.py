"""The fixed cost of `audit run` before the first row is scored: imports, policy, model folder (checked and
hashed), eval rows, model load. Target (issue 18): at most 2.5 s.

Each run is a fresh process that runs `audit.runner.run_audit` up to its call of the scoring step, which is
replaced by a stop that reports the time since the process started (`time.perf_counter` from the first line,
plus the interpreter's own start-up, measured from outside as the process's wall time) and the CPU time.
Two arms, alternating A B A B in one process group: `fast` (the code as it is: audit.fastload builds the model
on the meta device and assigns the safetensors tensors) and `from_pretrained` (the same code with the fast
loader switched off, so the model comes from transformers' from_pretrained as before). Medians are printed.

    .venv/bin/python benchmarks/startup.py MODEL_DIR [--policy fin] [--rounds 5] [--manifest M]

MODEL_DIR is an audit model folder (the demo's `audit demo --out D` gives D/model; the peer job's
$PEERS_DIR/model with --manifest $PEERS_DIR/audit-model.yaml). With --profile, one more run of the fast arm
under `python -X importtime` prints the 25 slowest imports (cumulative).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import time
T0 = time.perf_counter()
import json, os, resource, sys
from pathlib import Path
import audit.runner as R

STAMPS = {}

def stop(*args, **kwargs):
    STAMPS["before_scoring_s"] = time.perf_counter() - T0
    STAMPS["cpu_s"] = time.process_time()
    STAMPS["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    STAMPS["heavy"] = sorted({m.split(".")[0] for m in sys.modules} & {"shap", "evidently", "fairlearn", "sklearn",
                                                                      "numba", "matplotlib", "scipy", "jinja2"})
    print("STARTUP " + json.dumps(STAMPS), flush=True)
    raise SystemExit(0)

if os.environ.get("STARTUP_ARM") == "from_pretrained":
    import audit.model
    audit.model._fast_load = lambda *a, **k: None

import audit.model as M
load = M.ModelBundle.load

def timed_load(self):
    t = time.perf_counter()
    out = load(self)
    STAMPS["model_load_s"] = time.perf_counter() - t
    return out

M.ModelBundle.load = timed_load
STAMPS["imports_s"] = time.perf_counter() - T0
R.score_all = stop
manifest = Path(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
R.run_audit(sys.argv[1], sys.argv[2], progress=False, report_root=Path(os.environ["STARTUP_OUT"]),
            manifest_path=manifest)
"""


def one(arm: str, model: str, policy: str, manifest: str, out: Path) -> dict:
    env = {**os.environ, "STARTUP_ARM": arm, "STARTUP_OUT": str(out), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, model, policy, manifest], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    line = next((x for x in proc.stdout.splitlines() if x.startswith("STARTUP ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{arm} failed ({proc.returncode}): {proc.stderr[-800:]}")
    got = json.loads(line[len("STARTUP "):])
    got["process_wall_s"] = wall  # interpreter start-up included; the process ends right after the stop
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--policy", default="fin")
    ap.add_argument("--manifest", default="")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "audit-startup-bench"
    arms = ("fast", "from_pretrained")
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    for r in range(args.rounds):
        for arm in arms:
            got = one(arm, args.model, args.policy, args.manifest, out)
            runs[arm].append(got)
            print(f"round {r + 1} {arm:<16} process {got['process_wall_s']:5.2f} s, before scoring "
                  f"{got['before_scoring_s']:5.2f} s (imports {got['imports_s']:.2f}, model load "
                  f"{got.get('model_load_s', float('nan')):.2f}), CPU {got['cpu_s']:.2f} s", flush=True)
    for arm in arms:
        med = {k: statistics.median(x[k] for x in runs[arm] if k in x)
               for k in ("process_wall_s", "before_scoring_s", "imports_s", "model_load_s", "cpu_s", "maxrss_mib")}
        print(f"median {arm:<16} " + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
              + "; imported before scoring: " + (", ".join(runs[arm][-1]["heavy"]) or "none of these"))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.profile:
        env = {**os.environ, "STARTUP_ARM": "fast", "STARTUP_OUT": str(out), "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD, args.model, args.policy,
                               args.manifest], env=env, capture_output=True, text=True)
        rows = []
        for line in proc.stderr.splitlines():
            if line.startswith("import time:") and "|" in line:
                parts = [p.strip() for p in line[len("import time:"):].split("|")]
                if parts[1].isdigit():
                    rows.append((int(parts[1]), parts[2]))
        for us, name in sorted(rows, reverse=True)[:25]:
            print(f"{us / 1e6:6.2f} s  {name}")


if __name__ == "__main__":
    main()

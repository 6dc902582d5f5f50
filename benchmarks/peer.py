"""`audit run` against the handwritten peer (../shared/bench/peer_a_handwritten.py), same model, same data.

Prepares once: the reference model from ../shared/bench/make_model.py (under $PEERS_DIR, default
~/.cache/peers), then an audit manifest for it (train rows then held-out rows in one CSV, the split recorded by
row index). Then runs, in one process group and alternating A B A B, `audit run` with every family at the peer's
SHAP budget (benchmarks/peer-policy.yaml; drift: training rows vs the held-out rows as `--current`) and the
peer, and the scan tool (../shared/bench/peer_c_giskard.py) from its own venv, $PEERS_DIR/venv-c (its pins clash
with the project's; the install line is in ../shared/bench/README.md): where that venv is absent, the arm is
skipped with a message. Prints each wall time and peak RSS (through /usr/bin/time), the medians and the ratios
to the peer and to the scan tool; `--bf16` adds an arm, the audit with the opt-in `--precision bf16`, and
`--fp32` one with `--precision fp32` (the audit's own arm runs the default, `--precision auto`).

    PEERS_DIR=/tmp/peers .venv/bin/python benchmarks/peer.py [--rounds 2] [--bf16] [--fp32] [--no-scan]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent.parent / "shared" / "bench"


def prepare(peers: Path) -> tuple[Path, Path]:
    import pandas as pd
    import yaml

    from audit.data import sha256_file

    model, data = peers / "model", peers / "data"
    if not (model / "config.json").exists():
        subprocess.run([sys.executable, str(BENCH / "make_model.py")], check=True,
                       env={**os.environ, "PEERS_DIR": str(peers)})
    train, held = pd.read_csv(data / "train.csv"), pd.read_csv(data / "heldout.csv")
    both = data / "audit-all.csv"
    pd.concat([train, held], ignore_index=True).to_csv(both, index=False)
    recipe = yaml.safe_load((HERE.parent / "audit" / "data" / "german_credit" / "recipe.yaml").read_text())
    manifest = {
        "name": "peer-reference-minilm", "labels": ["bad", "good"], "positive_label": "good",
        "label_column": "creditability", "text": {"column": "text"}, "id_column": "row_id", "max_length": 64,
        "protected_attributes": recipe["protected_attributes"],
        "data": {"source": {"path": str(both), "sha256": sha256_file(both), "rows": len(train) + len(held)},
                 "split": {"eval_fraction": len(held) / (len(train) + len(held)), "seed": 42,
                           "train_rows": len(train), "eval_rows": len(held),
                           "train_index": list(range(len(train))),
                           "eval_index": list(range(len(train), len(train) + len(held)))}},
    }
    path = peers / "audit-model.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return model, path


def timed(cmd: list[str], env: dict) -> tuple[float, float | None]:
    """Wall seconds and peak RSS (MiB, from /usr/bin/time when the machine has it) of one command."""
    tool = Path("/usr/bin/time")
    full = [str(tool), "-f", "MAXRSS_KB %M", *cmd] if tool.exists() else cmd
    start = time.perf_counter()
    proc = subprocess.run(full, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1, 3):  # the audit's verdict codes; 2 means it could not run
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {proc.stderr[-500:]}")
    rss = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB ")]
    return wall, (int(rss[-1]) / 1024 if rss else None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="Also run the audit with the opt-in --precision bf16.")
    ap.add_argument("--fp32", action="store_true", help="Also run the audit with --precision fp32.")
    ap.add_argument("--no-scan", action="store_true", help="Leave out the scan tool's arm.")
    ap.add_argument("--dry-run", action="store_true", help="Print the arms' commands; prepare and run nothing.")
    args = ap.parse_args()
    peers = Path(os.environ.get("PEERS_DIR", Path.home() / ".cache" / "peers"))
    model, manifest = (peers / "model", peers / "audit-model.yaml") if args.dry_run else prepare(peers)
    env = {**os.environ, "PEERS_DIR": str(peers), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    audit_cmd = [sys.executable, "-m", "audit", "run", str(model), "--manifest", str(manifest), "--policy",
                 str(HERE / "peer-policy.yaml"), "--current", str(peers / "data" / "heldout.csv"),
                 "--out", str(peers / "out" / "audit"), "--no-progress"]
    arms = [("audit", audit_cmd), ("peer", [sys.executable, str(BENCH / "peer_a_handwritten.py")])]
    if args.bf16:
        arms.insert(1, ("audit-bf16", audit_cmd[:-2] + [str(peers / "out" / "audit-bf16"), "--no-progress",
                                                          "--precision", "bf16"]))
    if args.fp32:
        arms.insert(1, ("audit-fp32", audit_cmd[:-2] + [str(peers / "out" / "audit-fp32"), "--no-progress",
                                                          "--precision", "fp32"]))
    scan_python = peers / "venv-c" / "bin" / "python"
    if args.no_scan:
        pass
    elif scan_python.exists():
        arms.append(("scan", [str(scan_python), str(BENCH / "peer_c_giskard.py")]))
    else:
        print(f"scan tool arm skipped: no venv at {scan_python.parent.parent} (its install line is in "
              f"{BENCH / 'README.md'})", flush=True)
    if args.dry_run:
        for name, cmd in arms:
            print(f"{name}: {' '.join(cmd)}")
        return
    walls: dict[str, list[float]] = {name: [] for name, _ in arms}
    rss: dict[str, list[float]] = {name: [] for name, _ in arms}
    for r in range(args.rounds):
        for name, cmd in arms:
            wall, peak = timed(cmd, env)
            walls[name].append(wall)
            if peak is not None:
                rss[name].append(peak)
            print(f"round {r + 1} {name:<10} {wall:6.1f} s" + (f"  peak RSS {peak:6.0f} MiB" if peak else ""),
                  flush=True)
    p = statistics.median(walls["peer"])
    scan = statistics.median(walls["scan"]) if walls.get("scan") else None
    for name, _ in arms:
        w = statistics.median(walls[name])
        mem = f", peak RSS {statistics.median(rss[name]):.0f} MiB" if rss[name] else ""
        to_scan = f", ratio to scan tool {w / scan:.2f}" if scan else ""
        print(f"median {name:<10} {w:6.1f} s{mem}, ratio to peer {w / p:.2f}{to_scan}")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

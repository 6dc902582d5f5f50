"""`audit run` against the handwritten peer (../shared/bench/peer_a_handwritten.py), same model, same data.

Prepares once: the reference model from ../shared/bench/make_model.py (under $PEERS_DIR, default
~/.cache/peers), then an audit manifest for it (train rows then held-out rows in one CSV, the split recorded by
row index). Then runs, in one process group and alternating A B A B, `audit run` with every family at the peer's
SHAP budget (benchmarks/peer-policy.yaml; drift: training rows vs the held-out rows as `--current`) and the
peer. Prints each wall time, the medians and the ratio audit / peer (peak RSS: run each under /usr/bin/time -v).

    PEERS_DIR=/tmp/peers .venv/bin/python benchmarks/peer.py [--rounds 2]
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


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1, 3):  # the audit's verdict codes; 2 means it could not run
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    peers = Path(os.environ.get("PEERS_DIR", Path.home() / ".cache" / "peers"))
    model, manifest = prepare(peers)
    env = {**os.environ, "PEERS_DIR": str(peers), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    audit_cmd = [sys.executable, "-m", "audit", "run", str(model), "--manifest", str(manifest), "--policy",
                 str(HERE / "peer-policy.yaml"), "--current", str(peers / "data" / "heldout.csv"),
                 "--out", str(peers / "out" / "audit"), "--no-progress"]
    peer_cmd = [sys.executable, str(BENCH / "peer_a_handwritten.py")]
    walls: dict[str, list[float]] = {"audit": [], "peer": []}
    for r in range(args.rounds):
        for name, cmd in (("audit", audit_cmd), ("peer", peer_cmd)):
            wall = timed(cmd, env)
            walls[name].append(wall)
            print(f"round {r + 1} {name:<5} {wall:6.1f} s", flush=True)
    a, p = statistics.median(walls["audit"]), statistics.median(walls["peer"])
    print(f"median: audit {a:.1f} s, peer {p:.1f} s, ratio audit/peer {a / p:.2f}")


if __name__ == "__main__":
    main()

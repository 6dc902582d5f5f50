"""`audit run --predictions LOG.parquet` at 100k, 1M (and optionally 10M) rows: wall time and peak RSS.

Writes a synthetic prediction log per size (row id, score, label, sex, age, foreign_worker, a short text) with
pyarrow in row groups, so making it needs little memory either; a minimal model folder (a tiny safetensors file
and an audit-model.yaml: the streaming audit never loads weights, it hashes them); then runs, once per size, the
real CLI under /usr/bin/time -v with policies/fin.yaml (1,000 bootstrap replicates), and prints rows, wall
seconds, peak RSS and rows/s, and the audit's own split (read, statistics, checks).

    .venv/bin/python benchmarks/streaming.py [--sizes 100000 1000000 10000000] [--dir /tmp/stream-bench]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def make_model(folder: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    from audit.manifest import Manifest, ProtectedAttribute, TextRecipe

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_labels": 2}))
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / "model.safetensors"))
    m = Manifest(name="stream-bench", labels=["bad", "good"], positive_label="good", label_column="label",
                 text=TextRecipe(column="text"), id_column="row_id",
                 protected_attributes={"sex": ProtectedAttribute(column="sex"),
                                       "age": ProtectedAttribute(column="age", bins=[25]),
                                       "foreign_worker": ProtectedAttribute(column="foreign_worker")})
    (folder / "audit-model.yaml").write_text(m.to_yaml())
    return folder


def make_log(path: Path, rows: int, seed: int = 0, group_rows: int = 1_000_000) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    writer = None
    tmp = path.with_suffix(".tmp")
    for start in range(0, rows, group_rows):
        n = min(group_rows, rows - start)
        y = rng.random(n) < 0.7
        sex = rng.choice(np.array(["male", "female"]), n)
        score = np.clip(0.35 * y + 0.65 * rng.random(n) - 0.03 * (sex == "female"), 0, 1)
        table = pa.table({
            "row_id": pa.array([f"app-{i}" for i in range(start, start + n)]),
            "score": score, "label": np.where(y, "good", "bad"), "sex": sex,
            "age": rng.integers(19, 76, n), "foreign_worker": rng.choice(np.array(["yes", "no"]), n, p=[0.9, 0.1]),
            "text": pa.array(["applicant pays on time"] * n)})
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.rename(path)
    return path


def run_one(model: Path, log: Path, out: Path) -> dict:
    cmd = ["/usr/bin/time", "-v", str(ROOT / ".venv" / "bin" / "audit"), "run", str(model), "--policy",
           str(ROOT / "policies" / "fin.yaml"), "--predictions", str(log), "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode not in (0, 1, 3):
        sys.exit(f"audit run failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (.+)", p.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", p.stderr).group(1)) for k in ("User", "System"))
    timings = json.loads((out / "result.json").read_text())["run"]["timings"]
    return {"wall_s": seconds, "cpu_s": cpu, "peak_rss_mib": rss_kb / 1024, "exit": p.returncode, **timings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/stream-bench"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    model = make_model(args.dir / "model")
    print(f"{'rows':>12} {'wall s':>8} {'cpu s':>8} {'peak RSS MiB':>13} {'rows/s':>10} {'read s':>7} {'stats s':>8} "
          f"{'checks s':>9}")
    for n in args.sizes:
        log = make_log(args.dir / f"log-{n}.parquet", n)
        r = run_one(model, log, args.dir / f"out-{n}")
        print(f"{n:>12,} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['peak_rss_mib']:>13.0f} {n / r['wall_s']:>10,.0f} "
              f"{r['read_s']:>7.1f} {r['statistics_s']:>8.1f} {r['checks_s']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()

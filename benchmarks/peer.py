"""`audit run` against the handwritten peer and the scan tool (../shared/bench/), same model, same data.

Prepares once (outside the timing): the reference model from ../shared/bench/make_model.py (under $PEERS_DIR,
default ~/.cache/peers) when it is not there yet, and an audit manifest for it (train rows then held-out rows in
one CSV, the split recorded by row index). Then runs N rounds, alternating A B C A B C, each arm a fresh child
process of this one (no new session: the whole benchmark is one process group, and one Ctrl-C stops it):

- `audit`: `audit run` with its default settings (`--precision auto`) at the peer policy
  (benchmarks/peer-policy.yaml: every family at the peer's SHAP budget; drift: the training rows against the
  held-out rows as `--current`), from this checkout (its root is put first on PYTHONPATH);
- `handwritten`: ../shared/bench/peer_a_handwritten.py (pipeline scoring, fairlearn, shap, evidently) with this
  interpreter. Its `shap.plots.text` needs matplotlib, which the project's venv does not install; where this
  interpreter lacks it, the arm uses the overlay $PEERS_DIR/peer-a-site (made by the command printed when it is
  missing; pip --target, --no-deps, so torch, shap, fairlearn and evidently stay the project's own);
- `scan`: ../shared/bench/peer_c_giskard.py with its own venv, $PEERS_DIR/venv-c (its pins clash with the
  project's; install line in ../shared/bench/README.md). Where that venv is absent or has no giskard, the arm is
  skipped with a line that says so.

`--bf16` adds the audit with the opt-in `--precision bf16`, `--fp32` one with `--precision fp32`.

Each child's wall time is taken around it and its peak RSS and CPU time come from the kernel (`os.wait4`'s
rusage of that child: ru_maxrss, user + system). Printed: every round, the medians, the ratios of each audit arm
to the handwritten peer and to the scan tool, the issue's targets (audit ≤ 0.5× handwritten, ≤ 0.7× the scan
tool, peak RSS ≤ the handwritten peer's) and the load average before and after; then a markdown block (a table
for benchmarks/README.md). Everything also goes to a JSON file (`--json`, default
$PEERS_DIR/out/peer-bench-<UTC time>.json). Each child's stdout and stderr go to $PEERS_DIR/out/logs/.

    PEERS_DIR=/tmp/peers .venv/bin/python benchmarks/peer.py [--rounds 3] [--bf16] [--fp32] [--no-scan]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from children import run_child  # benchmarks/children.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH = ROOT.parent / "shared" / "bench"
VERDICT_CODES = (0, 1, 3)  # the audit's PASS / FAIL / INCONCLUSIVE; 2 means it could not run
TARGETS = {"wall_to_handwritten": 0.5, "wall_to_scan": 0.7, "rss_to_handwritten": 1.0}
LABELS = {"audit": "`audit run` (default, `--precision auto`)", "audit-fp32": "`audit run --precision fp32`",
          "audit-bf16": "`audit run --precision bf16` (opt-in)", "handwritten": "handwritten peer",
          "scan": "scan tool (giskard 2.19.2)"}
PEER_A_EXTRA = ("matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pillow", "pyparsing")


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
    recipe = yaml.safe_load((ROOT / "audit" / "data" / "german_credit" / "recipe.yaml").read_text())
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


def peer_a_pythonpath(peers: Path) -> str | None:
    """The PYTHONPATH the handwritten peer needs for matplotlib: None when this interpreter has it, the overlay
    folder when that has it; SystemExit with the install line otherwise."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:
        return None
    site = peers / "peer-a-site"
    if (site / "matplotlib").is_dir():
        return str(site)
    raise SystemExit(f"the handwritten peer needs matplotlib (its shap.plots.text), which {sys.executable} lacks; "
                     f"install it beside the project's venv, leaving the venv as it is:\n  {sys.executable} -m pip "
                     f"install --target {site} --no-deps {' '.join(PEER_A_EXTRA)}")


def scan_python(peers: Path) -> tuple[Path | None, str]:
    """The scan tool's interpreter, or None with the reason the arm is skipped."""
    python = peers / "venv-c" / "bin" / "python"
    if not python.exists():
        return None, f"no venv at {python.parent.parent}"
    probe = subprocess.run([str(python), "-c", "import importlib.util, sys; "
                            "sys.exit(importlib.util.find_spec('giskard') is None)"], capture_output=True)
    if probe.returncode != 0:
        return None, f"{python} has no giskard (a half-made install?)"
    return python, ""


def timed(cmd: list[str], env: dict, log: Path, ok: tuple[int, ...] = (0,)) -> dict:
    """Run one arm as a child of this process (same process group); its wall seconds, and from the kernel's
    rusage of that child (os.wait4) its peak RSS in MiB and its CPU seconds (user + system)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    wall, code, usage = run_child(cmd, env, ROOT, log)
    if code not in ok:
        tail = log.read_text(errors="replace")[-800:]
        raise SystemExit(f"{' '.join(cmd[:4])} ... exited {code} (log: {log}):\n{tail}")
    return {"wall_s": round(wall, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss: KiB on Linux
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "exit_code": code, "load1_at_start": round(load, 2)}


def audit_times(log: Path, folder: Path) -> dict:
    """An audit arm's model time (forward_timer's line in its log) and its result.json timings: what the
    arithmetic of its forward passes alone costs, against which the wall-time targets can be read."""
    line = next((x for x in log.read_text(errors="replace").splitlines() if x.startswith("FORWARD ")), None)
    got = json.loads(line[len("FORWARD "):]) if line else {}
    timings = json.loads((folder / "result.json").read_text())["run"]["timings"]
    return {"model_s": got.get("model_s"), "forward_calls": got.get("forward_calls"),
            "scoring_s": timings["scoring_s"], "checks_s": timings["checks_s"]}


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Medians per arm and the ratios of every audit arm to the handwritten peer and to the scan tool."""
    med = {name: {key: statistics.median(r[key] for r in rs) for key in ("wall_s", "peak_rss_mib", "cpu_s", "model_s")
                  if all(r.get(key) is not None for r in rs)}
           for name, rs in runs.items() if rs}
    hand, scan = med.get("handwritten"), med.get("scan")
    ratios = {}
    for name, m in med.items():
        if not name.startswith("audit"):
            continue
        ratios[name] = {
            "wall_to_handwritten": m["wall_s"] / hand["wall_s"] if hand else None,
            "rss_to_handwritten": m["peak_rss_mib"] / hand["peak_rss_mib"] if hand else None,
            "wall_to_scan": m["wall_s"] / scan["wall_s"] if scan else None,
            "rss_to_scan": m["peak_rss_mib"] / scan["peak_rss_mib"] if scan else None,
            # the forward passes alone: no non-model work at all would still leave this much of the wall ratio
            "model_to_handwritten": m["model_s"] / hand["wall_s"] if hand and "model_s" in m else None,
            "model_to_scan": m["model_s"] / scan["wall_s"] if scan and "model_s" in m else None,
        }
    return {"medians": med, "ratios": ratios}


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _met(x: float | None, target: float) -> str:
    if x is None:
        return "not measured"
    return f"{x:.2f} (target ≤ {target:.1f}: {'met' if x <= target else 'not met'})"


def markdown(summary: dict, runs: dict[str, list[dict]], load_before: list[float], load_after: list[float],
             command: str, when: str) -> str:
    """The block for benchmarks/README.md: one table row per arm, then the targets of issue 18."""
    med, ratios = summary["medians"], summary["ratios"]
    lines = [f"`{command}`, {when}, load average {' '.join(f'{x:.1f}' for x in load_before)} before, "
             f"{' '.join(f'{x:.1f}' for x in load_after)} after:", "",
             "| arm | rounds (wall) | median wall | median peak RSS | median CPU | wall ratio to handwritten "
             "| wall ratio to scan tool |", "|---|---|---|---|---|---|---|"]
    for name, m in med.items():
        r = ratios.get(name, {})
        hand = 1.0 if name == "handwritten" else r.get("wall_to_handwritten")
        scan = 1.0 if name == "scan" else r.get("wall_to_scan")
        if name == "scan" and "handwritten" in med:
            hand = m["wall_s"] / med["handwritten"]["wall_s"]
        if name == "handwritten" and "scan" in med:
            scan = m["wall_s"] / med["scan"]["wall_s"]
        rounds = ", ".join(f"{x['wall_s']:.1f}" for x in runs[name])
        lines.append(f"| {LABELS.get(name, name)} | {rounds} s | {m['wall_s']:.1f} s | {m['peak_rss_mib']:,.0f} MiB "
                     f"| {m['cpu_s']:.1f} s | {_ratio(hand)} | {_ratio(scan)} |")
    if "audit" in ratios:
        r = ratios["audit"]
        lines += ["", f"Targets (`audit run`, default): wall / handwritten "
                      f"{_met(r['wall_to_handwritten'], TARGETS['wall_to_handwritten'])}; wall / scan tool "
                      f"{_met(r['wall_to_scan'], TARGETS['wall_to_scan'])}; peak RSS / handwritten "
                      f"{_met(r['rss_to_handwritten'], TARGETS['rss_to_handwritten'])}."]
        if r.get("model_to_handwritten") is not None:
            lines += ["", f"The audit's forward passes alone (median {med['audit']['model_s']:.1f} s, "
                          "benchmarks/forward_timer.py) are "
                          f"{r['model_to_handwritten']:.2f} of the handwritten peer's wall time"
                          + (f" and {r['model_to_scan']:.2f} of the scan tool's" if r.get("model_to_scan") else "")
                          + ": with no other work at all the ratios could not go below these."]
    return "\n".join(lines)


def git_head() -> str | None:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def main() -> None:
    sys.path.insert(0, str(ROOT))  # this checkout's audit, also without PYTHONPATH (the children get it too)
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="Also run the audit with the opt-in --precision bf16.")
    ap.add_argument("--fp32", action="store_true", help="Also run the audit with --precision fp32.")
    ap.add_argument("--no-scan", action="store_true", help="Leave out the scan tool's arm.")
    ap.add_argument("--json", type=Path, help="Where to write the results (default $PEERS_DIR/out/peer-bench-*.json).")
    ap.add_argument("--dry-run", action="store_true", help="Print the arms' commands; prepare and run nothing.")
    args = ap.parse_args()
    peers = Path(os.environ.get("PEERS_DIR", Path.home() / ".cache" / "peers")).resolve()
    model, manifest = (peers / "model", peers / "audit-model.yaml") if args.dry_run else prepare(peers)
    env = {**os.environ, "PEERS_DIR": str(peers), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "MPLCONFIGDIR": str(peers / "mplconfig")}
    audit_env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    hand_env = dict(env)
    try:
        extra = peer_a_pythonpath(peers)
    except SystemExit as exc:
        if not args.dry_run:
            raise
        extra = None
        print(exc, flush=True)
    if extra:
        hand_env["PYTHONPATH"] = os.pathsep.join([extra, *filter(None, [os.environ.get("PYTHONPATH")])])
    scan_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # its own venv: nothing of ours on its path
    out = peers / "out"
    # `audit run` under benchmarks/forward_timer.py: the same CLI, with the time inside the model's forward passes
    audit_cmd = [sys.executable, str(HERE / "forward_timer.py"), "run", str(model), "--manifest", str(manifest), "--policy",
                 str(HERE / "peer-policy.yaml"), "--current", str(peers / "data" / "heldout.csv"), "--no-progress"]
    arms = [("audit", audit_cmd + ["--out", str(out / "audit")], audit_env, VERDICT_CODES)]
    if args.fp32:
        arms.append(("audit-fp32", audit_cmd + ["--out", str(out / "audit-fp32"), "--precision", "fp32"], audit_env,
                     VERDICT_CODES))
    if args.bf16:
        arms.append(("audit-bf16", audit_cmd + ["--out", str(out / "audit-bf16"), "--precision", "bf16"], audit_env,
                     VERDICT_CODES))
    arms.append(("handwritten", [sys.executable, str(BENCH / "peer_a_handwritten.py")], hand_env, (0,)))
    scan_skipped = "left out (--no-scan)" if args.no_scan else ""
    if not args.no_scan:
        python, why = scan_python(peers)
        if python is None:
            scan_skipped = f"skipped: {why} (its install line is in {BENCH / 'README.md'})"
            print(f"scan tool arm {scan_skipped}", flush=True)
        else:
            arms.append(("scan", [str(python), str(BENCH / "peer_c_giskard.py")], scan_env, (0,)))
    if args.dry_run:
        for name, cmd, arm_env, _ in arms:
            print(f"{name}: {' '.join(cmd)}" + (f"  (PYTHONPATH={arm_env['PYTHONPATH']})"
                                                if arm_env.get("PYTHONPATH") else ""))
        return
    if extra:  # matplotlib builds its font cache on first import: once here, not inside the first timed round
        subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=hand_env, check=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    command = " ".join(["benchmarks/peer.py", *sys.argv[1:]])
    load_before = list(os.getloadavg())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; process group {os.getpgrp()}; "
          f"arms {', '.join(a[0] for a in arms)}; {args.rounds} rounds", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name, *_ in arms}
    for r in range(args.rounds):
        for name, cmd, arm_env, ok in arms:
            log = out / "logs" / f"{stamp}-{name}-{r + 1}.log"
            got = timed(cmd, arm_env, log, ok)
            if name.startswith("audit"):
                got.update(audit_times(log, out / name))
            runs[name].append(got)
            print(f"round {r + 1} {name:<12} {got['wall_s']:6.1f} s  peak RSS {got['peak_rss_mib']:6.0f} MiB  "
                  f"CPU {got['cpu_s']:6.1f} s  exit {got['exit_code']}  (load {got['load1_at_start']:.1f} at start)",
                  flush=True)
    load_after = list(os.getloadavg())
    summary = summarise(runs)
    for name, m in summary["medians"].items():
        r = summary["ratios"].get(name, {})
        print(f"median {name:<12} {m['wall_s']:6.1f} s, peak RSS {m['peak_rss_mib']:.0f} MiB, CPU {m['cpu_s']:.1f} s"
              + (f", ratio to handwritten {_ratio(r['wall_to_handwritten'])}, to scan tool "
                 f"{_ratio(r['wall_to_scan'])}" if r else ""))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print("\n" + markdown(summary, runs, load_before, load_after, command, when) + "\n")
    doc = {"command": command, "started": stamp, "finished": when, "rounds": args.rounds,
           "git_head": git_head(), "python": sys.executable, "peers_dir": str(peers), "process_group": os.getpgrp(),
           "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
           "nice": os.nice(0), "load_average_before": load_before, "load_average_after": load_after,
           "scan_arm": scan_skipped or "run", "handwritten_pythonpath_extra": extra,
           "arms": {name: cmd for name, cmd, *_ in arms}, "runs": runs, **summary, "targets": TARGETS}
    path = args.json or out / f"peer-bench-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"results: {path}")


if __name__ == "__main__":
    main()

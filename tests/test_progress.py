"""Progress: one line per step longer than a second, in a terminal only; silent in a pipe or with --no-progress."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

from audit import progress
from tests.conftest import MIN_POLICY, make_frame


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_silent_off_a_terminal_and_when_not_asked(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress.on(True) is False
    monkeypatch.setattr(sys, "stderr", TTY())
    assert progress.on(True) is True and progress.on(False) is False


def test_a_step_says_one_line_once_it_runs_past_the_delay(monkeypatch):
    err = TTY()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "AFTER_S", 0.05)
    with progress.step("check drift.embedding_auc", True):
        time.sleep(0.3)
    with progress.step("check performance.f1", True):
        pass  # quick: nothing
    assert err.getvalue() == "check drift.embedding_auc …\n"
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    with progress.step("check drift.embedding_auc", True):
        time.sleep(0.3)
    assert plain.getvalue() == ""


def test_a_bar_draws_in_a_terminal_after_the_delay_only(monkeypatch):
    err = TTY()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "AFTER_S", 0.0)
    for _ in progress.bar(range(3), progress=True, desc="scoring", unit="row"):
        pass
    assert "scoring" in err.getvalue() and "3/3" in err.getvalue()
    monkeypatch.setattr(progress, "AFTER_S", 30.0)
    err2 = TTY()
    monkeypatch.setattr(sys, "stderr", err2)
    for _ in progress.bar(range(3), progress=True, desc="scoring", unit="row"):
        pass
    assert err2.getvalue() == ""  # shorter than the delay: nothing drawn


def test_a_real_run_writes_no_progress_into_a_pipe(tiny_model, tmp_path):
    """`audit run` without --no-progress, its stderr a pipe (as in CI): not one progress character."""
    data = tmp_path / "eval.csv"
    make_frame(60, seed=3).to_csv(data, index=False)
    policy = tmp_path / "p.yaml"
    policy.write_text(MIN_POLICY)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run([sys.executable, "-m", "audit", "run", str(tiny_model), "--policy", str(policy), "--data",
                        str(data), "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode in (0, 1, 3), r.stderr
    assert r.stderr == ""
    assert "scoring" not in r.stdout and "\r" not in r.stdout and "it/s" not in r.stdout

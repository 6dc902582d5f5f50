"""One benchmark arm as a child process: its wall time and the kernel's account of it (peak RSS, CPU)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def run_child(cmd: list[str], env: dict, cwd: Path, log: Path):
    """Run `cmd` as a child of this process (same process group), its output into `log`; return its wall
    seconds, its exit code and its rusage from os.wait4 (ru_maxrss: peak RSS in KiB on Linux)."""
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
    return wall, os.waitstatus_to_exitcode(status), usage

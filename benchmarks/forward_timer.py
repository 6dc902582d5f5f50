"""Time every forward pass of the model that `audit` loads, in a benchmark's child process.

`install()` wraps `audit.model.ModelBundle.load` so that the loaded model's `forward` adds its seconds and calls to
the returned list [seconds, calls]: the model time of the whole audit (eval, training and current sets, SHAP's
masked texts, the re-scoring checks). `python benchmarks/forward_timer.py ARGS...` runs the `audit` CLI with
ARGS under it and prints one line `FORWARD {"model_s": ..., "forward_calls": ..., "wall_s": ...}` before it exits
with the CLI's exit code (used by peer.py and scale.py).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()


def install() -> list:
    import audit.model as M

    counter = [0.0, 0]
    load = M.ModelBundle.load

    def timed_load(self):
        out = load(self)
        forward = self.model.forward

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                counter[0] += time.perf_counter() - t
                counter[1] += 1

        self.model.forward = timed
        return out

    M.ModelBundle.load = timed_load
    return counter


def main() -> None:
    import json
    import sys

    counter = install()
    from audit.cli import main as cli

    sys.argv = ["audit", *sys.argv[1:]]
    code = 0
    try:
        cli()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    print("FORWARD " + json.dumps({"model_s": counter[0], "forward_calls": counter[1],
                                   "wall_s": time.perf_counter() - T0}), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()

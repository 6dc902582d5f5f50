"""Progress in a terminal, and silence everywhere else.

Every step that can take longer than a second says so on stderr, one line per step: a tqdm bar for the steps
that count rows, texts or batches (scoring, SHAP, counterfactual re-scoring, training epochs), and for the other
steps (drift, membership inference, each check) a line once the step has run for a second, naming it. Nothing is
written when stderr is not a terminal (a CI log, a pipe, a file) or with `--no-progress`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

AFTER_S = 1.0  # a step shorter than this says nothing


def on(progress: Any) -> bool:
    """Whether to show progress: asked for, and stderr is a terminal."""
    if not progress:
        return False
    stream = sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def bar(iterable: Iterable | None = None, *, progress: Any, **kw):
    """A tqdm bar that draws only in a terminal; it leaves its one line behind when it ends."""
    from tqdm.auto import tqdm

    kw.setdefault("leave", True)
    kw.setdefault("delay", AFTER_S)  # a step shorter than a second draws nothing
    kw.setdefault("file", sys.stderr)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not on(progress), **kw)


def write(line: str, progress: Any) -> None:
    """One line of progress (through tqdm, so an open bar is redrawn below it)."""
    if on(progress):
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stderr)


class step:
    """`with step("drift: embedding classifier", progress):` — a line on stderr when the step has run for
    `AFTER_S` seconds (so quick steps stay quiet), and nothing at all off a terminal."""

    def __init__(self, name: str, progress: Any):
        self.name, self.enabled = name, on(progress)
        self._timer: threading.Timer | None = None

    def _announce(self) -> None:
        write(f"{self.name} …", True)

    def __enter__(self):
        self.started = time.perf_counter()
        if self.enabled:
            self._timer = threading.Timer(AFTER_S, self._announce)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc):
        if self._timer is not None:
            self._timer.cancel()
        return False

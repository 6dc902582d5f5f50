"""CONTRIBUTING.md stays true: every path it names exists, a `<family>` path for every family, and the names it
tells a contributor to use are there."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from audit.checks import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
PATH = re.compile(r"`((?:audit|tests|reports|policies|docs)/[^`\s]*)`")


def named_paths() -> list[str]:
    return sorted(set(PATH.findall(TEXT)) | set(re.findall(r"\s((?:tests|audit)/[\w/]+\.py)\b", TEXT)))


def test_contributing_names_paths():
    assert len(named_paths()) >= 20  # the pattern finds the paths (a change of style would make it find none)
    assert "audit/render/<family>_view.py" in named_paths()


def test_every_path_it_names_exists():
    missing = []
    for p in named_paths():
        for path in ([p.replace("<family>", f) for f in FAMILIES] if "<family>" in p else [p]):
            if not (ROOT / path.rstrip("/")).exists():
                missing.append(path)
    assert missing == []


def test_the_names_it_tells_you_to_use_exist():
    names = {"audit.checks": ["check", "FAMILIES", "all_checks"], "audit.engines": ["Engine", "LocalEngine",
             "RayEngine", "make_engine"], "audit.render.outputs": ["render_all"], "audit.context": ["Shared"],
             "audit.result": ["Measurement"], "audit.render.views": ["_family_view_module"]}
    for module, attrs in names.items():
        mod = importlib.import_module(module)
        for a in attrs:
            assert hasattr(mod, a), f"{module}.{a}"
            assert a in TEXT or a.startswith("_"), a
    for family in FAMILIES:
        assert hasattr(importlib.import_module(f"audit.render.{family}_view"), "detail"), family
    engine_members = re.search(r"protocol of `audit/engines.py` \(([^)]*)\)", TEXT.replace("\n", " ")).group(1)
    from audit.engines import Engine

    listed = set(re.findall(r"`(\w+)`", engine_members))
    assert listed == {m for m in dir(Engine) if not m.startswith("_")} | set(Engine.__annotations__)

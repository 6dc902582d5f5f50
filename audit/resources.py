"""Where the files that ship with audit live: in the wheel under audit/_bundled, or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _find(bundled: str, checkout: str) -> Path:
    inside = _PACKAGE / "_bundled" / bundled
    return inside if inside.is_dir() else _CHECKOUT / checkout


def templates_dir() -> Path:
    return _find("templates", "reports/templates")


def policies_dir() -> Path:
    return _find("policies", "policies")


def data_dir() -> Path:
    return _PACKAGE / "data"

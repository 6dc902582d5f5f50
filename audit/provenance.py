"""Provenance helpers: package versions and the platform, recorded with every model and every run."""

from __future__ import annotations

import platform

PACKAGES = ("audit", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "scikit-learn",
            "scipy", "pydantic", "jinja2", "fairlearn", "shap", "evidently")


def package_versions(names=PACKAGES) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": package_versions()}

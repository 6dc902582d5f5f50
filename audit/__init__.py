"""audit: model governance and audit for text classifiers.

`audit.run(model_dir, policy=..., data=...)` audits a model and `audit.load(run_dir)` reads a run back (see
audit/api.py). They are imported on first use, so `import audit` stays light (no torch).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "run", "load", "AuditResult", "RunFiles"]


def __getattr__(name: str):
    if name in ("run", "load", "AuditResult", "RunFiles"):
        from audit import api

        return getattr(api, name)
    raise AttributeError(f"module 'audit' has no attribute {name!r}")

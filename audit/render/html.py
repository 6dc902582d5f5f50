"""report.html: jinja2 over reports/templates/, fed with view-models built from the result dict.

The environment always autoescapes (dataset text, model names and reasons are hostile input) and uses
StrictUndefined, so a template that names a missing field fails loudly instead of printing nothing. User
folders come first in the loader: a file named like a shipped template (`base.html`, `performance.html`, ...)
replaces it.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2.sandbox import SecurityError

from audit.errors import OutputError
from audit.render.governance import governance_view
from audit.render.signoff import signoff_view
from audit.render.views import report_view
from audit.resources import templates_dir

REPORT_TEMPLATE = "report.html"


def environment(template_dirs: list[Path] | None = None) -> jinja2.Environment:
    """A bounded sandbox (audit/sandbox.py) for every template, shipped or a user's override: a template from a
    --templates folder cannot reach Python internals (`__class__.__mro__`, `__globals__`) or write files."""
    from audit.sandbox import BoundedSandbox

    loaders = [jinja2.FileSystemLoader(str(d)) for d in (template_dirs or [])]
    loaders.append(jinja2.FileSystemLoader(str(templates_dir())))
    return BoundedSandbox(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(result: dict, template_dirs: list[Path] | None = None, *, decisions: list[dict] | None = None,
                result_text: str | None = None) -> str:
    """The HTML report of one result dict (as in result.json, whose text is `result_text` when the caller has it).
    `decisions`: the sign-off decisions the ledger records on the run (None: not read; the run's own report)."""
    for d in template_dirs or []:
        if not Path(d).is_dir():
            raise OutputError(f"template folder {d} does not exist")
    view = report_view(result)
    so = signoff_view(result, result_text, decisions)
    try:
        return environment(template_dirs).get_template(REPORT_TEMPLATE).render(r=view, g=governance_view(result),
                                                                               so=so)
    except jinja2.TemplateSyntaxError as e:
        raise OutputError(f"template {e.filename or e.name}:{e.lineno}: {e.message}") from None
    except SecurityError as e:
        raise OutputError(f"template {_template_at(e, template_dirs)}: refused by the sandbox: {e}") from None
    except jinja2.TemplateError as e:
        raise OutputError(f"cannot render {REPORT_TEMPLATE}: {type(e).__name__}: {e}") from e


def _template_at(exc: BaseException, template_dirs: list[Path] | None) -> str:
    """file:line of the template frame where `exc` was raised (jinja2 maps its frames to template lines)."""
    where = REPORT_TEMPLATE
    folders = [str(Path(d).resolve()) for d in template_dirs or []] + [str(templates_dir().resolve())]
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.endswith(".html") and any(str(Path(name).resolve()).startswith(f) for f in folders):
            where = f"{name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where

"""Renderers: report.html, junit.xml, summary.md and the atomic run folder, all from the result dict alone."""

from audit.render.html import render_html
from audit.render.junit import render_junit
from audit.render.markdown import render_markdown
from audit.render.outputs import rerender, write_run

__all__ = ["render_html", "render_junit", "render_markdown", "rerender", "write_run"]

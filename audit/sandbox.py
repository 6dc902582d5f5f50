"""Bounded jinja2 sandboxes: templates from a manifest or a user's folder render without reaching Python
internals, and without unbounded time or memory.

jinja2's sandbox refuses attribute tricks (`__class__.__mro__`, `__globals__`) and caps `range` at 100,000 items,
but leaves `'x' * 3000000000`, `9 ** 9 ** 9`, `'%9999999999s' % x`, `x|center(10**10)` and nested loops free to
eat memory or time. `BoundedSandbox` refuses, before computing them:

- a width or count above MAX_NUMBER given to a filter or string method that pads or repeats (center, indent,
  ljust, zfill, batch, ...);
- a repetition (`*`) or power (`**`) whose result would be larger than MAX_VALUE characters or items (or digits);
- a format string (`%`, `.format`, `|format`) with a width or precision above MAX_NUMBER;
- a `replace` whose result would be larger than MAX_VALUE;
and after each call, filter or operator, a value longer than MAX_VALUE. A text template (`text_template_env`) is
also refused loops, macros and call blocks, and renders with no globals (`range`, `lipsum`, ... are ordinary names
there, so a column may be called that); its output per row is limited to MAX_VALUE characters.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from jinja2 import Environment, StrictUndefined, nodes
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_VALUE = 4_000_000  # characters (or items) of any value a template makes: a text cell may be large, not huge
MAX_NUMBER = 1_000_000  # any number handed to a call, filter or operator (widths, counts, repetitions)
_BIG_NUMBER = re.compile(r"\d{7,}")  # a width or precision of MAX_NUMBER or more in a format string


def _check_number(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and abs(value) > MAX_NUMBER:
        raise SecurityError(f"the number {value} is above the template limit of {MAX_NUMBER:,}")
    if isinstance(value, float) and math.isfinite(value) and abs(value) > MAX_NUMBER:
        raise SecurityError(f"the number {value:g} is above the template limit of {MAX_NUMBER:,}")


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _BIG_NUMBER.search(fmt):
        raise SecurityError(f"a format string with a width or precision above the template limit of {MAX_NUMBER:,}")


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, bytes, list, tuple, dict, set)) and len(value) > MAX_VALUE:
        raise SecurityError(f"a value of {len(value):,} characters or items; templates are limited to {MAX_VALUE:,}")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * MAX_NUMBER:
        raise SecurityError("a number too large for a template")
    return value


SIZED = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "batch", "slice",
                   "truncate"})  # filters and str methods whose numeric arguments are widths or counts


def _check_call(args, kwargs) -> None:
    for v in (*args, *kwargs.values()):
        _check_number(v)


def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        n = (len(s) + 1) if old == "" else s.count(old)
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        if len(s) + n * (len(new) - len(old)) > MAX_VALUE:
            raise SecurityError(f"a replace whose result would exceed the template limit of {MAX_VALUE:,} characters")


def _bounded_filter(name: str, fn):
    @functools.wraps(fn)  # keeps jinja's pass_context / pass_environment marks
    def wrapper(*args, **kwargs):
        if name in SIZED:
            _check_call(args, kwargs)
        values = [a for a in args if not isinstance(a, (Context, EvalContext, Environment))]  # value first
        if name == "format" and values:
            _check_format(values[0])
        if name == "replace" and len(values) >= 3:
            _check_replace(*values[:4])
        return _check_size(fn(*args, **kwargs))

    return wrapper


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment that refuses what would take unbounded memory (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "//", "/"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            _check_format(left)
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_VALUE:
                    raise SecurityError(f"a repetition of {len(seq) * n:,} characters or items; templates are "
                                        f"limited to {MAX_VALUE:,}")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            if right * abs(left).bit_length() > 4 * MAX_NUMBER:
                raise SecurityError("a power too large for a template")
        return _check_size(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_format(obj)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, str) and argument in ("format", "format_map"):
            _check_format(obj)
        return super().getitem(obj, argument)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's signature)
        name, owner = getattr(__obj, "__name__", ""), getattr(__obj, "__self__", None)
        if isinstance(owner, str) and name in SIZED:
            _check_call(args, kwargs)
        if isinstance(owner, str) and name == "replace":
            _check_replace(owner, *args[:3])
        return _check_size(super().call(__context, __obj, *args, **kwargs))


TEXT_FORBIDDEN = {nodes.For: "loops ({% for %})", nodes.Macro: "macros", nodes.CallBlock: "call blocks",
                  nodes.Include: "includes", nodes.Import: "imports", nodes.FromImport: "imports",
                  nodes.Extends: "extends"}
RESERVED = ("self",)  # a name jinja2 itself gives meaning in every template: no column can be read by it


def text_template_env() -> BoundedSandbox:
    """The environment of text templates over data columns (audit/data.py): bounded, undefined names are
    errors, no globals, not HTML-escaped (the text goes to a model; the reports escape it)."""
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.clear()
    return env


def check_text_template(ast: nodes.Template) -> str | None:
    """Why a parsed text template is refused, or None: loops and macros (whose cost grows with the data and
    which a text recipe does not need) and the reserved name `self`."""
    for node_type, what in TEXT_FORBIDDEN.items():
        found = next(iter(ast.find_all(node_type)), None)
        if found is not None:
            return f"line {found.lineno}: {what} are not allowed in a text template"
    for name in ast.find_all(nodes.Name):
        if name.name in RESERVED:
            return (f"line {name.lineno}: '{name.name}' is a name jinja2 reserves; it cannot read a column "
                    f"called '{name.name}' (rename the column)")
    return None

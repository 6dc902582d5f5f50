"""Safe YAML loading that remembers where every key stands.

`load_yaml(path)` returns the data (built by PyYAML's SafeLoader, so no Python objects) and a
`Locations` map from key paths to line numbers, so that a validation error can say `file:line: key.path`.
Duplicate keys, which PyYAML silently lets the last one win, are refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_BYTES = 1_000_000  # a policy or manifest is text a person writes; bound what we read

Path_ = tuple  # a key path such as ("checks", "performance.roc_auc", "min")


@dataclass
class Locations:
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """The line of the longest known prefix of `path` (an error deep in a value points at its key)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def where(self, path: Path_) -> str:
        line = self.line(path)
        return f"{self.file}:{line}" if line else self.file


def dotted(path: Path_) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")


def closest(name: str, options) -> str:
    """' (did you mean 'x'?)' or ''."""
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.75)
    return f" (did you mean '{match[0]}'?)" if match else ""


def load_yaml(path: Path, error: Callable[[str], Exception], what: str = "file") -> tuple[Any, Locations]:
    """Read and parse `path` safely; raise `error(message)` with file:line on any problem."""
    import yaml

    from audit.safeio import read_regular

    name = str(path)
    raw = read_regular(path, MAX_BYTES, what, error)  # a FIFO or /dev/zero is refused before it is read
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise error(f"{name}: UTF-16 text; save the {what} as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not UTF-8 text (byte {exc.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise error(f"{name}: {what} is empty")
        locations = Locations(name)
        _walk(node, (), locations, error, [0])
        data = yaml.load(text, Loader=yaml.SafeLoader)
        _text_keys(data, (), locations, error)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(f"{name}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{name}: invalid YAML: {first}") from None
    except RecursionError:
        raise error(f"{name}: {what} is nested too deeply") from None
    return data, locations


def _text_keys(data, path: Path_, loc: Locations, error) -> None:
    """Every mapping key must be text: `1: x` or `true: x` is almost always a mistake in a config file."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                where = loc.where(path + (str(key).lower() if isinstance(key, bool) else str(key),))
                raise error(f"{where}: {dotted(path + (str(key),))}: keys must be text, got {key!r} (quote it)")
            _text_keys(value, path + (key,), loc, error)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _text_keys(item, path + (i,), loc, error)


MAX_NODES = 20_000  # after aliases are expanded: a policy is small; an alias bomb is not


def _walk(node, path: Path_, loc: Locations, error, count: list[int]) -> None:
    import yaml

    count[0] += 1
    if count[0] > MAX_NODES:
        raise error(f"{loc.file}: more than {MAX_NODES:,} values once aliases are expanded; refusing to read it")
    loc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise error(f"{loc.file}:{line}: {dotted(path) or 'top level'}: keys must be plain text")
            key = key_node.value
            if key in seen:
                raise error(
                    f"{loc.file}:{line}: {dotted(path + (key,))}: duplicate key (first given on line {seen[key]})"
                )
            seen[key] = line
            loc.lines[path + (key,)] = line
            _walk(value_node, path + (key,), loc, error, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            loc.lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), loc, error, count)


def shown(value: Any) -> str:
    """A YAML value as an error message names it: strings quoted, containers by their kind."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)

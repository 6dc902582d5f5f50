"""Counterfactual term swaps: replace identity words in a text with their counterparts (he -> she, Mr -> Ms).

A swap list is a YAML file of pairs (`audit/data/terms/<name>.yaml` ships gender, national_origin, age and
marital_status; a user passes a path to their own file in the same shape):

    name: gender
    description: ...
    pairs:
      - [he, she]
      - [his, her]
      - [him, her]

Rules, each tested:
- Every pair swaps both ways. A term named in several pairs takes its swap from the FIRST pair that names it,
  on either side: with [his, her] before [him, her], "her" becomes "his" (English "her" is both the possessive
  and the object form; the possessive is the more common in the texts a lender reads) and "him" becomes "her".
- Whole words only: "he" is swapped in "he's" and "(he)", never inside "the" or "helpful". A word is a run of
  Unicode word characters; an apostrophe or a hyphen ends it.
- Case is kept: "He" -> "She", "HE" -> "SHE", "he" -> "she". Terms are matched without regard to case.
- One pass over the text with one pattern, so "he" -> "she" is never swapped back again ("she" -> "he").

Templated text (the manifest's text recipe is a template over columns) is not swapped word by word: a swap of
"male" in "male : single" makes an application that never occurs, and leaves the marital-status phrase that
still tells the sex. There the protected column's VALUE is swapped and the text is rendered again from the row
(`column_alternatives`, `render_with`): every value of another group of the attribute (for a mapped attribute,
each column value that maps to another group; for a binned one, one observed value of each other bin, its lower
median in the eval rows; for raw values, every other value seen), or the pairs a policy gives
(`pairs: {attribute: [[value, value], ...]}`, both ways, as a swap list's pairs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.resources import data_dir


def terms_dir() -> Path:
    return data_dir() / "terms"


def bundled_lists() -> list[str]:
    return sorted(p.stem for p in terms_dir().glob("*.yaml"))


@dataclass(frozen=True)
class SwapList:
    name: str
    source: str  # "bundled" or the file's path
    mapping: dict[str, str]  # lower-case term -> lower-case replacement
    pattern: re.Pattern

    def swap(self, text: str) -> tuple[str, list[str]]:
        """The text with every term swapped, and the terms that were swapped (lower case, in order)."""
        found: list[str] = []

        def replace(m: re.Match) -> str:
            src = m.group(0)
            found.append(src.lower())
            return match_case(src, self.mapping[src.lower()])

        return self.pattern.sub(replace, text), found


def match_case(src: str, repl: str) -> str:
    """Give `repl` the case pattern of `src`: all capitals, a capital first letter, or lower case."""
    if len(src) > 1 and src.isupper():
        return repl.upper()
    if src[:1].isupper():
        return repl[:1].upper() + repl[1:]
    return repl


def build(name: str, pairs: list[Any], source: str) -> SwapList:
    if not isinstance(pairs, list) or not pairs:
        raise ValueError(f"swap list {source}: 'pairs' must be a non-empty list of [term, counterpart]")
    mapping: dict[str, str] = {}
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(t, str) and t.strip() for t in pair)):
            raise ValueError(f"swap list {source}: pairs[{i}] must be two non-empty words, got {pair!r}")
        a, b = (" ".join(t.split()).lower() for t in pair)
        if a == b:
            raise ValueError(f"swap list {source}: pairs[{i}] swaps '{a}' with itself")
        mapping.setdefault(a, b)  # the first pair that names a term decides its swap
        mapping.setdefault(b, a)
    terms = sorted(mapping, key=lambda t: (-len(t), t))  # longest first: "mrs" before "mr"
    body = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in terms)
    return SwapList(name, source, mapping, re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE))


def load(spec: str) -> SwapList:
    """A bundled list by name (`gender`), or a YAML file by path."""
    import yaml

    path = Path(spec)
    if spec in bundled_lists():
        path, source = terms_dir() / f"{spec}.yaml", "bundled"
    elif path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"swap list file {spec} not found")
        source = str(path)
    else:
        raise ValueError(f"unknown swap list '{spec}' (bundled: {', '.join(bundled_lists())}; "
                         f"or give the path of a .yaml file of pairs)")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"swap list {path}: expected a mapping with 'pairs'")
    return build(str(data.get("name") or path.stem), data.get("pairs"), source)


def load_all(spec: Any) -> list[SwapList]:
    """`swaps` as a policy gives it: one name or path, or a list of them."""
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
        raise ValueError(f"swaps must be a list name, a file path or a list of them, got {spec!r}")
    lists = [load(s.strip()) for s in items]
    names = [sl.name for sl in lists]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"swaps names the list {', '.join(dupes)} twice")
    return lists


# ---------------------------------------------------------------- templated text: swap the column's value


def bin_representatives(values: list[str | None], edges: list[float], labels: list[str]) -> dict[str, str]:
    """For a binned attribute: group name -> one value seen in the rows of that bin (the lower median, so it is
    a value that occurs), as written in the data."""
    import numpy as np

    seen: dict[str, list[tuple[float, str]]] = {}
    for v in values:
        try:
            x = float(v) if v is not None else float("nan")
        except ValueError:
            continue
        if x != x:
            continue
        g = labels[int(np.searchsorted(np.asarray(edges, dtype=float), x, side="right"))]
        seen.setdefault(g, []).append((x, str(v)))
    out = {}
    for g, items in seen.items():
        items.sort()
        out[g] = items[(len(items) - 1) // 2][1]
    return out


def column_alternatives(values: list[str | None], group_of: dict[str, str], candidates: list[str],
                        pairs: list[Any] | None = None) -> dict[str, list[str]]:
    """Column value -> the values a row with it is swapped to: with `pairs`, their counterparts (both ways,
    each once, in the pairs' order); otherwise every candidate value whose group differs from its own."""
    out: dict[str, list[str]] = {}
    present = [v for v in dict.fromkeys(values) if v is not None]
    if pairs:
        for a, b in ((str(x), str(y)) for x, y in pairs):
            for u, w in ((a, b), (b, a)):
                if w not in out.setdefault(u, []):
                    out[u].append(w)
        return {v: out[v] for v in present if v in out}
    for v in present:
        g = group_of.get(v)
        if g is not None:
            out[v] = [c for c in candidates if group_of.get(c) not in (None, g)]
    return out


def validate_pairs(pairs: Any) -> None:
    """`pairs` as a policy gives it: {attribute: [[value, value], ...]} (raises ValueError naming the problem)."""
    if pairs is None:
        return
    if not isinstance(pairs, dict):
        raise ValueError(f"pairs must map an attribute to a list of [value, value] pairs, got {pairs!r}")
    for name, items in pairs.items():
        if not isinstance(items, list) or not items:
            raise ValueError(f"pairs.{name} must be a non-empty list of [value, value] pairs")
        for i, pair in enumerate(items):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(t, (str, int, float)) and not isinstance(t, bool) and str(t).strip()
                               for t in pair)):
                raise ValueError(f"pairs.{name}[{i}] must be two column values, got {pair!r}")
            if str(pair[0]) == str(pair[1]):
                raise ValueError(f"pairs.{name}[{i}] swaps {str(pair[0])!r} with itself")


def render_with(frame, recipe, column: str, rows: list[int], new_values: list[str], path: str) -> list[str]:
    """The texts of eval rows `rows` rendered again by the template with `column` set to `new_values`."""
    from audit.data import make_texts

    changed = frame.iloc[list(rows)].copy()
    changed[column] = list(new_values)
    changed.index = range(len(changed))
    return make_texts(changed, recipe, path) if len(changed) else []

"""Data files: loading (CSV, TSV, Parquet, JSON Lines), the column contract, text recipes, content hashes.

Every problem is a `DataError` naming the file and the column or rows. Cells are read as strings (a CSV's
"none" stays "none"); an empty cell is missing. Rows whose text is empty are refused rather than dropped:
an audit that silently scores fewer rows than it was given would misstate its evidence.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.errors import AuditError, DataError

MAX_SHOWN = 5  # row numbers named in one message
MAX_FILE_BYTES = 2 * 2**30  # a data file loaded whole; bound what we read

if TYPE_CHECKING:
    from audit.model import ModelBundle


def sha256_file(path: Path, what: str = "file", error: type[AuditError] = AuditError) -> str:
    """The sha256 of a regular file (a FIFO or a device is refused, not read forever)."""
    from audit.safeio import open_regular

    digest = hashlib.sha256()
    with open_regular(path, what, error) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rows(index) -> str:
    shown = ", ".join(str(i) for i in list(index)[:MAX_SHOWN])
    more = len(index) - MAX_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def read_table(path: str | Path):
    """Read a data file into a DataFrame of strings (missing cells NaN). Row labels are 0-based row numbers."""
    import pandas as pd

    from audit.safeio import check_regular, read_regular

    path = Path(path)
    size = check_regular(path, None, "data file", DataError)  # a FIFO or a device is refused before pandas opens it
    if size == 0:
        raise DataError(f"{path}: data file is empty")
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: data file is {size / 2**30:.1f} GiB; files over {MAX_FILE_BYTES / 2**30:.0f} GiB are "
                        "not loaded whole: audit a sample of it")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            raw = read_regular(path, MAX_FILE_BYTES, "data file", DataError)
            if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                raise DataError(f"{path}: UTF-16 text; save the file as UTF-8")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                raise DataError(f"{path}:{line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                             na_values=[""], encoding="utf-8")
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
            df = df.astype(object).where(df.notna(), None).map(lambda v: None if v is None else str(v))
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False)
            df = df.astype(object).where(df.notna(), None).map(lambda v: None if v is None else str(v))
        else:
            raise DataError(f"{path}: unknown data format '{suffix}' (use .csv, .tsv, .parquet or .jsonl)")
    except DataError:
        raise
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot parse data file: {first}") from None
    except ImportError as exc:
        raise DataError(f"{path}: reading {suffix} needs an extra package: {exc.name}") from None
    if len(df) == 0:
        raise DataError(f"{path}: data file has a header but no rows")
    df.columns = [str(c) for c in df.columns]
    df.index = range(len(df))
    return df


def require_columns(df, columns: dict[str, str], path: Path | str) -> None:
    """`columns` maps a column name to what it is for; the first missing one is named with the closest column."""
    for column, purpose in columns.items():
        if column not in df.columns:
            raise DataError(f"{path}: missing {purpose} column '{column}'{closest_column(column, df, purpose)}")


def _words(name: str) -> list[str]:
    """A column name's words: split at non-alphanumerics and camelCase, lower case ('reviewText' -> review, text)."""
    import re

    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def name_similarity(a: str, b: str) -> float:
    """How alike two column names are, 0..1: 1 for the same name up to case and separators ('Text', 'TEXT',
    'review_text' vs 'reviewText'); 0.9 when every word of one is a word of the other ('text' in 'review_text');
    else difflib's ratio of the normalised names ('txt' vs 'text' 0.86, 'test' vs 'text' 0.75)."""
    import difflib

    wa, wb = _words(a), _words(b)
    na, nb = "".join(wa), "".join(wb)
    if not na or not nb:
        return 0.0
    if na == nb:
        return 1.0
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    if sum(map(len, short)) >= 2 and set(short) <= set(long_):
        return 0.9
    return difflib.SequenceMatcher(None, na, nb).ratio()


def looks_like_text(values) -> bool:
    """A column of free text: most of its (up to 200 first) non-empty cells hold three words or more."""
    cells = [str(v) for v in list(values)[:200] if v is not None and v == v and str(v).strip()]
    return bool(cells) and sum(len(c.split()) >= 3 for c in cells) >= 0.8 * len(cells)


def closest_column(name: str, df, purpose: str = "", cutoff: float = 0.75) -> str:
    """' (did you mean 'x'?)' or '': the column of `df` whose name is most like `name` (name_similarity, ties to
    the leftmost column). A text column is looked for among the columns that hold free text, so a column that
    only resembles the name ('test', a 0/1 flag, for 'text') is not offered when 'review_text' holds the text;
    and when no name is close, the one column of free text is offered."""
    columns = [str(c) for c in df.columns]
    if purpose == "text":
        texty = [c for c in columns if looks_like_text(df[c].tolist())]
        candidates = texty
    else:
        texty, candidates = [], columns
    scored = sorted(((name_similarity(name, c), -i, c) for i, c in enumerate(candidates)), reverse=True)
    if scored and scored[0][0] >= cutoff:
        return f" (did you mean '{scored[0][2]}'?)"
    if purpose == "text" and len(texty) == 1:
        return f" (did you mean '{texty[0]}'? it is the one column of free text)"
    return ""


def template_env():
    """The bounded, sandboxed jinja2 environment of text templates (audit/sandbox.py): no attribute tricks, no
    unbounded repetition, undefined names are errors. The text goes to a model, not a browser, so it is not
    HTML-escaped here (reports escape it)."""
    from audit.sandbox import text_template_env

    return text_template_env()


def parse_template(template: str):
    """The template's syntax tree; a syntax error, a loop or macro, or a reserved name is a DataError."""
    from jinja2 import TemplateSyntaxError

    from audit.sandbox import check_text_template

    try:
        ast = template_env().parse(template)
    except TemplateSyntaxError as exc:
        raise DataError(f"text template line {exc.lineno}: {exc.message}") from None
    problem = check_text_template(ast)
    if problem:
        raise DataError(f"text template {problem}")
    return ast


def template_columns(template: str) -> set[str]:
    from jinja2 import meta

    return set(meta.find_undeclared_variables(parse_template(template)))


def make_texts(df, recipe, path: Path | str) -> list[str]:
    """Each row's text, from a column or a template; refuse rows whose text is empty."""
    from audit.sandbox import MAX_VALUE

    if recipe.column is not None:
        require_columns(df, {recipe.column: "text"}, path)
        texts = [("" if v is None or v != v else str(v)) for v in df[recipe.column].tolist()]
    else:
        columns = template_columns(recipe.template)
        require_columns(df, {c: "template" for c in sorted(columns)}, path)
        template = template_env().from_string(recipe.template)
        cols = sorted(columns)
        records = df[cols].astype(object).where(df[cols].notna(), "").to_dict("records") if cols else [{}] * len(df)
        texts = []
        for i, rec in enumerate(records):
            try:
                text = template.render(rec)  # a mapping, not **rec: a column may be called anything
            except Exception as exc:  # the sandbox's refusals, and whatever the template's expressions raise
                raise DataError(f"{path}: text template failed on row {df.index[i]}: {type(exc).__name__}: "
                                f"{_first_line(exc)}") from None
            if len(text) > MAX_VALUE:
                raise DataError(f"{path}: text template made {len(text):,} characters for row {df.index[i]}; the limit is "
                                f"{MAX_VALUE:,}")
            texts.append(text.strip())
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(f"{path}: {len(empty)} row(s) have empty text (rows {_rows(empty)}); fill or remove them")
    return texts


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def label_indices(df, label_column: str, labels: list[str], path: Path | str) -> Any:
    """The label column as indices into `labels`; refuse missing and unknown values."""
    import numpy as np

    require_columns(df, {label_column: "label"}, path)
    values = df[label_column]
    missing = [i for i, v in enumerate(values.tolist()) if v is None or v != v]
    if missing:
        raise DataError(f"{path}: label column '{label_column}' is empty in {len(missing)} row(s) (rows {_rows(missing)})")
    values = values.astype(str).str.strip()
    unknown = sorted(set(values) - set(labels))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:MAX_SHOWN])
        raise DataError(f"{path}: label column '{label_column}' has values the model does not know: {shown} "
                        f"(model labels: {', '.join(repr(x) for x in labels)})")
    lookup = {label: i for i, label in enumerate(labels)}
    return np.array([lookup[v] for v in values], dtype=np.int64)


def group_series(df, name: str, attr, path: Path | str):
    """The protected attribute `name` as group names per row (NaN where the value is missing)."""
    import numpy as np
    import pandas as pd

    require_columns(df, {attr.column: f"protected attribute '{name}'"}, path)
    raw = df[attr.column]
    if attr.bins is not None:
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & numbers.isna()
        if bad.any():
            first = raw[bad].iloc[0]
            raise DataError(f"{path}: column '{attr.column}' (protected attribute '{name}') must be numeric "
                            f"for bins, got {first!r} in row {int(np.flatnonzero(bad.to_numpy())[0])}")
        edges = [-np.inf, *attr.bins, np.inf]
        return pd.cut(numbers, edges, right=False, labels=attr.group_names()).astype(object)
    if attr.map is not None:
        values = raw.astype(object)
        unmapped = sorted(set(values.dropna()) - set(attr.map))
        if unmapped:
            raise DataError(f"{path}: column '{attr.column}' (protected attribute '{name}') has values the map "
                            f"does not cover: {', '.join(repr(u) for u in unmapped[:MAX_SHOWN])}")
        return values.map(attr.map)
    return raw.astype(object)


def find_source(recorded: str, model_dir: Path) -> Path:
    """The training data file a manifest records: its path as recorded, or a file of that name beside or in the
    model folder (a model folder moved with its data)."""
    p = Path(recorded)
    if p.exists():
        return p
    for candidate in (model_dir / p.name, model_dir.parent / p.name):
        if candidate.exists():
            return candidate
    raise DataError(f"{recorded}: training data file from the manifest not found; give --data FILE")

def other_rows(name: str, bundle: ModelBundle, paths: dict[str, Path] | None = None):
    """Another data set of the run, read but not scored: (frame, texts, label indices or None, path), or None.

    "train": the manifest's training split (None when the manifest records none, or the file changed).
    Any other name: the file given for it (`--current FILE` → "current"); labels are optional there.
    """
    m = bundle.manifest
    if name == "train":
        if m.data is None:
            return None
        path = find_source(m.data.source.path, bundle.path)
        if sha256_file(path) != m.data.source.sha256:
            return None
        frame = read_table(path).iloc[m.data.split.train_index]
    elif paths and name in paths:
        path = Path(paths[name])
        frame = read_table(path)
    else:
        return None
    texts = make_texts(frame, m.text, path)
    y = label_indices(frame, m.label_column, m.labels, path) if m.label_column in frame.columns else None
    return frame, texts, y, path


def safe_cell(value: str) -> str:
    """Neutralize a cell that a spreadsheet would run as a formula (OWASP CSV injection advice)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def text_key(text: str) -> bytes:
    """The key two texts are the same text by: the sha256 of the text the model reads (audit/overlap.py matches
    training rows by it, the data-quality checks compare eval and training texts by it)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

"""Inline SVG charts as view-models: numbers become coordinates here, `macros.html` only prints them.

Every chart carries a `title` and a `desc` that says in words what the picture shows, for screen readers and
for anyone reading a printed copy in black and white. Each builder returns None when its data is absent or
unusable, so a report renders whatever families a policy asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# One plot area for the three x-y charts: a 300 x 300 viewBox with room for the axis labels.
_W, _H = 300, 300
_LEFT, _TOP, _RIGHT, _BOTTOM = 48, 14, 12, 46
_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
_UNIT = (0.0, 1.0, 0.0, 1.0)  # x0, x1, y0, y1: the unit square
_CHAR_PX = 6.0  # about 6 px per character of an 11 px label


def _num(x: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, inf, strings)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _c(v: float) -> str:
    return f"{v:.1f}"


def fmt3(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


@dataclass
class Tick:
    pos: str  # the coordinate along its axis
    text: str
    text_pos: str = ""  # where its label sits along the same axis, when that differs


@dataclass
class Series:
    d: str  # path data
    css: str  # s-model, s-ref
    label: str  # legend text


@dataclass
class Dot:
    cx: str
    cy: str
    r: str
    label: str  # tooltip (<title>)


@dataclass
class LegendItem:
    x1: str
    x2: str
    y: str
    ty: str
    tx: str
    css: str
    label: str


@dataclass
class XYChart:
    """A line chart on the unit square (ROC, PR, reliability)."""

    id: str
    title: str
    desc: str
    width: int
    height: int
    left: str
    top: str
    right: str
    bottom: str
    plot_w: str
    plot_h: str
    xtick_text_y: str
    ytick_text_x: str
    x_label: str
    y_label: str
    x_label_x: str
    x_label_y: str
    y_label_x: str
    y_label_y: str
    xticks: list[Tick]
    yticks: list[Tick]
    series: list[Series]
    dots: list[Dot] = field(default_factory=list)
    legend: list[LegendItem] = field(default_factory=list)


@dataclass
class Cell:
    x: str
    y: str
    w: str
    h: str
    fill: str
    cx: str
    count_y: str
    caption_y: str
    count: str
    caption: str


@dataclass
class ConfusionChart:
    id: str
    title: str
    desc: str
    width: int
    height: int
    cells: list[Cell]
    col_heads: list[Tick]  # predicted labels: pos = x
    row_heads: list[Tick]  # actual labels: pos = y
    col_title: str
    row_title: str
    head_y: str
    row_head_x: str
    col_title_x: str
    col_title_y: str
    row_title_x: str
    row_title_y: str


@dataclass
class CIBar:
    """A value with its interval whisker against the policy's threshold, on a small horizontal scale."""

    desc: str
    width: int
    height: int
    axis_x1: str
    axis_x2: str
    axis_y: str
    text_y: str
    ci_x1: str | None
    ci_x2: str | None
    value_x: str | None
    mid_y: str
    cap_y1: str
    cap_y2: str
    fail_zones: list[tuple[str, str]]  # (x, width) of the ranges that break the rule
    thresholds: list[Tick]  # pos = x
    lo_text: str
    hi_text: str


# ---------------------------------------------------------------- axes: nice rounded ticks that do not overlap


def nice_step(span: float, count: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts `span` into about `count` parts."""
    if not span > 0:
        return 1.0
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


def nice_range(lo: float, hi: float, count: int = 5, clamp: tuple[float, float] | None = None
               ) -> tuple[float, float, float]:
    """(start, end, step): `lo`..`hi` widened to whole round steps (within `clamp` when given)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 0.1
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, count)
    start = round(math.floor(lo / step + 1e-9) * step, 12)
    end = round(math.ceil(hi / step - 1e-9) * step, 12)
    if clamp is not None:
        start, end = max(start, clamp[0]), min(end, clamp[1])
    return start, end, step


def tick_values(start: float, end: float, step: float) -> list[float]:
    n = int(round((end - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


def tick_label(value: float, step: float) -> str:
    """A tick's text with as many decimals as the step needs, and no more: 0.25 steps read 0, 0.25, 0.5, ..."""
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, abs(step)):
        decimals += 1
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def spaced(ticks: list[tuple[float, str]], gap: float) -> list[tuple[float, str]]:
    """Ticks (position, text) thinned so that no two labels overlap: a label needs its own width plus `gap`
    pixels; the first and the last are kept before the ones between."""
    if len(ticks) <= 2:
        return ticks

    def clash(a: tuple[float, str], b: tuple[float, str]) -> bool:
        return abs(a[0] - b[0]) < (len(a[1]) + len(b[1])) * _CHAR_PX / 2 + gap

    for stride in range(1, len(ticks)):
        kept = ticks[::stride]
        if kept[-1] != ticks[-1] and (len(ticks) - 1) % stride:
            continue  # keep both ends: only strides that land on the last tick
        if not any(clash(a, b) for a, b in zip(kept, kept[1:])):
            return kept
    return [ticks[0], ticks[-1]]


# ---------------------------------------------------------------- x-y charts, axes scaled to the data


_RANGE = _UNIT


def _sx(x: float, r: tuple[float, float, float, float] | None = None) -> float:
    x0, x1 = (r or _RANGE)[:2]
    return _LEFT + (x - x0) / (x1 - x0) * (_W - _LEFT - _RIGHT)


def _sy(y: float, r: tuple[float, float, float, float] | None = None) -> float:
    y0, y1 = (r or _RANGE)[2:]
    return _TOP + (y1 - y) / (y1 - y0) * (_H - _TOP - _BOTTOM)


def _path(points: list[tuple[float, float]], r: tuple[float, float, float, float] = _UNIT) -> str:
    out: list[str] = []
    last = None
    x0, x1, y0, y1 = r
    for x, y in points:
        p = (_c(_sx(min(max(x, x0), x1), r)), _c(_sy(min(max(y, y0), y1), r)))
        if p == last:
            continue
        out.append(("M" if not out else "L") + p[0] + "," + p[1])
        last = p
    return "".join(out)


def _pairs(xs: Any, ys: Any) -> list[tuple[float, float]]:
    if not isinstance(xs, list) or not isinstance(ys, list):
        return []
    pairs = []
    for x, y in zip(xs, ys, strict=False):
        x, y = _num(x), _num(y)
        if x is not None and y is not None:
            pairs.append((x, y))
    return pairs


def _legend(series: list[Series]) -> list[LegendItem]:
    """One row under the x-axis label, outside the plot, so it never hides a curve."""
    items = []
    x, y = float(_LEFT), _H + 6
    for s in reversed(series):
        items.append(LegendItem(_c(x), _c(x + 18), _c(y), _c(y + 4), _c(x + 22), s.css, s.label))
        x += 22 + 6 * len(s.label) + 16  # about 6 px per character at 11 px
    return items


def _axis_ticks(start: float, end: float, step: float, to_px, gap: float) -> list[tuple[float, str]]:
    return spaced([(to_px(t), tick_label(t, step)) for t in tick_values(start, end, step)], gap)


def _xy(id: str, title: str, desc: str, x_label: str, y_label: str, series: list[Series],
        dots: list[Dot] | None = None, r: tuple[float, float, float, float] = _UNIT,
        steps: tuple[float, float] = (0.25, 0.25)) -> XYChart:
    """An x-y chart over the range `r` (x0, x1, y0, y1) with ticks every `steps` (x, y), thinned so that no
    two labels overlap."""
    xt = _axis_ticks(r[0], r[1], steps[0], lambda t: _sx(t, r), 6)
    yt: list[tuple[float, str]] = []
    for t in tick_values(r[2], r[3], steps[1]):
        if not yt or abs(_sy(t, r) - yt[-1][0]) >= 14:  # 11 px text and 3 px of air between two labels
            yt.append((_sy(t, r), tick_label(t, steps[1])))
    return XYChart(
        id=id, title=title, desc=desc, width=_W, height=_H + 16,
        left=_c(_LEFT), top=_c(_TOP), right=_c(_W - _RIGHT), bottom=_c(_H - _BOTTOM),
        plot_w=_c(_W - _LEFT - _RIGHT), plot_h=_c(_H - _TOP - _BOTTOM),
        xtick_text_y=_c(_H - _BOTTOM + 14), ytick_text_x=_c(_LEFT - 5),
        x_label=x_label, y_label=y_label,
        x_label_x=_c((_LEFT + _W - _RIGHT) / 2), x_label_y=_c(_H - 10),
        y_label_x=_c(14), y_label_y=_c((_TOP + _H - _BOTTOM) / 2),
        xticks=[Tick(_c(x), s) for x, s in xt], yticks=[Tick(_c(y), s, _c(y + 4)) for y, s in yt],
        series=series, dots=dots or [], legend=_legend(series),
    )


def roc_chart(measurement: dict | None) -> XYChart | None:
    """ROC curve from `details.curve` {fpr, tpr}, with the chance diagonal."""
    curve = ((measurement or {}).get("details") or {}).get("curve") or {}
    pts = sorted(_pairs(curve.get("fpr"), curve.get("tpr")))
    if len(pts) < 2:
        return None
    auc = _num(measurement.get("value"))
    title = f"ROC curve (area {fmt3(auc)})" if auc is not None else "ROC curve"
    desc = (f"ROC curve: true-positive rate against false-positive rate over all decision thresholds"
            f"{', with an area of ' + fmt3(auc) if auc is not None else ''}. The dashed diagonal is a model "
            f"that ranks at random (area 0.5); the closer the curve runs to the top-left corner, the better.")
    series = [Series(_path([(0.0, 0.0), (1.0, 1.0)]), "s-ref", "chance"),
              Series(_path(pts), "s-model", "model")]
    return _xy("roc", title, desc, "False-positive rate", "True-positive rate", series)


def pr_chart(measurement: dict | None) -> XYChart | None:
    """Precision-recall curve from `details.curve` {recall, precision}, with the positive-rate baseline."""
    details = (measurement or {}).get("details") or {}
    curve = details.get("curve") or {}
    pts = _pairs(curve.get("recall"), curve.get("precision"))
    if len(pts) < 2:
        return None
    ap = _num(measurement.get("value"))
    base = _num(details.get("positive_rate"))
    low = min([y for _, y in pts] + ([base] if base is not None else []))
    y0, y1, ystep = nice_range(max(low, 0.0), 1.0, 4, clamp=(0.0, 1.0))
    r = (0.0, 1.0, y0, y1)
    series = []
    if base is not None:
        series.append(Series(_path([(0.0, base), (1.0, base)], r), "s-ref", f"random ({fmt3(base)})"))
    series.append(Series(_path(pts, r), "s-model", "model"))
    title = f"Precision-recall curve (average precision {fmt3(ap)})" if ap is not None else "Precision-recall curve"
    desc = ("Precision-recall curve: precision against recall over all decision thresholds"
            + (f", with an average precision of {fmt3(ap)}" if ap is not None else "") + "."
            + (f" The dashed line at {fmt3(base)} is the share of positive rows, what a random ranking scores."
               if base is not None else ""))
    return _xy("pr", title, desc, "Recall", "Precision", series, r=r, steps=(0.25, ystep))


def calibration_chart(measurement: dict | None, positive_label: str = "positive") -> XYChart | None:
    """Reliability plot from the ECE `details.bins`: observed rate against mean score, dots sized by count."""
    bins = ((measurement or {}).get("details") or {}).get("bins")
    if not isinstance(bins, list):
        return None
    rows = []
    for b in bins:
        if not isinstance(b, dict):
            continue
        x, y, n = _num(b.get("mean_score")), _num(b.get("observed_rate")), _num(b.get("count"))
        if x is not None and y is not None and n:
            rows.append((x, y, int(n), _num(b.get("low")), _num(b.get("high"))))
    if not rows:
        return None
    rows.sort()
    biggest = max(r[2] for r in rows)
    # one range for both axes, so the diagonal of perfect calibration stays at 45 degrees
    seen = [v for row in rows for v in row[:2]]
    a, b, step = nice_range(min(seen), max(seen), 4, clamp=(0.0, 1.0))
    rng = (a, b, a, b)
    dots = [Dot(_c(_sx(x, rng)), _c(_sy(y, rng)), _c(2.5 + 4.5 * math.sqrt(n / biggest)),
                f"scores {fmt3(lo)}–{fmt3(hi)}: {n} rows, mean score {fmt3(x)}, observed {fmt3(y)}")
            for x, y, n, lo, hi in rows]
    series = [Series(_path([(a, a), (b, b)], rng), "s-ref", "perfectly calibrated"),
              Series(_path([(r[0], r[1]) for r in rows], rng), "s-model", "model")]
    worst = max(rows, key=lambda r: abs(r[0] - r[1]))
    ece = _num(measurement.get("value"))
    title = f"Calibration (expected calibration error {fmt3(ece)})" if ece is not None else "Calibration"
    desc = (f"Reliability plot over {len(rows)} non-empty score bins: the observed share of {positive_label} rows "
            f"against the mean predicted score; dot size shows how many rows a bin holds. The dashed diagonal is a "
            f"perfectly calibrated model. The largest gap is in the bin {fmt3(worst[3])}–{fmt3(worst[4])} "
            f"({worst[2]} rows): mean score {fmt3(worst[0])}, observed {fmt3(worst[1])}.")
    return _xy("calibration", title, desc, "Mean predicted score", f"Observed share of {positive_label}",
               series, dots, r=rng, steps=(step, step))


# ---------------------------------------------------------------- confusion matrix


def _fill(share: float) -> str:
    """Light to mid blue; the count's dark text keeps well above 7:1 contrast on every shade."""
    lo, hi = (0xF4, 0xF7, 0xFB), (0x9F, 0xC5, 0xE8)
    r, g, b = (round(a + (z - a) * share) for a, z in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def confusion_chart(measurement: dict | None) -> ConfusionChart | None:
    """The 2x2 confusion matrix from `details.confusion_matrix` {tp, fp, tn, fn, labels, threshold}."""
    cm = ((measurement or {}).get("details") or {}).get("confusion_matrix")
    if not isinstance(cm, dict):
        return None
    counts = {k: _num(cm.get(k)) for k in ("tp", "fp", "tn", "fn")}
    if any(v is None for v in counts.values()):
        return None
    tp, fp, tn, fn = (int(counts[k]) for k in ("tp", "fp", "tn", "fn"))
    pos, neg = str(cm.get("positive_label", "positive")), str(cm.get("negative_label", "negative"))
    total = tp + fp + tn + fn
    biggest = max(tp, fp, tn, fn) or 1
    threshold = _num(cm.get("threshold"))
    width, height = 320, 250
    x0, y0, cw, ch = 110, 56, 100, 80
    layout = [  # (row, col, count, caption): rows are the actual label, columns the predicted one
        (0, 0, tp, "true positive"), (0, 1, fn, "false negative"),
        (1, 0, fp, "false positive"), (1, 1, tn, "true negative"),
    ]
    cells = []
    for row, col, n, caption in layout:
        x, y = x0 + col * cw, y0 + row * ch
        share = f" · {n / total:.0%}" if total else ""
        cells.append(Cell(_c(x), _c(y), _c(cw), _c(ch), _fill(n / biggest), _c(x + cw / 2), _c(y + ch / 2 + 2),
                          _c(y + ch / 2 + 20), f"{n:,}", caption + share))
    at = f" at the decision threshold {threshold:g}" if threshold is not None else ""
    desc = (f"Confusion matrix of {total:,} eval rows{at}. Actual {pos}: {tp:,} predicted {pos} (true positives), "
            f"{fn:,} predicted {neg} (false negatives). Actual {neg}: {fp:,} predicted {pos} (false positives), "
            f"{tn:,} predicted {neg} (true negatives).")
    return ConfusionChart(
        id="confusion", title=f"Confusion matrix{at}", desc=desc, width=width, height=height, cells=cells,
        col_heads=[Tick(_c(x0 + cw / 2), pos), Tick(_c(x0 + cw * 1.5), neg)],
        row_heads=[Tick(_c(y0 + ch / 2 + 4), pos), Tick(_c(y0 + ch * 1.5 + 4), neg)],
        col_title="Predicted", row_title="Actual", head_y=_c(y0 - 8), row_head_x=_c(x0 - 8),
        col_title_x=_c(x0 + cw), col_title_y=_c(y0 - 30), row_title_x=_c(24), row_title_y=_c(y0 + ch),
    )


# ---------------------------------------------------------------- value with interval against a threshold


def ci_bar(value: Any, ci_low: Any, ci_high: Any, minimum: Any = None, maximum: Any = None,
           desc: str = "") -> CIBar | None:
    """A small bar for any measured value: interval whisker, value dot, threshold lines and failing zones.

    The scale is [0, 1] when every number lies in it (rates, AUCs, ratios up to 1), else it spans the numbers
    with a margin. Returns None when there is no value and no interval to show."""
    v, lo, hi, mn, mx = (_num(x) for x in (value, ci_low, ci_high, minimum, maximum))
    known = [x for x in (v, lo, hi, mn, mx) if x is not None]
    if v is None and (lo is None or hi is None):
        return None
    if all(0.0 <= x <= 1.0 for x in known):
        a, b, step = 0.0, 1.0, 1.0
    else:  # round ends a step beyond the numbers
        a, b, step = nice_range(min(known), max(known), 4)
    width, height = 220, 34
    left, right, mid = 8.0, 212.0, 14.0

    def sx(x: float) -> float:
        return left + (x - a) / (b - a) * (right - left)

    zones = []
    if mn is not None:
        zones.append((_c(left), _c(max(sx(mn) - left, 0.0))))
    if mx is not None:
        zones.append((_c(sx(mx)), _c(max(right - sx(mx), 0.0))))
    thresholds = [Tick(_c(sx(t)), f"{t:g}") for t in (mn, mx) if t is not None]
    # an end label that a threshold's label would overlap is left out (the threshold's own number stays); at
    # 9 px a character is about 5.4 px wide: the end labels run inwards from the ends, a threshold's is centred
    lo_text, hi_text = tick_label(a, step), tick_label(b, step)
    half = [len(t.text) * 2.7 + 3 for t in thresholds]
    if any(float(t.pos) - h < left + len(lo_text) * 5.4 for t, h in zip(thresholds, half)):
        lo_text = ""
    if any(float(t.pos) + h > right - len(hi_text) * 5.4 for t, h in zip(thresholds, half)):
        hi_text = ""
    has_ci = lo is not None and hi is not None
    return CIBar(
        desc=desc, width=width, height=height, axis_x1=_c(left), axis_x2=_c(right), axis_y=_c(mid + 9), text_y=_c(height - 1),
        ci_x1=_c(sx(lo)) if has_ci else None, ci_x2=_c(sx(hi)) if has_ci else None,
        value_x=_c(sx(v)) if v is not None else None, mid_y=_c(mid), cap_y1=_c(mid - 5), cap_y2=_c(mid + 5),
        fail_zones=zones, thresholds=thresholds, lo_text=lo_text, hi_text=hi_text,
    )


# ---------------------------------------------------------------- confusion matrix of every class (heat map)


@dataclass
class MatrixCell:
    x: str
    y: str
    w: str
    h: str
    fill: str
    cx: str
    count_y: str
    share_y: str
    count: str
    share: str  # of the true class's rows
    label: str  # tooltip (<title>): the full sentence
    diagonal: bool


@dataclass
class ClassMatrixChart:
    """Every class's confusion matrix as a heat map: rows the true class, columns the decided class, each cell
    shaded by its share of the true class's rows (the diagonal is each class's recall)."""

    id: str
    title: str
    desc: str
    width: int
    height: int
    cells: list[MatrixCell]
    col_heads: list[Tick]  # decided classes: pos = x (labels shortened; full ones in `full`)
    row_heads: list[Tick]  # true classes: pos = y
    full: list[str]  # every label in full, for the tooltips
    head_y: str
    row_head_x: str
    col_title_x: str
    col_title_y: str
    row_title_x: str
    row_title_y: str
    font: str  # px of the counts


def _short(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: max(chars - 1, 1)] + "…"


def class_matrix_chart(matrix: dict | None) -> ClassMatrixChart | None:
    """The heat map of `details.confusion_matrix` {labels, matrix} (audit.checks.performance.class_matrix_details):
    one cell per (true, decided) class. None when the matrix is absent, not square, or not of counts. The labels
    come from the data: the template escapes them, and they are shortened here only for the axes."""
    cm = matrix if isinstance(matrix, dict) else {}
    labels, rows = cm.get("labels"), cm.get("matrix")
    if not isinstance(labels, list) or not isinstance(rows, list) or len(labels) < 2 or len(rows) != len(labels):
        return None
    counts = []
    for row in rows:
        if not isinstance(row, list) or len(row) != len(labels) or any(_num(v) is None or _num(v) < 0 for v in row):
            return None
        counts.append([int(_num(v)) for v in row])
    k = len(labels)
    names = [str(x) for x in labels]
    cw = max(30.0, min(72.0, 560.0 / k))
    chars = max(3, int(cw / (_CHAR_PX + 0.5)) - 1)  # a gap between neighbouring column heads
    head_chars = 16
    left = 34 + min(max(len(n) for n in names), head_chars) * _CHAR_PX + 8
    top = 58.0
    width, height = int(left + k * cw + 10), int(top + k * cw + 12)
    font = f"{max(9.0, min(16.0, cw / 3.6)):.1f}"
    total = sum(map(sum, counts))
    cells = []
    for i, row in enumerate(counts):
        support = sum(row)
        for j, n in enumerate(row):
            share = n / support if support else 0.0
            x, y = left + j * cw, top + i * cw
            tip = (f"true {names[i]}, decided {names[j]}: {n:,} rows"
                   + (f" ({share:.0%} of the {support:,} rows of {names[i]})" if support else ""))
            cells.append(MatrixCell(_c(x), _c(y), _c(cw), _c(cw), _fill(share), _c(x + cw / 2), _c(y + cw / 2 + 1),
                                    _c(y + cw / 2 + 13), f"{n:,}", f"{share:.0%}" if support and cw >= 44 else "",
                                    tip, i == j))
    right = sum(counts[i][i] for i in range(k))
    worst = min((i for i in range(k) if sum(counts[i])), key=lambda i: counts[i][i] / sum(counts[i]), default=None)
    desc = (f"Confusion matrix of {total:,} eval rows over {k} classes: rows are the true class, columns the "
            f"decided class; each cell is shaded by its share of the true class's rows, so the diagonal reads each "
            f"class's recall. {right:,} rows ({right / total:.0%}) lie on the diagonal." if total else
            f"Confusion matrix over {k} classes: no rows.")
    if worst is not None and total:
        desc += (f" The class found least often is {names[worst]}: {counts[worst][worst]:,} of its "
                 f"{sum(counts[worst]):,} rows decided right.")
    return ClassMatrixChart(
        id="class-confusion", title=f"Confusion matrix of the {k} classes", desc=desc, width=width, height=height,
        cells=cells,
        col_heads=[Tick(_c(left + (j + 0.5) * cw), _short(n, chars)) for j, n in enumerate(names)],
        row_heads=[Tick(_c(top + (i + 0.5) * cw + 4), _short(n, head_chars)) for i, n in enumerate(names)],
        full=names, head_y=_c(top - 8), row_head_x=_c(left - 8), col_title_x=_c(left + k * cw / 2),
        col_title_y=_c(top - 30), row_title_x=_c(16), row_title_y=_c(top + k * cw / 2), font=font,
    )

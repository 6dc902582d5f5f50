"""Drift statistics: two-sample tests that hold their level, PSI on reference-quantile bins, a domain
classifier's AUC with DeLong's standard error, text descriptors, and evidently's data-drift report run with the
test this module chooses for each column.

Which test a column gets (`choose_test`), by the size of the SMALLER of the two samples:

    column                         smaller sample <= 1,000 rows               both samples > 1,000 rows
    numeric (> 5 distinct values)  two-sample Kolmogorov-Smirnov, p < alpha   Wasserstein distance / reference sd >= 0.1
    categorical, 2 values          two-proportion z-test (pooled), p < alpha  Jensen-Shannon distance >= 0.1
    categorical, > 2 values        chi-square test of homogeneity, p < alpha  Jensen-Shannon distance >= 0.1
    text (the model's input)       TF-IDF domain classifier's held-out AUC > max(0.55, its 95th percentile by chance)

That is evidently 0.7's own choice (`_get_default_stattest`) except in two places, both measured in
tests/test_drift.py with two samples of one distribution:

1. For categorical columns of up to 1,000 reference rows evidently runs "chisquare": scipy's `chisquare` of the
   current counts against the reference proportions scaled to the current size. That is a goodness-of-fit test
   that treats the reference proportions as exact, while they are themselves a sample: with two equal samples of
   one distribution its statistic is about twice a chi-square variate, and it flagged 29% of 400 same-distribution
   pairs (1,000 vs 1,000 rows, 5 categories) at a nominal 5%. We register "chi2_two_sample" (scipy
   `chi2_contingency` on the 2 x k table, no continuity correction; categories expected to hold fewer than 5 rows
   of the smaller sample are pooled, Cochran's rule) and use it instead: 4.5% on the same pairs.
2. evidently picks the regime from the reference size alone, so a large training set against a small current batch
   gets the distance tests, whose value on a few hundred rows is mostly sampling noise: the normed Wasserstein
   distance flagged 72% of same-distribution batches of 100 rows against 5,000 reference rows (38% at 200 rows).
   We pick the regime by the smaller sample.

The distances have no p-value. With no drift they shrink as both samples grow, so above 1,000 rows they rarely
fire by chance (measured: at most 1.5% for Wasserstein, 6.5% for Jensen-Shannon with 30 equally likely values at
1,001 rows), and unlike a p-value test they do not flag shifts too small to matter once samples reach 100,000 rows.

The text test is evidently's "abs_text_content_drift" (its TF-IDF + SGD domain classifier, fitted on half the rows
and scored on the other half; nothing downloads) with the threshold raised to the 95th percentile of a random
classifier's AUC at these sizes when that is above evidently's 0.55. evidently's own small-sample variant estimates
that percentile from 1,000 random scorings (9 s per run at 800 rows, three runs per report); the Mann-Whitney null
variance gives it in closed form.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

PSI_EPS = 1e-4  # a bin's share is floored at this before the log: an empty bin adds a large, finite term
# The defaults of the column-drift checks' parameters (audit/checks/drift.py: `max_levels`, `small_n`,
# `min_expected`, `text_auc_floor`); a policy rule may set each.
MAX_LEVELS = 5  # a numeric column with at most this many distinct values is tested as categorical
SMALL_N = 1000  # p-value tests while the smaller sample has at most this many rows; distances above
MIN_EXPECTED = 5.0  # chi-square: categories expected to hold fewer rows than this in the smaller sample are pooled
RARE = "(rare values, pooled)"
MISSING = "(missing)"
CHI2_NAME = "chi2_two_sample"
TEXT_AUC_FLOOR = 0.55  # evidently's abs_text_content_drift threshold
TEXT_ROWS = 5000  # the text-content test reads a seeded sample of at most this many texts a side
MIN_CLASSIFIER_ROWS = 10  # the embedding domain classifier needs this many rows a side (drift.embedding_auc's `min_rows`)


# ---------------------------------------------------------------- PSI and KS


def psi_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (1/bins, 2/bins, ...); repeated edges (ties) are merged.
    Bin i holds values in [edge[i-1], edge[i]); the first and last bins are open-ended."""
    reference = np.asarray(reference, dtype=float)
    if len(reference) == 0 or bins < 2:
        return np.array([])
    return np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, np.asarray(values, dtype=float), side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(float)


def psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = PSI_EPS) -> np.ndarray:
    """PSI = sum over bins of (c - r) * ln(c / r) with the shares floored at `eps`. Works on (k,) or (R, k)."""
    r = ref_counts / ref_counts.sum(axis=-1, keepdims=True)
    c = cur_counts / cur_counts.sum(axis=-1, keepdims=True)
    r, c = np.maximum(r, eps), np.maximum(c, eps)
    return ((c - r) * np.log(c / r)).sum(axis=-1)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = PSI_EPS) -> float:
    edges = psi_edges(reference, bins)
    return float(psi_from_counts(bin_counts(reference, edges), bin_counts(current, edges), eps))


def psi_null_mean(k: int, n_ref: int, n_cur: int) -> float:
    """About what PSI averages over two samples of ONE distribution with k bins: (k - 1)(1/n_ref + 1/n_cur).
    (PSI is a symmetrised KL divergence; 2n * KL is asymptotically chi-square with k - 1 degrees of freedom.)"""
    return (k - 1) * (1.0 / max(n_ref, 1) + 1.0 / max(n_cur, 1))


def psi_bootstrap(ref_counts: np.ndarray, cur_counts: np.ndarray, replicates: int, seed: int,
                  eps: float = PSI_EPS) -> np.ndarray:
    """PSI over bootstrap resamples of both samples, bins held fixed: a resample's bin counts are multinomial
    with the observed shares, so only the counts are drawn (cheap at any row count)."""
    if replicates <= 0:
        return np.array([])
    rng = np.random.default_rng(seed)
    n_r, n_c = int(ref_counts.sum()), int(cur_counts.sum())
    r = rng.multinomial(n_r, ref_counts / n_r, size=replicates).astype(float)
    c = rng.multinomial(n_c, cur_counts / n_c, size=replicates).astype(float)
    return psi_from_counts(r, c, eps)


def psi_interval(ref_counts: np.ndarray, cur_counts: np.ndarray, replicates: int, seed: int,
                 confidence: float) -> tuple[float | None, float | None]:
    """The basic (reverse-percentile) bootstrap interval of PSI, clipped at 0: (2 psi - q_high, 2 psi - q_low).

    PSI is biased upwards (two samples of one population give about `psi_null_mean`), and a resample adds the bias
    again, so the plain percentile interval sits above the truth: with no drift (700 vs 200 rows, 150 trials) it
    never once contained 0, and it contained a true PSI of 0.16 only 64% of the time. The basic interval
    reflects the bias back: 100% and 93% in the same trials."""
    from audit.stats import percentile_interval

    point = float(psi_from_counts(ref_counts, cur_counts))
    low, high = percentile_interval(psi_bootstrap(ref_counts, cur_counts, replicates, seed), confidence)
    if low is None or high is None:
        return None, None
    return max(0.0, 2 * point - high), max(0.0, 2 * point - low)


def ks_two_sample(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    from scipy.stats import ks_2samp

    res = ks_2samp(np.asarray(reference, dtype=float), np.asarray(current, dtype=float))
    return float(res.statistic), float(res.pvalue)


# ---------------------------------------------------------------- proportions


def wilson(k: float, n: float, z: float) -> tuple[float, float]:
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def newcombe_diff(k1: float, n1: float, k2: float, n2: float, confidence: float) -> tuple[float, float, float]:
    """p2 - p1 with Newcombe's hybrid score interval (1998, method 10) from the two Wilson intervals."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p2 - p1
    return d, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


# ---------------------------------------------------------------- AUC with DeLong's standard error


def auc_delong(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC-AUC (ties count one half) and DeLong's standard error, from mid-ranks (Sun & Xu 2014)."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=float)
    pos, neg = score[y], score[~y]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    r_all = rankdata(np.r_[pos, neg])
    r_pos, r_neg = rankdata(pos), rankdata(neg)
    auc = (r_all[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (r_all[:m] - r_pos) / n  # per positive: share of negatives scored below it
    v01 = 1.0 - (r_all[m:] - r_neg) / m  # per negative: share of positives scored above it
    se = math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return float(auc), float(se)


def domain_classifier_auc(x_ref: np.ndarray, x_cur: np.ndarray, *, seed: int = 0,
                          max_rows: int = 5000, min_rows: int = MIN_CLASSIFIER_ROWS) -> dict[str, Any]:
    """How well a logistic regression tells current rows from reference rows: ROC-AUC on held-out rows.

    Each side is capped at `max_rows` (a seeded sample without replacement); with fewer than `min_rows` rows on
    a side (at least 2, so each half holds one of each) no classifier is fitted and the AUC is None. The classifier (standardised
    features, L2 logistic regression) is fitted on a stratified, seeded half of the rows and scored on the other
    half; the interval is DeLong's on that half. 0.5 means the two sets cannot be told apart.

    Why one split and not k-fold cross-validation: with two samples of one distribution (200 seeds, 500 vs 300
    rows) the pooled out-of-fold AUC varied with a standard deviation of 0.029 while DeLong's standard error said
    0.021 (the fold models share training rows), so its 95% interval covered 0.5 only 84% of the time. On a
    held-out half the scores are fixed given the fitted model, DeLong's interval holds its level (95.5%), and the
    AUC varied no more (0.029) than the cross-validated one."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    sampled = {}
    parts = []
    for name, x in (("reference", x_ref), ("current", x_cur)):
        x = np.asarray(x, dtype=np.float32)
        if len(x) > max_rows:
            x = x[np.sort(rng.choice(len(x), size=max_rows, replace=False))]
            sampled[name] = max_rows
        parts.append(x)
    n_ref, n_cur = len(parts[0]), len(parts[1])
    out = {"n_reference": n_ref, "n_current": n_cur, "sampled": sampled,
           "classifier": ("standardised features, logistic regression (L2, C=1), fitted on a stratified half of the "
                          "rows and scored on the other half")}
    if min(n_ref, n_cur) < max(int(min_rows), 2):
        return {**out, "auc": None, "se": None, "n_test": 0}
    X = np.vstack(parts)
    y = np.r_[np.zeros(n_ref), np.ones(n_cur)]
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    # one BLAS thread: these problems are small, and on a busy 2-core machine threaded BLAS ran 20-50x slower
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")  # lbfgs convergence notes on separable data
        decision = model.fit(X_fit, y_fit).decision_function(X_test)
    auc, se = auc_delong(y_test, decision)
    return {**out, "auc": auc, "se": se, "n_test": len(y_test)}


# ---------------------------------------------------------------- columns


def column_kind(ref, cur, max_levels: int = MAX_LEVELS) -> tuple[str, Any, Any]:
    """'numeric' (both converted to floats, missing as NaN) when every present cell of both parses as a number
    and there are more than `max_levels` distinct values; else 'categorical' (strings, missing as '(missing)')."""
    import pandas as pd

    present = pd.concat([ref, cur], ignore_index=True).dropna()
    if len(present):
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all() and numbers.nunique() > max_levels:
            return ("numeric", pd.to_numeric(ref, errors="coerce").astype(float).reset_index(drop=True),
                    pd.to_numeric(cur, errors="coerce").astype(float).reset_index(drop=True))

    def cat(s):
        return s.astype(object).where(s.notna(), MISSING).astype(str).reset_index(drop=True)

    return "categorical", cat(ref), cat(cur)


@dataclass(frozen=True)
class TestChoice:
    method: str  # an evidently stattest name
    name: str  # for the report
    statistic: str  # "p-value", "distance" or "AUC": what the score is
    threshold: float
    direction: str  # "below" (p-value) or "above" (distance, AUC): which side of the threshold is drift
    min_expected: float = MIN_EXPECTED  # the two-sample chi-square's pooling rule (pooled_table)

    @property
    def stattest(self) -> str:
        """The name evidently knows the test by: `method`, except for a two-sample chi-square with another
        pooling rule than the default, registered under a name of its own (`_register_chi2`)."""
        if self.method == CHI2_NAME and self.min_expected != MIN_EXPECTED:
            return _register_chi2(self.min_expected)
        return self.method


TESTS = {
    "ks": ("two-sample Kolmogorov-Smirnov", "p-value"),
    "z": ("two-proportion z-test (pooled)", "p-value"),
    CHI2_NAME: ("chi-square test of homogeneity (2 x k table)", "p-value"),
    "wasserstein": ("Wasserstein distance / reference sd", "distance"),
    "jensenshannon": ("Jensen-Shannon distance", "distance"),
    "abs_text_content_drift": ("TF-IDF domain classifier (held-out half)", "AUC"),
}

WHY = {
    "ks": "numeric column and the smaller sample has at most 1,000 rows: a two-sample test with a known level",
    "z": "two values and the smaller sample has at most 1,000 rows: compares the two shares, both estimated",
    CHI2_NAME: ("more than two values and the smaller sample has at most 1,000 rows: a two-sample test; evidently's "
                "default here (goodness of fit against the reference proportions) false-alarms"),
    "wasserstein": ("numeric column and both samples over 1,000 rows: how far the distribution moved, in reference "
                    "standard deviations; a p-value at this size flags shifts too small to matter"),
    "jensenshannon": ("categorical column and both samples over 1,000 rows: how far the shares moved; a p-value at "
                      "this size flags shifts too small to matter"),
    "abs_text_content_drift": ("the model's text: a classifier that tells current from reference texts; chance "
                               "level 0.5, the threshold is what chance reaches 5% of the time at these sizes"),
}


def choose_test(kind: str, n_ref: int, n_cur: int, n_values: int, *, alpha: float = 0.05,
                distance: float = 0.1, small_n: int = SMALL_N, min_expected: float = MIN_EXPECTED,
                text_auc_floor: float = TEXT_AUC_FLOOR) -> TestChoice:
    """The test of one column (the module docstring's table), with the thresholds of the rule: `small_n` the
    largest smaller sample that gets p-value tests, `min_expected` the chi-square's pooling rule,
    `text_auc_floor` the lowest threshold of the text classifier's AUC."""
    small = min(n_ref, n_cur) <= small_n
    if kind == "text":
        name, stat = TESTS["abs_text_content_drift"]
        return TestChoice("abs_text_content_drift", name, stat,
                          text_auc_threshold(n_ref, n_cur, alpha, floor=text_auc_floor), "above")
    if small:
        method = "ks" if kind == "numeric" else ("z" if n_values <= 2 else CHI2_NAME)
        threshold = alpha
    else:
        method = "wasserstein" if kind == "numeric" else "jensenshannon"
        threshold = distance
    name, stat = TESTS[method]
    return TestChoice(method, name, stat, threshold, "below" if stat == "p-value" else "above",
                      float(min_expected))


def text_auc_threshold(n_ref: int, n_cur: int, alpha: float = 0.05, floor: float = TEXT_AUC_FLOOR) -> float:
    """max(`floor` (0.55), the (1 - alpha) quantile of a random classifier's AUC on the held-out half), the quantile from
    the Mann-Whitney null: mean 0.5, variance (n1 + n2 + 1) / (12 n1 n2) with n1, n2 the halves' class sizes."""
    from scipy.stats import norm

    n1, n2 = max(n_ref / 2, 1), max(n_cur / 2, 1)
    q = 0.5 + float(norm.ppf(1 - alpha)) * math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    return round(max(float(floor), q), 4)


def pooled_table(ref, cur, min_expected: float = MIN_EXPECTED) -> tuple[list[str], np.ndarray]:
    """The 2 x k table of counts (reference row, current row), categories expected to hold fewer than
    `min_expected` rows of the smaller sample pooled into one."""
    import pandas as pd

    counts = pd.DataFrame({"r": pd.Series(ref).value_counts(), "c": pd.Series(cur).value_counts()}).fillna(0)
    n_r, n_c = counts["r"].sum(), counts["c"].sum()
    small = min(n_r, n_c) / max(n_r + n_c, 1)
    expected = (counts["r"] + counts["c"]) * small
    rare = expected < min_expected
    if rare.sum() >= 2:
        pooled = counts[rare].sum()
        counts = pd.concat([counts[~rare], pd.DataFrame({"r": [pooled["r"]], "c": [pooled["c"]]}, index=[RARE])])
    return [str(i) for i in counts.index], counts[["r", "c"]].to_numpy().T


def chi2_two_sample(ref, cur, min_expected: float = MIN_EXPECTED) -> float:
    """p-value of the chi-square test of homogeneity on the (pooled) 2 x k table; 1.0 with one category."""
    from scipy.stats import chi2_contingency

    _, table = pooled_table(ref, cur, min_expected)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table, correction=False)[1])


_REGISTERED: dict[float, str] = {}  # pooling rule (min_expected) -> the name evidently knows the test by


def _register_chi2(min_expected: float = MIN_EXPECTED) -> str:
    """Register the two-sample chi-square with evidently (once per pooling rule), so its report and tests use it
    by name: CHI2_NAME with the default rule, `chi2_two_sample_min<value>` with another. Returns the name."""
    min_expected = float(min_expected)
    if min_expected in _REGISTERED:
        return _REGISTERED[min_expected]
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    name = CHI2_NAME if min_expected == MIN_EXPECTED else f"{CHI2_NAME}_min{min_expected:g}"

    def impl(reference_data, current_data, feature_type, threshold):
        p = chi2_two_sample(reference_data, current_data, min_expected)
        return p, p < threshold

    register_stattest(StatTest(name=name, display_name="chi-square two-sample p_value",
                               allowed_feature_types=[ColumnType.Categorical]), default_impl=impl)
    _REGISTERED[min_expected] = name
    return name


def import_evidently():
    """evidently's names, imported on first use (4 s) with its import-time deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import evidently
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    _register_chi2()
    return evidently, Report, Dataset, DataDefinition, DataDriftPreset


def column_test(ref, cur, kind: str, test: TestChoice) -> tuple[float, bool]:
    """One column through the evidently stattest `test` names, as its report calls it (numeric: infinities and
    missing values dropped first), without the report's plots: (score, drifted)."""
    import pandas as pd

    import_evidently()
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    ctype = {"numeric": ColumnType.Numerical, "categorical": ColumnType.Categorical, "text": ColumnType.Text}[kind]
    ref, cur = pd.Series(ref), pd.Series(cur)
    if kind == "numeric":
        ref = ref.replace([np.inf, -np.inf], np.nan).dropna()
        cur = cur.replace([np.inf, -np.inf], np.nan).dropna()
    res = get_registered_stattest(test.stattest, ctype)(ref, cur, ctype, test.threshold)
    return float(res.drift_score), bool(res.drifted)


@dataclass
class ColumnResult:
    column: str
    kind: str
    test: TestChoice
    score: float | None
    drifted: bool | None
    n_reference: int
    n_current: int


def run_evidently(ref, cur, kinds: dict[str, str], tests: dict[str, TestChoice], *, html: bool = False
                  ) -> tuple[dict[str, ColumnResult], str | None]:
    """evidently's DataDriftPreset over the columns of `kinds` ('numeric', 'categorical', 'text'), each with the
    test of `tests`; the drift flag of each column is read from evidently's tests (FAIL = drifted).
    Returns the results per column and, with `html`, evidently's self-contained HTML report."""
    evidently, Report, Dataset, DataDefinition, DataDriftPreset = import_evidently()
    cols = list(kinds)
    definition = DataDefinition(
        numerical_columns=[c for c in cols if kinds[c] == "numeric"],
        categorical_columns=[c for c in cols if kinds[c] == "categorical"],
        text_columns=[c for c in cols if kinds[c] == "text"],
    )
    preset = DataDriftPreset(columns=cols, per_column_method={c: tests[c].stattest for c in cols},
                             per_column_threshold={c: tests[c].threshold for c in cols})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(cur[cols].reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(ref[cols].reset_index(drop=True), data_definition=definition))
        data = snapshot.dict()
        page = evidently_page(snapshot) if html else None
    scores: dict[str, float] = {}
    by_metric: dict[str, str] = {}
    for m in data.get("metrics", []):
        config = m.get("config") or {}
        if str(config.get("type", "")).endswith("ValueDrift"):
            scores[config["column"]] = m.get("value")
            by_metric[m.get("id")] = config["column"]
    flags: dict[str, bool] = {}
    for t in data.get("tests", []):
        params = (t.get("metric_config") or {}).get("params") or {}
        column = params.get("column") if str(params.get("type", "")).endswith("ValueDrift") else None
        if column is None:
            continue
        status = str(getattr(t.get("status"), "value", t.get("status")))
        flags[column] = status.endswith("FAIL")
    out = {}
    for c in cols:
        score = scores.get(c)
        score = float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None
        out[c] = ColumnResult(c, kinds[c], tests[c], score, flags.get(c),
                              int(ref[c].notna().sum()) if kinds[c] == "numeric" else len(ref),
                              int(cur[c].notna().sum()) if kinds[c] == "numeric" else len(cur))
    return out, page


def script_json(text: str) -> str:
    """JSON text made safe inside an HTML <script> block: `<`, `>`, `&` and the JavaScript line terminators
    U+2028/U+2029 as \\u escapes (they occur only inside JSON strings, so the value is unchanged), so that no
    `</script>` or `<!--` in a data value can end the block."""
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def evidently_page(snapshot) -> str:
    """evidently's standalone HTML report of a snapshot, as `snapshot.get_html_str(as_iframe=False)` builds it,
    except for the embedded data: evidently writes it with plain json.dumps into a <script> block, so a
    `</script><script>...` in a cell of the --current file ended the block and ran as script when the attachment
    was opened. Here the page is built without the data and the data block is added from script_json."""
    import hashlib
    import json

    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.model.widget import AdditionalGraphInfo, BaseWidgetInfo
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.legacy.utils import NumpyEncoder
    from evidently.legacy.utils.dashboard import TemplateParams, dashboard_info_to_json, file_html_template

    widgets = [group_widget(title="", widgets=snapshot._widgets), *snapshot._tests_widgets]
    graphs = {}
    for widget in widgets:
        for graph in widget.get_additional_graphs():
            info = graph.params if isinstance(graph, AdditionalGraphInfo) else graph
            graphs[f"{graph.id}"] = info.dict() if isinstance(info, BaseWidgetInfo) else info
    dashboard = DashboardInfo(name="Report", widgets=widgets)
    info_json = script_json(dashboard_info_to_json(dashboard))
    graphs_json = script_json(json.dumps(graphs, cls=NumpyEncoder))
    dashboard_id = "metric_" + hashlib.sha256((info_json + graphs_json).encode()).hexdigest()[:32]
    page = file_html_template(TemplateParams(dashboard_id=dashboard_id, dashboard_info=dashboard,
                                             additional_graphs=graphs, embed_data=False))
    marker = "<!-- no embedded data -->"
    if marker not in page:
        raise RuntimeError("evidently's HTML template changed: cannot embed its data safely")
    block = (f"<script>\n    var {dashboard_id} = {info_json};\n"
             f"    var additional_graphs_{dashboard_id} = {graphs_json};\n</script>")
    return page.replace(marker, block, 1)


# ---------------------------------------------------------------- histograms for the report


def _label(x: float) -> str:
    """A bin edge for a chart label: 1,750 rather than 1.75e+03; three significant digits below 1,000."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def histogram(ref, cur, kind: str, *, bins: int = 12, top: int = 12, lo: float | None = None,
              hi: float | None = None) -> dict[str, Any]:
    """Shares per bin (numeric: equal-width bins over the pooled 0.5-99.5% range, the tails folded into the end
    bins) or per category (the `top` commonest, the rest as 'other'), reference and current side by side."""
    import pandas as pd

    if kind == "numeric":
        r = np.asarray(pd.Series(ref).dropna(), dtype=float)
        c = np.asarray(pd.Series(cur).dropna(), dtype=float)
        both = np.r_[r, c]
        if len(both) == 0:
            return {"kind": kind, "labels": [], "reference": [], "current": []}
        a = lo if lo is not None else float(np.quantile(both, 0.005))
        b = hi if hi is not None else float(np.quantile(both, 0.995))
        if not b > a:
            a, b = float(both.min()), float(both.max())
        if not b > a:
            b = a + 1.0
        edges = np.linspace(a, b, bins + 1)

        def shares(x):
            idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
            return (np.bincount(idx, minlength=bins) / max(len(x), 1)).tolist()

        labels = [f"{_label(edges[i])}–{_label(edges[i + 1])}" for i in range(bins)]
        return {"kind": kind, "labels": labels, "edges": edges.tolist(), "reference": shares(r),
                "current": shares(c), "n_reference": len(r), "n_current": len(c)}
    r, c = pd.Series(ref).astype(str), pd.Series(cur).astype(str)
    order = pd.concat([r, c]).value_counts()
    keep = list(order.index[:top])
    numbers = pd.to_numeric(pd.Series(keep, dtype=object), errors="coerce")
    if len(keep) and numbers.notna().all():  # numeric values (a count with few levels): in numeric order
        keep = [k for _, k in sorted(zip(numbers, keep))]
    rs, cs = r.value_counts(normalize=True), c.value_counts(normalize=True)
    labels = [str(k) for k in keep]
    ref_sh = [float(rs.get(k, 0.0)) for k in keep]
    cur_sh = [float(cs.get(k, 0.0)) for k in keep]
    if len(order) > top:
        labels.append(f"other ({len(order) - top} values)")
        ref_sh.append(max(0.0, 1.0 - sum(ref_sh)))
        cur_sh.append(max(0.0, 1.0 - sum(cur_sh)))
    return {"kind": kind, "labels": labels, "reference": ref_sh, "current": cur_sh, "n_reference": len(r),
            "n_current": len(c)}


# ---------------------------------------------------------------- text descriptors


DESCRIPTOR_NAMES = {"words": "words", "tokens": "tokens", "unknown_share": "unknown-token share",
                    "non_ascii_share": "non-ASCII share"}
DESCRIPTORS = {
    "words": "words per text",
    "tokens": "tokens per text (the model's tokenizer, no special tokens, before truncation)",
    "unknown_share": "share of a text's tokens that are the unknown token",
    "non_ascii_share": "share of a text's characters outside ASCII",
}


def text_descriptors(texts: list[str], tokenizer=None, batch: int = 4096) -> dict[str, np.ndarray]:
    """Per text: words, tokens, share of unknown-token pieces, share of non-ASCII characters. Without a
    tokenizer only the words and the non-ASCII share."""
    out = {
        "words": np.array([len(t.split()) for t in texts], dtype=np.int64),
        "non_ascii_share": np.array([(len(t) - len(t.encode("ascii", "ignore"))) / max(len(t), 1) for t in texts]),
    }
    if tokenizer is not None:
        unk = tokenizer.unk_token_id
        tokens, unknown = np.zeros(len(texts), dtype=np.int64), np.zeros(len(texts))
        for lo in range(0, len(texts), batch):  # in batches: 100,000 texts of token ids as lists held ~0.6 GB
            ids = tokenizer(list(texts[lo: lo + batch]), add_special_tokens=False, truncation=False,
                            return_attention_mask=False, return_token_type_ids=False, verbose=False)["input_ids"]
            tokens[lo: lo + len(ids)] = [len(x) for x in ids]
            if unk is not None:
                unknown[lo: lo + len(ids)] = [x.count(unk) / max(len(x), 1) for x in ids]
        out["tokens"], out["unknown_share"] = tokens, unknown
    return {k: out[k] for k in DESCRIPTORS if k in out}

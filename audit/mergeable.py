"""Mergeable statistics: small typed objects that summarise scored rows so that partitions can be combined.

Each object has `update(...)` (add a batch of rows) and `merge(other)` (add another partition's object), and
`to_dict()` / `from_dict()` for a stats file. Computing them per partition and merging gives the same object
as computing them on all rows at once, EXACTLY for every count, sum and bootstrap replicate count (integer
arithmetic; float sums up to rounding), which the tests prove. The in-memory audit is the one-partition case.

The objects (all counts live on grids fixed in `Grid`, never on data-dependent bins, so two partitions always
line up):

    ScoreLabelHistogram  rows per (true label, score bin) on a fine grid of `score_bins` left-closed bins
                         [k/B, (k+1)/B): the confusion counts at ANY threshold on the grid (accuracy, recall,
                         precision, balanced accuracy, F1), ROC-AUC and average precision (binned: pairs in one
                         bin count as ties; the error bound is computed from the same counts, `auc_error_bound`),
                         and the score histogram for drift.
    GroupConfusion       rows per (group, true label, score bin) of one protected attribute on the coarser
                         `threshold_bins` grid, plus rows with no value: every fairness rate at any grid
                         threshold (selection rate, TPR, FPR, FNR, precision, accuracy; per-group ROC-AUC binned).
                         An intersection of attributes ("sex × age") is one more GroupConfusion whose groups are
                         the combinations ("female × under 25"), a row with no value for any part counted as
                         missing, named as the in-memory fairness check names them.
    Calibration          per equal-width calibration bin (scikit-learn's right-closed bins, as audit.stats):
                         rows, sum of labels, sum of scores; and the sum of squared errors (Brier). Exact ECE and
                         Brier score.
    ScoreDrift           a reference and a current ScoreLabelHistogram on the same grid: PSI on bins cut at the
                         reference's quantiles (rounded to the grid), and the two-sample KS statistic from the
                         cumulative histograms, with an exact bound on the binning error.
    TokenImportance      per word: sums of |SHAP| and of signed SHAP, occurrences and rows containing it; the
                         rows seen and the total |SHAP|: global importance and prohibited-term share.

Bootstrap. Every count object also keeps Poisson-bootstrap REPLICATE counts: replicate r adds each row
w_r(row) ~ Poisson(1) times. The weight is a pure function of (seed, row id, r) (`replicate_weights`: a
splitmix64 counter hash of the row id's 64-bit hash, turned into a Poisson(1) draw by its inverse CDF), so a
row gets the same weights whichever partition, chunk or order it arrives in: merged replicate counts are the
whole data set's replicate counts, and intervals computed from them are the whole data set's intervals.
Row ids must be unique: two rows with one id get the same weights (their intervals come out too narrow).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Grid:
    """The policy-independent settings every stats object of one audit shares; partitions merge only when
    these are equal."""

    score_bins: int = 1000  # fine score grid: thresholds on multiples of 1/score_bins, AUC and drift
    threshold_bins: int = 100  # group tables: thresholds on multiples of 1/threshold_bins
    ece_bins: int = 10  # calibration bins (performance.ece's default)
    replicates: int = 1000  # Poisson bootstrap replicates (0: no intervals)
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"score_bins": self.score_bins, "threshold_bins": self.threshold_bins, "ece_bins": self.ece_bins,
                "replicates": self.replicates, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        return cls(**{k: int(d[k]) for k in ("score_bins", "threshold_bins", "ece_bins", "replicates", "seed")})


def edges(bins: int) -> np.ndarray:
    """Bin edges k/bins, computed as correctly rounded divisions, so that a threshold written as a decimal
    (0.5, 0.35) on the grid is exactly one of them."""
    return np.arange(bins + 1) / bins


def score_bin(score: np.ndarray, bins: int) -> np.ndarray:
    """Left-closed bin [k/B, (k+1)/B) of each score in [0, 1] (1.0 goes to the last bin): a score is at or
    above the grid threshold k/B exactly when its bin is k or higher."""
    e = edges(bins)
    return np.clip(np.searchsorted(e, score, side="right") - 1, 0, bins - 1)


def threshold_index(threshold: float, bins: int) -> int | None:
    """k with k/bins == threshold exactly, or None when the threshold is off the grid."""
    hit = np.flatnonzero(edges(bins) == float(threshold))
    return int(hit[0]) if len(hit) else None


# ---------------------------------------------------------------- replicate weights

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# Poisson(1) CDF; a uniform u gives k = number of CDF values <= u. P(k > 20) < 1e-19: below double resolution.
_POISSON_CDF = np.cumsum([np.exp(-1.0) / np.prod(np.arange(1, k + 1, dtype=float)) for k in range(21)])


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def row_keys(row_ids, seed: int) -> np.ndarray:
    """A 64-bit key per row from its id (pandas' stable SipHash of the id's text) and the seed."""
    import pandas as pd

    h = pd.util.hash_array(np.asarray([str(r) for r in row_ids], dtype=object))
    with np.errstate(over="ignore"):
        return _splitmix64(h ^ _splitmix64(np.array([seed], dtype=np.uint64))[0])


def replicate_weights(keys: np.ndarray, replicates: int) -> np.ndarray:
    """(n, replicates) Poisson(1) weights as float32, a pure function of each row's key and the replicate number.

    One splitmix64 hash of (key, j) gives four 16-bit uniforms, for replicates 4j .. 4j+3; a 65,536-entry table
    (the Poisson(1) inverse CDF at each 16-bit level's midpoint) turns each into a count, so every probability
    P(k) is within 2^-16 of Poisson(1)'s (counts above 8 have probability below 1e-5 and are not drawn)."""
    n = len(keys)
    if replicates == 0:
        return np.zeros((n, 0), dtype=np.float32)
    j = np.arange(1, (replicates + 3) // 4 + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = _splitmix64(keys[:, None] + j[None, :] * _GOLDEN)
    u = np.ascontiguousarray(x).view(np.uint16).reshape(n, -1)[:, :replicates]
    return _POISSON_TABLE[u].astype(np.float32)


_POISSON_TABLE = np.searchsorted(_POISSON_CDF, (np.arange(65536) + 0.5) / 65536, side="right").astype(np.uint8)
SUBCHUNK = 4096  # rows per replicate block: (4096 x replicates) float32 weights, 16 MB at 1000 replicates


# ---------------------------------------------------------------- a count table with replicates


def _encode(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    integral = bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)) and (a.size == 0 or np.abs(a).max() < 2**31))
    raw = a.astype("<i4" if integral else "<f8").tobytes()
    return {"dtype": "int32" if integral else "float64", "shape": list(a.shape),
            "zlib_base64": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


def _decode(d: dict[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(d["zlib_base64"]))
    dtype = "<i4" if d["dtype"] == "int32" else "<f8"
    return np.frombuffer(raw, dtype=dtype).astype(np.float64).reshape(d["shape"])


@dataclass
class Counts:
    """Sums over a fixed grid of cells: `point` (each row adds its value once) and `reps` (replicate r adds it
    w_r(row) times). Values are 1 for counts. Merging adds both."""

    shape: tuple[int, ...]
    replicates: int
    point: np.ndarray = field(default=None)  # type: ignore[assignment]
    reps: np.ndarray | None = None  # (replicates, *shape); None when the replicates were not released

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        if self.point is None:
            self.point = np.zeros(self.shape)
        if self.reps is None and self.replicates:
            self.reps = np.zeros((self.replicates, *self.shape))

    def add(self, cell: np.ndarray, W: np.ndarray | None, values: np.ndarray | None = None,
            rows: np.ndarray | None = None) -> None:
        """Add entries at flat cell indices `cell` (k,) with values (k,), each entry from row `rows[i]` of the
        replicate weights W (n, R) (default: entry i is row i)."""
        size = int(np.prod(self.shape))
        v = np.ones(len(cell)) if values is None else np.asarray(values, dtype=float)
        self.point.reshape(-1)[:] += np.bincount(cell, weights=v, minlength=size)
        if self.reps is None or W is None or not len(cell):
            return
        from scipy.sparse import csr_matrix

        # (cells x rows) sparse, one entry per row, times (rows x R): each row adds its R weights to its cell
        # (float32 is exact for these integer sums: at most 4096 rows x weight 8 per call)
        data = v.astype(W.dtype) if values is not None else np.ones(len(cell), dtype=W.dtype)
        cols = np.arange(len(cell)) if rows is None else rows
        S = csr_matrix((data, (cell, cols)), shape=(size, W.shape[0]))
        self.reps.reshape(self.replicates, size)[:] += np.asarray(S @ W).T

    def merge(self, other: Counts) -> Counts:
        if self.shape != other.shape:
            raise ValueError(f"count tables of shapes {self.shape} and {other.shape} cannot merge")
        reps = None if (self.reps is None or other.reps is None) else self.reps + other.reps
        return Counts(self.shape, self.replicates if reps is not None else 0, self.point + other.point, reps)

    def grow(self, axis: int, size: int) -> None:
        """Extend one axis (new groups of a raw-valued attribute) with zero cells."""
        extra = size - self.shape[axis]
        if extra <= 0:
            return
        pad = [(0, 0)] * len(self.shape)
        pad[axis] = (0, extra)
        self.point = np.pad(self.point, pad)
        if self.reps is not None:
            self.reps = np.pad(self.reps, [(0, 0), *pad])
        self.shape = self.point.shape

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"shape": list(self.shape), "point": _encode(self.point)}
        if self.reps is not None:
            d["replicates"] = _encode(self.reps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        point = _decode(d["point"])
        reps = _decode(d["replicates"]) if "replicates" in d else None
        return cls(tuple(d["shape"]), 0 if reps is None else reps.shape[0], point, reps)

    def with_point(self, point: np.ndarray) -> Counts:
        return Counts(self.shape, 0, point, None)


# ---------------------------------------------------------------- the typed statistics


@dataclass
class ScoreLabelHistogram:
    """Rows per (true label 0/1, fine score bin), with bootstrap replicate counts."""

    bins: int
    replicates: int
    counts: Counts = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = Counts((2, self.bins), self.replicates)

    def update(self, score: np.ndarray, y: np.ndarray, W: np.ndarray | None = None) -> None:
        self.counts.add(np.asarray(y, dtype=np.int64) * self.bins + score_bin(score, self.bins), W)

    def merge(self, other: ScoreLabelHistogram) -> ScoreLabelHistogram:
        _same("score histogram bins", self.bins, other.bins)
        return ScoreLabelHistogram(self.bins, self.replicates, self.counts.merge(other.counts))

    # --- what it gives

    def matrix(self) -> np.ndarray:
        """(1 + R, 2, bins): the point counts, then each replicate's."""
        c = self.counts
        return c.point[None] if c.reps is None else np.concatenate([c.point[None], c.reps])

    def confusion(self, k: int, M: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """tp, fp, tn, fn at threshold k/bins (a score at or above it is predicted positive), per row of M."""
        M = self.matrix() if M is None else M
        pos, neg = M[:, 1], M[:, 0]
        return {"tp": pos[:, k:].sum(axis=1), "fn": pos[:, :k].sum(axis=1),
                "fp": neg[:, k:].sum(axis=1), "tn": neg[:, :k].sum(axis=1)}

    def roc_auc(self, M: np.ndarray | None = None) -> np.ndarray:
        """Binned ROC-AUC per row of M: a pair of a positive and a negative in one bin counts one half."""
        M = self.matrix() if M is None else M
        return binned_auc(M[:, 1], M[:, 0])

    def auc_error_bound(self) -> float:
        """|exact AUC - binned AUC| <= half the share of (positive, negative) pairs that share a bin."""
        p = np.clip(self.counts.point, 0, None)
        denom = p[1].sum() * p[0].sum()
        return float(0.5 * (p[1] * p[0]).sum() / denom) if denom > 0 else float("nan")

    def average_precision(self, M: np.ndarray | None = None) -> np.ndarray:
        """Average precision with the bins as the distinct scores (scikit-learn's definition on binned scores)."""
        M = self.matrix() if M is None else M
        pos, neg = M[:, 1, ::-1], M[:, 0, ::-1]
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.nan_to_num(np.where(tp + fp > 0, tp / (tp + fp), 0.0))
            total = tp[:, -1:]
            ap = (np.where(total > 0, pos / np.where(total > 0, total, 1), 0) * prec).sum(axis=1)
        return np.where(total[:, 0] > 0, ap, np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.bins, "counts": self.counts.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreLabelHistogram:
        c = Counts.from_dict(d["counts"])
        return cls(int(d["bins"]), c.replicates, c)


def binned_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC from counts per ordered bin, (R, B) each; ties (same bin) count one half."""
    below = np.cumsum(neg, axis=-1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=-1)
    den = pos.sum(axis=-1) * neg.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


SEP = " × "  # joins an intersection's parts and its groups' names: audit.checks.fairness.SEP (tested equal)


def intersection_name(parts) -> str:
    return SEP.join(parts)


def combined_groups(parts: list[str], groups: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's group of the intersection of `parts`: the parts' group names joined by SEP, None where any
    part is missing (None or NaN), as audit.checks.fairness forms intersection groups."""
    import pandas as pd

    cols = [pd.Series(np.asarray(groups[p], dtype=object), dtype=object) for p in parts]
    missing = np.any([c.isna().to_numpy() for c in cols], axis=0)
    names = cols[0].astype(str)
    for c in cols[1:]:
        names = names + SEP + c.astype(str)
    out = names.to_numpy(dtype=object)
    out[missing] = None
    return out


@dataclass
class GroupConfusion:
    """One protected attribute: rows per (group, true label, score bin) on the threshold grid, with replicate
    counts, and the number of rows with no value for it (left out of its groups, as the in-memory check does).

    Groups are names: the manifest's defined groups first, then other values in the order first seen (a raw-
    valued attribute); merging aligns them by name."""

    attribute: str
    bins: int
    replicates: int
    groups: list[str] = field(default_factory=list)
    counts: Counts = None  # type: ignore[assignment]
    missing: float = 0.0

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = Counts((len(self.groups), 2, self.bins), self.replicates)

    def update(self, group: np.ndarray, score: np.ndarray, y: np.ndarray, W: np.ndarray | None = None) -> None:
        """`group`: each row's group name (None or NaN where missing)."""
        import pandas as pd

        names = pd.Series(np.asarray(group, dtype=object), dtype=object)
        have = names.notna().to_numpy()
        self.missing += float((~have).sum())
        present = names[have].astype(str)
        known = set(self.groups)
        self.groups.extend(g for g in pd.unique(present) if g not in known)
        self.counts.grow(0, len(self.groups))
        rows = np.flatnonzero(have)
        if not len(rows):
            return
        codes = pd.Categorical(present, categories=self.groups).codes.astype(np.int64)
        cell = (codes * 2 + np.asarray(y, dtype=np.int64)[rows]) * self.bins + score_bin(np.asarray(score)[rows],
                                                                                         self.bins)
        self.counts.add(cell, None if W is None else W[rows])

    def merge(self, other: GroupConfusion) -> GroupConfusion:
        _same(f"threshold grid of '{self.attribute}'", self.bins, other.bins)
        groups = list(dict.fromkeys([*self.groups, *other.groups]))
        a, b = self.aligned(groups), other.aligned(groups)
        return GroupConfusion(self.attribute, self.bins, a.counts.replicates, groups, a.counts.merge(b.counts),
                              self.missing + other.missing)

    def aligned(self, groups: list[str]) -> GroupConfusion:
        """The same counts with rows in the order of `groups` (a superset of ours)."""
        pos = [groups.index(g) for g in self.groups]
        point = np.zeros((len(groups), 2, self.bins))
        point[pos] = self.counts.point
        reps = None
        if self.counts.reps is not None:
            reps = np.zeros((self.counts.replicates, len(groups), 2, self.bins))
            reps[:, pos] = self.counts.reps
        c = Counts(point.shape, 0 if reps is None else reps.shape[0], point, reps)
        return GroupConfusion(self.attribute, self.bins, c.replicates, list(groups), c, self.missing)

    def matrix(self) -> np.ndarray:
        """(1 + R, G, 2, bins)."""
        c = self.counts
        return c.point[None] if c.reps is None else np.concatenate([c.point[None], c.reps])

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "bins": self.bins, "groups": list(self.groups),
                "missing": self.missing, "counts": self.counts.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupConfusion:
        c = Counts.from_dict(d["counts"])
        return cls(d["attribute"], int(d["bins"]), c.replicates, list(d["groups"]), c, float(d["missing"] or 0.0))


@dataclass
class Calibration:
    """Per calibration bin (right-closed equal-width bins, as audit.stats.ece_bins): [rows, sum of labels, sum of
    scores]; and the sum of squared errors (score - label)^2 in one more cell. Replicates of each."""

    bins: int
    replicates: int
    sums: Counts = None  # type: ignore[assignment]  # shape (bins * 3 + 1,)

    def __post_init__(self) -> None:
        if self.sums is None:
            self.sums = Counts((self.bins * 3 + 1,), self.replicates)

    def update(self, score: np.ndarray, y: np.ndarray, W: np.ndarray | None = None) -> None:
        from audit.stats import ece_bins

        s, yy = np.asarray(score, dtype=float), np.asarray(y, dtype=float)
        b = ece_bins(s, self.bins)
        n = len(s)
        cells = np.concatenate([b * 3, b * 3 + 1, b * 3 + 2, np.full(n, self.bins * 3)])
        values = np.concatenate([np.ones(n), yy, s, (s - yy) ** 2])
        W64 = None if W is None else W.astype(np.float64)  # sums of scores: float64
        self.sums.add(cells, W64, values, rows=np.tile(np.arange(n), 4))

    def merge(self, other: Calibration) -> Calibration:
        _same("calibration bins", self.bins, other.bins)
        return Calibration(self.bins, self.replicates, self.sums.merge(other.sums))

    def matrix(self) -> np.ndarray:
        c = self.sums
        return c.point[None] if c.reps is None else np.concatenate([c.point[None], c.reps])

    def gaps(self, M: np.ndarray | None = None) -> np.ndarray:
        """(1 + R, bins): each bin's (sum(y) - sum(score)) / rows, per row of M (1 + R, 3 bins + 1), as
        audit.stats.ece_gaps."""
        M = self.matrix() if M is None else M
        t = M[:, : 3 * self.bins].reshape(len(M), self.bins, 3)
        n = t[:, :, 0].sum(axis=1)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, (t[:, :, 1] - t[:, :, 2]) / np.where(n > 0, n, 1), np.nan)

    def ece(self, M: np.ndarray | None = None) -> np.ndarray:
        """sum over bins |sum(y) - sum(score)| / rows, per row of M (1 + R, 3 bins + 1)."""
        return np.abs(self.gaps(M)).sum(axis=1)

    def brier(self, M: np.ndarray | None = None) -> np.ndarray:
        M = self.matrix() if M is None else M
        n = M[:, : 3 * self.bins].reshape(len(M), self.bins, 3)[:, :, 0].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, M[:, -1] / np.where(n > 0, n, 1), np.nan)

    def table(self) -> list[dict[str, Any]]:
        t = self.sums.point[: 3 * self.bins].reshape(self.bins, 3)
        out = []
        for b, (n, sy, ss) in enumerate(t):
            out.append({"bin": b, "low": b / self.bins, "high": (b + 1) / self.bins, "count": int(round(n)),
                        "mean_score": float(ss / n) if n > 0 else None,
                        "observed_rate": float(sy / n) if n > 0 else None})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.bins, "sums": self.sums.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        c = Counts.from_dict(d["sums"])
        return cls(int(d["bins"]), c.replicates, c)


@dataclass
class ScoreDrift:
    """Score drift from two histograms on the same fine grid (rows per bin, both labels summed).

    PSI: `bins` bins cut at the reference's quantiles, found on the fine grid (the first fine edge at which the
    reference's cumulative share reaches q), so both histograms coarsen exactly onto them; with the same PSI
    formula and floor as audit.driftstats. It differs from PSI on the raw scores only by where inside a fine bin
    of width 1/score_bins the quantile falls.

    KS: the largest gap between the two cumulative histograms at the grid's edges is a LOWER bound on the
    two-sample KS statistic D of the raw scores, and the largest gap that the rows inside one bin could open is an
    UPPER bound: D_low <= D <= D_high (tested against scipy.stats.ks_2samp). The value reported is D_low, with
    the bound in the details; the p-value is the asymptotic Kolmogorov one at D_low."""

    reference: np.ndarray  # (score_bins,) rows
    current: np.ndarray

    @classmethod
    def of(cls, reference: ScoreLabelHistogram, current: ScoreLabelHistogram) -> ScoreDrift:
        _same("score histogram bins", reference.bins, current.bins)
        return cls(reference.counts.point.sum(axis=0), current.counts.point.sum(axis=0))

    def merge(self, other: ScoreDrift) -> ScoreDrift:
        return ScoreDrift(self.reference + other.reference, self.current + other.current)

    def psi_edges(self, bins: int = 10) -> np.ndarray:
        """Interior fine-bin indices where the coarse PSI bins start (increasing, unique)."""
        cum = np.cumsum(self.reference) / max(self.reference.sum(), 1e-300)
        qs = np.linspace(0, 1, bins + 1)[1:-1]
        cut = np.searchsorted(cum, qs - 1e-12, side="left") + 1
        return np.unique(np.clip(cut, 1, len(self.reference) - 1))

    def psi_counts(self, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cut = self.psi_edges(bins)
        starts = np.r_[0, cut]
        # coarse bins are clipped at 0 after summing (noised fine bins can be negative)
        return (np.clip(np.add.reduceat(self.reference, starts), 0, None),
                np.clip(np.add.reduceat(self.current, starts), 0, None), cut / len(self.reference))

    def psi(self, bins: int = 10) -> float:
        from audit.driftstats import psi_from_counts

        r, c, _ = self.psi_counts(bins)
        return float(psi_from_counts(r, c))

    def ks(self) -> tuple[float, float]:
        """(D_low, D_high): bounds on the two-sample KS statistic of the raw scores."""
        fr = np.r_[0.0, np.cumsum(self.reference)] / max(self.reference.sum(), 1e-300)
        fc = np.r_[0.0, np.cumsum(self.current)] / max(self.current.sum(), 1e-300)
        low = float(np.abs(fr - fc).max())
        high = float(max(np.max(fr[1:] - fc[:-1]), np.max(fc[1:] - fr[:-1]), low))
        return low, high

    def ks_p_value(self, d: float) -> float:
        from scipy.special import kolmogorov

        n, m = self.reference.sum(), self.current.sum()
        if n <= 0 or m <= 0:
            return float("nan")
        en = np.sqrt(n * m / (n + m))
        return float(kolmogorov((en + 0.12 + 0.11 / en) * d))


@dataclass
class TokenImportance:
    """SHAP global importance that merges. A row is one explained text: its units (words, and units that are
    not ranked, such as punctuation) with their SHAP values. Per word: the sum of |SHAP| over its occurrences
    (`sums`), the signed sum (`signed`), the occurrences (`counts`) and the rows that contain it (`in_rows`);
    the rows seen (`rows`); and the total |SHAP| of every unit, ranked or not (`total`).

    A word's global importance is sums / rows: the mean over rows of the sum of |SHAP| of its occurrences in
    the row, a row without the word counting 0 (audit.checks.explainability ranks words by it; signed / rows
    says which way the word pushes on average). The share of importance on a set of words is their sums /
    total. Counts merge exactly, float sums up to rounding; the in-memory checks are the one-partition case
    (rows added in their order).

    A dict written before rows were recorded (sums, counts and total only) loads with `signed`, `in_rows` and
    `rows` None: sums, counts, total, `top` by sum or by mean per occurrence and `share` still work; the per-row
    importance does not, and a merge with it carries None on."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    total: float = 0.0
    signed: dict[str, float] | None = field(default_factory=dict)
    in_rows: dict[str, int] | None = field(default_factory=dict)
    rows: int | None = 0

    def update(self, words: list[str | None], values: np.ndarray) -> None:
        """Add ONE row: its units' words in order (None for a unit that is not ranked, whose |SHAP| counts in
        the total only) and their SHAP values."""
        values = np.asarray(values, dtype=float).reshape(-1)
        if len(words) != len(values):
            raise ValueError(f"a row of {len(words)} words came with {len(values)} SHAP values")
        seen: set[str] = set()
        for w, v in zip(words, values.tolist()):
            a = abs(v)
            self.total += a
            if w is None:
                continue
            self.sums[w] = self.sums.get(w, 0.0) + a
            self.counts[w] = self.counts.get(w, 0) + 1
            if self.signed is not None:
                self.signed[w] = self.signed.get(w, 0.0) + v
            if self.in_rows is not None and w not in seen:
                self.in_rows[w] = self.in_rows.get(w, 0) + 1
            seen.add(w)
        if self.rows is not None:
            self.rows += 1

    def merge(self, other: TokenImportance) -> TokenImportance:
        return TokenImportance(_add(self.sums, other.sums), _add(self.counts, other.counts), self.total + other.total,
                               _add(self.signed, other.signed), _add(self.in_rows, other.in_rows),
                               None if self.rows is None or other.rows is None else self.rows + other.rows)

    def top(self, k: int, by: str = "sum") -> list[tuple[str, float]]:
        """The k words with the largest sum of |SHAP| ("sum"), mean |SHAP| per occurrence ("mean") or mean
        |SHAP| per row ("row", the global importance); ties by word."""
        if by == "sum":
            score = dict(self.sums)
        elif by == "mean":
            score = {w: s / self.counts[w] for w, s in self.sums.items()}
        elif by == "row":
            n = self.rows_seen()
            score = {w: s / n for w, s in self.sums.items()} if n else {}
        else:
            raise ValueError(f"top words by 'sum', 'mean' or 'row', not {by!r}")
        return sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    def term_sum(self, words: set[str]) -> float:
        """The |SHAP| on the given words (summed per word, words in the order first seen)."""
        return sum(v for w, v in self.sums.items() if w in words)

    def share(self, words: set[str]) -> float:
        """The share of the total |SHAP| on the given words (NaN when there is none)."""
        return self.term_sum(words) / self.total if self.total > 0 else float("nan")

    def rows_seen(self) -> int:
        if self.rows is None or self.signed is None or self.in_rows is None:
            raise ValueError("this token importance was written without rows (sums, counts and total only): the "
                             "importance per row cannot be computed from it")
        return self.rows

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sums": self.sums, "counts": self.counts, "total": self.total}
        for key in ("signed", "in_rows", "rows"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenImportance:
        def per_word(key: str, kind: type) -> dict | None:
            return None if d.get(key) is None else {w: kind(v) for w, v in d[key].items()}

        return cls(per_word("sums", float), per_word("counts", int), float(d["total"]), per_word("signed", float),
                   per_word("in_rows", int), None if d.get("rows") is None else int(d["rows"]))


def _add(a: dict | None, b: dict | None) -> dict | None:
    """Per-key sums of two per-word tables (None when either is None: not recorded)."""
    if a is None or b is None:
        return None
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k] + v if k in out else v
    return out


# ---------------------------------------------------------------- statistics that checks collect inside a silo


@dataclass
class SiloStat:
    """The statistics one kind of check collects where the rows and the model are (audit/silo.py, the checks'
    `collect` functions): PII counts, counterfactual flip counts, SHAP token importance, loss histograms.

    `tables`: named count tables (Counts, with bootstrap replicate sums under row-id weights where the check has
    intervals); merging adds them. `maxima`: merged by max. `tallies`: per-name counts (terms swapped), added.
    `importance`: TokenImportance objects, merged. `shared`: the identity of rows that every silo holds the same
    of (the model's training split): two statistics of the same shared rows are the same numbers, and merge to
    one of them, not to their sum. `l1`: what one row (added or removed) changes in the released tables, for
    the noise (audit/noise.py); `params`: the parameters it was computed with."""

    kind: str
    params: dict[str, Any]
    tables: dict[str, Counts] = field(default_factory=dict)
    maxima: dict[str, float] = field(default_factory=dict)
    tallies: dict[str, dict[str, float]] = field(default_factory=dict)
    importance: dict[str, TokenImportance] = field(default_factory=dict)
    shared: str | None = None
    l1: float = 0.0

    @property
    def key(self) -> str:
        return silo_key(self.kind, self.params)

    def merge(self, other: SiloStat) -> SiloStat:
        if self.key != other.key:
            raise ValueError(f"silo statistics {self.key} and {other.key} cannot merge")
        if self.shared is not None or other.shared is not None:
            if self.shared != other.shared:
                raise ValueError(f"the {self.kind} statistics describe different shared rows ({self.shared} vs "
                                 f"{other.shared})")
            return self  # the same rows: the same numbers (a noised copy: the first one's)
        if set(self.tables) != set(other.tables) or set(self.importance) != set(other.importance):
            raise ValueError(f"the {self.kind} statistics hold different tables "
                             f"({', '.join(sorted(self.tables))} vs {', '.join(sorted(other.tables))})")
        return SiloStat(self.kind, dict(self.params),
                        {k: self.tables[k].merge(other.tables[k]) for k in self.tables},
                        {k: max(v, other.maxima.get(k, v)) for k, v in self.maxima.items()},
                        {k: _add(v, other.tallies.get(k, {})) for k, v in self.tallies.items()},
                        {k: v.merge(other.importance[k]) for k, v in self.importance.items()}, None,
                        max(self.l1, other.l1))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params, "tables": {k: c.to_dict() for k, c in self.tables.items()},
                "maxima": self.maxima, "tallies": self.tallies,
                "importance": {k: t.to_dict() for k, t in self.importance.items()}, "shared": self.shared,
                "l1": self.l1}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiloStat:
        return cls(str(d["kind"]), dict(d["params"]), {k: Counts.from_dict(c) for k, c in d["tables"].items()},
                   {k: float(v) for k, v in d.get("maxima", {}).items()},
                   {k: {w: float(x) for w, x in t.items()} for k, t in d.get("tallies", {}).items()},
                   {k: TokenImportance.from_dict(t) for k, t in d.get("importance", {}).items()},
                   d.get("shared"), float(d.get("l1", 0.0)))


def silo_key(kind: str, params: dict[str, Any]) -> str:
    """The name of a silo statistic: its kind and the parameters it was computed with."""
    import json

    return f"{kind} {json.dumps(params, sort_keys=True, separators=(',', ':'))}"


# ---------------------------------------------------------------- all statistics of one audit


@dataclass
class AuditStats:
    """Every mergeable statistic of one eval set: what `audit stats` writes and `audit merge` reads.

    `groups` holds one GroupConfusion per protected attribute; `intersections` lists the intersections of
    attributes also kept (each a list of two or more attribute names), with their tables in `crossed`, keyed by
    the intersection's name ("sex × age"). Two statistics merge only when they carry the same attributes and
    the same intersections."""

    grid: Grid
    attributes: list[str]
    scores: ScoreLabelHistogram = None  # type: ignore[assignment]
    calibration: Calibration = None  # type: ignore[assignment]
    groups: dict[str, GroupConfusion] = field(default_factory=dict)
    rows: float = 0.0
    intersections: list[list[str]] = field(default_factory=list)
    crossed: dict[str, GroupConfusion] = field(default_factory=dict)
    silo: dict[str, SiloStat] = field(default_factory=dict)  # by SiloStat.key: what the checks collected
    silo_dropped: dict[str, str] = field(default_factory=dict)  # key -> why a merge could not keep it

    def __post_init__(self) -> None:
        g = self.grid
        if self.scores is None:
            self.scores = ScoreLabelHistogram(g.score_bins, g.replicates)
        if self.calibration is None:
            self.calibration = Calibration(g.ece_bins, g.replicates)
        for a in self.attributes:
            self.groups.setdefault(a, GroupConfusion(a, g.threshold_bins, g.replicates))
        self.intersections = [[str(p) for p in parts] for parts in self.intersections]
        for parts in self.intersections:
            unknown = [p for p in parts if p not in self.attributes]
            if len(parts) < 2 or len(set(parts)) != len(parts) or unknown:
                raise ValueError(f"an intersection needs two or more different attributes of the statistics "
                                 f"({', '.join(self.attributes)}), got {intersection_name(parts)!r}")
            name = intersection_name(parts)
            self.crossed.setdefault(name, GroupConfusion(name, g.threshold_bins, g.replicates))
        if len(self.crossed) != len(self.intersections):
            raise ValueError("an intersection is listed twice, or a table has no intersection")

    @classmethod
    def empty(cls, grid: Grid, attributes: dict[str, list[str]],
              intersections: list[list[str]] | tuple = ()) -> AuditStats:
        """`attributes`: name -> the groups known in advance (the manifest's), listed first in that order;
        an intersection's known groups are every combination of its parts' known groups."""
        import itertools

        s = cls(grid, list(attributes), intersections=[list(p) for p in intersections])
        for a, known in attributes.items():
            s.groups[a] = GroupConfusion(a, grid.threshold_bins, grid.replicates, [str(k) for k in known])
        for parts in s.intersections:
            name = intersection_name(parts)
            known = [intersection_name(c) for c in itertools.product(*([str(k) for k in attributes[p]]
                                                                         for p in parts))]
            s.crossed[name] = GroupConfusion(name, grid.threshold_bins, grid.replicates, known)
        return s

    def tables(self) -> list[GroupConfusion]:
        """Every group table: one per attribute, then one per intersection."""
        return [*self.groups.values(), *self.crossed.values()]

    def intersection_names(self) -> list[str]:
        return [intersection_name(p) for p in self.intersections]

    def update(self, row_ids, score: np.ndarray, y: np.ndarray, groups: dict[str, np.ndarray]) -> None:
        """Add a batch: row ids (for the bootstrap weights), scores in [0, 1], labels 0/1 (1 = positive), and
        each attribute's group name per row (None where missing); intersections are formed from them."""
        score = np.asarray(score, dtype=float)
        y = np.asarray(y, dtype=np.int64)
        names = {a: np.asarray(groups[a], dtype=object) for a in self.groups}
        for parts in self.intersections:
            names[intersection_name(parts)] = combined_groups(parts, groups)
        keys = row_keys(row_ids, self.grid.seed) if self.grid.replicates else None
        for a in range(0, len(score), SUBCHUNK):
            sl = slice(a, a + SUBCHUNK)
            W = replicate_weights(keys[sl], self.grid.replicates) if keys is not None else None
            self.scores.update(score[sl], y[sl], W)
            self.calibration.update(score[sl], y[sl], W)
            for g in self.tables():
                g.update(names[g.attribute][sl], score[sl], y[sl], W)
        self.rows += len(score)

    def merge(self, other: AuditStats) -> AuditStats:
        if self.grid != other.grid:
            raise ValueError(f"the statistics were computed on different settings ({self.grid.to_dict()} vs "
                             f"{other.grid.to_dict()})")
        if self.attributes != other.attributes:
            raise ValueError(f"the statistics cover different protected attributes ({', '.join(self.attributes)} "
                             f"vs {', '.join(other.attributes)})")
        mine, theirs = self.intersection_names(), other.intersection_names()
        if set(mine) != set(theirs):
            raise ValueError(f"the statistics carry different intersections of attributes "
                             f"({', '.join(mine) or 'none'} vs {', '.join(theirs) or 'none'})")
        silo, dropped = {}, {**self.silo_dropped, **other.silo_dropped}
        for key in sorted(set(self.silo) | set(other.silo)):
            if key in self.silo and key in other.silo:
                silo[key] = self.silo[key].merge(other.silo[key])
            elif key not in dropped:
                dropped[key] = "carried by some of the merged statistics only"
        return AuditStats(self.grid, list(self.attributes), self.scores.merge(other.scores),
                          self.calibration.merge(other.calibration),
                          {a: self.groups[a].merge(other.groups[a]) for a in self.attributes},
                          self.rows + other.rows, [list(p) for p in self.intersections],
                          {n: self.crossed[n].merge(other.crossed[n]) for n in mine},
                          {k: v for k, v in silo.items() if k not in dropped}, dropped)

    def coarsened(self, score_bins: int, threshold_bins: int) -> AuditStats:
        """The same statistics on a coarser grid (each coarse bin the sum of the fine bins it covers; exact for
        every count): how a clean silo's statistics join a noised silo's, whose coarser default grid keeps the
        noise per cell small. Every grid must divide this one's."""
        g = self.grid
        if g.score_bins % score_bins or g.threshold_bins % threshold_bins:
            raise ValueError(f"a grid of {g.score_bins} score bins and {g.threshold_bins} threshold bins cannot be "
                             f"coarsened to {score_bins} and {threshold_bins} (each must divide the other)")
        grid = Grid(score_bins, threshold_bins, g.ece_bins, g.replicates, g.seed)
        scores = ScoreLabelHistogram(score_bins, g.replicates, _coarse(self.scores.counts, score_bins))
        groups = {a: GroupConfusion(t.attribute, threshold_bins, g.replicates, list(t.groups),
                                    _coarse(t.counts, threshold_bins), t.missing) for a, t in self.groups.items()}
        crossed = {a: GroupConfusion(t.attribute, threshold_bins, g.replicates, list(t.groups),
                                     _coarse(t.counts, threshold_bins), t.missing) for a, t in self.crossed.items()}
        return AuditStats(grid, list(self.attributes), scores, self.calibration, groups, self.rows,
                          [list(p) for p in self.intersections], crossed, dict(self.silo), dict(self.silo_dropped))

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid.to_dict(), "attributes": list(self.attributes), "rows": self.rows,
                "scores": self.scores.to_dict(), "calibration": self.calibration.to_dict(),
                "groups": {a: g.to_dict() for a, g in self.groups.items()},
                "intersections": [list(p) for p in self.intersections],
                "intersection_groups": {n: g.to_dict() for n, g in self.crossed.items()},
                **({"silo": {k: v.to_dict() for k, v in self.silo.items()}} if self.silo else {}),
                **({"silo_dropped": dict(self.silo_dropped)} if self.silo_dropped else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditStats:
        grid = Grid.from_dict(d["grid"])
        return cls(grid, list(d["attributes"]), ScoreLabelHistogram.from_dict(d["scores"]),
                   Calibration.from_dict(d["calibration"]),
                   {a: GroupConfusion.from_dict(g) for a, g in d["groups"].items()},
                   float("nan") if d.get("rows") is None else float(d["rows"]),
                   [list(p) for p in d.get("intersections") or []],
                   {n: GroupConfusion.from_dict(g) for n, g in (d.get("intersection_groups") or {}).items()},
                   {k: SiloStat.from_dict(v) for k, v in (d.get("silo") or {}).items()},
                   dict(d.get("silo_dropped") or {}))


def _coarse(c: Counts, bins: int) -> Counts:
    """A count table whose last axis (fine bins) is summed into `bins` equal groups."""
    def fold(a: np.ndarray) -> np.ndarray:
        return a.reshape(*a.shape[:-1], bins, a.shape[-1] // bins).sum(axis=-1)

    point = fold(c.point)
    reps = None if c.reps is None else fold(c.reps)
    return Counts(point.shape, 0 if reps is None else reps.shape[0], point, reps)


def _same(what: str, a: Any, b: Any) -> None:
    if a != b:
        raise ValueError(f"the {what} differ ({a} vs {b}): statistics on different grids cannot merge")

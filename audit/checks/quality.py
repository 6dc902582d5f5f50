"""Data-quality family: is the eval set fit to judge the model on?

Every number of an audit is measured on the eval set; these checks ask whether that set deserves the trust:

    duplicate_share            eval rows that repeat an earlier eval row's text, exactly or nearly
    train_overlap_share        eval rows whose text is also a text of the model's training split (leakage), and how
                               much those rows inflate ROC-AUC and accuracy (both re-measured without them)
    conflicting_labels_share   eval rows whose text occurs in the eval set with another label as well
    short_text_share           eval rows with an empty or very short text (fewer than `min_words` words)
    label_issue_share          eval rows whose label is likely wrong, by confident learning on the model's
                               out-of-sample probabilities (cleanlab's `find_label_issues`)

Near duplicates. Two texts are near duplicates (`near: normalised`, the default) when they are equal once case,
white space, punctuation and the way numbers are grouped are set aside (Unicode NFKC, case-folded, every
punctuation mark removed, `1,000` and `1 000` read as `1000`): the harmless changes that the robustness family
makes. `near: minhash` also joins texts whose word 3-shingle sets have a Jaccard similarity of at least
`jaccard`, found by MinHash with locality-sensitive hashing (64 hash functions, banded for the threshold) and
verified exactly against the first text of each bucket, so it stays about linear in the rows (30,000 templated
rows: 0.6 s exact, 1.8 s normalised, 6.9 s MinHash, on a loaded 2-core machine). `near: exact` counts byte-equal texts only. Everything is hashed: no step compares all pairs.

Intervals are percentile intervals over the run's shared Poisson bootstrap weights (`ctx.weights`) of the share of
flagged rows, with each row's flag held fixed (a resample does not re-run the scan): they say how sure the share
is for rows like these, not how stable the scan is.

Label issues. The model's probabilities on the eval rows are out of sample (it was not trained on them), which is
what confident learning needs (Northcutt et al., 2021). With `method: cleanlab` (the default) the rows are
cleanlab's `find_label_issues` with its defaults (`filter_by="prune_by_noise_rate"`); `method:
confident_learning` applies the rule of the paper here, without cleanlab: a row whose label is not the class the
model is confident of (its probability at or above that class's mean self-confidence), and whose label the model
does not predict either (cleanlab's `filter_by="confident_learning"`, tested equal). When cleanlab is not
installed the check uses that rule and says so. A flagged row is a row to re-check by hand, not a proven error.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit import pii, stats
from audit.checks import check
from audit.context import CheckContext
from audit.data import text_key
from audit.result import Measurement

NEEDS_ROWS = "it reads the texts and labels row by row, and the statistics carry no text"
MAX_TEXT = 300  # characters of a listed text kept in details
NEAR_MODES = ("exact", "normalised", "minhash")
LABEL_METHODS = ("cleanlab", "confident_learning")
NUM_PERM = 64
_PRIME = np.uint64((1 << 31) - 1)

# ---------------------------------------------------------------- text keys


_GROUPING = re.compile(r"(?<=\d)[, \u00a0\u202f](?=\d{3}(?!\d))")
_SPACES = re.compile(r"\s+")


class _Punctuation(dict):
    """str.translate's table: every Unicode punctuation mark (category P*) to a space, looked up once per
    character seen."""

    def __missing__(self, cp: int):
        out = " " if unicodedata.category(chr(cp)).startswith("P") else None
        self[cp] = out if out else cp
        return self[cp]


_PUNCTUATION = _Punctuation()


def normalise(text: str) -> str:
    """The text with case, white space, punctuation and the grouping of numbers set aside."""
    t = unicodedata.normalize("NFKC", text).casefold()
    while True:
        t2 = _GROUPING.sub("", t)
        if t2 == t:
            break
        t = t2
    return _SPACES.sub(" ", t.translate(_PUNCTUATION)).strip()


def _norm_key(text: str, normalised: str | None = None) -> bytes:
    return hashlib.sha256((normalise(text) if normalised is None else normalised).encode("utf-8",
                                                                                          "surrogatepass")).digest()


# ---------------------------------------------------------------- union-find over rows


class _Groups:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        p = self.parent
        root = i
        while p[root] != root:
            root = p[root]
        while p[i] != root:
            p[i], i = root, p[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def labels(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)


def _by_key(keys: list[bytes], groups: _Groups) -> None:
    first: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        j = first.setdefault(k, i)
        if j != i:
            groups.union(j, i)


def shingles(text: str, k: int = 3, normalised: str | None = None) -> set[int]:
    """The hashes (crc32) of the word k-shingles of the normalised text; a shorter text is one shingle."""
    words = (normalise(text) if normalised is None else normalised).split()
    if len(words) <= k:
        return {zlib.crc32(" ".join(words).encode("utf-8", "surrogatepass"))}
    return {zlib.crc32(" ".join(words[i:i + k]).encode("utf-8", "surrogatepass")) for i in range(len(words) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if (a or b) else 1.0


def _bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) with bands * rows = NUM_PERM whose S-curve midpoint (1/b)^(1/r) is closest to the
    threshold."""
    options = [(NUM_PERM // r, r) for r in (1, 2, 4, 8, 16, 32, 64)]
    return min(options, key=lambda br: abs((1 / br[0]) ** (1 / br[1]) - threshold))


def minhash_pairs(sets: list[set[int]], threshold: float, seed: int = 0) -> list[tuple[int, int]]:
    """Pairs (representative, member) of texts whose shingle sets have Jaccard >= threshold, by MinHash LSH: each
    band's bucket is checked exactly against its first text (linear in the rows, never all pairs)."""
    n = len(sets)
    if n < 2:
        return []
    rng = np.random.default_rng(seed)
    a = rng.integers(1, int(_PRIME), size=NUM_PERM, dtype=np.uint64)
    b = rng.integers(0, int(_PRIME), size=NUM_PERM, dtype=np.uint64)
    lengths = np.array([len(s) for s in sets])
    flat = np.fromiter((h for s in sets for h in s), dtype=np.uint64, count=int(lengths.sum())) % _PRIME
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sig = np.empty((n, NUM_PERM), dtype=np.uint64)
    for j in range(NUM_PERM):  # (a * x + b) mod p with a, b, x < p = 2^31 - 1: exact in 64 bits
        sig[:, j] = np.minimum.reduceat((a[j] * flat + b[j]) % _PRIME, starts)
    bands, r = _bands(threshold)
    pairs = set()
    for band in range(bands):
        buckets: dict[bytes, int] = {}
        block = np.ascontiguousarray(sig[:, band * r:(band + 1) * r])
        for i in range(n):
            key = block[i].tobytes()
            rep = buckets.setdefault(key, i)
            if rep != i and (rep, i) not in pairs and jaccard(sets[rep], sets[i]) >= threshold:
                pairs.add((rep, i))
    return sorted(pairs)


@dataclass
class DuplicateScan:
    """The eval rows grouped by text: `group[i]` is the first row of row i's group; `exact[i]` whether row i's
    text equals its group's first text byte for byte."""

    near: str
    group: np.ndarray
    exact_group: np.ndarray  # the first row with exactly the same text


def duplicate_scan(ctx: CheckContext, near: str, threshold: float = 0.8) -> DuplicateScan:
    key = ("duplicates", near, float(threshold) if near == "minhash" else None)
    cache = ctx.shared.quality
    if key in cache:
        return cache[key]
    texts = ctx.texts
    n = len(texts)
    exact = _Groups(n)
    _by_key([text_key(t) for t in texts], exact)
    exact_group = exact.labels()
    groups = _Groups(n)
    groups.parent = exact_group.copy()
    firsts = np.flatnonzero(exact_group == np.arange(n))  # one per distinct text
    norms = {int(i): normalise(texts[i]) for i in firsts.tolist()} if near != "exact" else {}
    if near in ("normalised", "minhash"):
        _by_key([_norm_key(t, norms[int(exact_group[i])]) for i, t in enumerate(texts)], groups)
    if near == "minhash":
        sets = [shingles(texts[i], normalised=norms[int(i)]) for i in firsts.tolist()]
        for a, b in minhash_pairs(sets, threshold, ctx.seed):
            groups.union(int(firsts[a]), int(firsts[b]))
    scan = DuplicateScan(near, groups.labels(), exact_group)
    cache[key] = scan
    return scan


# ---------------------------------------------------------------- helpers


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _clip(text: str) -> str:
    text = pii.redact(text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _ids(ctx: CheckContext) -> list[str]:
    if ctx.row_ids is not None and len(ctx.row_ids) == len(ctx.texts):
        return [str(x) for x in ctx.row_ids]
    m = ctx.manifest
    if ctx.frame is not None and m is not None and getattr(m, "id_column", None) and m.id_column in ctx.frame:
        return ctx.frame[m.id_column].astype(str).tolist()
    return [str(i) for i in range(len(ctx.texts))]


def _share(ctx: CheckContext, check_id: str, flags: np.ndarray, details: dict) -> Measurement:
    """The share of eval rows flagged, with a bootstrap interval (flags fixed, rows resampled)."""
    n = len(flags)
    m = Measurement(check_id, None, n=n, details=details)
    if not n:
        m.inconclusive = "the eval set has no rows"
        return m
    W = ctx.weights
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (W @ flags.astype(float)) / W.sum(axis=1)
    m.value = _f(v[0])
    if W.shape[0] > 1:
        m.ci_low, m.ci_high = stats.percentile_interval(v[1:], ctx.confidence)
    details.setdefault("rows", n)
    details["rows_flagged"] = int(flags.sum())
    return m


def _check_texts(ctx: CheckContext, check_id: str) -> Measurement | None:
    if not ctx.texts or len(ctx.texts) != len(ctx.y_true):
        return Measurement(check_id, None, inconclusive="the eval texts are not available to this check")
    return None


def _label_names(ctx: CheckContext, y: np.ndarray, classes: bool = False) -> list[str]:
    """Label names: of the favourable view's 1/0 (binary), or with `classes` of class indices (audit.classes)."""
    if classes:
        return [str(ctx.classes.labels[int(v)]) for v in y.tolist()]
    return [ctx.positive_label if v else ctx.negative_label for v in y.tolist()]


# ---------------------------------------------------------------- checks


def _validate_duplicates(params: dict) -> None:
    if params.get("near") not in NEAR_MODES:
        raise ValueError(f"near must be one of {', '.join(NEAR_MODES)}, got {params.get('near')!r}")
    j = params.get("jaccard")
    if isinstance(j, bool) or not isinstance(j, (int, float)) or not 0 < j <= 1:
        raise ValueError(f"jaccard must be a number above 0 and at most 1, got {j!r}")
    _validate_examples(params)


def _validate_examples(params: dict) -> None:
    v = params.get("examples")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"examples must be a whole number of at least 0, got {v!r}")


def _group_listing(ctx: CheckContext, group: np.ndarray, exact_group: np.ndarray, examples: int,
                   y: np.ndarray | None = None, classes: bool = False) -> list[dict]:
    ids = _ids(ctx)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group.tolist()):
        members.setdefault(g, []).append(i)
    multi = sorted((rows for rows in members.values() if len(rows) > 1), key=lambda r: (-len(r), r[0]))
    out = []
    for rows in multi[:examples]:
        entry = {"rows": rows[:20], "ids": [ids[i] for i in rows[:20]], "size": len(rows),
                 "kind": "exact" if len({int(exact_group[i]) for i in rows}) == 1 else "near",
                 "text": _clip(ctx.texts[rows[0]]),
                 "variants": [_clip(ctx.texts[i]) for i in sorted({int(exact_group[i]) for i in rows})[1:4]]}
        if y is not None:
            names = _label_names(ctx, y[rows], classes)
            entry["labels"] = {lab: names.count(lab) for lab in sorted(set(names))}
        out.append(entry)
    return out


@check("quality.duplicate_share", classes="any", title="Duplicate eval texts", direction="lower", unit="rate",
       params={"near": "normalised", "jaccard": 0.8, "examples": 10}, validate=_validate_duplicates,
       evidence="eval rows")
def duplicate_share(ctx: CheckContext, **params) -> Measurement:
    """Share of eval rows whose text repeats an earlier eval row's text, exactly or nearly.

    A repeated row adds no new evidence but counts again in every metric, so duplicates make intervals look
    narrower than the data supports and weight some applications more than others. Text templated from a few
    columns repeats by construction (two applicants with the same values read the same): there a duplicate is a
    sign that the text does not tell those applicants apart."""
    m = _check_texts(ctx, "quality.duplicate_share")
    if m:
        return m
    near = str(params.get("near", "normalised"))
    scan = duplicate_scan(ctx, near, float(params.get("jaccard", 0.8)))
    n = len(ctx.texts)
    idx = np.arange(n)
    repeat = scan.group != idx
    exact_repeat = scan.exact_group != idx
    details = {"near": near, "jaccard": float(params.get("jaccard", 0.8)) if near == "minhash" else None,
               "exact_duplicate_rows": int(exact_repeat.sum()),
               "near_duplicate_rows": int((repeat & ~exact_repeat).sum()),
               "groups": int(len(np.unique(scan.group[repeat]))),
               "listed": _group_listing(ctx, scan.group, scan.exact_group, int(params.get("examples", 10))),
               "caveats": ["A row is counted when its text repeats an earlier row's; the first of each group is not."]}
    return _share(ctx, "quality.duplicate_share", repeat, details)


def _training_rows(ctx: CheckContext):
    """(texts, label indices or None, None) of the model's training split, or (None, None, why there is none).
    Read, not scored: a scored training set of the run is used when there is one."""
    from audit.errors import AuditError

    if "train" in ctx.datasets:
        t = ctx.datasets["train"]
        return t.texts, t.y, None
    bundle = ctx.bundle
    if bundle is not None and getattr(bundle, "manifest", None) is not None and hasattr(bundle, "path"):
        from audit.data import other_rows

        try:
            got = other_rows("train", bundle)
        except AuditError as exc:
            return None, None, f"the training data cannot be read: {exc}"
        if got is not None:
            return got[1], got[2], None
    from audit.checks.privacy import training_set

    train, why = training_set(ctx)
    if train is not None:
        return train.texts, train.y, None
    return None, None, why


def _validate_overlap(params: dict) -> None:
    if params.get("match") not in ("exact", "normalised"):
        raise ValueError(f"match must be exact or normalised, got {params.get('match')!r}")
    _validate_examples(params)


def _metrics(y: np.ndarray, s: np.ndarray, thr: float) -> dict[str, float | None]:
    if not len(y):
        return {"rows": 0, "roc_auc": None, "accuracy": None}
    W = np.ones((1, len(y)))
    auc = stats.roc_auc(W, y, s)[0] if 0 < y.sum() < len(y) else None
    return {"rows": int(len(y)), "roc_auc": _f(auc), "accuracy": _f(np.mean((s >= thr).astype(int) == y))}


@check("quality.train_overlap_share", classes="any", title="Eval texts that are training texts", direction="lower", unit="rate",
       params={"match": "normalised", "examples": 10}, validate=_validate_overlap, evidence="eval rows")
def train_overlap_share(ctx: CheckContext, **params) -> Measurement:
    """Share of eval rows whose text is also a text of the model's training split (leakage), and how much they inflate ROC-AUC and accuracy.

    A model scores texts it was trained on better than new ones, so shared rows flatter every number of the
    audit. Details give ROC-AUC and accuracy on all eval rows and again without the shared ones: the difference
    is the inflation. A policy's `training_rows_in_eval: exclude` already removes exact matches before the
    checks run; this check also finds texts that differ only in case, punctuation or number format."""
    m = _check_texts(ctx, "quality.train_overlap_share")
    if m:
        return m
    texts, y_train, why = _training_rows(ctx)
    if texts is None:
        return Measurement("quality.train_overlap_share", None, inconclusive=why or "no training data")
    match = str(params.get("match", "normalised"))
    keyfn = _norm_key if match == "normalised" else text_key
    train_labels: dict[bytes, set] = {}
    for i, t in enumerate(texts):
        train_labels.setdefault(keyfn(t), set()).add(None if y_train is None else int(y_train[i]))
    exact_keys = {text_key(t) for t in texts} if match == "normalised" else None
    keys = [keyfn(t) for t in ctx.texts]
    shared = np.array([k in train_labels for k in keys], dtype=bool)
    exact = (np.array([text_key(t) in exact_keys for t in ctx.texts], dtype=bool)
             if exact_keys is not None else shared)
    # the eval label as an index into manifest.labels, to compare with the training rows' label indices
    labels = list(getattr(ctx.manifest, "labels", []) or [ctx.negative_label, ctx.positive_label])
    pos_index = labels.index(ctx.positive_label) if ctx.positive_label in labels else 1
    neg_index = labels.index(ctx.negative_label) if ctx.negative_label in labels else 0
    eval_idx = (np.asarray(ctx.classes.y) if ctx.multiclass and ctx.classes.y is not None
                else np.where(ctx.y_true == 1, pos_index, neg_index))  # more classes: the true class itself
    other_label = np.array([bool(s) and any(v is not None and v != int(eval_idx[i]) for v in train_labels[keys[i]])
                            for i, s in enumerate(shared.tolist())], dtype=bool)
    y, s = np.asarray(ctx.y_true), np.asarray(ctx.score, dtype=float)
    everything = _metrics(y, s, ctx.threshold)
    held_out = _metrics(y[~shared], s[~shared], ctx.threshold)
    inflation = {k: (_f(everything[k] - held_out[k]) if everything[k] is not None and held_out[k] is not None
                     else None) for k in ("roc_auc", "accuracy")}
    ids = _ids(ctx)
    rows = np.flatnonzero(shared)[:int(params.get("examples", 10))]
    details = {"match": match, "training_rows": len(texts), "shared_rows": int(shared.sum()),
               "shared_exact": int(exact.sum()), "shared_other_label": int(other_label.sum()),
               "all_rows": everything, "without_shared": held_out, "inflation": inflation,
               "listed": [{"row": int(i), "id": ids[i], "text": _clip(ctx.texts[i]),
                           "exact": bool(exact[i]), "other_label_in_training": bool(other_label[i])}
                          for i in rows.tolist()],
               "caveats": ["Inflation is ROC-AUC and accuracy on every eval row minus the same on the rows not "
                           "shared with the training split; positive means the shared rows flatter the model.",
                           "A policy's training_rows_in_eval: exclude removes exact matches before the checks run, "
                           "so they are not counted here."]}
    return _share(ctx, "quality.train_overlap_share", shared, details)


@check("quality.conflicting_labels_share", classes="any", title="Eval texts with conflicting labels", direction="lower",
       unit="rate", params={"near": "normalised", "examples": 10}, validate=lambda p: _validate_duplicates(
           {"jaccard": 0.8, **p}), evidence="eval rows")
def conflicting_labels_share(ctx: CheckContext, **params) -> Measurement:
    """Share of eval rows whose text occurs in the eval set with another label as well.

    The model reads only the text, so it gives such rows the same decision and one of the labels must count as
    its error: a metric cannot be better than the conflicts allow. Many conflicts mean the text leaves out
    what decided the outcome, or the labels are noisy. `near: normalised` (the default) also joins texts that
    differ only in case, punctuation or number format; `exact` compares the texts as they are. For a model of
    more than two classes, any two classes conflict (favourable or not)."""
    m = _check_texts(ctx, "quality.conflicting_labels_share")
    if m:
        return m
    near = str(params.get("near", "normalised"))
    scan = duplicate_scan(ctx, near, 0.8)
    multi = ctx.multiclass and ctx.classes.y is not None
    y = np.asarray(ctx.classes.y if multi else ctx.y_true).astype(int)
    n_groups = int(scan.group.max()) + 1 if len(scan.group) else 0
    if multi:  # a group conflicts when its rows carry more than one class
        pairs = np.unique(np.stack([scan.group, y]), axis=1) if len(y) else np.zeros((2, 0), dtype=int)
        conflict_group = np.bincount(pairs[0], minlength=n_groups) > 1
    else:
        pos = np.bincount(scan.group, weights=y, minlength=n_groups)
        size = np.bincount(scan.group, minlength=n_groups)
        conflict_group = (pos > 0) & (pos < size)
    flags = conflict_group[scan.group]
    conflicted = scan.group.copy()
    conflicted[~flags] = np.arange(len(flags))[~flags]  # list only the conflicting groups
    details = {"near": near, "conflicting_groups": int(conflict_group.sum()),
               "listed": _group_listing(ctx, conflicted, scan.exact_group, int(params.get("examples", 10)), y,
                                        multi),
               "caveats": ["Every row of a text that has both labels is counted, the majority label's too."]}
    return _share(ctx, "quality.conflicting_labels_share", flags, details)


def _validate_short(params: dict) -> None:
    v = params.get("min_words")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"min_words must be a whole number of at least 1, got {v!r}")
    _validate_examples(params)


@check("quality.short_text_share", classes="any", title="Empty or very short eval texts", direction="lower", unit="rate",
       params={"min_words": 3, "examples": 10}, validate=_validate_short, evidence="eval rows")
def short_text_share(ctx: CheckContext, **params) -> Measurement:
    """Share of eval rows whose text is empty or has fewer than `min_words` words.

    A text of one or two words gives the model next to nothing to decide on: its decision there is close to a
    guess on the base rate, and such rows often come from a broken export (an empty field, a placeholder)."""
    m = _check_texts(ctx, "quality.short_text_share")
    if m:
        return m
    k = int(params.get("min_words", 3))
    words = np.array([len(re.findall(r"\w+", t)) for t in ctx.texts])
    flags = words < k
    ids = _ids(ctx)
    rows = np.flatnonzero(flags)[:int(params.get("examples", 10))]
    details = {"min_words": k, "empty_rows": int((words == 0).sum()),
               "listed": [{"row": int(i), "id": ids[i], "words": int(words[i]), "text": _clip(ctx.texts[i])}
                          for i in rows.tolist()]}
    return _share(ctx, "quality.short_text_share", flags, details)


def confident_learning_issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Confident learning's off-diagonal rule (Northcutt et al. 2021), as cleanlab's filter_by="confident_learning":
    per class j the threshold t_j is the mean probability of j over the rows labelled j; a row is confident of the
    classes whose probability reaches their threshold (the most probable of them when several do); it is an
    issue when it is confident of a class other than its label and the model does not predict its label."""
    labels = np.asarray(labels, dtype=int)
    k = pred_probs.shape[1]
    thresholds = np.array([pred_probs[labels == j, j].mean() if (labels == j).any() else 2.0 for j in range(k)])
    confident = pred_probs >= thresholds - 1e-6
    count = confident.sum(axis=1)
    guess = np.where(count > 1, pred_probs.argmax(axis=1), confident.argmax(axis=1))
    issue = (count > 0) & (guess != labels)
    bumped = pred_probs.copy()
    bumped[np.arange(len(labels)), labels] += 1e-6  # a tie goes to the given label, as in cleanlab
    return issue & (bumped.argmax(axis=1) != labels)


def _validate_label_issues(params: dict) -> None:
    if params.get("method") not in LABEL_METHODS:
        raise ValueError(f"method must be one of {', '.join(LABEL_METHODS)}, got {params.get('method')!r}")
    _validate_examples(params)


@check("quality.label_issue_share", classes="any", title="Likely label errors in the eval set", direction="lower",
       unit="rate",
       params={"method": "cleanlab", "examples": 10}, validate=_validate_label_issues, evidence="eval rows")
def label_issue_share(ctx: CheckContext, **params) -> Measurement:
    """Share of eval rows whose label is likely wrong, by confident learning on the model's out-of-sample probabilities (cleanlab).

    Every metric counts a wrong label as the model's error (or a right answer as wrong). A few percent of
    label issues is common in real data; many more mean the labels, or the process that made them, need a
    review before the audit's numbers can be read. The listed rows are candidates to re-check by hand, most
    likely first. For a model of more than two classes confident learning reads every class's probability and
    each row's true class (a `refer` labelled `decline` is an issue, whichever is favourable)."""
    cid = "quality.label_issue_share"
    m = _check_texts(ctx, cid)
    if m:
        return m
    multi = ctx.multiclass and ctx.classes.y is not None
    s = np.clip(np.asarray(ctx.score, dtype=float), 0.0, 1.0)
    if multi:
        y = np.asarray(ctx.classes.y).astype(int)
        probs = np.asarray(ctx.classes.probs, dtype=float)
    else:
        y = np.asarray(ctx.y_true).astype(int)
    if y.min() == y.max():
        return Measurement(cid, None, n=len(y), inconclusive="the eval set has rows of one label only, so "
                                                             "confident learning has nothing to compare")
    if not multi:
        probs = np.column_stack([1.0 - s, s])
    method, used = str(params.get("method", "cleanlab")), ""
    if method == "cleanlab":
        try:
            from cleanlab.filter import find_label_issues
        except ImportError:
            method, used = "confident_learning", ("cleanlab is not installed (pip install cleanlab): the check "
                                                  "used confident learning's own rule instead")
    if method == "cleanlab":
        import importlib.metadata

        flags = np.asarray(find_label_issues(y, probs, n_jobs=1), dtype=bool)
        used = f"cleanlab {importlib.metadata.version('cleanlab')} find_label_issues (filter_by=prune_by_noise_rate)"
    else:
        flags = confident_learning_issues(y, probs)
        used = used or "confident learning's off-diagonal rule (as cleanlab's filter_by=confident_learning)"
    self_conf = probs[np.arange(len(y)), y]
    ids = _ids(ctx)
    rows = np.flatnonzero(flags)
    rows = rows[np.lexsort((rows, self_conf[rows]))][:int(params.get("examples", 10))]
    details = {"method": method, "used": used, "label_issues": int(flags.sum()),
               "listed": [{"row": int(i), "id": ids[i], "label": _label_names(ctx, y[[i]], multi)[0],
                           "score": _f(s[i]), "label_probability": _f(self_conf[i]),
                           **({"predicted": ctx.classes.labels[int(np.argmax(probs[i]))]} if multi else {}),
                           "text": _clip(ctx.texts[i])} for i in rows.tolist()],
               "caveats": ["The probabilities are the model's on the eval rows, out of sample only when the model "
                           "was not trained on them (see quality.train_overlap_share).",
                           "A flagged row is a candidate to re-check, not a proven error."]}
    return _share(ctx, cid, flags, details)

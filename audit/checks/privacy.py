"""Privacy family: personal data in the text, and whether the model gives away who was in its training set.

PII checks scan the text with `audit.pii` (validated patterns, no model) and report the share of rows that
hold personal data, with counts by type. A measurement never carries the data it found: only counts, row
positions and short snippets in which every find is replaced by its token (`[EMAIL]`, `[CARD]` …).

Membership inference is the loss-threshold attack (Yeom et al., 2018): an attacker who can query the model
guesses "member" when an example's loss is low. Members are the training rows, non-members the eval rows
(both scored once per run, as the runner scores every data set); the larger set is subsampled, with the
run's seed, to the size of the smaller. A text that occurs in both sets is left out of both sides: to the
model it is the same input, member or not. The area under the attack's ROC curve is 0.5 when the
model behaves the same on data it trained on and data it never saw; the true-positive rate at a low
false-positive rate says whether a few members can be picked out with confidence (Carlini et al., 2022).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from audit import pii, stats
from audit.checks import check
from audit.context import CheckContext
from audit.result import Measurement

NEEDS_ROWS = "it needs the texts or the model's per-row losses on training rows, which the statistics do not carry"
LOW_FPRS = (0.01, 0.001)
MIN_MEMBERS = 20  # default of the rule parameter `min_members`: rows per side below which the attack is INCONCLUSIVE
_CELLS = 4_000_000  # bootstrap weights held at once (rows x replicates), about 32 MB


# ---------------------------------------------------------------- shared helpers


def _bootstrap(n: int, replicates: int, seed: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """fn over a row of ones, then over `replicates` Poisson(1) weight rows of length n, built a chunk at a
    time so a large set never holds the whole (replicates x n) matrix. Returns 1 + replicates values."""
    rng = np.random.default_rng(seed)
    out = [fn(np.ones((1, n)))]
    step = max(1, _CELLS // max(n, 1))
    for lo in range(0, replicates, step):
        out.append(fn(rng.poisson(1.0, size=(min(step, replicates - lo), n)).astype(np.float64)))
    return np.concatenate(out)


def _interval(values: np.ndarray, confidence: float, replicates: int) -> tuple[float | None, float | None]:
    if not replicates:
        return None, None
    return stats.percentile_interval(values[1:], confidence)


def training_set(ctx: CheckContext):
    """(the run's scored training split, None) or (None, why there is none)."""
    from audit.errors import AuditError

    try:
        train = ctx.dataset("train")
    except AuditError as exc:
        return None, f"the training data cannot be read: {exc}"
    if train is not None:
        return train, ""
    m = ctx.manifest
    if ctx.loader is None:
        return None, "no training data was given to the checks"
    if m is None or getattr(m, "data", None) is None:
        return None, ("no training data: the model's manifest records no training split (a model that "
                      "`audit train` did not make), so there is nothing to compare the eval rows with")
    return None, ("no training data: the training file named in the manifest has changed since the model was "
                  "trained (its sha256 differs), so its rows cannot be matched to the split")


# ---------------------------------------------------------------- PII


def _pii_params(dataset: str, chosen, min_digits: int) -> dict[str, Any]:
    """The parameters a silo's PII statistic is named by (audit.mergeable.silo_key): `min_digits` only where a
    rule changes it, so the statistics of a default rule keep their name."""
    return {"dataset": dataset, "types": list(chosen),
            **({"min_digits": int(min_digits)} if int(min_digits) != pii.MIN_DIGITS else {})}


def _pii(ctx: CheckContext, check_id: str, dataset: str, types: list, examples: int,
         min_digits: int = pii.MIN_DIGITS) -> Measurement:
    dataset = str(dataset).strip().lower()
    chosen = pii.check_types(types)  # raises on an unknown type: the finding says which
    if dataset == "eval":
        texts, weights = list(ctx.texts), None
        if len(ctx.y_true) == len(texts):
            weights = ctx.weights  # the run's shared replicates
    elif dataset == "train":
        train, why = training_set(ctx)
        if train is None:
            return Measurement(check_id, None, details={"dataset": dataset}, inconclusive=why)
        texts, weights = list(train.texts), None
    else:
        raise ValueError(f"dataset must be 'eval' or 'train', got {dataset!r}")
    n = len(texts)
    found = pii.scan(texts, chosen, min_digits=int(min_digits))
    flags = found.any_row.astype(np.float64)
    if n == 0:
        return Measurement(check_id, None, details={"dataset": dataset, "rows": 0},
                           inconclusive=f"the {dataset} set has no rows to scan")

    def rate(W: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (W @ flags) / W.sum(axis=1)  # NaN for a resample that drew no row

    if weights is not None:
        values = rate(weights)
    else:
        values = _bootstrap(n, ctx.replicates, ctx.seed, rate)
    low, high = _interval(values, ctx.confidence, ctx.replicates)
    counts, rows = found.counts, found.rows
    could = found.could_hold
    means = pii.candidates(int(min_digits))
    # beside each rate, how many rows could have held the type at all: 0 of 0 rows with an @ is no evidence
    # that the text is free of e-mail addresses, only that it has none to find
    by_type = [{"type": t, "label": pii.LABELS[t], "token": pii.TOKENS[t], "finds": counts[t], "rows": rows[t],
                "share": rows[t] / n, "could_hold": could[t], "could_hold_means": means[t]}
               for t in chosen]
    shown = []
    first_rows = np.flatnonzero(found.any_row)[: max(int(examples), 0)]
    by_row: dict[int, list[pii.Find]] = {}
    for f in found.finds:
        by_row.setdefault(f.row, []).append(f)
    for row in first_rows.tolist():
        finds = by_row[row]
        shown.append({"row": row, "types": sorted({f.kind for f in finds}, key=pii.TYPES.index),
                      "text": pii.snippet(texts[row], finds[0], types=None)})
    details: dict[str, Any] = {
        "dataset": dataset, "rows": n, "rows_with_pii": found.rows_any, "types": list(chosen), "by_type": by_type,
        "rows_could_hold_any": found.could_hold_any, "examples": shown,
        "not_detected": "names, postal addresses and free-form account numbers (the scanner uses validated "
                        "patterns, not a language model)",
        "min_digits": int(min_digits),
    }
    return Measurement(check_id, float(values[0]), low, high, n=n, details=details)


def _validate_pii(params: dict) -> None:
    """At policy load: `dataset` and `types` must name what the scanner knows."""
    if params.get("dataset", "eval") not in ("eval", "train"):
        raise ValueError(f"dataset must be 'eval' or 'train', got {params.get('dataset')!r}")
    unknown = [t for t in params.get("types") or [] if t not in pii.TYPES]
    if unknown:
        raise ValueError(f"unknown PII type {unknown[0]!r} (known: {', '.join(pii.TYPES)})")
    v = params.get("min_digits", pii.MIN_DIGITS)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and not (float(v).is_integer()
                                                                         and pii.MIN_DIGITS <= v <= 19):
        raise ValueError(f"min_digits must be a whole number from {pii.MIN_DIGITS} (no pattern finds fewer "
                         f"digits) to 19 (the longest card number), got {v:g}")


# ---------------------------------------------------------------- PII from a silo's counts


PII_CELLS = ("rows", "rows_with_pii", "rows_could_hold_any")  # the "counts" table; by type: finds, rows, could_hold


# How a silo gets the training rows that membership inference and the training-text PII check read: said in the
# reason `audit merge` gives when a silo had none (audit/merge.py)
SILO_TRAINING = ("`audit stats` reads the training rows from the model's manifest (audit-model.yaml: the data file "
                 "and its training split, as `audit train` records them); put that file, unchanged, where the "
                 "manifest says or beside the model folder in the silo, and run `audit stats --policy` there again")


def training_identity(train) -> str:
    """Which training rows a statistic describes (every silo that reads the model's training split reads the
    same rows): the file's hash and the split's rows."""
    import hashlib

    return "train:" + hashlib.sha256(("\n".join(train.texts)).encode("utf-8")).hexdigest()[:32]


def _pii_collect(ctx: CheckContext, check_id: str, dataset: str = "eval", types: list | None = None,
                 examples: int = 3, min_digits: int = pii.MIN_DIGITS):
    """In the silo: the counts the PII check reads, with the bootstrap sums of its interval (the eval rows'
    row-id weights, as in memory; the training rows' positional draws, as in memory). Sensitivity (one row
    added or removed): 1 in each of the three counts and at most 1 in each type's rows and could-hold cells, so
    L1 = 3 + 2 x types; the finds per type are not bounded and are not released under noise."""
    from audit.mergeable import Counts, SiloStat

    dataset = str(dataset).strip().lower()
    chosen = list(pii.check_types(list(types or [])))
    shared = None
    if dataset == "eval":
        texts = list(ctx.texts)
    else:
        train, why = training_set(ctx)
        if train is None:
            return f"{why}. {SILO_TRAINING}"  # nothing collected, and why (audit.silo records it for merge)
        texts, shared = list(train.texts), training_identity(train)
    found = pii.scan(texts, chosen, min_digits=int(min_digits))
    flags = found.any_row.astype(np.float64)
    n = len(texts)
    if dataset == "eval":
        W = ctx.weights
        sums = np.column_stack([W.sum(axis=1), W @ flags])
    else:
        sums = _bootstrap(n, ctx.replicates, ctx.seed, lambda W: np.column_stack([W.sum(axis=1), W @ flags]))
    R = sums.shape[0] - 1
    counts = Counts((2,), R, sums[0].copy(), sums[1:].copy() if R else None)
    extra = Counts((1,), 0, np.array([float(found.could_hold_any)]))
    by_type = Counts((len(chosen), 3), 0, np.array([[found.counts[t], found.rows[t], found.could_hold[t]]
                                                     for t in chosen], dtype=float).reshape(len(chosen), 3))
    return SiloStat("pii", _pii_params(dataset, chosen, min_digits),
                    {"counts": counts, "could_hold_any": extra, "by_type": by_type}, shared=shared,
                    l1=3.0 + 2.0 * len(chosen))


def _pii_from_stats(sctx, check_id: str, dataset: str = "eval", types: list | None = None, examples: int = 3,
                    min_digits: int = pii.MIN_DIGITS):
    """The PII check from silos' counts: the same rate and interval as in memory on one silo's rows (the
    replicate sums are the same sums), silos' counts added; no example text leaves a silo."""
    from audit.from_stats import carried

    dataset = str(dataset).strip().lower()
    chosen = list(pii.check_types(list(types or [])))
    st, why = carried(sctx, check_id, "pii", _pii_params(dataset, chosen, min_digits))
    if st is None:
        return why
    M = sctx.replicates.table(st.tables["counts"])
    n = int(round(max(float(st.tables["counts"].point[0]), 0.0)))
    if n == 0:
        return Measurement(check_id, None, details={"dataset": dataset, "rows": 0},
                           inconclusive=f"the {dataset} set has no rows to scan")
    with np.errstate(divide="ignore", invalid="ignore"):
        values = M[:, 1] / M[:, 0]
    low, high = _interval(values, sctx.confidence, M.shape[0] - 1)
    bt = st.tables["by_type"].point
    noised = st.tables["counts"].reps is None and sctx.replicates.noised
    by_type = [{"type": t, "label": pii.LABELS[t], "token": pii.TOKENS[t],
                "finds": None if noised else int(round(bt[i, 0])), "rows": int(round(bt[i, 1])),
                "share": bt[i, 1] / n, "could_hold": int(round(bt[i, 2])),
                "could_hold_means": pii.candidates(int(min_digits))[t]}
               for i, t in enumerate(chosen)]
    details: dict[str, Any] = {
        "dataset": dataset, "rows": n, "rows_with_pii": int(round(float(st.tables["counts"].point[1]))),
        "types": chosen, "by_type": by_type,
        "rows_could_hold_any": int(round(float(st.tables["could_hold_any"].point[0]))), "examples": [],
        "examples_note": "no example text leaves a silo: only counts were merged",
        "not_detected": "names, postal addresses and free-form account numbers (the scanner uses validated "
                        "patterns, not a language model)",
        "min_digits": int(min_digits),
    }
    if st.shared:
        details["shared_rows"] = "the model's training split, read in every silo: counted once"
    return Measurement(check_id, float(values[0]), low, high, n=n, details=details)


_pii_from_stats.collect = _pii_collect  # type: ignore[attr-defined]


def _pii_from_stats_train(sctx, check_id: str, types: list | None = None, examples: int = 3,
                          min_digits: int = pii.MIN_DIGITS):
    """privacy.pii_in_training_text from statistics: the PII form on the training rows."""
    return _pii_from_stats(sctx, check_id, "train", types, examples, min_digits)


_pii_from_stats_train.collect = (  # type: ignore[attr-defined]
    lambda ctx, check_id, types=None, examples=3, min_digits=pii.MIN_DIGITS:
    _pii_collect(ctx, check_id, "train", types, examples, min_digits))


@check("privacy.pii_rate", classes="any", title="Rows with personal data", direction="lower", unit="rate",
       params={"dataset": "eval", "types": [], "examples": 3, "min_digits": pii.MIN_DIGITS}, validate=_validate_pii,
       evidence="rows scanned", stats=_pii_from_stats, stats_form="silo")
def pii_rate(ctx: CheckContext, dataset: str = "eval", types: list | None = None, examples: int = 3,
             min_digits: int = pii.MIN_DIGITS) -> Measurement:
    """Share of rows of a data set (`dataset`: eval or train) whose text holds personal data: e-mail, phone,
    payment card, IBAN, US SSN, IP address or date of birth (`types` narrows the list).

    Personal data in text that a model reads or is trained on must be necessary for its purpose and protected;
    a high share usually means free text is passed on without redaction. The report shows only counts and
    redacted snippets. `min_digits` (default 7) is the fewest digits a phone or card number holds."""
    return _pii(ctx, "privacy.pii_rate", dataset, list(types or []), examples, min_digits)


@check("privacy.pii_in_training_text", classes="any", title="Training rows with personal data", direction="lower",
       unit="rate", params={"types": [], "examples": 3, "min_digits": pii.MIN_DIGITS}, validate=_validate_pii,
       cost="training-set", evidence="training rows scanned", stats=_pii_from_stats_train, stats_form="silo")
def pii_in_training_text(ctx: CheckContext, types: list | None = None, examples: int = 3,
                         min_digits: int = pii.MIN_DIGITS) -> Measurement:
    """Share of the model's training rows whose text holds personal data (e-mail, phone, payment card, IBAN,
    US SSN, IP address or date of birth).

    What a model was trained on it can memorise and repeat: personal data in training text is the hardest
    kind to take back, because removing it means retraining."""
    return _pii(ctx, "privacy.pii_in_training_text", "train", list(types or []), examples, min_digits)


# ---------------------------------------------------------------- membership inference


def _attack_curves(W: np.ndarray, member: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """Per weight row: the attack's TPR at each low FPR and its advantage max(TPR - FPR). The attacker calls
    "member" when the score (minus the loss) is at or above a threshold; every distinct score is a threshold."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    m = member[order].astype(np.float64)
    Wo = W[:, order]
    tp = np.cumsum(np.add.reduceat(Wo * m, starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(Wo * (1.0 - m), starts, axis=1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = tp / tp[:, -1:]
        fpr = fp / fp[:, -1:]
    defined = (tp[:, -1] > 0) & (fp[:, -1] > 0)
    gap = np.where(defined[:, None], np.nan_to_num(tpr - fpr), 0.0)
    out = {"advantage": np.where(defined, np.maximum(gap.max(axis=1), 0.0), np.nan)}
    for a in LOW_FPRS:
        best = np.where(fpr <= a + 1e-12, tpr, 0.0).max(axis=1)  # the (0, 0) corner is always reachable
        out[f"tpr@{a:g}"] = np.where(defined, best, np.nan)
    return out


def membership_attack(ctx: CheckContext, min_members: int = MIN_MEMBERS) -> dict[str, Any]:
    """The loss-threshold attack of this run, computed once and shared by the privacy checks."""
    key = ("privacy.membership_attack", ctx.seed, ctx.replicates, ctx.confidence, int(min_members))
    cache = ctx.shared.membership
    if key in cache:
        return cache[key]
    cache[key] = result = _membership_attack(ctx, int(min_members))
    return result


def _membership_attack(ctx: CheckContext, min_members: int) -> dict[str, Any]:
    train, why = training_set(ctx)
    if train is None:
        return {"inconclusive": why}
    preds = ctx.predictions
    eval_loss = getattr(preds, "loss", None)
    train_loss = getattr(train.predictions, "loss", None)
    if eval_loss is None or train_loss is None:
        return {"inconclusive": "per-row losses are missing: the eval and training rows need labels"}
    # A text in both sets is the same input to the model, member or not: leave it out of both sides, so that
    # the two sides stay alike (dropping it from one side only would set short, common texts against the rest).
    eval_texts = list(ctx.texts) if len(ctx.texts) == len(eval_loss) else [None] * len(eval_loss)
    shared = set(train.texts) & set(eval_texts)
    keep_non = np.array([t not in shared for t in eval_texts], dtype=bool)
    keep_mem = np.array([t not in shared for t in train.texts], dtype=bool)
    non = np.asarray(eval_loss, dtype=np.float64)[keep_non]
    mem = np.asarray(train_loss, dtype=np.float64)[keep_mem]
    dropped = int((~keep_non).sum())
    n = min(len(mem), len(non))
    facts: dict[str, Any] = {
        "attack": "loss threshold (Yeom et al. 2018): lower loss on an example = guess it was in training",
        "members_available": len(mem), "non_members_available": len(non), "non_members_dropped": dropped,
        "members_dropped": int((~keep_mem).sum()),
    }
    if n < min_members:
        extra = (f"; {dropped} eval rows and {facts['members_dropped']} training rows were left out because "
                 f"their text occurs in both sets" if dropped else "")
        return {"inconclusive": f"too few rows for the attack: {len(mem)} training rows and {len(non)} eval rows "
                                f"that the model never trained on (needs at least {min_members} of each, the rule's `min_members`){extra}",
                "details": facts}
    rng = np.random.default_rng(ctx.seed)
    if len(mem) > n:
        mem = mem[np.sort(rng.choice(len(mem), size=n, replace=False))]
    if len(non) > n:
        non = non[np.sort(rng.choice(len(non), size=n, replace=False))]
    member = np.r_[np.ones(n), np.zeros(n)]
    score = -np.r_[mem, non]  # the attacker's score: lower loss, more likely a member

    def all_stats(W: np.ndarray) -> np.ndarray:
        curves = _attack_curves(W, member, score)
        return np.column_stack([stats.roc_auc(W, member, score), curves["advantage"],
                                *[curves[f"tpr@{a:g}"] for a in LOW_FPRS]])

    values = _bootstrap(2 * n, ctx.replicates, ctx.seed + 1, all_stats)
    names = ["auc", "advantage", *[f"tpr@{a:g}" for a in LOW_FPRS]]
    est = {}
    for j, name in enumerate(names):
        low, high = _interval(values[:, j], ctx.confidence, ctx.replicates)
        v = float(values[0, j])
        est[name] = {"value": None if np.isnan(v) else v, "ci_low": low, "ci_high": high}
    facts.update({
        "members": n, "non_members": n,
        "mean_loss_members": float(mem.mean()), "mean_loss_non_members": float(non.mean()),
        "median_loss_members": float(np.median(mem)), "median_loss_non_members": float(np.median(non)),
        "auc": est["auc"], "advantage": est["advantage"],
        "tpr_at_fpr": [{"fpr": a, **est[f"tpr@{a:g}"], "resolved": n * a >= 1.0,
                        "chance": a} for a in LOW_FPRS],
        "curve": stats.roc_curve_points(member, score),
    })
    return {"details": facts, "n": n, "estimates": est}  # n per side: as many members as non-members


def _validate_members(params: dict) -> None:
    v = params.get("min_members", MIN_MEMBERS)
    if isinstance(v, bool) or not isinstance(v, int) or v < 2:
        raise ValueError(f"min_members must be a whole number of at least 2, got {v!r}")


def _from_attack(ctx: CheckContext, check_id: str, name: str, min_members: int, needs_rows: int = 0) -> Measurement:
    attack = membership_attack(ctx, min_members)
    details = dict(attack.get("details") or {})
    if "estimates" not in attack:
        return Measurement(check_id, None, details=details, inconclusive=attack["inconclusive"])
    e = attack["estimates"][name]
    m = Measurement(check_id, e["value"], e["ci_low"], e["ci_high"], n=attack["n"], details=details)
    if m.value is None:
        m.inconclusive = "the attack is undefined on these rows"
    elif needs_rows and details["non_members"] < needs_rows:
        m.inconclusive = (f"only {details['non_members']} non-members: a false-positive rate of "
                          f"{1 / needs_rows:.0%} cannot be resolved with fewer than {needs_rows}")
    elif ctx.replicates and m.ci_low is None:
        m.inconclusive = "the interval is undefined on most resamples (too few rows)"
    return m


# ---------------------------------------------------------------- membership inference from loss histograms
#
# In each silo `audit stats` scores the model's training rows (members) and the silo's rows (non-members) and keeps
# per side a histogram of the per-row loss on a fixed grid (LOSS_EDGES), with bootstrap replicate counts under
# row-id weights. A silo row whose text occurs in the training rows is left out (to the model it is the same
# input); the training rows are all kept, so every silo holds the same member histogram and the merge counts it
# once. The attack then reads the histograms: the AUC of "member when the loss is low" with the pairs inside one
# bin counted one half (|binned - exact| <= half the share of pairs that share a bin, reported), and the TPR at a
# low FPR over thresholds on the bin edges (a lower bound of the exact, with the upper bound beside it). Unlike the
# in-memory attack, the larger side is not subsampled to the smaller (the AUC does not need equal sides), so the
# interval is the whole sides'. Sensitivity: one row (of the silo, or of the training rows) changes one histogram
# cell by 1 and one count (rows left out, rows kept, training rows) by 1: L1 = 5 over both sides; the sums of
# losses behind the mean losses are unbounded and are not released under noise.

LOSS_EDGES = np.r_[0.0, np.geomspace(1e-6, 50.0, 799)]  # 800 left-closed loss bins; 50 and above: the last


def _loss_bins(loss: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(LOSS_EDGES, np.asarray(loss, float), side="right") - 1, 0, len(LOSS_EDGES) - 1)


def _ids_of(frame, manifest, n: int) -> list[str]:
    col = getattr(manifest, "id_column", None)
    if frame is not None and col and col in frame.columns:
        return frame[col].astype(str).tolist()
    return [str(i) for i in (frame.index if frame is not None else range(n))]


def _membership_collect(ctx: CheckContext, check_id: str, min_members: int = MIN_MEMBERS):
    from audit.mergeable import Counts, SiloStat, replicate_weights, row_keys

    train, why = training_set(ctx)
    if train is None:
        return f"{why}. {SILO_TRAINING}"  # nothing collected, and why (audit.silo records it for `audit merge`)
    preds = ctx.predictions
    eval_loss = getattr(preds, "loss", None)
    train_loss = getattr(train.predictions, "loss", None)
    if eval_loss is None or train_loss is None:
        return "the scoring pass kept no per-row losses (the data has no labels)"
    bins, R = len(LOSS_EDGES), ctx.replicates
    eval_texts = list(ctx.texts) if len(ctx.texts) == len(eval_loss) else [None] * len(eval_loss)
    in_train = set(train.texts)
    keep = np.array([t not in in_train for t in eval_texts], dtype=bool)
    st = SiloStat("membership", {"loss_bins": bins}, l1=5.0)
    non = Counts((bins,), R)
    W = ctx.weights[1:].T.astype(np.float32) if R else None  # (n, R): the run's row-id weights
    non.add(_loss_bins(np.asarray(eval_loss)[keep]), W[keep] if W is not None else None)
    st.tables["non_members"] = non
    st.tables["non_member_facts"] = Counts((3,), 0, np.array([float((~keep).sum()), float(np.asarray(eval_loss)[keep].sum()),
                                                            float(keep.sum())]))
    mem = SiloStat("membership-members", {"loss_bins": bins}, shared=training_identity(train), l1=0.0)
    tl = np.asarray(train_loss, float)
    Wm = (replicate_weights(row_keys(_ids_of(train.frame, ctx.manifest, len(tl)), ctx.seed), R) if R else None)
    members = Counts((bins,), R)
    members.add(_loss_bins(tl), Wm)
    mem.tables["members"] = members
    mem.tables["member_facts"] = Counts((2,), 0, np.array([float(tl.sum()), float(len(tl))]))
    return [st, mem]


def _attack_from_histograms(M_mem: np.ndarray, M_non: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of (1 + R, bins) histograms: the binned AUC, the advantage and the TPR at each low FPR over
    thresholds on the bin edges (lower bound), with its upper bound."""
    from audit.mergeable import binned_auc

    out = {"auc": binned_auc(M_mem[:, ::-1], M_non[:, ::-1])}  # bins by falling loss: rising attack score
    cm = np.concatenate([np.zeros((M_mem.shape[0], 1)), np.cumsum(M_mem, axis=1)], axis=1)
    cn = np.concatenate([np.zeros((M_non.shape[0], 1)), np.cumsum(M_non, axis=1)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr, fpr = cm / cm[:, -1:], cn / cn[:, -1:]
    defined = (cm[:, -1] > 0) & (cn[:, -1] > 0)
    out["advantage"] = np.where(defined, np.maximum(np.nan_to_num(tpr - fpr).max(axis=1), 0.0), np.nan)
    nxt = np.concatenate([tpr[:, 1:], tpr[:, -1:]], axis=1)
    for a in LOW_FPRS:
        ok = fpr <= a + 1e-12
        out[f"tpr@{a:g}"] = np.where(defined, np.where(ok, tpr, 0.0).max(axis=1), np.nan)
        out[f"tpr@{a:g} upper"] = np.where(defined, np.where(ok, nxt, 0.0).max(axis=1), np.nan)
    return out


def _membership_from_stats(sctx, check_id: str, min_members: int = MIN_MEMBERS):
    """The loss attack from the silos' loss histograms (binned: the section above)."""
    from audit.from_stats import carried

    bins = len(LOSS_EDGES)
    st, why = carried(sctx, check_id, "membership", {"loss_bins": bins})
    if st is None:
        return why
    mem, why = carried(sctx, check_id, "membership-members", {"loss_bins": bins})
    if mem is None:
        return why
    name = "auc" if check_id == "privacy.membership_inference_auc" else "tpr@0.01"

    def attack():
        M_mem = sctx.replicates.table(mem.tables["members"])
        M_non = sctx.replicates.table(st.tables["non_members"])
        got = _attack_from_histograms(M_mem, M_non)
        pm, pn = np.clip(M_mem[0], 0, None), np.clip(M_non[0], 0, None)
        nm, nn = float(pm.sum()), float(pn.sum())
        facts: dict[str, Any] = {
            "attack": "loss threshold (Yeom et al. 2018): lower loss on an example = guess it was in training",
            "members_available": int(round(nm)), "non_members_available": int(round(nn)),
            "non_members_dropped": int(round(float(st.tables["non_member_facts"].point[0]))), "members_dropped": 0,
            "binned": {"loss_bins": bins, "grid": "0, then 799 log-spaced edges from 1e-6 to 50",
                       "max_abs_error": float(0.5 * (pm * pn).sum() / (nm * nn)) if nm * nn > 0 else None,
                       "subsampled": False},
        }
        if min(nm, nn) < min_members:
            return {"inconclusive": f"too few rows for the attack: {int(round(nm))} training rows and "
                    f"{int(round(nn))} eval rows that the model never trained on (needs at least {min_members} of "
                    "each, the rule's `min_members`)", "details": facts}
        # the interval of a binned number is widened by its binning bound, so that it holds the exact attack's
        # number too (the AUC: +- half the share of pairs in one bin; the TPR at a low FPR: up to its upper bound)
        auc_bound = facts["binned"]["max_abs_error"] or 0.0
        est = {}
        for key in ("auc", "advantage", *[f"tpr@{a:g}" for a in LOW_FPRS]):
            v = got[key]
            low, high = _interval(v, sctx.confidence, v.shape[0] - 1)
            widen_low, widen_high = (auc_bound, auc_bound) if key == "auc" else (0.0, 0.0)
            if key.startswith("tpr@") and not np.isnan(v[0]):
                widen_high = float(got[f"{key} upper"][0] - v[0])
            if low is not None:
                low, high = max(0.0, low - widen_low), min(1.0, high + widen_high)
            est[key] = {"value": None if np.isnan(v[0]) else float(v[0]), "ci_low": low, "ci_high": high}
        facts["binned"]["interval"] = ("the bootstrap interval of the binned number, widened by its binning bound "
                                       "(AUC: the max_abs_error; TPR at a low FPR: up to its upper bound)")
        noised = sctx.replicates.noised
        facts.update({
            "members": int(round(nm)), "non_members": int(round(nn)),
            "mean_loss_members": None if noised else float(mem.tables["member_facts"].point[0] / nm),
            "mean_loss_non_members": None if noised else float(st.tables["non_member_facts"].point[1] / nn),
            "auc": est["auc"], "advantage": est["advantage"],
            "tpr_at_fpr": [{"fpr": a, **est[f"tpr@{a:g}"], "upper_bound": _num(got[f"tpr@{a:g} upper"][0]),
                            "resolved": nn * a >= 1.0, "chance": a} for a in LOW_FPRS],
        })
        return {"details": facts, "n": int(round(min(nm, nn))), "estimates": est}

    result = sctx.once(f"membership {min_members}", attack)
    details = dict(result.get("details") or {})
    if "estimates" not in result:
        return Measurement(check_id, None, details=details, inconclusive=result["inconclusive"])
    e = result["estimates"][name]
    m = Measurement(check_id, e["value"], e["ci_low"], e["ci_high"], n=result["n"], details=details)
    if m.value is None:
        m.inconclusive = "the attack is undefined on these rows"
    elif name != "auc" and details["non_members"] < 100:
        m.inconclusive = (f"only {details['non_members']} non-members: a false-positive rate of 1% cannot be "
                          "resolved with fewer than 100")
    elif sctx.replicates.R and m.ci_low is None:
        m.inconclusive = "the interval is undefined on most resamples (too few rows)"
    return m


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


_membership_from_stats.collect = _membership_collect  # type: ignore[attr-defined]


@check("privacy.membership_inference_auc", classes="any", title="Membership inference AUC (loss attack)", direction="lower",
       cost="training-set", evidence="members attacked (beside as many non-members)",
       params={"min_members": MIN_MEMBERS}, validate=_validate_members, stats=_membership_from_stats,
       stats_form="binned")
def membership_inference_auc(ctx: CheckContext, min_members: int = MIN_MEMBERS) -> Measurement:
    """How well an attacker who sees the model's loss on an example tells training rows from rows the model
    never saw: the area under the ROC curve of the loss-threshold attack.

    0.5 means the model behaves the same on both, so its outputs do not reveal who was in the training data;
    well above 0.5 means it has memorised its training rows, and anyone who can query it may learn that a
    person's record was used to train it. With fewer than `min_members` (default 20) training rows or unseen
    eval rows to attack, it is INCONCLUSIVE."""
    return _from_attack(ctx, "privacy.membership_inference_auc", "auc", min_members)


@check("privacy.mia_tpr_at_1pct_fpr", classes="any", title="Membership inference TPR at 1% FPR", direction="lower",
       unit="rate", cost="training-set", evidence="non-members attacked (beside as many members)",
       params={"min_members": MIN_MEMBERS}, validate=_validate_members, stats=_membership_from_stats,
       stats_form="binned")
def mia_tpr_at_1pct_fpr(ctx: CheckContext, min_members: int = MIN_MEMBERS) -> Measurement:
    """Share of training rows the loss attack picks out while wrongly accusing at most 1% of rows the model
    never saw (true-positive rate at a 1% false-positive rate).

    Chance is 0.01. A higher value means some individuals' membership can be inferred with confidence even
    when the overall AUC looks harmless; it needs at least 100 non-members to be resolved."""
    return _from_attack(ctx, "privacy.mia_tpr_at_1pct_fpr", "tpr@0.01", min_members, needs_rows=100)


# ---------------------------------------------------------------- differential privacy


def _validate_dp(params: dict) -> None:
    if params.get("missing", "inconclusive") not in ("fail", "inconclusive"):
        raise ValueError(f"missing must be 'fail' or 'inconclusive', got {params.get('missing')!r}")


def _from_manifest(sctx, check_id: str, **params) -> Measurement:
    """The statistics form of a check that reads only the model's manifest: the check itself, on a context that
    holds the manifest and no row."""
    from audit.checks import all_checks

    ctx = CheckContext(y_true=np.zeros(0, dtype=np.int8), score=np.zeros(0), manifest=sctx.manifest)
    return all_checks()[check_id].fn(ctx, **params)


@check("privacy.dp_epsilon", classes="any", title="Differential privacy ε", direction="lower",
       params={"missing": "inconclusive"}, validate=_validate_dp, evidence="training rows",
       stats=_from_manifest, stats_form="manifest")
def dp_epsilon(ctx: CheckContext, missing: str = "inconclusive") -> Measurement:
    """The privacy budget ε the model's training spent under DP-SGD, as recorded by `audit train` from opacus'
    accountant (at the recorded δ).

    ε bounds how much any one training row can change what the model does: at ε = 1 an attacker's odds of
    telling whether a person was in the training data grow at most e¹ ≈ 2.7-fold; large ε (say above 10)
    promise little. It is a guarantee of the training procedure, not a measurement on data, so it has no
    interval. A model trained without DP has no bound at all (ε = ∞): `missing: fail` judges that against the
    rule's max (FAIL, or WARN for a warn rule), `missing: inconclusive` (the default) leaves it unjudged."""
    cid = "privacy.dp_epsilon"
    m = ctx.manifest
    training = getattr(m, "training", None) or {}
    dp = training.get("dp") if isinstance(training, dict) else None
    if not isinstance(dp, dict) or dp.get("epsilon") is None:
        if m is None or not training:
            why = ("the model's manifest records no training settings (a model that `audit train` did not make), "
                   "so whether it was trained with differential privacy is unknown")
        else:
            why = "the model was trained without differential privacy (no DP-SGD), so its ε is unbounded"
        details = {"dp": None, "missing": missing, "reason": why}
        # the evidence is the training run itself: its rows when the manifest records them (not "0 rows")
        split = getattr(getattr(m, "data", None), "split", None)
        rows = int(getattr(split, "train_rows", 0) or 0)
        # no value: how a missing ε counts (`missing`) is the judge's to apply (audit.judge, missing_counts_as)
        return Measurement(cid, None, n=rows, details=details, inconclusive=why)
    keys = ("epsilon", "target_epsilon", "delta", "accountant", "noise_multiplier", "max_grad_norm", "sample_rate",
            "sampling", "steps", "expected_batch_size", "training_rows", "clipping", "frozen_for_dp", "library",
            "secure_rng")
    details = {"dp": {k: dp.get(k) for k in keys if k in dp}}
    peft = training.get("peft")
    if isinstance(peft, dict):
        details["peft"] = {k: peft.get(k) for k in ("method", "r", "alpha", "target_modules") if k in peft}
    return Measurement(cid, float(dp["epsilon"]), n=int(dp.get("training_rows") or 0), details=details)

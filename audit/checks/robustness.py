"""Robustness family: does the decision survive changes to the text that should not matter?

An application with a typo, in capitals, without its full stops, with its amount written `1,169` instead of
`1169`, or with its sentences in another order says the same thing; a credit decision that changes with such a
change rests on the form of the text, not on the applicant. Each perturbation below is applied to every eval
text (or a seeded sample of `rows`), seeded by (the run's seed, the perturbation, the row), so a run repeats:

    typos             character typos in words of 4+ letters (a swap of two neighbours, a dropped, doubled or
                      keyboard-neighbour letter), each such word with probability `typo_rate`
    uppercase         the whole text in capitals
    lowercase         the whole text in small letters
    punctuation       full stops, commas, colons, semicolons, ! and ? removed (not inside numbers)
    whitespace        spaces doubled, and a space put before punctuation (not inside numbers)
    number_format     numbers of 1,000 and more re-written with another grouping: 1000 / 1,000 / 1 000
    currency          a currency sign or code moved to the other side of its amount: DM 1169 <-> 1169 DM
    numbers_to_words  whole numbers written out in English words: 12 -> twelve
    field_order       for templated text (the manifest's `text.template`): the template's sentences re-rendered in
                      a shuffled order, with the row's own values

Only texts that a perturbation changed are re-scored (through `ctx.score_texts`, batched and length-sorted as the
eval set was), and only they count: a perturbation that left a text as it was carries no evidence. When the
model's tokenizer reads the changed text as the same tokens (an uncased model and `uppercase`), the model's input
did not change, so its score did not: such rows count, with a score change of exactly zero, and are not scored
again (details say how many).

Per perturbation (one `Part` each, kind "perturbation", judged on its own as the counterfactual swap lists are):
the decision flip rate (a decision on the other side of the policy's threshold; for a model of more than two
classes, any change of the decided class: `refer` becoming `decline` is a flip even though neither is favourable)
and the mean |score change| (the score is the probability of the favourable outcome: for more classes, the sum
over the favourable classes) over the rows it changed, with percentile intervals over the run's shared Poisson bootstrap weights (`ctx.weights`,
restricted to the changed rows). A part with fewer changed rows than `min_group_size` (the policy's unless the
rule sets one) is incomplete: a violation stands, a pass is INCONCLUSIVE. A perturbation that the policy names and
that changed no text is an INCONCLUSIVE part; with the default (every perturbation) one that found nothing to
change is listed as not applicable and is not judged. The measurement's value is the worst judgeable part's.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit import pii, stats
from audit.checks import check
from audit.context import CheckContext
from audit.result import Measurement, Part

NEEDS_ROWS = "it re-scores perturbed texts through the model, and the statistics carry no text"
MAX_TEXT = 600  # characters of an example text kept in details

PARAMS: dict[str, Any] = {"perturbations": [], "typo_rate": 0.1, "rows": 0, "examples": 3, "min_group_size": 0}

# ---------------------------------------------------------------- the perturbations

_WORD = re.compile(r"[^\W\d_]{4,}")
_KEYBOARD = {c: n for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm") for i, c in enumerate(row)
             for n in [row[max(i - 1, 0):i] + row[i + 1:i + 2]]}
_PUNCT = re.compile(r"(?<!\d)[.,;:!?]+|[.,;:!?]+(?!\d)")
_SPACE_BEFORE = re.compile(r"(?<=[^\W\d_]|\))(?=[.,;:!?](?:\s|$))")
_GROUPED = re.compile(r"(?<![\w.,])(\d{1,3}(?:(?:,\d{3})+|(?: \d{3})+)|\d{4,})(?![\w]|[.,]\d)")
_INTEGER = re.compile(r"(?<![\w.,])(\d{1,3}(?:(?:,\d{3})+|(?: \d{3})+)|\d+)(?![\w]|[.,]\d)")
_CURRENCY = r"(?:[$€£¥]|\b(?:USD|EUR|GBP|CHF|JPY|CAD|AUD|DM)\b)"
_AMOUNT = r"\d(?:[\d,. ]*\d)?"
_CUR_BEFORE = re.compile(rf"(?<![\w$€£¥])({_CURRENCY})\s?({_AMOUNT})(?![\w])")
_CUR_AFTER = re.compile(rf"(?<![\w.,])({_AMOUNT})\s?({_CURRENCY})(?![\w$€£¥])")
_SYMBOLS = "$€£¥"


def _typo(word: str, rng: random.Random) -> str:
    """One typo in a word of 4+ letters; the first letter is kept (readers skim by it)."""
    n = len(word)
    ops = ["swap", "drop", "double", "neighbour"]
    while ops:
        op = ops.pop(rng.randrange(len(ops)))
        i = rng.randrange(1, n - 1) if op == "swap" else rng.randrange(1, n)
        if op == "swap" and word[i] != word[i + 1]:
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if op == "drop":
            return word[:i] + word[i + 1:]
        if op == "double":
            return word[:i] + word[i] + word[i:]
        if op == "neighbour" and word[i].lower() in _KEYBOARD:
            c = rng.choice(_KEYBOARD[word[i].lower()])
            return word[:i] + (c.upper() if word[i].isupper() else c) + word[i + 1:]
    return word


def typos(text: str, rng: random.Random, rate: float = 0.1) -> str:
    return _WORD.sub(lambda m: _typo(m.group(0), rng) if rng.random() < rate else m.group(0), text)


def punctuation(text: str, rng: random.Random) -> str:
    return re.sub(r" {2,}", " ", _PUNCT.sub("", text)).strip()


def whitespace(text: str, rng: random.Random) -> str:
    return re.sub(r"(?<!\d) | (?!\d)", "  ", _SPACE_BEFORE.sub(" ", text))  # "2 500" stays one number


def _group(value: int, style: str) -> str:
    plain = str(value)
    if style == "plain":
        return plain
    sep = "," if style == "comma" else " "
    return f"{value:,}".replace(",", sep)


def number_format(text: str, rng: random.Random) -> str:
    def change(m: re.Match) -> str:
        s = m.group(1)
        style = "comma" if "," in s else "space" if " " in s else "plain"
        value = int(re.sub(r"\D", "", s))
        if value < 1000:
            return s
        return _group(value, rng.choice([x for x in ("plain", "comma", "space") if x != style]))

    return _GROUPED.sub(change, text)


def currency(text: str, rng: random.Random) -> str:
    """Sign or code before the amount goes after it and the other way round (one pass: never moved back)."""
    both = re.compile(f"{_CUR_BEFORE.pattern}|{_CUR_AFTER.pattern}")

    def move(m: re.Match) -> str:
        if m.group(1) is not None:  # currency before: "DM 1169", "$1,000"
            return f"{m.group(2)} {m.group(1)}"
        cur = m.group(4)
        return f"{cur}{m.group(3)}" if cur in _SYMBOLS else f"{cur} {m.group(3)}"

    return both.sub(move, text)


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def in_words(n: int) -> str:
    """A whole number from 0 to 999,999,999,999 in English words (short scale): 1169 -> 'one thousand one
    hundred sixty-nine'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + in_words(n % 100) if n % 100 else "")
    for size, name in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if n >= size:
            return in_words(n // size) + " " + name + (" " + in_words(n % size) if n % size else "")
    raise ValueError(n)


def numbers_to_words(text: str, rng: random.Random) -> str:
    def words(m: re.Match) -> str:
        value = int(re.sub(r"\D", "", m.group(1)))
        return in_words(value) if value < 10**12 else m.group(1)

    return _INTEGER.sub(words, text)


@dataclass(frozen=True)
class Perturbation:
    name: str
    what: str  # one phrase for the report
    fn: Callable[..., str] | None  # None: made from the rows (field_order)


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in [
    Perturbation("typos", "character typos (swapped, dropped, doubled or neighbouring letters)", typos),
    Perturbation("uppercase", "the text in capitals", lambda t, rng: t.upper()),
    Perturbation("lowercase", "the text in small letters", lambda t, rng: t.lower()),
    Perturbation("punctuation", "punctuation removed", punctuation),
    Perturbation("whitespace", "spaces doubled and put before punctuation", whitespace),
    Perturbation("number_format", "numbers grouped another way (1000 / 1,000 / 1 000)", number_format),
    Perturbation("currency", "currency sign or code moved to the other side of the amount", currency),
    Perturbation("numbers_to_words", "whole numbers written out in words", numbers_to_words),
    Perturbation("field_order", "the template's sentences in another order", None),
]}


# ---------------------------------------------------------------- templated text: the order of fields

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def template_sentences(template: str) -> tuple[list[str], str]:
    """The template split into sentences (each a template of its own), or ([], why it cannot be). A sentence ends
    at `.`, `!` or `?` followed by white space in the template's literal text, never inside a `{{ }}`."""
    if re.search(r"\{%|\{#", template):
        return [], "the text template has control blocks or comments, so its sentences cannot be reordered safely"
    pieces, pos, out, cur = [], 0, [], ""
    for m in _TAG.finditer(template):
        pieces.append(("text", template[pos:m.start()]))
        pieces.append(("tag", m.group(0)))
        pos = m.end()
    pieces.append(("text", template[pos:]))
    for kind, s in pieces:
        if kind == "tag":
            cur += s
            continue
        parts = _SENTENCE_END.split(s)
        for i, part in enumerate(parts):
            cur += part
            if i < len(parts) - 1:
                out.append(cur)
                cur = ""
    out.append(cur)
    out = [s.strip() for s in out if s.strip()]
    if len(out) < 2:
        return [], "the text template is one sentence, so there is no order of fields to change"
    return out, ""


def _field_order(ctx: CheckContext, rows: np.ndarray) -> tuple[list[str], str]:
    """Each sampled row's text with the template's sentences shuffled (never the identity order), or ([], why)."""
    from audit.data import parse_template, template_columns, template_env

    recipe = getattr(ctx.manifest, "text", None)
    if recipe is None or getattr(recipe, "template", None) is None:
        return [], "the text is a column of the data, not a template over columns, so it has no order of fields"
    if ctx.frame is None:
        return [], "the eval rows' columns are not available to this check"
    sentences, why = template_sentences(recipe.template)
    if why:
        return [], why
    for s in sentences:
        parse_template(s)
    env = template_env()
    compiled = [env.from_string(s) for s in sentences]
    cols = sorted(template_columns(recipe.template))
    df = ctx.frame.iloc[rows]
    records = df[cols].astype(object).where(df[cols].notna(), "").to_dict("records") if cols else [{}] * len(df)
    out = []
    for i, rec in zip(rows.tolist(), records):
        rng = _rng(ctx, "field_order", i)
        order = list(range(len(compiled)))
        while order == sorted(order):
            rng.shuffle(order)
        rendered = [compiled[j].render(rec).strip() for j in order]
        out.append(" ".join(r for r in rendered if r))
    return out, ""


# ---------------------------------------------------------------- perturb, re-score, measure


@dataclass
class Perturbed:
    """One perturbation of the sampled eval texts: which rows it changed and their scores before and after."""

    name: str
    rows: np.ndarray  # eval rows whose text it changed
    before: list[str]
    after: list[str]
    old: np.ndarray
    new: np.ndarray
    old_fav: np.ndarray | None = None  # 1 where the decision is favourable, before and after (audit.rescore)
    new_fav: np.ndarray | None = None
    old_cls: np.ndarray | None = None  # the decided class, before and after
    new_cls: np.ndarray | None = None
    same_tokens: int = 0  # changed rows that the model's tokenizer reads as the same tokens (score unchanged)
    scanned: int = 0  # rows the perturbation was applied to
    why_none: str = ""  # why it could not be applied at all (free text for field_order)


class _LazyRandom:
    """A random.Random seeded with `seed` on first use: most perturbations of most rows draw nothing, and seeding a
    Mersenne Twister costs more than the perturbation itself."""

    def __init__(self, seed: str):
        self._seed = seed
        self._rng: random.Random | None = None

    def __getattr__(self, name: str):
        if self._rng is None:
            self._rng = random.Random(self._seed)
        return getattr(self._rng, name)


def _rng(ctx: CheckContext, name: str, row: int) -> Any:
    """The generator of one perturbation of one row: the same draws as random.Random(f"{seed}:{name}:{row}")."""
    return _LazyRandom(f"{ctx.seed}:{name}:{row}")


def _sample(ctx: CheckContext, rows: int) -> np.ndarray:
    n = len(ctx.texts)
    if not rows or rows >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(ctx.seed)
    return np.sort(rng.choice(n, size=int(rows), replace=False)).astype(np.int64)


def _token_ids(ctx: CheckContext, texts: list[str]) -> list[list[int]] | None:
    tok = getattr(ctx.bundle, "tokenizer", None)
    manifest = getattr(ctx.bundle, "manifest", None)
    if tok is None or not callable(tok) or not texts:
        return None
    max_length = getattr(manifest, "max_length", 512)
    return tok(list(texts), truncation=True, max_length=max_length)["input_ids"]


def _perturbed(ctx: CheckContext, names: list[str], typo_rate: float, rows: int) -> dict[str, Perturbed]:
    """The perturbations `names` of the sampled rows, computed once per run (ctx.shared.robustness): every
    perturbed text that the model would read differently is re-scored in one batched call."""
    from audit.rescore import rescore, run_decisions

    cache = ctx.shared.robustness
    sample = _sample(ctx, rows)
    run = run_decisions(ctx)
    pending: list[tuple[tuple, Perturbed, list[int]]] = []
    for name in names:
        key = (name, float(typo_rate) if name == "typos" else None, int(rows), ctx.seed)
        if key in cache:
            continue
        p = PERTURBATIONS[name]
        if p.fn is None:
            after_all, why = _field_order(ctx, sample)
        else:
            fn = (lambda t, rng: typos(t, rng, typo_rate)) if name == "typos" else p.fn
            after_all, why = [fn(ctx.texts[i], _rng(ctx, name, i)) for i in sample.tolist()], ""
        keep = [j for j, t in enumerate(after_all) if t != ctx.texts[sample[j]]]
        idx = sample[keep] if keep else np.zeros(0, dtype=np.int64)
        before = [ctx.texts[i] for i in idx.tolist()]
        after = [after_all[j] for j in keep]
        old = np.asarray(ctx.score, dtype=float)[idx]
        out = Perturbed(name, idx, before, after, old, old.copy(), run.favourable[idx], run.favourable[idx].copy(),
                        run.predicted[idx], run.predicted[idx].copy(), scanned=len(sample), why_none=why)
        ids_before, ids_after = _token_ids(ctx, before), _token_ids(ctx, after)
        to_score = list(range(len(after)))
        if ids_before is not None and ids_after is not None:
            to_score = [j for j in to_score if ids_before[j] != ids_after[j]]
            out.same_tokens = len(after) - len(to_score)
        pending.append((key, out, to_score))
    texts = [o.after[j] for _, o, js in pending for j in js]
    if texts:
        got = rescore(ctx, texts, desc="robustness perturbations")
        at = 0
        for _, o, js in pending:
            o.new[js] = got.score[at:at + len(js)]
            o.new_fav[js] = got.favourable[at:at + len(js)]
            o.new_cls[js] = got.predicted[at:at + len(js)]
            at += len(js)
    for key, o, _ in pending:
        cache[key] = o
    return {name: cache[(name, float(typo_rate) if name == "typos" else None, int(rows), ctx.seed)]
            for name in names}


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _interval(reps: np.ndarray, confidence: float) -> list[float | None]:
    if reps.size == 0:
        return [None, None]
    return list(stats.percentile_interval(reps, confidence))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _names(perturbations: Any) -> tuple[list[str], bool]:
    """(the perturbations asked, whether the policy named them)."""
    if isinstance(perturbations, str):
        perturbations = [perturbations]
    named = [str(p) for p in perturbations or []]
    return (list(dict.fromkeys(named)), True) if named else (list(PERTURBATIONS), False)


def _measure(ctx: CheckContext, check_id: str, stat: str, params: dict) -> Measurement:
    m = Measurement(check_id, None, n=0)
    if not ctx.texts or len(ctx.texts) != len(ctx.score):
        m.inconclusive = "the eval texts are not available to this check"
        return m
    if ctx.bundle is None or getattr(ctx.bundle, "model", None) is None:
        m.inconclusive = "the run has no model loaded to re-score the perturbed texts"
        return m
    names, named = _names(params.get("perturbations"))
    floor = int(params.get("min_group_size") or 0) or ctx.min_group_size
    examples = max(int(params.get("examples", 3)), 0)
    outcomes = _perturbed(ctx, names, float(params.get("typo_rate", 0.1)), int(params.get("rows") or 0))
    from audit.rescore import decision_label

    W = ctx.weights
    replicated = W.shape[0] > 1
    thr = ctx.threshold
    ids = None
    if ctx.frame is not None and ctx.manifest is not None and getattr(ctx.manifest, "id_column", None):
        ids = ctx.frame[ctx.manifest.id_column].astype(str).tolist()
    entries, parts, not_applicable = [], [], []
    for name in names:
        o = outcomes[name]
        k = len(o.rows)
        if not k and not named:
            not_applicable.append({"perturbation": name, "what": PERTURBATIONS[name].what,
                                   "why": o.why_none or "it changed none of the eval texts"})
            continue
        flips = o.old_cls != o.new_cls  # binary: the decision at the threshold; more classes: the decided class
        delta = o.new - o.old
        Wc = W[:, o.rows]
        total = Wc.sum(axis=1)
        flip_rate = _div(Wc @ flips.astype(float), total)
        mean_abs = _div(Wc @ np.abs(delta), total)
        v = flip_rate if stat == "flip_rate" else mean_abs
        low, high = _interval(v[1:], ctx.confidence) if replicated and k else [None, None]
        why, few = "", ""
        if not k:
            why = f"the '{name}' perturbation changed none of the eval texts" + (f": {o.why_none}" if o.why_none else "")
        elif k < floor:
            texts = "text" if k == 1 else "texts"
            few = f"the '{name}' perturbation changed only {k} eval {texts} (at least {floor} needed for a pass)"
        if not why and _f(v[0]) is not None and replicated and low is None:
            why = f"the interval of the '{name}' perturbation is undefined on too many bootstrap replicates"
        order = np.lexsort((o.rows, -np.abs(delta), ~flips))[:examples]
        entry = {
            "perturbation": name, "what": PERTURBATIONS[name].what, "rows_scanned": o.scanned,
            "rows_changed": k, "rows_same_tokens": o.same_tokens, "value": _f(v[0]), "ci_low": low,
            "ci_high": high, "inconclusive": why or None, "incomplete": few or None,
            "flip_rate": _f(flip_rate[0]), "flip_rate_ci": _interval(flip_rate[1:], ctx.confidence) if k else [None, None],
            "flips": int(flips.sum()),
            "flips_to_favourable": int(((o.old_fav == 0) & (o.new_fav == 1)).sum()),
            "flips_to_unfavourable": int(((o.old_fav == 1) & (o.new_fav == 0)).sum()),
            "mean_abs_score_change": _f(mean_abs[0]),
            "mean_abs_score_change_ci": _interval(mean_abs[1:], ctx.confidence) if k else [None, None],
            "max_abs_score_change": _f(np.abs(delta).max()) if k else None,
            "examples": [{"row": int(o.rows[j]), "id": ids[o.rows[j]] if ids else str(int(o.rows[j])),
                          "before": _clip(pii.redact(o.before[j])), "after": _clip(pii.redact(o.after[j])),
                          "score_before": _f(o.old[j]), "score_after": _f(o.new[j]),
                          "decision_before": decision_label(ctx, o.old_fav[j], o.old_cls[j]),
                          "decision_after": decision_label(ctx, o.new_fav[j], o.new_cls[j]),
                          "flipped": bool(flips[j])} for j in order],
        }
        entries.append(entry)
        parts.append(Part(name, kind="perturbation", value=entry["value"], ci_low=low, ci_high=high, n=k,
                          inconclusive=why or None, incomplete=few or None))
    m.parts = parts
    changed = [outcomes[e["perturbation"]].rows for e in entries]
    m.n = int(len(np.unique(np.concatenate(changed)))) if changed else 0
    if not parts:
        m.inconclusive = "no perturbation changed any eval text, so there is no evidence either way"
    judged = [p for p in parts if p.value is not None and not p.inconclusive] or [p for p in parts if p.value is not None]
    worst = max(judged, key=lambda p: p.value) if judged else None
    if worst is not None:
        m.value, m.ci_low, m.ci_high = worst.value, worst.ci_low, worst.ci_high
    m.details = {
        "statistic": stat, "decision_threshold": thr, "favourable_label": ctx.positive_label,
        "min_group_size": floor, "typo_rate": float(params.get("typo_rate", 0.1)),
        "rows_total": len(ctx.texts), "rows_scanned": int(outcomes[names[0]].scanned) if names else 0,
        "rows_changed": m.n, "perturbations": entries, "not_applicable": not_applicable,
        "worst": worst.name if worst else None,
        **({"favourable": ctx.classes.favourable_labels, "classes": list(ctx.classes.labels),
            "flip": "any change of the decided (most probable) class"} if ctx.multiclass else {}),
        "caveats": ["Only texts that a perturbation changed count; each perturbation is judged on its own, on the "
                    "texts it changed, and the value shown is the worst perturbation's.",
                    "Rows whose changed text the model's tokenizer reads as the same tokens keep their score: the "
                    "model cannot see that change at all.",
                    "These are harmless changes chosen in advance, not a search for the worst input (an "
                    "adversarial attack would find more flips)."],
    }
    return m


def _validate(params: dict) -> None:
    names = params.get("perturbations")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        raise ValueError("perturbations must be a list of names")
    unknown = [str(n) for n in names if str(n) not in PERTURBATIONS]
    if unknown:
        from audit.yamlsrc import closest

        raise ValueError(f"unknown perturbation '{unknown[0]}'{closest(unknown[0], PERTURBATIONS)} "
                         f"(known: {', '.join(PERTURBATIONS)})")
    rate = params.get("typo_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise ValueError(f"typo_rate must be a number above 0 and at most 1, got {rate!r}")
    for key in ("rows", "examples", "min_group_size"):
        v = params.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{key} must be a whole number of at least 0, got {v!r}")


@check("robustness.flip_rate", classes="any", title="Decision flip rate under harmless changes", direction="lower", unit="rate",
       params=PARAMS, cost="robustness", validate=_validate, evidence="texts the perturbation changed")
def flip_rate(ctx: CheckContext, **params) -> Measurement:
    """Share of eval texts whose decision changes under a harmless change (typos, case, punctuation, number formats, field order), worst perturbation.

    Each perturbation is judged on its own, over the texts it changed. A typo or a `1,000` for `1000` says
    nothing new about the applicant: a model whose decision moves with them decides on the form of the text, and
    an applicant could be declined for a typing slip. For a model of more than two classes a flip is any change
    of the decided (most probable) class, favourable or not: a text routed elsewhere because of a typo is a
    flip; details count the flips to and from the favourable outcome apart. A rate near 0 is what a sound model
    shows; compare the perturbations with each other to see which form the model is sensitive to."""
    return _measure(ctx, "robustness.flip_rate", "flip_rate", params)


@check("robustness.score_change", classes="favourable", title="Mean score change under harmless changes", direction="lower",
       unit="rate", params=PARAMS, cost="robustness", validate=_validate, evidence="texts the perturbation changed")
def score_change(ctx: CheckContext, **params) -> Measurement:
    """Mean absolute change of the score under a harmless change of the text, worst perturbation.

    The score is the probability of the favourable outcome (for a model of more than two classes, the sum over
    the favourable classes). It counts every change, also those that do not cross the threshold: a score that
    moves by 0.05 when the full stops are removed shows a model that reads the form of the text, even if few
    decisions flip on this eval set; on applicants closer to the threshold they would."""
    return _measure(ctx, "robustness.score_change", "score_change", params)

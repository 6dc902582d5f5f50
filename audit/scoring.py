"""Score a dataset once: batched, rows sorted by token length (little padding), under inference_mode.

Returns `Predictions`, which every check of the run reads: class probabilities, the positive-label score,
per-row loss when labels are known, token lengths and how many texts were truncated, and optionally the
mean-pooled last-layer embeddings from the same pass.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np


# Free heap pages go back to the system after every batch, not only after the call: a call of many batches of
# different lengths (SHAP's masked texts, a set sorted by length) otherwise grows the heap by each new shape
# (audit.heap). Issue 18: on the reference job the peak RSS fell from about 1,100 to 1,021 MiB with it; time was
# the same within noise (1,000 masked texts, 3 alternating rounds in one process).
TRIM_EACH_BATCH = True


@dataclass
class Predictions:
    probs: np.ndarray  # (n, num_labels)
    positive_index: int
    lengths: np.ndarray  # tokens per row after truncation
    truncated: int  # rows longer than max_length
    seconds: float
    loss: np.ndarray | None = None  # per-row cross-entropy when labels were given
    embeddings: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    stats: Any = None  # audit.mergeable.AuditStats of the rows, when the engine was asked for it

    @property
    def score(self) -> np.ndarray:
        return self.probs[:, self.positive_index]

    @property
    def rows_per_s(self) -> float:
        return len(self.probs) / self.seconds if self.seconds > 0 else float("inf")


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Token ids per text (truncated to max_length) and the untruncated lengths."""
    enc = tokenizer(list(texts), truncation=False, add_special_tokens=True, return_attention_mask=False,
                    return_token_type_ids=False, verbose=False)
    ids = enc["input_ids"]
    full = np.array([len(x) for x in ids])
    if (full > max_length).any():
        sep = tokenizer.sep_token_id
        ids = [x if len(x) <= max_length else x[: max_length - 1] + ([sep] if sep is not None else [x[-1]])
               for x in ids]
    return ids, full


def pad_batch(ids: list[list[int]], pad_id: int):
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return input_ids, mask


def score_texts(model, tokenizer, texts: list[str], *, max_length: int, positive_index: int,
                batch_size: int = 64, labels: np.ndarray | None = None, embeddings: bool = False,
                progress: bool = True, desc: str = "scoring", memo: dict | None = None) -> Predictions:
    """`memo` (text -> where an earlier call of the same model and max_length put its row): a text found there
    (with its embedding, when `embeddings`) is not scored again but given that row, bit for bit, so that a text
    the run has already scored has one score in every set; the texts scored here are added to it."""
    import torch

    from audit.progress import bar as progress_bar

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        from audit.errors import UsageError

        raise UsageError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    start = time.perf_counter()
    # Identical texts are scored once: they get bit-identical scores (batch padding would otherwise add noise of
    # ~1e-7 that decides how ties rank) and templated data repeats itself.
    unique: dict[str, int] = {}
    back = np.array([unique.setdefault(t, len(unique)) for t in texts], dtype=np.int64)
    all_texts = texts
    every = list(unique)
    known = {} if memo is None else {i: memo[t] for i, t in enumerate(every)
                                     if t in memo and (not embeddings or memo[t].emb is not None)}
    todo = np.array([i for i in range(len(every)) if i not in known], dtype=np.int64)
    texts = [every[i] for i in todo]
    ids, full = tokenize(tokenizer, texts, max_length) if texts else ([], np.zeros(0, dtype=np.int64))
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")  # longest first: the largest batch shows its cost at once
    n = len(texts)
    probs = np.zeros((n, model.config.num_labels), dtype=np.float64)
    emb = None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.eval()
    done = 0
    from audit.heap import release

    last = None if embeddings else cls_only_last_layer(model)
    with torch.inference_mode(), progress_bar(total=n, desc=desc, unit="row", progress=progress) as bar, \
            (last if last is not None else nullcontext()):
        for lo in range(0, n, batch_size):
            rows = order[lo: lo + batch_size]
            input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
            if last is not None:
                last.key_mask = mask
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=embeddings)
            probs[rows] = torch.softmax(out.logits.float(), dim=-1).double().numpy()
            if embeddings:
                hidden = out.hidden_states[-1].float()
                m = mask.unsqueeze(-1).float()
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                if emb is None:
                    emb = np.zeros((n, pooled.shape[1]), dtype=np.float32)
                emb[rows] = pooled.numpy()
            bar.update(len(rows))
            done += len(rows)
            if TRIM_EACH_BATCH and n > batch_size:
                del out
                release()
    if done != n:  # every row is scored, or none is reported: a zero left in `probs` is not a score
        raise RuntimeError(f"scored {done} of {n} texts")

    if n:
        release()  # activations of many shapes leave glibc's heap fragmented: give the free pages back
    if known:
        probs, lengths, full, emb = _with_known(len(every), todo, known, probs, lengths, full, emb, embeddings)
    if memo is not None:
        for i in todo:
            memo[every[i]] = MemoRow(probs, emb if embeddings else None, lengths, full, int(i))
    if len(every) < len(all_texts):  # else `back` is the identity (and the memo shares these arrays)
        probs, lengths, full = probs[back], lengths[back], full[back]
        if emb is not None:
            emb = emb[back]
    n = len(all_texts)
    loss = None
    if labels is not None:
        loss = -np.log(np.clip(probs[np.arange(n), labels], 1e-300, None))
    return Predictions(probs=probs, positive_index=positive_index, lengths=lengths,
                       truncated=int((full > max_length).sum()), seconds=time.perf_counter() - start,
                       loss=loss, embeddings=emb,
                       meta={"batch_size": batch_size, "max_length": max_length, "unique_texts": len(every),
                             "scored_texts": len(texts)})


@dataclass
class MemoRow:
    """Where a scored text's row is (score_texts' `memo`): row `row` of its call's arrays of unique texts."""

    probs: np.ndarray
    emb: np.ndarray | None
    lengths: np.ndarray
    full: np.ndarray
    row: int


def _with_known(n: int, todo: np.ndarray, known: dict[int, MemoRow], probs, lengths, full, emb, embeddings: bool):
    """The arrays of all `n` unique texts: rows `todo` from this call, the others from the memo."""
    out_p = np.zeros((n, probs.shape[1]), dtype=np.float64)
    out_l, out_f = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    out_p[todo], out_l[todo], out_f[todo] = probs, lengths, full
    out_e = None
    if embeddings:
        width = next(iter(known.values())).emb.shape[1]
        out_e = np.zeros((n, width), dtype=np.float32)
        if len(todo):
            out_e[todo] = emb
    for i, hit in known.items():
        out_p[i], out_l[i], out_f[i] = hit.probs[hit.row], hit.lengths[hit.row], hit.full[hit.row]
        if out_e is not None:
            out_e[i] = hit.emb[hit.row]
    return out_p, out_l, out_f, out_e


# Classifiers whose head reads only position 0 of the last layer, and whose encoder layers are BERT's layer
# (self-attention query/key/value, attention output, intermediate, output): class name -> (encoder attribute,
# layer class name, whether the head reads the pooler). Each is proven against the plain forward pass in
# tests/test_architectures.py; any other class is scored by the plain forward pass.
CLS_ONLY = {
    "BertForSequenceClassification": ("bert", "BertLayer", True),
    "RobertaForSequenceClassification": ("roberta", "RobertaLayer", False),
    "XLMRobertaForSequenceClassification": ("roberta", "XLMRobertaLayer", False),
    "ElectraForSequenceClassification": ("electra", "ElectraLayer", False),
}


def cls_only_last_layer(model):
    """For a classifier whose head reads only the first position (BERT's pooler over [CLS]; the <s> position of
    RoBERTa's, XLM-RoBERTa's and ELECTRA's classification heads): a context manager that, while scoring, computes
    the last encoder layer for that position only, or None where that does not apply.

    In the last layer only the first row of the output feeds the head: its query, attention output and
    feed-forward network are computed for that one position instead of all of them (keys and values still for
    every position). Same arithmetic on the rows that matter; measured |Δ score| against the full forward pass
    1.2e-7 on the reference job's 600 texts, tested below 1e-6 (tests/test_precision.py, and per architecture in
    tests/test_architectures.py); 15% less scoring time there, 7% less SHAP time. Not used when embeddings (the
    last layer at every position) are asked for, nor for LoRA-wrapped models, architectures outside `CLS_ONLY`
    (DistilBERT, DeBERTa-v2: the plain forward pass) or variants with cross-attention, relative positions or
    chunked feed-forward."""
    if type(model).__name__ == "Bf16" and hasattr(model, "inner"):  # with_precision's autocast wrapper
        model = model.inner
    config = getattr(model, "config", None)
    known = CLS_ONLY.get(type(model).__name__)
    if known is None or config is None:
        return None
    attr, layer_name, pooled = known
    base = getattr(model, attr, None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if (base is None or not layers or type(layers[-1]).__name__ != layer_name
            or (pooled and getattr(base, "pooler", None) is None)
            or config.is_decoder or config.add_cross_attention
            or getattr(config, "chunk_size_feed_forward", 0)
            or getattr(config, "position_embedding_type", "absolute") != "absolute"):
        return None
    sa = getattr(getattr(layers[-1], "attention", None), "self", None)
    if sa is None or not all(hasattr(sa, a) for a in ("query", "key", "value", "scaling", "num_attention_heads",
                                                      "attention_head_size")):
        return None
    return _ClsOnly(layers)


class _ClsOnly:
    def __init__(self, layers):
        self.layers, self.key_mask, self.full = layers, None, None

    def __enter__(self):
        import torch

        full = self.full = self.layers[-1]
        outer = self

        class ClsOnlyLayer(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = full

            def forward(self, hidden_states, *args, **kwargs):
                import torch.nn.functional as F

                sa = full.attention.self
                b, t, _ = hidden_states.shape
                heads, d = sa.num_attention_heads, sa.attention_head_size
                first = hidden_states[:, :1]
                q = sa.query(first).view(b, 1, heads, d).transpose(1, 2)
                k = sa.key(hidden_states).view(b, t, heads, d).transpose(1, 2)
                v = sa.value(hidden_states).view(b, t, heads, d).transpose(1, 2)
                bias = None
                if outer.key_mask is not None:
                    keep = outer.key_mask.to(torch.bool)[:, None, None, :]
                    bias = torch.zeros(keep.shape, dtype=q.dtype).masked_fill(~keep, torch.finfo(q.dtype).min)
                context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=sa.scaling)
                context = context.transpose(1, 2).reshape(b, 1, heads * d)
                attended = full.attention.output(context, first)
                return full.output(full.intermediate(attended), attended)

        self.layers[-1] = ClsOnlyLayer()
        return self

    def __exit__(self, *exc):
        self.layers[-1] = self.full
        return False


PRECISIONS = ("fp32", "bf16")


def with_precision(model, precision: str):
    """The model itself for fp32; for bf16, a wrapper that runs its forward pass under bfloat16 autocast (matrix
    products in bf16 on AMX/AVX-512-BF16, weights, layer norms and softmax kept in fp32). Opt-in only: the audit
    must score the model as trained, so a bf16 run states its precision and its largest |score difference|
    against fp32 on a sample."""
    if precision == "fp32":
        return model
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    import torch

    class Bf16(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, *args, **kwargs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(*args, **kwargs)

    wrapped = Bf16(model)
    wrapped.eval()
    return wrapped


def precision_check(model_fp32, tokenizer, texts: list[str], low_scores: np.ndarray, *, max_length: int,
                    positive_index: int, sample: int = 256, seed: int = 0, batch_size: int = 64,
                    threshold: float = 0.5) -> dict:
    """Score a seeded sample of `texts` in fp32 and compare with `low_scores`, the run's reduced-precision scores of
    all of them: the largest and mean |score difference|, and how many decisions at `threshold` differ."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(texts), size=min(sample, len(texts)), replace=False)) if texts else np.array([], int)
    if not len(idx):
        return {"rows": 0, "max_abs_score_diff": 0.0, "mean_abs_score_diff": 0.0, "flipped_decisions": 0}
    a = score_texts(model_fp32, tokenizer, [texts[i] for i in idx], max_length=max_length,
                    positive_index=positive_index, batch_size=batch_size, progress=False).score
    b = np.asarray(low_scores)[idx]
    d = np.abs(a - b)
    return {"rows": len(idx), "max_abs_score_diff": float(d.max()), "mean_abs_score_diff": float(d.mean()),
            "flipped_decisions": int(((a >= threshold) != (b >= threshold)).sum())}

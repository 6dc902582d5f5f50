"""Rows of the model's training split in the data it is audited on.

An audit measures how a model does on data it has not seen; rows it was trained on flatter every number (a
model that memorised them scores them well). With `--data FILE`, the eval rows are checked against the
manifest's training split: when FILE is the training file itself (same sha256), by the split's row numbers;
otherwise by the text the model reads, compared by sha256 with the texts of the training split (the training
file is read only then, and only when it is still there unchanged). The policy's `training_rows_in_eval` says
what to do with the rows found:

- `warn` (the default): keep them, with a warning naming how many and what share: every number that includes
  them overstates the model.
- `exclude`: leave them out and audit the others, with the same warning. The numbers then describe held-out
  rows only.
- `refuse`: exit 2 before the model loads, naming how many rows. A refusal is the tool not running on data the
  policy forbids, like a missing column: there is no measurement to judge, so it is not a finding.

Why `warn` is the default: a text match is not always a training row. Text made by a template over a few
columns repeats across distinct records (two applicants with the same job, age band and purpose read the same),
so a fresh file can share many texts with the training split; dropping them, or refusing the run, by default
would change or stop audits that are sound. A release gate that must not judge on training rows says
`exclude` or `refuse`.

The count, the share, how they were found and what was done are in result.json (`data.eval.training_rows`) and
in the report's warnings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from audit.data import find_source, make_texts, read_table, sha256_file, text_key
from audit.errors import DataError, UsageError
from audit.model import ModelBundle


def training_overlap(bundle: ModelBundle, path: Path, digest: str, frame, texts: list[str]) -> tuple[Any, str]:
    """(a mask of the eval rows that are training rows, how they were found), or (None, why it was not checked;
    "" when the manifest records no training data). The same file as the manifest's training file (by sha256):
    the rows of its training split (by row number). Another file: rows whose text is the text of a row of the
    training split (compared by sha256 of the text the model reads)."""
    m = bundle.manifest
    if m.data is None:
        return None, ""
    if digest == m.data.source.sha256:
        mask = np.isin(np.asarray(frame.index), np.asarray(m.data.split.train_index, dtype=np.int64))
        return mask, "the --data file is the model's training file (same sha256) and these rows are in its training split"
    try:
        src = find_source(m.data.source.path, bundle.path)
    except DataError:
        return None, (f"the training file the manifest names ({m.data.source.path}) is not there, so the eval rows "
                      "were not checked against the training split")
    if sha256_file(src) != m.data.source.sha256:
        return None, (f"the training file {src} changed since the model was trained, so the eval rows were not "
                      "checked against the training split")
    train = read_table(src).iloc[m.data.split.train_index]
    seen = {text_key(t) for t in make_texts(train, m.text, src)}
    mask = np.fromiter((text_key(t) in seen for t in texts), dtype=bool, count=len(texts))
    return mask, f"their text is the text of a row of the training split of {src.name} (compared by sha256)"


def apply_policy(bundle: ModelBundle, path: Path, digest: str, frame, texts: list[str], mode: str,
                   notes: list[str]):
    """Apply the policy's training_rows_in_eval: (frame, texts, a record for result.json or None)."""
    if mode not in TRAINING_ROWS_MODES:
        raise UsageError(f"training_rows_in_eval: {mode!r}; choose one of {', '.join(TRAINING_ROWS_MODES)}")
    mask, how = training_overlap(bundle, path, digest, frame, texts)
    if mask is None:
        if how:
            notes.append(f"Training rows in the eval data: not checked; {how}.")
        return frame, texts, None
    k, n = int(mask.sum()), len(texts)
    record = {"rows": k, "eval_rows": n, "share": k / n if n else 0.0, "how": how, "action": mode}
    if not k:
        return frame, texts, record
    found = f"{k:,} of the {n:,} eval rows ({k / n:.1%}) are rows the model was trained on: {how}"
    if mode == "refuse":
        raise DataError(f"{path}: {found}; the policy's training_rows_in_eval is 'refuse' (audit held-out data, "
                        "or set it to exclude or warn)")
    if mode == "exclude":
        if k == n:
            raise DataError(f"{path}: {found}, so no row is left to audit (training_rows_in_eval: exclude); "
                            "audit held-out data")
        keep = ~mask
        frame = frame[keep]
        texts = [t for t, ok in zip(texts, keep) if ok]
        record["rows_audited"] = n - k
        notes.append(f"{found}. They were left out (the policy's training_rows_in_eval: exclude); the audit "
                     f"measures the other {n - k:,} rows.")
    else:
        notes.append(f"{found}. They were kept (the policy's training_rows_in_eval: warn): every number that "
                     "includes them overstates how the model does on data it has not seen.")
    return frame, texts, record


TRAINING_ROWS_MODES = ("warn", "exclude", "refuse")

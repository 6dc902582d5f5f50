"""Where the big scoring passes run: here (`local`, the default) or on Ray workers (`--engine ray`).

    Engine (Protocol)   score(bundle, texts, ..., stats=) -> Predictions; score_many(bundle, jobs) -> {name:
                        Predictions}; `distributed`; describe() -> result.json's scoring fields; close()
    ├── LocalEngine     audit.scoring.score_texts in this process (the numbers of every earlier release)
    └── RayEngine       Ray Data: the texts in partitions, an actor pool of `workers` actors that each open and
                        load the model folder once (same safety checks), results merged here in row order

The runner depends on `Engine` alone. A new engine (another cluster, a batch service) implements its five
members; `make_engine` maps the CLI's --engine names to engines, and any object that keeps the protocol can be
passed to `audit.run(engine=...)` as it is.

The runner scores the eval set and every other data set of the run (`train`, `--current`) through the engine.
Re-scoring of changed texts by the checks (counterfactual swaps, SHAP maskers: `CheckContext.score_texts`)
stays in this process: those are many small batches, for which shipping work to a cluster costs more than it
saves.

How the Ray engine forms partitions, so that its scores equal the local engine's: identical texts are scored
once (as locally), the unique texts are tokenized here and sorted longest first (as locally), and that order is
cut into partitions whose size is a multiple of the batch size. Each worker then forms exactly the batches the
local engine forms, so the scores are the same computation; they can differ only through the torch thread
count of the worker (measured: 0 on the tiny test model, tested against a tolerance of 1e-6).

Ray is an optional extra (`pip install 'audit[ray]'`); nothing imports it unless `--engine ray` is asked.
Ray is started without a dashboard and with usage statistics off (nothing leaves the machine); `--address`
connects to an existing cluster instead, whose nodes must see the model folder at the same path and have
`audit` installed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from audit.errors import AuditError, ModelError, UsageError

ENGINES = ("local", "ray")
INSTALL_HINT = "pip install 'audit[ray]'"


@dataclass
class StatsRequest:
    """Ask an engine for the scored rows' mergeable statistics (audit.mergeable.AuditStats) as well: the grid,
    each protected attribute's defined groups, and per row (in the order of the texts) its id, whether its true
    label is the positive one, and its group names (None where missing). The Ray engine computes them on the
    workers, one AuditStats per partition, and merges them here; the local engine computes the one partition."""

    grid: Any  # audit.mergeable.Grid
    known: dict[str, list[str]]
    row_ids: list[str]
    y: np.ndarray  # 1 where the true label is the positive label
    groups: dict[str, np.ndarray]

    def empty(self):
        from audit.mergeable import AuditStats

        return AuditStats.empty(self.grid, self.known)

    def of_rows(self, rows: np.ndarray, score: np.ndarray):
        """The statistics of the given rows (indices into the request's rows) with their scores."""
        stats = self.empty()
        ids = np.asarray(self.row_ids, dtype=object)
        stats.update(ids[rows], score, np.asarray(self.y)[rows], {a: g[rows] for a, g in self.groups.items()})
        return stats


@dataclass
class ScoringJob:
    """One data set for `RayEngine.score_many`: its texts, label indices (for the loss), whether to keep
    embeddings, and optionally the statistics to compute on the workers."""

    texts: list[str]
    labels: np.ndarray | None = None
    embeddings: bool = True
    stats: StatsRequest | None = None


@runtime_checkable
class Engine(Protocol):
    """What the runner asks of a scoring engine, and all it asks.

    `distributed`: False for an engine that scores here (the runner scores the eval set with `score` and each
    other data set when a check first asks for it); True for one that scores elsewhere: the runner then hands it
    every data set of the run in one `score_many` pass (one model load per worker for the whole run) and asks
    for the eval set's mergeable statistics (`ScoringJob.stats`), which its workers compute beside the scores
    (Predictions.stats, the statistics; meta["stats_partitions"], how many partitions they merge)."""

    name: str  # result.json's scoring.engine
    distributed: bool

    def score(self, bundle, texts: list[str], *, batch_size: int, labels: np.ndarray | None = None,
              embeddings: bool = True, progress: bool = True, desc: str = "scoring",
              stats: StatsRequest | None = None) -> Any:
        """audit.scoring.Predictions of `texts`, in their order; with `stats`, their statistics as well."""
        ...

    def score_many(self, bundle, jobs: dict[str, ScoringJob], *, batch_size: int,
                   progress: bool = True) -> dict[str, Any]:
        """Predictions of each job, by its name: what `score` gives for each, in one pass where the engine can."""
        ...

    def describe(self) -> dict[str, Any]:
        """result.json's scoring fields of the engine ({"engine": name, ...})."""
        ...

    def close(self) -> None:
        """Release what the engine started (a cluster it started here); called once the run has scored."""
        ...


class LocalEngine:
    """Score in this process: today's `score_texts` call, unchanged."""

    name = "local"
    distributed = False

    def __init__(self) -> None:
        # Every text this engine has scored, for the model it scored it with (score_texts' memo): a text that is
        # in two sets of a run (a --current file that repeats eval rows) is scored once and has one score.
        self._memo: tuple[Any, Any, int, dict] | None = None

    def _memo_of(self, bundle) -> dict:
        memo = self._memo
        if memo is None or memo[0] is not bundle.model or memo[1] is not bundle.tokenizer \
                or memo[2] != bundle.manifest.max_length:
            self._memo = memo = (bundle.model, bundle.tokenizer, bundle.manifest.max_length, {})
        return memo[3]

    def score(self, bundle, texts: list[str], *, batch_size: int, labels: np.ndarray | None = None,
              embeddings: bool = True, progress: bool = True, desc: str = "scoring",
              stats: StatsRequest | None = None):
        from audit.scoring import score_texts

        m = bundle.manifest
        preds = score_texts(bundle.model, bundle.tokenizer, texts, max_length=m.max_length,
                            positive_index=m.labels.index(m.positive_label), batch_size=batch_size, labels=labels,
                            embeddings=embeddings, progress=progress, desc=desc, memo=self._memo_of(bundle))
        if stats is not None:
            preds.stats = stats.of_rows(np.arange(len(texts)), preds.score)
            preds.meta["stats_partitions"] = 1
        return preds

    def score_many(self, bundle, jobs: dict[str, ScoringJob], *, batch_size: int,
                   progress: bool = True) -> dict[str, Any]:
        """Each job scored with `score`, one after another (the runner does not call it: see Engine)."""
        return {name: self.score(bundle, job.texts, batch_size=batch_size, labels=job.labels,
                                 embeddings=job.embeddings, progress=progress, stats=job.stats)
                for name, job in jobs.items()}

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}

    def close(self) -> None:
        self._memo = None


def make_engine(engine: str | Engine = "local", address: str | None = None, workers: int | None = None) -> Engine:
    """An engine from its name (the CLI's --engine/--address); an engine object is returned as it is, once it
    is seen to keep the protocol."""
    if not isinstance(engine, str):
        if not isinstance(engine, Engine):
            missing = [k for k in ("name", "distributed", "score", "score_many", "describe", "close")
                       if not hasattr(engine, k)]
            raise UsageError(f"engine {type(engine).__name__}: not a scoring engine (lacks {', '.join(missing)}; "
                             "see audit.engines.Engine)")
        return engine
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "local":
        if address is not None:
            raise UsageError("--address is for --engine ray (the address of a Ray cluster)")
        return LocalEngine()
    return RayEngine(address=address, workers=workers)


def _import_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray would otherwise report usage over the network
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray Data, which is not installed ({exc}): {INSTALL_HINT}") from None
    return ray


class RayEngine:
    """Score on Ray workers: Ray Data `map_batches` over partitions with a pool of model-loading actors.

    `workers` actors (default: the cluster's CPUs divided by `cpus_per_worker`) each load the model once per
    scoring pass and run `cpus_per_worker` torch threads; `audit run` scores all its data sets in one pass
    (`score_many`), so each worker loads the model once per run. `partition_rows` fixes the partition size (rounded up
    to a multiple of the batch size); by default the texts are cut into about `partitions_per_worker` partitions
    per worker, so a slow partition does not hold the others up.
    """

    name = "ray"
    distributed = True

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_worker: int = 1,
                 partitions_per_worker: int = 4, partition_rows: int | None = None, num_cpus: int | None = None):
        if workers is not None and workers < 1:
            raise UsageError(f"Ray workers must be at least 1, got {workers}")
        self.address = address
        self.workers = workers
        self.cpus_per_worker = max(1, int(cpus_per_worker))
        self.partitions_per_worker = max(1, int(partitions_per_worker))
        self.partition_rows = partition_rows
        self.num_cpus = num_cpus  # for a Ray started here; None: all of this machine's
        self._ray = _import_ray()  # fails now, before any model loads, when Ray is missing
        self._started_here = False
        if address:
            _probe(address)  # Ray itself retries an address that does not answer for minutes

    # -------------------------------------------------------------- cluster

    def start(self) -> None:
        import logging

        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                                      "log_to_driver": False}
            if self.address is None and self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(address=self.address, **kwargs)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError from a bad address
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                hint = (" (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token)"
                        if self.address and not os.environ.get("RAY_AUTH_MODE") else "")
                raise UsageError(f"cannot start or reach {where}: {type(exc).__name__}: {_first_line(exc)}{hint}") \
                    from None
            self._started_here = True
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_operator_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        ctx.log_internal_stack_trace = False
        for name in ("ray", "ray.data"):  # a worker's error reaches the user once, as one line (exit 2)
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if self.workers is None:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = max(1, cpus // self.cpus_per_worker)

    def close(self) -> None:
        """Shut down the Ray that this engine started (a Ray started by the caller is left running)."""
        if self._started_here:
            self._ray.shutdown()
            self._started_here = False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.name, "workers": self.workers, "cpus_per_worker": self.cpus_per_worker}
        if self.address:
            out["address"] = self.address
        return out

    # -------------------------------------------------------------- scoring

    def score(self, bundle, texts: list[str], *, batch_size: int, labels: np.ndarray | None = None,
              embeddings: bool = True, progress: bool = True, desc: str = "scoring",
              stats: StatsRequest | None = None):
        """Score on the workers. With `stats`, each worker also computes its partition's mergeable statistics
        (bootstrap replicate counts included: the costly part at scale) and they are merged here."""
        job = ScoringJob(texts, labels, embeddings, stats)
        return self.score_many(bundle, {"": job}, batch_size=batch_size, progress=progress)[""]

    def score_many(self, bundle, jobs: dict[str, ScoringJob], *, batch_size: int,
                   progress: bool = True) -> dict[str, Any]:
        """Score several data sets (the eval set, the training split, the current set) in ONE Ray Data pass, so
        each worker loads the model once for the whole run. Every set is deduplicated, sorted and cut into
        partitions on its own (a batch never mixes sets), exactly as `score` would cut it."""
        from audit.scoring import tokenize

        start = time.perf_counter()
        m = bundle.manifest
        out: dict[str, Any] = {}
        live = {name: job for name, job in jobs.items() if job.texts}
        for name, job in jobs.items():
            if not job.texts:
                out[name] = LocalEngine().score(bundle, [], batch_size=batch_size, labels=job.labels,
                                                embeddings=job.embeddings, progress=False, stats=job.stats)
        if not live:
            return out
        self.start()
        plans: dict[str, dict[str, Any]] = {}
        part_idx: list[np.ndarray] = []
        part_texts: list[list[str]] = []
        part_job: list[str] = []
        stats_specs: dict[str, Any] = {}
        for name, job in live.items():
            # As the local engine: each distinct text once, longest first (one order for both engines).
            unique: dict[str, int] = {}
            back = np.array([unique.setdefault(t, len(unique)) for t in job.texts], dtype=np.int64)
            utexts = list(unique)
            ids, full = tokenize(bundle.tokenizer, utexts, m.max_length)
            order = np.argsort(-np.array([len(x) for x in ids]), kind="stable")
            parts = partition(len(utexts), batch_size, self.workers * self.partitions_per_worker,
                              self.partition_rows)
            first = len(part_idx)
            part_of = np.empty(len(utexts), dtype=np.int64)
            for p, (lo, hi) in enumerate(parts):
                part_of[order[lo:hi]] = first + p
                part_idx.append(order[lo:hi])
                part_texts.append(utexts)
                part_job.append(name)
            plans[name] = {"back": back, "full": full, "unique": len(utexts), "parts": len(parts)}
            if job.stats is not None:
                st = job.stats
                stats_specs[name] = {"grid": st.grid.to_dict(), "known": st.known, "row_part": part_of[back],
                                     "row_text": back, "row_ids": np.asarray(st.row_ids, dtype=object),
                                     "y": np.asarray(st.y, dtype=np.int64),
                                     "groups": {a: np.asarray(g, dtype=object) for a, g in st.groups.items()}}
        embeddings = any(job.embeddings for job in live.values())
        rows = _run_partitions(self._ray, bundle, part_idx, part_texts, part_job, batch_size=batch_size,
                               embeddings=embeddings, workers=self.workers, cpus_per_worker=self.cpus_per_worker,
                               progress=progress, stats=stats_specs)
        seconds = time.perf_counter() - start
        for name, job in live.items():
            out[name] = self._collect(bundle, name, job, plans[name], rows, part_job, batch_size, seconds)
        return out

    def _collect(self, bundle, name: str, job: ScoringJob, plan: dict[str, Any], rows: list[dict[str, np.ndarray]],
                 part_job: list[str], batch_size: int, seconds: float):
        """One set's Predictions from the partitions' rows, in the set's row order."""
        from audit.mergeable import AuditStats
        from audit.scoring import Predictions

        m = bundle.manifest
        n_unique, num_labels = plan["unique"], int(bundle.model.config.num_labels)
        probs = np.zeros((n_unique, num_labels), dtype=np.float64)
        lengths = np.zeros(n_unique, dtype=np.int64)
        emb = None
        seen = np.zeros(n_unique, dtype=bool)
        per_part: dict[int, dict[str, Any]] = {}
        partials: dict[int, list] = {}
        mine = np.array([j == name for j in part_job])
        for batch in rows:
            sel = mine[np.asarray(batch["part"], dtype=np.int64)]
            if not sel.any():
                continue
            if job.stats is not None:
                for p, doc in zip(batch["part"][sel], batch["stats"][sel]):
                    if doc:
                        partials.setdefault(int(p), []).append(AuditStats.from_dict(json.loads(doc)))
            i = np.asarray(batch["i"], dtype=np.int64)[sel]
            seen[i] = True
            probs[i] = np.asarray(batch["probs"], dtype=np.float64)[sel]
            lengths[i] = np.asarray(batch["length"])[sel]
            if job.embeddings:
                e = np.asarray(batch["emb"], dtype=np.float32)[sel]
                if emb is None:
                    emb = np.zeros((n_unique, e.shape[1]), dtype=np.float32)
                emb[i] = e
            for p, s, w in zip(batch["part"][sel], batch["seconds"][sel], batch["worker"][sel]):
                per_part.setdefault(int(p), {"rows": 0, "seconds": float(s), "worker": int(w)})["rows"] += 1
        if not seen.all():
            raise ModelError(f"Ray scoring returned {int(seen.sum())} of {n_unique} rows")
        back = plan["back"]
        probs, lengths, full = probs[back], lengths[back], plan["full"][back]
        if emb is not None:
            emb = emb[back]
        n = len(job.texts)
        loss = None
        if job.labels is not None:  # as audit.scoring computes it
            loss = -np.log(np.clip(probs[np.arange(n), job.labels], 1e-300, None))
        preds = Predictions(probs=probs, positive_index=m.labels.index(m.positive_label), lengths=lengths,
                            truncated=int((full > m.max_length).sum()), seconds=seconds, loss=loss, embeddings=emb,
                            meta={"batch_size": batch_size, "max_length": m.max_length, "unique_texts": n_unique,
                                  "engine": self.name, "workers": self.workers, "partitions": plan["parts"],
                                  "worker_processes": len({v["worker"] for v in per_part.values()}),
                                  "worker_pids": sorted({v["worker"] for v in per_part.values()}),
                                  "worker_seconds": round(sum(v["seconds"] for v in per_part.values()), 3)})
        if job.stats is not None:
            preds.stats = _merge_partials(partials, job.stats, n)
            preds.meta["stats_partitions"] = sum(len(v) for v in partials.values())
        return preds


def _merge_partials(partials: dict[int, list], stats: StatsRequest, n: int):
    """Merge the workers' statistics in partition order and check that every row was counted once (the checks
    put each attribute's groups in the in-memory order themselves: audit.checks.fairness.canonical_groups)."""
    merged = None
    for p in sorted(partials):
        for part in partials[p]:
            merged = part if merged is None else merged.merge(part)
    if merged is None:
        merged = stats.empty()
    if int(round(merged.rows)) != n:
        raise ModelError(f"the Ray workers' statistics count {int(round(merged.rows))} rows, the eval set has {n}")
    return merged


def _probe(address: str, timeout: float = 5.0) -> None:
    """Refuse a HOST:PORT (or ray://HOST:PORT) address where nothing answers; "auto" and others go to Ray."""
    import re
    import socket

    m = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)/?", address.strip())
    if m is None:
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def partition(n: int, batch_size: int, target: int, rows: int | None = None) -> list[tuple[int, int]]:
    """[lo, hi) ranges over n rows: about `target` partitions (or `rows` rows each), every size but the last a
    multiple of batch_size, so a partition holds whole batches of the local engine."""
    batch_size = max(1, int(batch_size))
    size = rows if rows is not None else -(-n // max(1, target))
    size = max(batch_size, -(-int(size) // batch_size) * batch_size)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _run_partitions(ray, bundle, parts: list[np.ndarray], texts: list[list[str]], jobs: list[str], *,
                    batch_size: int, embeddings: bool, workers: int, cpus_per_worker: int, progress: bool,
                    stats: dict[str, Any] | None = None) -> list[dict[str, np.ndarray]]:
    """Partition p holds the texts `texts[p][j]` for j in `parts[p]` of the data set `jobs[p]`; one Ray Data
    block each, one pass of one actor pool over all of them."""
    import pandas as pd
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().enable_progress_bars = bool(progress)
    frames = [pd.DataFrame({"i": idx.astype(np.int64), "part": np.full(len(idx), p, dtype=np.int64),
                            "text": [texts[p][j] for j in idx]}) for p, idx in enumerate(parts)]
    ds = ray.data.from_pandas(frames)  # one block per partition
    spec = {"path": str(bundle.path.resolve()), "manifest": bundle.manifest, "hashes": dict(bundle.hashes),
            "batch_size": int(batch_size), "embeddings": bool(embeddings), "threads": cpus_per_worker,
            "part_job": list(jobs), "stats": stats or {}}
    out = ds.map_batches(PartitionScorer, fn_constructor_kwargs={"spec": spec}, batch_size=None,
                         batch_format="numpy", compute=ActorPoolStrategy(size=min(workers, len(parts))),
                         num_cpus=cpus_per_worker)
    try:
        return list(out.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0))
    except Exception as exc:
        raise _worker_error(exc) from None


class PartitionScorer:
    """A Ray actor: checks and loads the model folder once, then scores whole partitions with `score_texts`, and,
    when asked, computes the mergeable statistics of the rows whose texts the partition holds."""

    def __init__(self, spec: dict[str, Any]):
        self.spec, self.error = spec, None
        try:
            self._load(spec)
        except Exception as exc:  # raised by the first call instead: Ray keeps a task's error, not an actor's
            self.error = exc

    def _load(self, spec: dict[str, Any]) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch

        from audit.model import open_bundle

        torch.set_num_threads(max(1, int(spec["threads"])))
        bundle = open_bundle(spec["path"], manifest=spec["manifest"])  # safetensors only, no remote code
        if bundle.hashes != spec["hashes"]:
            changed = sorted(k for k in set(bundle.hashes) | set(spec["hashes"])
                             if bundle.hashes.get(k) != spec["hashes"].get(k))
            raise ModelError(f"{spec['path']}: the model folder a Ray worker sees differs from the one audited "
                             f"({', '.join(changed)}); refused")
        self.bundle = bundle.load()
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from audit.scoring import score_texts

        if self.error is not None:
            raise self.error

        m = self.bundle.manifest
        out: dict[str, list] = {"i": [], "part": [], "probs": [], "length": [], "seconds": [], "worker": []}
        if self.spec["embeddings"]:
            out["emb"] = []
        out["stats"] = []  # every batch has the column (a block schema must not vary): "" where none
        for p in np.unique(batch["part"]):  # one partition per batch; grouped in case Ray joins blocks
            sel = batch["part"] == p
            texts = [str(t) for t in batch["text"][sel]]
            t0 = time.perf_counter()
            preds = score_texts(self.bundle.model, self.bundle.tokenizer, texts, max_length=m.max_length,
                                positive_index=m.labels.index(m.positive_label), batch_size=self.spec["batch_size"],
                                embeddings=self.spec["embeddings"], progress=False)
            n = len(texts)
            out["i"].append(batch["i"][sel])
            out["part"].append(np.full(n, p, dtype=np.int64))
            out["probs"].append(preds.probs)
            out["length"].append(preds.lengths)
            out["seconds"].append(np.full(n, time.perf_counter() - t0))
            out["worker"].append(np.full(n, self.pid, dtype=np.int64))
            if self.spec["embeddings"]:
                out["emb"].append(preds.embeddings)
            docs = np.full(n, "", dtype=object)  # one statistics document per partition, on its first row
            job = self.spec["part_job"][int(p)]
            if job in self.spec["stats"]:
                docs[0] = json.dumps(self._stats(job, int(p), batch["i"][sel], preds.score).to_dict())
            out["stats"].append(docs)
        return {k: np.concatenate(v) for k, v in out.items()}

    def _stats(self, job: str, p: int, unique: np.ndarray, score: np.ndarray):
        """The statistics of the rows of data set `job` whose (deduplicated) text is among `unique`, scored `score`."""
        from audit.mergeable import Grid

        st = self.spec["stats"][job]
        requests = self.__dict__.setdefault("_requests", {})
        if job not in requests:
            requests[job] = StatsRequest(Grid.from_dict(st["grid"]), st["known"], st["row_ids"], st["y"],
                                         st["groups"])
        rows = np.flatnonzero(st["row_part"] == p)
        unique = np.asarray(unique, dtype=np.int64)
        rows = rows[np.isin(st["row_text"][rows], unique)]  # robust to a partition split across batches
        o = np.argsort(unique, kind="stable")
        at = o[np.searchsorted(unique[o], st["row_text"][rows])]
        return requests[job].of_rows(rows, np.asarray(score)[at])


def _worker_error(exc: BaseException) -> AuditError:
    """One line for what a Ray worker raised. Ray Data passes a worker's exception back as text (the worker's
    traceback inside its own error's message), so the worker's error is read from that text: an AuditError
    keeps its class and message, anything else is named."""
    import re

    from audit import errors

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Ray colours its messages
    raised = re.findall(r"^([A-Za-z_][\w.]*): (.+)$", text, flags=re.MULTILINE)
    for name, message in raised:
        cls = getattr(errors, name.rpartition(".")[2], None) if name.startswith("audit.errors.") else None
        if isinstance(cls, type) and issubclass(cls, AuditError):
            return cls(message)
    for name, message in raised:
        if not name.startswith("ray.") and name.rpartition(".")[2][:1].isupper():
            return ModelError(f"scoring on Ray failed: {name.rpartition('.')[2]}: {message}")
    return ModelError(f"scoring on Ray failed: {type(exc).__name__}: {_first_line(text)}")


def _first_line(exc: BaseException | str) -> str:
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    return lines[0] if lines else type(exc).__name__

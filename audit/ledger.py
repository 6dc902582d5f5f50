"""Evidence you can prove: the sealed run folder, the hash-chained ledger, signatures, verify, history, diff.

A run folder holds `evidence.json`: the sha256 of every output file and of every input (as result.json records
them), and a digest over that list. `audit run --sign KEY` adds `signature.json`: an Ed25519 signature of the
digest (the `cryptography` package). `verify_run` re-hashes the outputs and whichever inputs are still present,
checks the signature and the ledger entry, and names every difference.

The ledger is `ledger.jsonl` in the output root (the folder that holds the run folders): one JSON object a line,
each holding the previous line's hash, appended under a file lock, so an edited, removed or reordered entry
breaks the chain at a place `check_ledger` names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import AuditError, UsageError

EVIDENCE = "evidence.json"
SIGNATURE = "signature.json"
LEDGER = "ledger.jsonl"
NOT_SEALED = {EVIDENCE, SIGNATURE, ".audit-run"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- sealing a run folder -------------------------------------------------------------------------------------


def evidence_files(files: dict[str, str], result: dict, sign_key: Path | None = None) -> dict[str, str]:
    """evidence.json (and signature.json) for the files of a run folder, computed before anything is written."""
    listed = {name: sha256_bytes(text.encode("utf-8")) for name, text in sorted(files.items())
              if name not in NOT_SEALED}
    body = {"schema_version": "1", "run_id": (result.get("run") or {}).get("id", ""), "files": listed,
            "inputs": [{"role": i.get("role"), "path": i.get("path"), "sha256": i.get("sha256")}
                       for i in result.get("inputs", [])]}
    digest = sha256_bytes(canonical(body))
    out = {EVIDENCE: json.dumps({**body, "digest": digest}, indent=1) + "\n"}
    if sign_key is not None:
        out[SIGNATURE] = json.dumps(sign(digest, sign_key), indent=1) + "\n"
    return out


# --- keys and signatures ---------------------------------------------------------------------------------------


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise UsageError("signatures need the 'cryptography' package: pip install cryptography") from None
    return serialization, ed25519


def keygen(path: Path) -> tuple[Path, Path]:
    """Write an Ed25519 private key (PEM, mode 0600) to `path` and its public key to `path`.pub."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    for p in (path, pub):
        if p.exists():
            raise UsageError(f"{p}: exists; refusing to overwrite a key")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        pub.write_bytes(public)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write key: {exc.strerror}") from None
    return path, pub


def _load_private(path: Path):
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise UsageError(f"{path}: signing key not found") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 key (make one with 'audit keygen')")
    return key


def _load_public(data: bytes, where: str):
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"{where}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError(f"{where}: not an Ed25519 public key")
    return key


def _key_id(public_pem: bytes) -> str:
    return sha256_bytes(public_pem)[:16]


def sign(digest: str, key_path: Path) -> dict[str, str]:
    serialization, _ = _crypto()
    key = _load_private(key_path)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"algorithm": "ed25519", "signed": "digest of evidence.json", "digest": digest,
            "signature": base64.b64encode(key.sign(digest.encode("ascii"))).decode("ascii"),
            "public_key": public.decode("ascii"), "key_id": _key_id(public)}


# --- the ledger -----------------------------------------------------------------------------------------------


class _Lock:
    """An exclusive lock on `<ledger>.lock` for appends (fcntl; a no-op where it is missing)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "a")
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:  # not on POSIX
            pass
        return self

    def __exit__(self, *exc):
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_UN)
        except ImportError:
            pass
        self.fh.close()


def _entry_hash(entry: dict) -> str:
    return sha256_bytes(canonical({k: v for k, v in entry.items() if k != "hash"}))


def append_ledger(root: Path, run_dir: Path, result: dict, digest: str) -> dict:
    """Append this run to `root/ledger.jsonl`, chained to the last entry. Returns the entry."""
    root = Path(root)
    ledger = root / LEDGER
    with _Lock(root / (LEDGER + ".lock")):
        entries, problems = read_ledger(ledger)
        if problems:
            raise AuditError(f"{ledger}: the ledger is broken ({problems[0]}); not appending to it")
        prev = entries[-1]["hash"] if entries else "0" * 64
        v = result.get("verdict", {})
        entry = {"seq": len(entries) + 1, "run_id": result.get("run", {}).get("id"),
                 "run_dir": os.path.relpath(run_dir, root), "time": result.get("run", {}).get("finished"),
                 "model": result.get("model", {}).get("name"), "policy": result.get("policy", {}).get("name"),
                 "verdict": v.get("status"), "exit_code": v.get("exit_code"), "evidence_digest": digest,
                 "prev_hash": prev}
        entry["hash"] = _entry_hash(entry)
        with open(ledger, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return entry


def read_ledger(ledger: Path) -> tuple[list[dict], list[str]]:
    """The entries and the problems of the chain, each naming the line."""
    if not Path(ledger).exists():
        return [], []
    entries: list[dict] = []
    problems: list[str] = []
    prev = "0" * 64
    for n, line in enumerate(Path(ledger).read_text(encoding="utf-8").splitlines(), 1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            problems.append(f"line {n}: not a ledger entry")
            continue
        if entry.get("hash") != _entry_hash(entry):
            problems.append(f"line {n}: entry {entry.get('seq')} was edited (its hash does not match its content)")
        elif entry.get("prev_hash") != prev:
            problems.append(f"line {n}: entry {entry.get('seq')} does not follow the entry before it "
                            "(an entry was removed, inserted or reordered)")
        elif entry.get("seq") != len(entries) + 1:
            problems.append(f"line {n}: entry numbered {entry.get('seq')}, expected {len(entries) + 1}")
        entries.append(entry)
        prev = entry.get("hash", "")
    return entries, problems


# --- verify ---------------------------------------------------------------------------------------------------


@dataclass
class Verification:
    ok: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.changed


def _file_sha(path: Path) -> str:
    from audit.data import sha256_file

    return sha256_file(path)


def verify_run(run_dir: Path, pubkey: Path | None = None) -> Verification:
    run_dir = Path(run_dir)
    v = Verification()
    ev_path = run_dir / EVIDENCE
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: run folder not found")
    if not ev_path.exists():
        raise UsageError(f"{run_dir}: no {EVIDENCE}; not a sealed audit run folder")
    try:
        evidence = json.loads(ev_path.read_text(encoding="utf-8"))
        body = {k: evidence[k] for k in ("schema_version", "run_id", "files", "inputs")}
    except (ValueError, KeyError, TypeError):
        v.changed.append(f"{EVIDENCE}: unreadable or incomplete")
        return v
    digest = sha256_bytes(canonical(body))
    if digest != evidence.get("digest"):
        v.changed.append(f"{EVIDENCE}: edited (its digest does not match its content)")
    for name, expected in body["files"].items():
        p = run_dir / name
        if not p.exists():
            v.changed.append(f"{name}: missing")
        elif _file_sha(p) != expected:
            v.changed.append(f"{name}: changed (sha256 {_file_sha(p)[:12]}…, sealed {expected[:12]}…)")
        else:
            v.ok.append(f"{name}: unchanged")
    for p in sorted(run_dir.iterdir()):
        if p.name in body["files"] or p.name in NOT_SEALED:
            continue
        if p.name == "report.pdf":
            v.notes.append("report.pdf: printed from report.html after the run was sealed; not itself sealed "
                           "(re-print it with 'audit report RUN_DIR --pdf' to compare)")
        else:
            v.changed.append(f"{p.name}: not part of the sealed run")
    for item in body["inputs"]:
        p = Path(item.get("path") or "")
        if not item.get("path") or not p.is_file():
            v.notes.append(f"input {item.get('role')} {item.get('path')}: not present here, not checked")
        elif _file_sha(p) != item.get("sha256"):
            v.changed.append(f"input {item.get('role')} {p}: changed since the run (sha256 {_file_sha(p)[:12]}…, "
                             f"recorded {str(item.get('sha256'))[:12]}…)")
        else:
            v.ok.append(f"input {item.get('role')} {p}: unchanged")
    _verify_signature(run_dir, evidence.get("digest"), pubkey, v)
    _verify_ledger_entry(run_dir, evidence, v)
    return v


def _verify_signature(run_dir: Path, digest: str | None, pubkey: Path | None, v: Verification) -> None:
    sig_path = run_dir / SIGNATURE
    if not sig_path.exists():
        if pubkey is not None:
            v.changed.append(f"{SIGNATURE}: missing, but a public key was given (the run is not signed)")
        else:
            v.notes.append("the run is not signed")
        return
    try:
        sig = json.loads(sig_path.read_text(encoding="utf-8"))
        signature = base64.b64decode(sig["signature"], validate=True)
        embedded = sig["public_key"].encode("ascii")
    except (ValueError, KeyError, TypeError):
        v.changed.append(f"{SIGNATURE}: unreadable")
        return
    if pubkey is not None:
        try:
            trusted = Path(pubkey).read_bytes()
        except OSError as exc:
            raise UsageError(f"{pubkey}: cannot read public key: {exc.strerror}") from None
        key = _load_public(trusted, str(pubkey))
        source = f"the given key {pubkey}"
    else:
        key = _load_public(embedded, SIGNATURE)
        source = "the key embedded in signature.json (give --pubkey to check it against a trusted key)"
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, str(digest).encode("ascii"))
    except InvalidSignature:
        v.changed.append(f"{SIGNATURE}: the signature does not match the evidence digest under {source}")
        return
    v.ok.append(f"{SIGNATURE}: valid under {source}")


def _verify_ledger_entry(run_dir: Path, evidence: dict, v: Verification) -> None:
    ledger = run_dir.resolve().parent / LEDGER
    entries, problems = read_ledger(ledger)
    if not ledger.exists():
        v.notes.append(f"no {LEDGER} beside the run folder; ledger not checked")
        return
    for p in problems:
        v.changed.append(f"{LEDGER} {p}")
    match = [e for e in entries if e.get("run_id") == evidence.get("run_id")]
    if not match:
        v.changed.append(f"{LEDGER}: the run {evidence.get('run_id')} is not in the ledger")
    elif match[-1].get("evidence_digest") != evidence.get("digest"):
        v.changed.append(f"{LEDGER}: entry {match[-1].get('seq')} records another evidence digest for this run")
    else:
        v.ok.append(f"{LEDGER}: entry {match[-1].get('seq')} records this run")


# --- diff -----------------------------------------------------------------------------------------------------


def diff_runs(a: dict, b: dict) -> dict[str, list]:
    """Changed inputs, every measurement's delta, and status and verdict changes between two result dicts."""
    def inputs(r):
        return {(i.get("role"), Path(str(i.get("path"))).name): i.get("sha256") for i in r.get("inputs", [])}

    ia, ib = inputs(a), inputs(b)
    changed_inputs = [{"role": k[0], "file": k[1], "a": ia.get(k), "b": ib.get(k)}
                      for k in sorted(set(ia) | set(ib), key=str) if ia.get(k) != ib.get(k)]
    ma, mb = a.get("measurements", {}), b.get("measurements", {})
    measurements = []
    for cid in sorted(set(ma) | set(mb)):
        va = (ma.get(cid) or {}).get("value")
        vb = (mb.get(cid) or {}).get("value")
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        measurements.append({"check_id": cid, "a": va, "b": vb, "delta": delta})
    fa = {f["check_id"]: f["status"] for f in a.get("findings", [])}
    fb = {f["check_id"]: f["status"] for f in b.get("findings", [])}
    statuses = [{"check_id": c, "a": fa.get(c), "b": fb.get(c)} for c in sorted(set(fa) | set(fb))
                if fa.get(c) != fb.get(c)]
    verdict = {"a": a.get("verdict", {}).get("status"), "b": b.get("verdict", {}).get("status")}
    return {"inputs": changed_inputs, "measurements": measurements, "statuses": statuses, "verdict": verdict}

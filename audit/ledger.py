"""Evidence you can prove: the sealed run folder, the hash-chained ledger, signatures, verify, history, diff.

A run folder holds `evidence.json`: the sha256 of every output file and of every input (as result.json records
them, with each input's path relative to the run folder), and a digest over that list. `audit run --sign KEY`
adds `signature.json`: an Ed25519 signature of the digest (the `cryptography` package). `verify_run` re-hashes
every file of the folder (a file the evidence does not list is named), every input (one that cannot be found
fails the check unless `outputs_only`), checks the signature and the ledger entry, and names every difference.
It opens regular files only: a FIFO or a device named by an evidence file is refused, never read.

An unsigned seal proves internal consistency only: the files agree with evidence.json. Anyone who can write the
folder can edit a file and seal it again; only a signature checked against a trusted key (`--pubkey`) says
where a run comes from.

The ledger is `ledger.jsonl` in the output root (the folder that holds the run folders): one JSON object a line,
each holding the previous line's hash, appended under a file lock, so an edited, removed or reordered entry
breaks the chain at a place `read_ledger` names. `ledger.head`, replaced atomically under the same lock (and
signed when the run is), records how many entries the ledger holds and the last one's hash, so removing the
last lines is named too. Appending goes through audit.publish, in one step with publishing the run folder.
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

# the files of an output root and of a run folder, and the file operations shared with audit.publish and
# audit.recovery, live in audit.rootfiles (read from here too)
from audit.rootfiles import (  # noqa: F401
    EVIDENCE,
    HEAD,
    LEDGER,
    MARKER,
    SIGNATURE,
    NotAFile,
    read_regular,
    sha256_regular,
    write_head,
)

NOT_SEALED = {EVIDENCE, SIGNATURE, MARKER}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- sealing a run folder -------------------------------------------------------------------------------------


def _located(item: dict, run_dir: Path | None) -> dict:
    """An input as evidence.json records it: the path as given, the absolute path at run time, and the path
    relative to the run folder (so verify finds it from another working folder, or in a copied tree)."""
    out = {"role": item.get("role"), "path": item.get("path"), "sha256": item.get("sha256")}
    path = item.get("path")
    if path and run_dir is not None:
        real = os.path.realpath(path)
        out["abs_path"] = real
        out["from_run"] = os.path.relpath(real, os.path.realpath(run_dir))
    return out


def evidence_files(files: dict[str, str], result: dict, sign_key: Path | None = None,
                   run_dir: Path | None = None) -> dict[str, str]:
    """evidence.json (and signature.json) for the files of a run folder, computed before anything is written.
    `run_dir`: where the folder will be, for the inputs' paths relative to it."""
    listed = {name: sha256_bytes(text.encode("utf-8")) for name, text in sorted(files.items())
              if name not in NOT_SEALED}
    body = {"schema_version": "2", "run_id": (result.get("run") or {}).get("id", ""), "files": listed,
            "inputs": [_located(i, run_dir) for i in result.get("inputs", [])]}
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
        except BaseException:  # interrupted while waiting: nothing held
            self.fh.close()
            raise
        return self

    def __exit__(self, *exc):
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_UN)
        except ImportError:
            pass
        self.fh.close()


def ledger_lock(root: Path) -> _Lock:
    return _Lock(Path(root) / (LEDGER + ".lock"))


def _entry_hash(entry: dict) -> str:
    return sha256_bytes(canonical({k: v for k, v in entry.items() if k != "hash"}))


def new_entry(root: Path, run_dir: Path, result: dict, digest: str, entries: list[dict]) -> dict:
    """The ledger entry of a run, chained to `entries` (the ledger as it stands)."""
    prev = entries[-1]["hash"] if entries else "0" * 64
    v = result.get("verdict", {})
    entry = {"seq": len(entries) + 1, "run_id": result.get("run", {}).get("id"),
             "run_dir": os.path.relpath(run_dir, root), "time": result.get("run", {}).get("finished"),
             "model": result.get("model", {}).get("name"), "policy": result.get("policy", {}).get("name"),
             "verdict": v.get("status"), "exit_code": v.get("exit_code"), "evidence_digest": digest,
             "prev_hash": prev}
    entry["hash"] = _entry_hash(entry)
    return entry


def ends_with_newline(ledger: Path) -> bool:
    with open(ledger, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _append_locked(root: Path, entry: dict, count: int, sign_key: Path | None) -> None:
    """Write `entry` as the ledger's line number `count` and replace the head; call holding the lock."""
    ledger = Path(root) / LEDGER
    with open(ledger, "a", encoding="utf-8") as fh:
        if fh.tell() and not ends_with_newline(ledger):
            fh.write("\n")
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    write_head(root, head_text(count, entry["hash"], sign_key))


def append_ledger(root: Path, run_dir: Path, result: dict, digest: str, sign_key: Path | None = None) -> dict:
    """Append this run to `root/ledger.jsonl`, chained to the last entry, and update `ledger.head`. Returns the
    entry. (`audit run` appends through audit.publish, in the same step as it publishes the folder.)"""
    root = Path(root)
    ledger = root / LEDGER
    with ledger_lock(root):
        entries, problems, _ = check_ledger(root, locked=True)
        if problems:
            raise AuditError(f"{ledger}: the ledger is broken ({problems[0]}); not appending to it")
        entry = new_entry(root, run_dir, result, digest, entries)
        _append_locked(root, entry, len(entries) + 1, sign_key)
    return entry


def read_ledger(ledger: Path) -> tuple[list[dict], list[str]]:
    """The entries and the problems of the chain, each naming the line. Blank lines carry no entry and are
    skipped (a trailing newline an editor adds does not break the ledger; a removed entry still does)."""
    ledger = Path(ledger)
    if not os.path.lexists(ledger):
        return [], []
    try:
        text = read_regular(ledger).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"cannot be read ({exc})"]
    entries: list[dict] = []
    problems: list[str] = []
    prev = "0" * 64
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
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


# --- the head: how many entries the ledger holds, so a removed last line is seen -------------------------------


def head_text(count: int, last_hash: str, sign_key: Path | None = None) -> str:
    """`ledger.head`: the number of entries and the last entry's hash; signed with `sign_key` when given."""
    body: dict[str, Any] = {"ledger": LEDGER, "entries": count, "last_hash": last_hash}
    if sign_key is not None:
        body["signature"] = sign(sha256_bytes(canonical(body)), sign_key)
    return json.dumps(body, indent=1) + "\n"


def check_head(root: Path, entries: list[dict], pubkey: Path | None = None) -> tuple[list[str], list[str]]:
    """Problems and notes of `ledger.head` against the entries read from the ledger."""
    path = Path(root) / HEAD
    problems: list[str] = []
    notes: list[str] = []
    if not os.path.lexists(path):
        if entries:
            problems.append(f"{HEAD} is missing, so entries removed from the end of the ledger cannot be ruled out "
                            "(audit keeps one beside every ledger; a ledger from before it existed has none: record "
                            "new runs in a new output folder)")
        return problems, notes
    try:
        head = json.loads(read_regular(path))
        count, last = head["entries"], head["last_hash"]
        if not isinstance(count, int) or not isinstance(last, str):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{HEAD}: unreadable"], notes
    have = entries[-1].get("hash") if entries else "0" * 64
    if count != len(entries) or (entries and last != have):
        if count > len(entries):
            problems.append(f"{HEAD} records {count} entries, the ledger holds {len(entries)}: entries were "
                            "removed from its end")
        else:
            problems.append(f"{HEAD} records {count} entries ending in {last[:12]}…, the ledger holds "
                            f"{len(entries)} ending in {str(have)[:12]}…: it was changed without audit")
    sig = head.get("signature")
    if sig is None:
        if pubkey is not None:
            problems.append(f"{HEAD}: not signed, but a public key was given")
        return problems, notes
    body = {k: v for k, v in head.items() if k != "signature"}
    try:
        signature = base64.b64decode(sig["signature"], validate=True)
        trusted = Path(pubkey).read_bytes() if pubkey is not None else sig["public_key"].encode("ascii")
    except (ValueError, KeyError, TypeError):
        return problems + [f"{HEAD}: its signature is unreadable"], notes
    except OSError as exc:
        raise UsageError(f"{pubkey}: cannot read public key: {exc.strerror}") from None
    key = _load_public(trusted, str(pubkey) if pubkey is not None else HEAD)
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, sha256_bytes(canonical(body)).encode("ascii"))
    except InvalidSignature:
        problems.append(f"{HEAD}: the signature does not match "
                        + (f"under the given key {pubkey}" if pubkey is not None else "its content"))
    else:
        notes.append(f"{HEAD} signed by key {sig.get('key_id', '?')}"
                     + ("" if pubkey is not None else " (embedded; give --pubkey to check it against a trusted key)"))
    return problems, notes


def named(problem: str) -> str:
    """A problem of `check_ledger`, with the file it is about in front."""
    return problem if problem.startswith(HEAD) else f"{LEDGER} {problem}"


def check_ledger(root: Path, *, locked: bool = False, pubkey: Path | None = None
                 ) -> tuple[list[dict], list[str], list[str]]:
    """The ledger of `root`: (entries, problems, notes), the chain and the head checked together. A publication
    that a killed process left half done is first finished or undone (audit.recovery.recover), under the lock."""
    root = Path(root)
    notes: list[str] = []
    if not locked:
        from audit.recovery import pending, recover

        if pending(root):
            try:
                with ledger_lock(root):
                    notes += recover(root)
            except OSError as exc:
                return [], [f"a recording interrupted by a killed run cannot be completed here ({exc.strerror})"], notes
    entries, problems = read_ledger(root / LEDGER)
    p, n = check_head(root, entries, pubkey)
    return entries, problems + p, notes + n


# --- verify ---------------------------------------------------------------------------------------------------


@dataclass
class Verification:
    ok: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # inputs not found: the run's inputs are not verified
    decisions: list[dict] = field(default_factory=list)  # the sign-off decisions the ledger records on the run
    outputs_only: bool = False

    @property
    def passed(self) -> bool:
        return not self.changed and (self.outputs_only or not self.unchecked)


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and name == Path(name).name and "\\" not in name


def _sha_or_why(path: Path) -> tuple[str | None, str]:
    """(sha256, "") of a regular file, or (None, why not)."""
    try:
        return sha256_regular(path), ""
    except FileNotFoundError:
        return None, "missing"
    except NotAFile as exc:
        return None, str(exc).rsplit(": ", 1)[-1].replace(", not a regular file", "") + ", not the sealed file"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"


def _read_evidence(run_dir: Path, v: Verification) -> dict | None:
    try:
        evidence = json.loads(read_regular(run_dir / EVIDENCE))
    except NotAFile:
        v.changed.append(f"{EVIDENCE}: not a regular file")
        return None
    except (OSError, ValueError):
        v.changed.append(f"{EVIDENCE}: unreadable (not JSON)")
        return None
    if not isinstance(evidence, dict) or not all(k in evidence for k in ("schema_version", "run_id", "files", "inputs")):
        v.changed.append(f"{EVIDENCE}: incomplete (it needs schema_version, run_id, files and inputs)")
        return None
    if not isinstance(evidence["files"], dict) or not all(isinstance(x, str) for x in evidence["files"].values()):
        v.changed.append(f"{EVIDENCE}: 'files' is not a table of file names and sha256")
        return None
    if not isinstance(evidence["inputs"], list) or not all(isinstance(i, dict) for i in evidence["inputs"]):
        v.changed.append(f"{EVIDENCE}: 'inputs' is not a list of inputs")
        return None
    return evidence


def _input_candidates(run_dir: Path, item: dict) -> list[Path]:
    """Where an input may be now: relative to the run folder (a copied tree, another working folder), at its
    absolute path at run time, and as it was given."""
    out = []
    if isinstance(item.get("from_run"), str):
        out.append(Path(os.path.normpath(run_dir / item["from_run"])))
    for key in ("abs_path", "path"):
        if isinstance(item.get(key), str) and item[key]:
            out.append(Path(item[key]))
    return out


def _verify_inputs(run_dir: Path, inputs: list[dict], v: Verification) -> None:
    for item in inputs:
        role, shown = item.get("role"), item.get("path")
        if role == "baseline":  # a run folder, recorded by its run id
            found = next((q for p in _input_candidates(run_dir, item) for q in (p / "result.json", p)
                          if q.is_file()), None)
            if found is None:
                v.unchecked.append(f"input baseline {shown}: not found")
                continue
            try:
                rid = json.loads(read_regular(found)).get("run", {}).get("id")
            except (OSError, ValueError, AttributeError):
                rid = None
            if rid != item.get("sha256"):
                v.changed.append(f"input baseline {found}: holds run {rid}, the run was judged against "
                                 f"{item.get('sha256')}")
            else:
                v.ok.append(f"input baseline {found}: unchanged")
            continue
        tried = []
        for p in _input_candidates(run_dir, item):
            digest, why = _sha_or_why(p)
            if digest is None:
                tried.append(f"{p}: {why.replace(', not the sealed file', '')}")
                continue
            if digest != item.get("sha256"):
                v.changed.append(f"input {role} {p}: changed since the run (sha256 {digest[:12]}…, "
                                 f"recorded {str(item.get('sha256'))[:12]}…)")
            else:
                v.ok.append(f"input {role} {p}: unchanged")
            break
        else:
            v.unchecked.append(f"input {role} {shown}: not found (" + "; ".join(dict.fromkeys(tried)) + ")")


def verify_run(run_dir: Path, pubkey: Path | None = None, outputs_only: bool = False) -> Verification:
    """Check a run folder against its evidence: every file in it sealed and unchanged (or named), the inputs
    re-hashed where they are found (every one, unless `outputs_only`), the signature, the ledger entry."""
    run_dir = Path(run_dir)
    v = Verification(outputs_only=outputs_only)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: run folder not found")
    if not os.path.lexists(run_dir / EVIDENCE):
        raise UsageError(f"{run_dir}: no {EVIDENCE}; not a sealed audit run folder")
    evidence = _read_evidence(run_dir, v)
    if evidence is None:
        return v
    body = {k: evidence[k] for k in ("schema_version", "run_id", "files", "inputs")}
    digest = sha256_bytes(canonical(body))
    if digest != evidence.get("digest"):
        v.changed.append(f"{EVIDENCE}: edited (its digest does not match its content)")
    for name, expected in body["files"].items():
        if not _plain_name(name) or name in NOT_SEALED:
            v.changed.append(f"{EVIDENCE}: lists {name!r}, which is not a file of the run folder")
            continue
        got, why = _sha_or_why(run_dir / name)
        if got is None:
            v.changed.append(f"{name}: {why}")
        elif got != expected:
            v.changed.append(f"{name}: changed (sha256 {got[:12]}…, sealed {expected[:12]}…)")
        else:
            v.ok.append(f"{name}: unchanged")
    for entry in sorted(os.scandir(run_dir), key=lambda e: e.name):
        name = entry.name
        if name in body["files"] or name in (EVIDENCE, SIGNATURE):
            continue
        if name == MARKER:
            expected_marker = f"written by audit; run {body['run_id']}\n".encode()
            try:
                same = entry.is_file(follow_symlinks=False) and read_regular(run_dir / name) == expected_marker
            except OSError:
                same = False
            if not same:
                v.changed.append(f"{MARKER}: edited (it should read 'written by audit; run {body['run_id']}')")
            continue
        what = "folder" if entry.is_dir(follow_symlinks=False) else "file"
        hint = (" (a PDF printed into the folder after sealing cannot be checked against the seal; "
                "'audit report RUN_DIR --pdf' prints it beside the folder)") if name == "report.pdf" else ""
        v.changed.append(f"{name}: a {what} that is not part of the sealed run{hint}")
    _verify_inputs(run_dir, body["inputs"], v)
    _verify_signature(run_dir, evidence.get("digest"), pubkey, v)
    _verify_ledger_entry(run_dir, evidence, v)
    return v


def _verify_signature(run_dir: Path, digest: str | None, pubkey: Path | None, v: Verification) -> None:
    sig_path = run_dir / SIGNATURE
    if not os.path.lexists(sig_path):
        if pubkey is not None:
            v.changed.append(f"{SIGNATURE}: missing, but a public key was given (the run is not signed)")
        else:
            v.notes.append("the run is not signed: the seal proves that the files agree with evidence.json, not who "
                           "wrote them; anyone can edit the files and seal them again (sign runs with --sign and "
                           "verify with --pubkey to prove where a run comes from)")
        return
    try:
        sig = json.loads(read_regular(sig_path))
        signature = base64.b64decode(sig["signature"], validate=True)
        embedded = sig["public_key"].encode("ascii")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
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
    if pubkey is None:
        v.notes.append("the signature was checked with the key it carries: that proves the files are as signed, "
                       "not by whom; give --pubkey with a key you trust")


def _verify_ledger_entry(run_dir: Path, evidence: dict, v: Verification) -> None:
    root = run_dir.resolve().parent
    ledger = root / LEDGER
    if not os.path.lexists(ledger):
        v.notes.append(f"no {LEDGER} beside the run folder; ledger not checked")
        return
    entries, problems, notes = check_ledger(root)
    v.notes += notes
    for p in problems:
        v.changed.append(named(p))
    match = [e for e in run_entries(entries) if e.get("run_id") == evidence.get("run_id")]
    for d in decisions_on(entries, evidence.get("run_id")):
        v.decisions.append(d)
        if d.get("evidence_digest") != evidence.get("digest"):
            v.changed.append(f"{LEDGER}: decision entry {d.get('seq')} ({d.get('decision')} by {d.get('reviewer')}) "
                             "was recorded on another evidence digest: it does not cover these files")
        why = decision_signature_problem(d)
        if why:
            v.changed.append(f"{LEDGER}: decision entry {d.get('seq')}: {why}")
    if not match:
        v.changed.append(f"{LEDGER}: the run {evidence.get('run_id')} is not in the ledger")
    elif match[-1].get("evidence_digest") != evidence.get("digest"):
        v.changed.append(f"{LEDGER}: entry {match[-1].get('seq')} records another evidence digest for this run")
    else:
        v.ok.append(f"{LEDGER}: entry {match[-1].get('seq')} records this run")


# --- sign-off decisions -----------------------------------------------------------------------------------------
#
# A decision is a person's record about a run: who reviewed it, what they decided, why. It is a ledger entry of
# its own (kind "decision"), chained like every other, and bound to the run by the run id, the evidence digest
# (which seals every file and input of the run folder) and the hash of the run's own ledger entry. It changes
# nothing in the run folder and nothing about the verdict: a run that FAILED and was approved still FAILED.

DECISIONS = ("approve", "approve-with-conditions", "reject")
DECISION_WORDS = {"approve": "approved", "approve-with-conditions": "approved with conditions",
                  "reject": "rejected"}
MAX_REVIEWER = 200
MAX_COMMENT = 20_000


def is_decision(entry: dict) -> bool:
    return isinstance(entry, dict) and entry.get("kind") == "decision"


def run_entries(entries: list[dict]) -> list[dict]:
    """The entries that record runs (not decisions)."""
    return [e for e in entries if not is_decision(e)]


def decisions_on(entries: list[dict], run_id: Any) -> list[dict]:
    """The decisions recorded on the run `run_id`, oldest first."""
    return [e for e in entries if is_decision(e) and e.get("run_id") == run_id]


def _decision_body(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in ("hash", "signature")}


def decision_signature_problem(entry: dict) -> str:
    """Why a decision's signature does not hold ('' when it holds or the decision is not signed)."""
    sig = entry.get("signature")
    if sig is None:
        return ""
    try:
        signature = base64.b64decode(sig["signature"], validate=True)
        key = _load_public(sig["public_key"].encode("ascii"), f"decision {entry.get('seq')}")
    except (ValueError, KeyError, TypeError, AttributeError, UsageError):
        return "its signature is unreadable"
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, sha256_bytes(canonical(_decision_body(entry))).encode("ascii"))
    except InvalidSignature:
        return "its signature does not match its content"
    return ""


def _clean_field(value: Any, option: str, limit: int, *, multiline: bool) -> str:
    text = str(value or "").strip()
    if not text:
        raise UsageError(f"{option}: empty; say who you are" if option == "--reviewer" else f"{option}: empty")
    if len(text) > limit:
        raise UsageError(f"{option}: {len(text):,} characters; at most {limit:,}")
    allowed = "\n\t" if multiline else ""
    bad = next((c for c in text if (ord(c) < 32 and c not in allowed) or 0x7F <= ord(c) < 0xA0
                or c in "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"), None)
    if bad is not None:
        raise UsageError(f"{option}: holds the control character U+{ord(bad):04X}; give plain text")
    return text


def record_decision(run_dir: Path, reviewer: str, decision: str, comment: str, sign_key: Path | None = None,
                    now: str | None = None) -> dict:
    """Append a reviewer's decision on the run folder `run_dir` to the ledger beside it; returns the entry.

    Refused (UsageError): an empty or non-text reviewer, an unknown decision, an empty comment on a rejection or
    on an approval with conditions (the conditions are the comment), a folder that is not a sealed audit run, a run
    whose files (or inputs that can be found) changed since it was written, a run the ledger does not record,
    a broken ledger. Nothing in the run folder is written."""
    from datetime import datetime, timezone

    reviewer = _clean_field(reviewer, "--reviewer", MAX_REVIEWER, multiline=False)
    if decision not in DECISIONS:
        raise UsageError(f"--decision {decision!r}: unknown; give one of {', '.join(DECISIONS)}")
    if decision == "approve" and not str(comment or "").strip():
        comment = ""
    else:
        comment = _clean_field(comment, "--comment", MAX_COMMENT, multiline=True)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: run folder not found")
    if not os.path.lexists(run_dir / EVIDENCE) or not os.path.lexists(run_dir / MARKER):
        raise UsageError(f"{run_dir}: not an audit run folder (no {EVIDENCE} and {MARKER}); nothing to decide on")
    root = run_dir.resolve().parent
    if not os.path.lexists(root / LEDGER):
        raise UsageError(f"{run_dir}: no {LEDGER} beside the run folder, so the run is not recorded; a decision "
                         "is recorded only on a run the ledger holds")
    v = verify_run(run_dir, outputs_only=True)
    if v.changed:
        more = f" (and {len(v.changed) - 1} more; see 'audit verify {run_dir}')" if len(v.changed) > 1 else ""
        raise UsageError(f"{run_dir}: not a verified audit run, so no decision is recorded: {v.changed[0]}{more}")
    sign_key = Path(sign_key) if sign_key is not None else None
    if sign_key is not None:
        _load_private(sign_key)  # a bad key is refused before the ledger is locked
    with ledger_lock(root):
        evidence = json.loads(read_regular(run_dir / EVIDENCE))  # again, under the lock: what is signed for
        entries, problems, _ = check_ledger(root, locked=True)
        if problems:
            raise UsageError(f"{root / LEDGER}: the ledger is broken ({named(problems[0])}); not recording a decision")
        recorded = [e for e in run_entries(entries) if e.get("run_id") == evidence.get("run_id")]
        if not recorded or recorded[-1].get("evidence_digest") != evidence.get("digest"):
            raise UsageError(f"{run_dir}: the ledger does not record this run with this evidence digest; not "
                             "recording a decision")
        run_entry = recorded[-1]
        entry: dict[str, Any] = {
            "seq": len(entries) + 1, "kind": "decision", "run_id": evidence.get("run_id"),
            "run_dir": os.path.relpath(run_dir.resolve(), root), "run_seq": run_entry.get("seq"),
            "run_hash": run_entry.get("hash"), "evidence_digest": evidence.get("digest"),
            "verdict": run_entry.get("verdict"), "reviewer": reviewer, "decision": decision, "comment": comment,
            "time": now or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "prev_hash": entries[-1]["hash"] if entries else "0" * 64}
        if sign_key is not None:
            entry["signature"] = sign(sha256_bytes(canonical(entry)), sign_key)
            entry["signature"]["signed"] = "the decision entry without its hash and signature"
        entry["hash"] = _entry_hash(entry)
        _append_locked(root, entry, len(entries) + 1, sign_key)
    return entry


def decisions_for_run(run_dir: Path, run_id: Any = None) -> list[dict] | None:
    """The decisions that the ledger beside `run_dir` records on its run (by `run_id`, or the one its evidence
    names), oldest first; None when there is no ledger there to read (a copied result.json)."""
    run_dir = Path(run_dir)
    root = run_dir.resolve().parent
    if not os.path.lexists(root / LEDGER):
        return None
    if run_id is None:
        try:
            run_id = json.loads(read_regular(run_dir / EVIDENCE)).get("run_id")
        except (OSError, ValueError, AttributeError):
            return None
    entries, _ = read_ledger(root / LEDGER)
    return decisions_on(entries, run_id)


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

"""Nothing lost, nothing made up (issue #22): --out never replaces what audit did not write; publishing and
recording a run is one step that completes or leaves nothing, whatever signal arrives; the ledger's head sees a
removed last line; verify covers every file of the folder and every input, and reads regular files only."""

import copy
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit import publish
from audit.cli import cli
from audit.errors import OutputError
from audit.ledger import HEAD, LEDGER, append_ledger, check_ledger, verify_run
from audit.render.outputs import check_out_dir, write_run
from tests.conftest import MIN_POLICY, make_frame

HERE = Path(__file__).parent
SAMPLE = json.loads((HERE / "fixtures" / "result_sample.json").read_text(encoding="utf-8"))


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"/") for p in sorted(folder.rglob("*"))}


def result_with_input(tmp_path: Path, run_id: str = "20250101T000000Z-aaaaaa") -> dict:
    """The sample result, with one real input file (so verify can check it) and its own run id."""
    data = tmp_path / "inputs" / "eval.csv"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("id,text,label\n1,a,good\n")
    r = copy.deepcopy(SAMPLE)
    r["run"]["id"] = run_id
    r["inputs"] = [{"role": "data", "path": str(data), "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                    "bytes": data.stat().st_size}]
    return r


def temporaries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if publish.TEMP.match(p.name))


# ---------------------------------------------------------------- 1. --out never replaces what audit did not write


@pytest.fixture
def own_model(tiny_model, tmp_path):
    """A copy of the tiny model with its training data beside it, so a wrong refusal cannot harm the shared one."""
    folder = tmp_path / "work"
    shutil.copytree(tiny_model, folder / "model")
    data = folder / "data" / "eval.csv"
    data.parent.mkdir()
    make_frame(60, seed=3).to_csv(data, index=False)
    (folder / "data" / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize("where, why", [
    ("model", "it is the model folder"),
    ("model/sub", "it lies inside the model folder"),
    (".", "it contains the model folder"),
    ("data", "it contains the input"),
    ("notes", "it holds the file notes.txt and no .audit-run marker (audit did not write it)"),
])
def test_run_refuses_an_out_it_did_not_write_before_the_model_loads(own_model, policy_file, monkeypatch, where,
                                                                     why):
    (own_model / "notes").mkdir()
    (own_model / "notes" / "notes.txt").write_text("mine")
    before = listing(own_model)

    def no_load(self):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr("audit.model.ModelBundle.load", no_load)
    out = own_model / where
    r = invoke("run", own_model / "model", "--policy", policy_file(MIN_POLICY), "--data", own_model / "data" / "eval.csv",
               "--out", out, "--no-progress")
    assert r.exit_code == 2, r.output
    lines = r.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: will not ") and why in lines[0], r.output
    assert listing(own_model) == before


def test_report_refuses_an_out_it_did_not_write(tmp_path):
    run = write_run(tmp_path / "runs" / "r1", result_with_input(tmp_path), None)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    for out, why in ((mine, "it holds the file thesis.tex"), (tmp_path / "runs", "it contains the input"),
                     (run / "sub", "it lies inside the run folder")):
        r = invoke("report", run, "--out", out)
        assert r.exit_code == 2 and why in r.output and len(r.output.splitlines()) == 1, r.output
    assert (mine / "thesis.tex").read_text() == "mine" and not (run / "sub").exists()
    assert invoke("report", run, "--out", tmp_path / "copy").exit_code == 0  # a new folder is fine


# ---------------------------------------------------------------- 2. runs side by side


def test_default_names_never_collide_and_a_taken_name_is_not_reused(tmp_path):
    import datetime as dt

    from audit.runner import default_out

    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    names = {default_out(tmp_path, "m", now).name for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("m-20250101T000000Z-") for n in names)
    root = tmp_path / "reports"
    first = check_out_dir(root / "m-20250101T000000Z-aaaaaa", unique=True)
    second = check_out_dir(root / "m-20250101T000000Z-aaaaaa", unique=True)  # the same name, by bad luck
    a = write_run(first, result_with_input(tmp_path, "r-a"), None, record=True)
    b = write_run(second, result_with_input(tmp_path, "r-b"), None, record=True)
    assert a != b and b.name.startswith("m-20250101T000000Z-")
    entries, problems, _ = check_ledger(root)
    assert problems == [] and [e["run_dir"] for e in entries] == [a.name, b.name]
    for folder, rid in ((a, "r-a"), (b, "r-b")):
        assert json.loads((folder / "result.json").read_text())["run"]["id"] == rid
        assert verify_run(folder).passed


def test_an_explicit_out_published_by_another_run_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "runs" / "gate"
    mine = check_out_dir(out)  # this run starts: nothing there yet
    write_run(check_out_dir(out), result_with_input(tmp_path, "other"), None, record=True)  # another run wins
    with pytest.raises(OutputError, match="another run was published there while this one ran; not replacing it"):
        write_run(mine, result_with_input(tmp_path, "mine"), None, record=True)
    assert json.loads((out / "result.json").read_text())["run"]["id"] == "other"
    assert verify_run(out).passed and temporaries(out.parent) == []


def test_three_default_runs_started_together_keep_three_folders(tiny_model, tmp_path, policy_file):
    pol = policy_file(MIN_POLICY)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "audit", "run", str(tiny_model), "--policy", str(pol), "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    assert [p.wait(240) for p in procs] == [0, 0, 0], [p.stderr.read() for p in procs]
    root = tmp_path / "reports"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    entries, problems, _ = check_ledger(root)
    assert len(folders) == 3 and problems == [] and sorted(e["run_dir"] for e in entries) == [f.name for f in folders]
    assert len({e["run_id"] for e in entries}) == 3
    for f in folders:
        assert verify_run(f).passed


# ---------------------------------------------------------------- 3. one step: published and recorded, or nothing


def test_a_broken_ledger_stops_the_run_before_anything_is_written(tiny_model, tmp_path, policy_file, monkeypatch):
    root = tmp_path / "runs"
    write_run(root / "old", result_with_input(tmp_path), None, record=True)
    ledger = root / LEDGER
    ledger.write_text(ledger.read_text() + "not json\n")
    before = listing(root)
    monkeypatch.setattr("audit.model.ModelBundle.load", lambda self: pytest.fail("the model was loaded"))
    r = invoke("run", tiny_model, "--policy", policy_file(MIN_POLICY), "--out", root / "new", "--no-progress")
    assert r.exit_code == 2 and r.output == (f"error: {ledger}: the ledger is broken (line 2: not a ledger entry); not "
                                             "recording a run in it (nothing was written)\n")
    assert listing(root) == before
    with pytest.raises(OutputError, match="the ledger is broken"):  # and at publication, under the lock
        write_run(root / "new", result_with_input(tmp_path, "x"), None, record=True)
    assert listing(root) == before


def test_blank_lines_in_the_ledger_are_tolerated(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "a", result_with_input(tmp_path, "a"), None, record=True)
    (root / LEDGER).write_text((root / LEDGER).read_text() + "\n  \n")  # an editor's trailing blank lines
    assert invoke("history", root).exit_code == 0
    write_run(root / "b", result_with_input(tmp_path, "b"), None, record=True)
    (root / LEDGER).write_text((root / LEDGER).read_text().rstrip("\n"))  # and a missing final newline
    write_run(root / "c", result_with_input(tmp_path, "c"), None, record=True)
    r = invoke("history", root)
    assert r.exit_code == 0 and len(r.output.splitlines()) == 3, r.output


def test_a_failed_append_takes_the_new_folder_away_again(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    write_run(root / "gate", result_with_input(tmp_path, "old"), None, record=True)
    before = listing(root)

    def full(root_, text):
        raise OSError(28, "No space left on device", str(root_ / HEAD))

    monkeypatch.setattr("audit.ledger.write_head", full)
    published = len(publish.PUBLISHED)
    with pytest.raises(OutputError, match="No space left on device"):
        write_run(root / "gate", result_with_input(tmp_path, "new"), None, record=True)
    assert listing(root) == before and len(publish.PUBLISHED) == published


STEPS = ["intent", "moved aside", "renamed", "appended", "head"]


def _publish_and_die(root: Path, tmp_path: Path, step: str) -> None:
    def die(at):
        if at == step:
            os._exit(9)  # as abrupt as SIGKILL: no finally, no atexit

    publish._reached = die
    write_run(root / "gate", result_with_input(tmp_path, "new"), None, record=True)
    os._exit(0)


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_of_the_publication_leaves_before_or_after(tmp_path, step):
    root = tmp_path / "runs"
    write_run(root / "gate", result_with_input(tmp_path, "old"), None, record=True)
    child = multiprocessing.get_context("fork").Process(target=_publish_and_die, args=(root, tmp_path, step))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    assert temporaries(root)  # the killed process left its intent or folders behind
    r = invoke("history", root)  # reading the root finishes or undoes the step
    assert r.exit_code == 0, r.output
    finished = STEPS.index(step) >= STEPS.index("renamed")  # the new folder was in place: its record is completed
    assert len(r.output.splitlines()) == (3 if finished else 2), r.output  # a note, then the entries
    rid = json.loads((root / "gate" / "result.json").read_text())["run"]["id"]
    assert rid == ("new" if finished else "old")
    assert verify_run(root / "gate").passed
    assert temporaries(root) == []
    write_run(root / "next", result_with_input(tmp_path, "next"), None, record=True)
    entries, problems, _ = check_ledger(root)
    assert problems == [] and [e["run_id"] for e in entries] == (["old", "new", "next"] if finished else ["old", "next"])


def test_stale_temporaries_of_dead_processes_are_cleaned_at_the_next_run(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "a", result_with_input(tmp_path, "a"), None, record=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = root / f".a.tmp-{dead.pid}-0123abcd"
    stale.mkdir()
    (stale / "report.html").write_text("half")
    (root / f".b.old-{dead.pid}-89abcdef").mkdir()
    live = root / f".c.tmp-{os.getpid()}-00000000"  # a live process's folder is left alone
    live.mkdir()
    user = root / ".my-notes"
    user.mkdir()
    write_run(root / "b", result_with_input(tmp_path, "b"), None, record=True)
    assert temporaries(root) == [live.name] and user.is_dir()


def test_the_interrupt_message_says_what_was_left(monkeypatch):
    from audit.cli import _interrupted

    monkeypatch.setattr(publish, "PUBLISHED", [])
    assert _interrupted().startswith("interrupted: no run folder was published and no ledger entry written")
    monkeypatch.setattr(publish, "PUBLISHED", [Path("runs/gate")])
    assert _interrupted() == "interrupted after the run folder runs/gate was written and recorded in the ledger"


def _spawn(model, policy, out):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "audit", "run", str(model), "--policy", str(policy), "--out",
                             str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_while_waiting_for_the_ledger_lock(tiny_model, tmp_path, policy_file, sig):
    from audit.ledger import ledger_lock

    root = tmp_path / "runs"
    write_run(root / "gate", result_with_input(tmp_path, "old"), None, record=True)
    before = listing(root)
    with ledger_lock(root):  # another run is recording: this one waits, its folder written and hidden
        proc = _spawn(tiny_model, policy_file(MIN_POLICY), root / "gate")
        deadline = time.time() + 120
        while not any((p / ".audit-run").exists() for p in root.glob(".gate.tmp-*")):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(sig)
        code = proc.wait(60)
    err = proc.stderr.read().decode()
    if sig == signal.SIGTERM:
        assert code == 130 and err.strip().splitlines()[-1] == (
            "interrupted: no run folder was published and no ledger entry written; earlier run folders are untouched")
        assert listing(root) == before  # its temporary folder went with it
    else:
        assert code == -9 and temporaries(root)  # a KILL cleans nothing up ...
        write_run(root / "other", result_with_input(tmp_path, "other"), None, record=True)
        assert temporaries(root) == []  # ... the next run in the root does
    assert invoke("history", root).exit_code == 0
    assert json.loads((root / "gate" / "result.json").read_text())["run"]["id"] == "old"


# ---------------------------------------------------------------- 4. the head sees a removed last line


def test_history_names_a_removed_last_line(tmp_path):
    root = tmp_path / "runs"
    for name in ("a", "b"):
        write_run(root / name, result_with_input(tmp_path, name), None, record=True)
    ledger = root / LEDGER
    ledger.write_text(ledger.read_text().splitlines(keepends=True)[0])
    r = invoke("history", root)
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == ("BROKEN ledger.head records 2 entries, the ledger holds 1: "
                                         "entries were removed from its end")
    ledger.unlink()
    r = invoke("history", root)
    assert r.exit_code == 1 and "ledger.head records 2 entries, the ledger holds 0" in r.output
    with pytest.raises(OutputError, match="the ledger is broken"):
        write_run(root / "c", result_with_input(tmp_path, "c"), None, record=True)


def test_a_signed_head_cannot_be_rewritten_without_the_key(tmp_path):
    key = tmp_path / "k"
    assert invoke("keygen", "--out", key).exit_code == 0
    pub = key.with_name("k.pub")
    root = tmp_path / "runs"
    for name in ("a", "b"):
        write_run(root / name, result_with_input(tmp_path, name), None, sign_key=key, record=True)
    assert invoke("history", root, "--pubkey", pub).exit_code == 0
    lines = (root / LEDGER).read_text().splitlines(keepends=True)
    (root / LEDGER).write_text(lines[0])
    first = json.loads(lines[0])
    head = json.loads((root / HEAD).read_text())
    (root / HEAD).write_text(json.dumps({"ledger": LEDGER, "entries": 1, "last_hash": first["hash"]}))
    r = invoke("history", root, "--pubkey", pub)
    assert r.exit_code == 1 and "BROKEN ledger.head: not signed, but a public key was given" in r.output
    head.update(entries=1, last_hash=first["hash"])  # the old signature over the new numbers
    (root / HEAD).write_text(json.dumps(head))
    r = invoke("history", root, "--pubkey", pub)
    assert r.exit_code == 1 and "ledger.head: the signature does not match under the given key" in r.output


# ---------------------------------------------------------------- 5-7. verify fails closed


@pytest.fixture
def sealed(tmp_path):
    out = write_run(tmp_path / "runs" / "r1", result_with_input(tmp_path), "row_id,score\n1,0.5\n", record=True)
    assert verify_run(out).passed
    return out


def test_a_file_added_to_the_run_folder_or_an_edited_marker_fails(sealed):
    (sealed / "report.pdf").write_bytes(b"%PDF-1.4 forged")
    r = invoke("verify", sealed)
    assert r.exit_code == 1 and "CHANGED  report.pdf: a file that is not part of the sealed run" in r.output
    (sealed / "report.pdf").unlink()
    (sealed / "extra").mkdir()
    r = invoke("verify", sealed)
    assert r.exit_code == 1 and "CHANGED  extra: a folder that is not part of the sealed run" in r.output
    (sealed / "extra").rmdir()
    (sealed / ".audit-run").write_text("written by audit; run someone-else\n")
    r = invoke("verify", sealed)
    assert r.exit_code == 1 and "CHANGED  .audit-run: edited" in r.output


def test_an_unsigned_run_says_what_its_seal_proves(sealed):
    r = invoke("verify", sealed)
    assert r.exit_code == 0
    assert ("note     the run is not signed: the seal proves that the files agree with evidence.json, not who wrote "
            "them; anyone can edit the files and seal them again") in r.output


def test_verify_from_another_folder_finds_the_inputs(tiny_model, tmp_path, policy_file, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    make_frame(60, seed=4).to_csv(work / "eval.csv", index=False)
    (work / "policy.yaml").write_text(MIN_POLICY)
    monkeypatch.chdir(work)
    r = invoke("run", tiny_model, "--policy", "policy.yaml", "--data", "eval.csv", "--out", "runs/r1", "--no-progress")
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path)
    r = invoke("verify", work / "runs" / "r1")
    assert r.exit_code == 0 and "not found" not in r.output and r.output.endswith("every input checked\n"), r.output
    (work / "eval.csv").unlink()
    r = invoke("verify", work / "runs" / "r1")
    assert r.exit_code == 1 and "NOT CHECKED  input data eval.csv: not found" in r.output
    assert r.output.splitlines()[-1] == ("verify failed: 1 input(s) not found, so not checked (give --outputs-only "
                                         "to check the run folder alone)")
    r = invoke("verify", work / "runs" / "r1", "--outputs-only")
    assert r.exit_code == 0 and "the inputs were NOT checked" in r.output.splitlines()[-1], r.output


def _reseal(folder: Path, edit) -> None:
    ev = json.loads((folder / "evidence.json").read_text())
    edit(ev)
    body = {k: ev[k] for k in ("schema_version", "run_id", "files", "inputs")}
    ev["digest"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                             ensure_ascii=False).encode()).hexdigest()
    (folder / "evidence.json").write_text(json.dumps(ev))


def _verify_subprocess(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", "verify", str(folder)], capture_output=True, text=True,
                          timeout=60)  # a hang fails the test


def test_verify_never_reads_a_device_or_a_fifo(sealed, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _reseal(sealed, lambda ev: ev["inputs"].extend([{"role": "data", "path": "/dev/zero", "sha256": "0" * 64},
                                                     {"role": "policy", "path": str(fifo), "sha256": "0" * 64}]))
    r = _verify_subprocess(sealed)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "NOT CHECKED  input data /dev/zero: not found (/dev/zero: a device)" in r.stdout
    assert f"NOT CHECKED  input policy {fifo}: not found ({fifo}: a FIFO)" in r.stdout
    (sealed / "report.html").unlink()
    os.mkfifo(sealed / "report.html")
    r = _verify_subprocess(sealed)
    assert r.returncode == 1 and "CHANGED  report.html: a FIFO, not the sealed file" in r.stdout, r.stdout


def test_malformed_evidence_is_named(sealed):
    (sealed / "summary.md").unlink()
    (sealed / "summary.md").mkdir()
    r = invoke("verify", sealed)
    assert r.exit_code == 1 and "CHANGED  summary.md: a folder, not the sealed file" in r.output
    _reseal(sealed, lambda ev: ev["files"].update({"../../inputs/eval.csv": "0" * 64}))
    r = invoke("verify", sealed)
    assert r.exit_code == 1 and "CHANGED  evidence.json: lists '../../inputs/eval.csv', which is not a file" in r.output
    _reseal(sealed, lambda ev: ev.update(files=sorted(ev["files"])))
    r = invoke("verify", sealed)
    assert r.exit_code == 1 and r.output.startswith(
        "CHANGED  evidence.json: 'files' is not a table of file names and sha256\n"), r.output


def test_append_ledger_keeps_the_head(tmp_path):
    for i in range(3):
        append_ledger(tmp_path, tmp_path / f"r{i}", {"run": {"id": str(i)}}, "d" * 64)
    entries, problems, _ = check_ledger(tmp_path)
    head = json.loads((tmp_path / HEAD).read_text())
    assert problems == [] and head["entries"] == 3 and head["last_hash"] == entries[-1]["hash"]


def test_stats_never_replaces_the_data_or_a_file_of_yours(tiny_model, tmp_path, monkeypatch):
    data = tmp_path / "silo.csv"
    make_frame(40, seed=5).to_csv(data, index=False)
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    before = data.read_bytes()
    monkeypatch.setattr("audit.model.ModelBundle.load", lambda self: pytest.fail("the model was loaded"))
    for out, why in ((data, f"will not write {data}: it is the input {data}"),
                     (notes, f"will not replace {notes}: it is not a stats file audit wrote"),
                     (tiny_model / "s.json", "it lies inside the model folder")):
        r = invoke("stats", tiny_model, "--data", data, "--out", out, "--no-progress")
        assert r.exit_code == 2 and why in r.output and len(r.output.splitlines()) == 1, r.output
    assert data.read_bytes() == before and notes.read_text() == '{"mine": true}'
    assert not (tiny_model / "s.json").exists()


def test_a_baseline_input_is_checked_by_its_run_id(tmp_path):
    base = write_run(tmp_path / "released" / "run", result_with_input(tmp_path, "base-1"), None)
    r = result_with_input(tmp_path, "gate-1")
    r["inputs"].append({"role": "baseline", "path": str(base), "sha256": "base-1", "bytes": 0})
    out = write_run(tmp_path / "runs" / "gate", r, None, record=True)
    v = verify_run(out)
    assert v.passed and any(line.startswith("input baseline") for line in v.ok), v
    write_run(base, result_with_input(tmp_path, "base-2"), None)  # the released run was replaced since
    v = verify_run(out)
    assert not v.passed and v.changed == [f"input baseline {base / 'result.json'}: holds run base-2, the run was "
                                          "judged against base-1"]


def test_a_deleted_head_is_named_and_blocks_new_runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "a", result_with_input(tmp_path, "a"), None, record=True)
    (root / HEAD).unlink()
    r = invoke("history", root)
    assert r.exit_code == 1 and "BROKEN ledger.head is missing, so entries removed from the end" in r.output
    with pytest.raises(OutputError, match="ledger.head is missing"):
        check_out_dir(root / "b")

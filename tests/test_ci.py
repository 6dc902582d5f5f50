"""The CI gate as shipped: action.yml, .github/workflows/audit-gate.yml, ci/gitlab/audit.gitlab-ci.yml, docs/ci.md.

- Each YAML file is validated against its published schema by check-jsonschema, whose vendored copies of the
  GitHub workflow, GitHub action and GitLab CI schemas work offline.
- The composite action's shell steps are taken out of action.yml and run with bash, with the environment the
  runner would give them (inputs substituted into each step's `env:`, $GITHUB_OUTPUT, $RUNNER_TEMP), against the
  tiny model from conftest.py: the outputs they write and the step's exit code are checked.
- The workflow's comment step runs against a stand-in `gh` that answers like GitHub's API (its --jq filter is
  applied with the real jq when jq is installed).
Not checked here: the install step (it downloads PyTorch), and the steps that GitHub or GitLab run themselves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / ".github" / "workflows" / "audit-gate.yml"
GITLAB = ROOT / "ci" / "gitlab" / "audit.gitlab-ci.yml"
DOC = ROOT / "docs" / "ci.md"
BIN = Path(sys.executable).parent  # the venv: audit, python and check-jsonschema


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the published schemas, offline


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema", path=str(BIN)) or shutil.which("check-jsonschema")
    if exe is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    return subprocess.run([exe, "--builtin-schema", schema, str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("schema, path", [("vendor.github-actions", ACTION), ("vendor.github-workflows", WORKFLOW),
                                          ("vendor.gitlab-ci", GITLAB)], ids=["action", "workflow", "gitlab"])
def test_each_file_is_valid_against_its_published_schema(schema, path):
    out = check_jsonschema(schema, path)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("schema, path, breakage", [
    ("vendor.github-actions", ACTION, lambda d: d["runs"].pop("using")),
    ("vendor.github-workflows", WORKFLOW, lambda d: d["jobs"]["audit"].pop("runs-on")),
    ("vendor.gitlab-ci", GITLAB, lambda d: d["audit-gate"].update(artifacts={"when": "sometimes"})),
], ids=["action", "workflow", "gitlab"])
def test_the_schemas_catch_a_broken_file(schema, path, breakage, tmp_path):
    doc = load(path)
    breakage(doc)
    broken = tmp_path / path.name
    broken.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert check_jsonschema(schema, broken).returncode == 1


def test_docs_show_the_shipped_files_verbatim():
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks == [WORKFLOW.read_text(encoding="utf-8"), GITLAB.read_text(encoding="utf-8")]


def test_the_workflow_asks_for_what_its_steps_need():
    wf = load(WORKFLOW)
    assert wf["permissions"] == {"contents": "read", "checks": "write", "pull-requests": "write"}
    steps = wf["jobs"]["audit"]["steps"]
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    gate = next(s for s in steps if s.get("uses") == "./")
    assert set(gate["with"]) <= set(load(ACTION)["inputs"])
    assert gate["with"]["signing-key"] == "${{ secrets.AUDIT_SIGNING_KEY }}"
    later = steps[steps.index(gate) + 1:]
    assert later and all("!cancelled()" in str(s.get("if")) for s in later)  # a failed gate still reports
    junit = next(s for s in later if "action-junit-report" in str(s.get("uses")))
    assert junit["with"]["report_paths"] == "reports/gate/junit.xml"


def test_the_install_takes_cpu_torch_from_the_pytorch_index():
    install = next(s for s in load(ACTION)["runs"]["steps"] if s["name"].startswith("Install"))
    lines = [line.strip() for line in install["run"].splitlines()]
    torch = lines.index('python -m pip install "torch==$AUDIT_TORCH" --index-url https://download.pytorch.org/whl/cpu')
    assert lines[torch + 1] == 'python -m pip install "$AUDIT_SOURCE"'  # the project after torch: no CUDA wheels
    gl = load(GITLAB)["audit-gate"]["script"]
    assert gl[:2] == ["python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
                      "python -m pip install ."]


def test_no_expression_is_pasted_into_a_script():
    """`${{ … }}` inside a run: script is a command injection (a branch name, a PR title); env: carries them."""
    scripts = [s["run"] for s in load(ACTION)["runs"]["steps"]]
    scripts += [s["run"] for s in load(WORKFLOW)["jobs"]["audit"]["steps"] if "run" in s]
    assert scripts and not [s for s in scripts if "${{" in s]


# ---------------------------------------------------------------- the action's shell steps, run with bash

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def substitute(value: str, inputs: dict, outputs: dict[str, dict]) -> str:
    """The expressions the action uses, as the runner evaluates them; any other one fails the test."""
    def one(m):
        expr = m.group(1)
        if expr == "github.action_path":
            return str(ROOT)
        if expr.startswith("inputs."):
            return str(inputs[expr[len("inputs."):]])
        parts = expr.split(".")
        if len(parts) == 4 and parts[0] == "steps" and parts[2] == "outputs":
            return outputs.get(parts[1], {}).get(parts[3], "")
        raise AssertionError(f"expression the test cannot evaluate: {expr}")
    return EXPR.sub(one, str(value))


def read_outputs(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        assert sep, f"not a name=value line in $GITHUB_OUTPUT: {line!r}"
        out[key] = value
    return out


def run_action(tmp_path: Path, **given) -> dict:
    """Run the action's steps as the runner would; returns the outputs, each step's exit code and logs."""
    action = load(ACTION)
    inputs = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    inputs.update({k.replace("_", "-"): v for k, v in given.items()})
    inputs["install"] = "false"  # the install step downloads PyTorch: not here
    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    summary = tmp_path / "step-summary.md"
    outputs: dict[str, dict] = {}
    steps = []
    for i, step in enumerate(action["runs"]["steps"]):
        if step.get("if"):
            assert step["if"] == "inputs.install == 'true'", step["if"]
            continue
        assert step["shell"] == "bash"
        out_file = tmp_path / f"output-{i}"
        out_file.write_text("")
        env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": os.environ.get("HOME", str(tmp_path)),
               "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
               "TOKENIZERS_PARALLELISM": "false", "MPLCONFIGDIR": str(tmp_path / "mpl"),
               "GITHUB_OUTPUT": str(out_file), "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_TEMP": str(temp)}
        env.update({k: substitute(v, inputs, outputs) for k, v in (step.get("env") or {}).items()})
        assert "${{" not in step["run"]
        # the runner runs a bash step as `bash --noprofile --norc -eo pipefail {0}`
        script = tmp_path / f"step-{i}.sh"
        script.write_text(step["run"])
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        outputs[step.get("id", f"step{i}")] = read_outputs(out_file)
        steps.append(done)
        if done.returncode != 0:
            break  # a failed step ends the action
    result = {name: substitute(spec["value"], inputs, outputs) for name, spec in action["outputs"].items()}
    return {"outputs": result, "codes": [s.returncode for s in steps], "logs": "".join(s.stdout + s.stderr
                                                                                       for s in steps),
            "summary": summary.read_text() if summary.exists() else "", "temp": sorted(temp.iterdir())}


PASS_POLICY = """\
policy: ci-test
version: "1"
checks:
  performance.roc_auc: {min: 0.6, basis: point, refs: ["SR 11-7"]}
budget: {bootstrap: 100, seed: 0}
"""
FAIL_POLICY = PASS_POLICY.replace("min: 0.6", "min: 0.999")


@pytest.fixture(scope="module")
def passed_gate(tiny_model, tmp_path_factory):
    """The action run on the tiny model with a passing policy, a signing key and a report URL."""
    from audit.ledger import keygen

    tmp_path = tmp_path_factory.mktemp("gate")
    (tmp_path / "policy.yaml").write_text(PASS_POLICY)
    private, public = keygen(tmp_path / "keys" / "audit.key")
    run = run_action(tmp_path, model=tiny_model, policy="policy.yaml", out="reports/gate",
                     signing_key=private.read_text(), report_url="https://ci.example.org/runs/1/")
    return run, tmp_path / "reports" / "gate", public


def test_the_action_passes_a_good_model_signed_with_links(passed_gate):
    run, folder, public = passed_gate
    assert run["codes"] == [0, 0], run["logs"]
    assert run["outputs"] == {"verdict": "PASS", "exit-code": "0", "run-folder": "reports/gate"}
    assert (folder / "signature.json").is_file()
    assert run["temp"] == []  # the key file is gone
    verify = subprocess.run([str(BIN / "python"), "-m", "audit", "verify", str(folder), "--pubkey", str(public)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert verify.returncode == 0, verify.stdout + verify.stderr
    summary = (folder / "summary.md").read_text()
    assert summary.startswith("<!-- audit-summary -->\n")
    assert "[report.html](https://ci.example.org/runs/1/report.html)" in summary
    assert run["summary"] == summary  # the job summary shows it too


def test_the_action_fails_the_step_on_fail_and_passes_the_code_through(tiny_model, passed_gate, tmp_path):
    (tmp_path / "fail.yaml").write_text(FAIL_POLICY)
    released = passed_gate[1]  # the passing run stands for the released model's run folder
    run = run_action(tmp_path, model=tiny_model, policy="fail.yaml", out="reports/gate", baseline=released)
    assert run["codes"] == [0, 1], run["logs"]  # the audit step records, the gate step fails with the code
    assert run["outputs"] == {"verdict": "FAIL", "exit-code": "1", "run-folder": "reports/gate"}
    assert "::error title=audit::FAIL (exit code 1): a blocking finding failed or errored" in run["logs"]
    assert "::notice title=audit::no signing-key given" in run["logs"]
    result = json.loads((tmp_path / "reports" / "gate" / "result.json").read_text())
    assert result["baseline"]["path"] == str(released) and "links" not in result


def test_the_action_reports_a_run_that_could_not_start(tmp_path, tiny_model):
    (tmp_path / "bad.yaml").write_text("policy: x\nversion: '1'\nchecks:\n  performance.roc_auc: {min: high}\n")
    run = run_action(tmp_path, model=tiny_model, policy="bad.yaml")
    assert run["codes"] == [0, 2]
    assert run["outputs"] == {"verdict": "ERROR", "exit-code": "2", "run-folder": ""}
    assert "bad.yaml:4: checks.performance.roc_auc.min: expected a number, got 'high'" in run["logs"]
    lenient = run_action(tmp_path, model=tiny_model, policy="bad.yaml", fail_on="1,3")
    assert lenient["codes"] == [0, 0] and lenient["outputs"]["exit-code"] == "2"
    assert "::warning title=audit::ERROR (exit code 2)" in lenient["logs"]


def gate(code: str, fail_on: str) -> subprocess.CompletedProcess:
    step = next(s for s in load(ACTION)["runs"]["steps"] if s["name"] == "Gate on the exit code")
    env = {"PATH": os.environ["PATH"], "AUDIT_EXIT_CODE": code, "AUDIT_VERDICT": "V", "AUDIT_FAIL_ON": fail_on}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("code, fail_on, expected", [
    ("0", "1 2 3", 0), ("1", "1 2 3", 1), ("2", "1 2 3", 2), ("3", "1 2 3", 3),
    ("3", "1 2", 0), ("1", "2,3", 0), ("2", "1, 3", 0), ("0", "", 0), ("3", "", 0),
    ("127", "1 2 3", 127), ("", "1 2 3", 1),  # audit missing; no code at all: never a pass
    ("1", "1 4", 2), ("0", "fail", 2),  # a fail-on that names no gate code is a mistake in the workflow
])
def test_the_gate_maps_exit_codes_as_configured(code, fail_on, expected):
    assert gate(code, fail_on).returncode == expected


# ---------------------------------------------------------------- the workflow's comment step


FAKE_GH = r"""#!/usr/bin/env bash
# A stand-in for `gh api`: logs each call; answers the list of comments from $FAKE_COMMENTS through --jq.
echo "$*" >> "$FAKE_LOG"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --jq) jqf="${args[i + 1]}" ;;
    -F) field="${args[i + 1]}"; cp "${field#body=@}" "$FAKE_LOG.body" ;;
  esac
done
if [ -n "${jqf:-}" ]; then
  if command -v jq > /dev/null; then jq -r "$jqf" "$FAKE_COMMENTS"; else cat "$FAKE_COMMENTS.ids"; fi
fi
"""


def comment_step(tmp_path: Path, comments: list[dict]):
    step = next(s for s in load(WORKFLOW)["jobs"]["audit"]["steps"] if s.get("name", "").startswith("Post or update"))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gh").write_text(FAKE_GH)
    (fake / "gh").chmod((fake / "gh").stat().st_mode | stat.S_IEXEC)
    (tmp_path / "comments.json").write_text(json.dumps(comments))
    ids = [c["id"] for c in comments if c["user"]["login"] == "github-actions[bot]"
           and c["body"].startswith("<!-- audit-summary -->")]
    (tmp_path / "comments.json.ids").write_text("".join(f"{i}\n" for i in ids))
    summary = tmp_path / "reports" / "gate" / "summary.md"
    summary.parent.mkdir(parents=True)
    from audit.render import render_markdown

    summary.write_text(render_markdown(json.loads((ROOT / "tests" / "fixtures" / "result_sample.json").read_text())))
    env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "gh.log"),
           "FAKE_COMMENTS": str(tmp_path / "comments.json"), "GITHUB_REPOSITORY": "org/repo",
           "RUNNER_TEMP": str(tmp_path)}
    env.update({k: v for k, v in step["env"].items() if "${{" not in str(v)})
    env.update({"PR": "17", "ARTIFACT_URL": "https://github.example/org/repo/actions/runs/5/artifacts/9",
                "RUN_URL": "https://github.example/org/repo/actions/runs/5", "GH_TOKEN": "t"})
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    calls = (tmp_path / "gh.log").read_text().splitlines()
    body = (tmp_path / "gh.log.body").read_text()
    return done, calls, body


def bot(cid, body):
    return {"id": cid, "user": {"login": "github-actions[bot]"}, "body": body}


def test_the_first_push_posts_a_comment(tmp_path):
    others = [{"id": 1, "user": {"login": "alice"}, "body": "<!-- audit-summary --> quoted by a person"},
              bot(2, "some other bot message")]
    done, calls, body = comment_step(tmp_path, others)
    assert done.returncode == 0, done.stderr
    assert calls[0] == ("api --paginate repos/org/repo/issues/17/comments --jq .[] | select(.user.login == "
                        "\"github-actions[bot]\" and (.body | startswith(\"<!-- audit-summary -->\"))) | .id")
    assert calls[1].startswith("api --method POST repos/org/repo/issues/17/comments -F body=@")
    assert len(calls) == 2 and body.startswith("<!-- audit-summary -->\n## Audit verdict")
    assert body.rstrip().endswith("is the artifact [audit-report](https://github.example/org/repo/actions/runs/5/"
                                  "artifacts/9) of [this workflow run](https://github.example/org/repo/actions/runs/5).")


def test_a_later_push_updates_the_same_comment(tmp_path):
    done, calls, body = comment_step(tmp_path, [bot(40, "hello"), bot(41, "<!-- audit-summary -->\n## old"),
                                                bot(42, "<!-- audit-summary -->\n## older duplicate")])
    assert done.returncode == 0, done.stderr
    assert calls[1].startswith("api --method PATCH repos/org/repo/issues/comments/41 -F body=@")
    assert "POST" not in " ".join(calls) and body.startswith("<!-- audit-summary -->")

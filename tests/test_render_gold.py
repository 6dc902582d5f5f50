"""Golden files of every output, from fixture results that hold every family and a statistics run (issue 17).

tests/fixtures/result_every_family.json is the result.json of an in-memory `audit run` of the tiny model with
policies/fin.yaml and `--all-checks` (every registered check, every family, a training split and a current set);
tests/fixtures/result_statistics.json is the result.json of `audit merge` of two silos' statistics, one of them
noised (tests/test_registry_equivalence.py makes them). Both are static: the renderers read nothing but the
result, so report.html, junit.xml and summary.md rendered from them are the same on every machine once the
scrubs (run id, times, versions, paths) are applied.

    AUDIT_UPDATE_FIXTURES=1 pytest tests/test_render_gold.py   # re-make the two fixture results (tiny model)
    AUDIT_UPDATE_GOLD=1 pytest tests/test_render_gold.py       # re-render the gold copies; review the diff
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from audit.checks import FAMILIES, all_checks
from audit.render import render_html, render_junit, render_markdown

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
GOLD = HERE / "gold" / "outputs"
EVERY = FIXTURES / "result_every_family.json"
STATS = FIXTURES / "result_statistics.json"
UPDATE_GOLD = os.environ.get("AUDIT_UPDATE_GOLD") == "1"
UPDATE_FIXTURES = os.environ.get("AUDIT_UPDATE_FIXTURES") == "1"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def scrub(text: str, result: dict) -> str:
    """Blank what changes between runs and machines: run id, times, versions, the fixture run's folders."""
    run_id = str(result.get("run", {}).get("id") or "")
    if run_id:
        text = text.replace(run_id, "RUN-ID")
    text = re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?", "TIME", text)
    text = re.sub(r"\b\d+\.\d+\.\d+([a-z0-9.+-]*)?\b", "X.Y.Z", text)  # tool, python and package versions
    return text


def check_gold(name: str, actual: str) -> None:
    path = GOLD / name
    if UPDATE_GOLD:
        GOLD.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"{path} is missing; run with AUDIT_UPDATE_GOLD=1 to create it")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        for i, (a, b) in enumerate(zip(actual.splitlines(), expected.splitlines(), strict=False), 1):
            if a != b:
                pytest.fail(f"{name} differs from gold at line {i}:\n  gold:   {b[:200]}\n  actual: {a[:200]}\n"
                            "(AUDIT_UPDATE_GOLD=1 regenerates the gold copy after review)")
        pytest.fail(f"{name} differs from gold in length ({len(actual)} vs {len(expected)} characters)")


# ---------------------------------------------------------------- making the fixtures (opt-in)


def _strip_paths(value, roots: list[str]):
    if isinstance(value, dict):
        return {k: _strip_paths(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_paths(v, roots) for v in value]
    if isinstance(value, str):
        for r in sorted(roots, key=len, reverse=True):
            value = value.replace(r, "/fixture")
        return value
    return value


@pytest.mark.skipif(not UPDATE_FIXTURES, reason="re-makes the fixture results only with AUDIT_UPDATE_FIXTURES=1")
def test_make_fixture_results(tiny_model, tmp_path):
    """Not a check: re-makes the two fixture results from real runs of the tiny model (review the diff)."""
    from click.testing import CliRunner

    from audit.cli import cli
    from audit.merge import run_merge
    from audit.model import open_bundle
    from tests.conftest import make_frame
    from tests.test_registry_equivalence import RUN_POLICY, silo_stats, synthetic

    current = make_frame(300, seed=8)
    current["text"] = current["text"] + " and has missed payments often late"
    current.to_csv(tmp_path / "current.csv", index=False)
    out = tmp_path / "every"
    r = CliRunner().invoke(cli, ["run", str(tiny_model), "--policy", str(HERE.parent / "policies" / "fin.yaml"),
                                 "--current", str(tmp_path / "current.csv"), "--all-checks", "--out", str(out),
                                 "--no-progress"], catch_exceptions=False)
    assert r.exit_code in (0, 1, 3), r.output
    roots = [str(tmp_path), str(tiny_model.parent), str(HERE.parent)]
    EVERY.write_text(json.dumps(_strip_paths(_load(out / "result.json"), roots), indent=2, ensure_ascii=False)
                     + "\n", encoding="utf-8")

    bundle = open_bundle(tiny_model)
    files = []
    for seed in (1, 2):
        p = tmp_path / f"silo{seed}.stats.json"
        silo_stats(bundle, synthetic(800, seed), p, 5.0 if seed == 2 else None)
        files.append(p)
    ref = tmp_path / "ref.stats.json"
    silo_stats(bundle, synthetic(600, 9), ref)
    (tmp_path / "merge.yaml").write_text(RUN_POLICY)
    merged = run_merge(files, tmp_path / "merge.yaml", reference_paths=[ref], out_dir=tmp_path / "merged")
    STATS.write_text(json.dumps(_strip_paths(_load(merged.out_dir / "result.json"), roots), indent=2,
                                ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- the gold copies


@pytest.mark.parametrize("fixture, tag", [(EVERY, "every-family"), (STATS, "statistics")])
def test_outputs_match_gold(fixture, tag):
    result = _load(fixture)
    check_gold(f"report-{tag}.html", scrub(render_html(result), result))
    check_gold(f"junit-{tag}.xml", scrub(render_junit(result), result))
    check_gold(f"summary-{tag}.md", scrub(render_markdown(result), result))


def test_the_every_family_fixture_covers_every_family_and_check():
    """The gold copies hold every section only if the fixture does: every family and every registered check is
    in it and in its report, each family with its own section (a new check or family fails here until the
    fixture is re-made with it)."""
    result = _load(EVERY)
    html = render_html(result)
    measured = set(result["measurements"])
    missing = sorted(set(all_checks()) - measured)
    assert not missing, f"re-make the fixture (AUDIT_UPDATE_FIXTURES=1): it lacks {missing}"
    for fam in FAMILIES:
        assert f'id="family-{fam}"' in html, fam
    from audit.render.format import humanize

    titles = {f["check_id"]: f.get("title") for f in result["findings"]}
    shown = html.replace("&#39;", "'").replace("&amp;", "&")
    for cid in sorted(measured):
        title = result["measurements"][cid].get("title") or titles.get(cid) or humanize(cid)
        assert title in shown, (cid, title)
    statuses = {f["status"] for f in result["findings"]}
    assert {"PASS", "INCONCLUSIVE"} <= statuses, statuses  # more than one kind of finding is rendered


def test_the_statistics_fixture_renders_its_statistics_section():
    result = _load(STATS)
    assert result["scoring"].get("statistics") or result.get("statistics") or result.get("federated"), \
        "the statistics fixture is not a statistics run"
    html = render_html(result)
    assert 'id="statistics"' in html or 'id="h-statistics"' in html

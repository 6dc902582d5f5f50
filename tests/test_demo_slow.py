"""The demo on the real packaged MiniLM (minutes): run with `pytest -m slow`."""

import json

import pytest
from click.testing import CliRunner

from audit.cli import cli


@pytest.mark.slow
def test_demo_trains_audits_and_reports(tmp_path):
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo"), "--epochs", "1", "--no-progress"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "verdict:" in r.output and "report:" in r.output
    runs = [p for p in (tmp_path / "demo" / "reports").iterdir() if p.is_dir()]
    assert len(runs) == 1
    result = json.loads((runs[0] / "result.json").read_text())
    assert result["data"]["eval"]["rows"] == 300
    assert result["measurements"]["performance.roc_auc"]["value"] > 0.6
    assert (runs[0] / "report.html").stat().st_size < 2_000_000
    ledger = [json.loads(line) for line in (tmp_path / "demo" / "reports" / "ledger.jsonl").read_text().splitlines()]
    assert [(e["seq"], e["run_id"], e["verdict"], e["exit_code"]) for e in ledger] == [
        (1, result["run"]["id"], result["verdict"]["status"], result["verdict"]["exit_code"])]
    assert result["data"]["current"]["rows"] == 200  # the shifted cohort for the drift checks
    assert CliRunner().invoke(cli, ["verify", str(runs[0])]).exit_code == 0

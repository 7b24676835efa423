"""Reference results beside a user's own: a reference set made in the test from synthetic
runs (exported as JSON lines, as the device check does), loaded and shown by the report."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.export import export
from deploybench.reference import (ReferenceError, ReferenceInfo, beside_own, load_reference,
                                   write_manifest)
from deploybench.store import Store
from deploybench.synthetic import synthetic_runs

runner = CliRunner()
INFO = ReferenceInfo("1x GPU-like test machine, 16 cores", "2026-12-01",
                     "bash scripts/device_check.sh", "abc123")


@pytest.fixture()
def reference_dir(tmp_path):
    runs = (synthetic_runs("BM/4/PIN/GPU", 8.0, runs=3, host="ref-host")
            + synthetic_runs("BM/4/PIN/CPU", 40.0, runs=3, host="ref-host")
            + synthetic_runs("BM/4/PIN/GPU", 2.0, runs=2, inference_only=True, host="ref-host")
            + synthetic_runs("BM/16/PIN/CPU", 20.0, runs=2, failed=1, host="ref-host"))
    with Store(tmp_path / "ref.db") as store:
        for r in runs:
            store.add(r)
        folder = tmp_path / "reference-set"
        export(store, folder, "jsonl")
    write_manifest(folder, INFO)
    return folder


def test_a_reference_set_gives_each_scenarios_mean_over_its_successful_runs(reference_dir):
    ref = load_reference(reference_dir)
    assert ref.info == INFO
    by = {(r.scenario, r.inference_only): r for r in ref.rows}
    assert set(by) == {("BM/4/PIN/GPU", False), ("BM/4/PIN/CPU", False), ("BM/4/PIN/GPU", True),
                       ("BM/16/PIN/CPU", False)}
    assert by[("BM/4/PIN/GPU", False)].e2e_mean_ms == pytest.approx(8.0, rel=1e-3)
    assert by[("BM/4/PIN/GPU", False)].runs == 3
    assert by[("BM/16/PIN/CPU", False)].runs == 2  # the failed run is not averaged
    assert by[("BM/4/PIN/GPU", True)].workload == "ic (tiny, torch, inference only)"
    # synthetic phase shares 25/70/5
    assert by[("BM/4/PIN/CPU", False)].infer_mean_ms == pytest.approx(28.0, rel=1e-2)


def test_the_users_own_runs_stand_beside_the_matching_reference_rows(reference_dir):
    own = synthetic_runs("BM/4/PIN/CPU", 60.0, runs=3, host="my-laptop")
    lines = {(l.reference.scenario, l.reference.inference_only): l for l in beside_own(load_reference(reference_dir), own)}
    assert lines[("BM/4/PIN/CPU", False)].own_e2e_mean_ms == pytest.approx(60.0, rel=1e-3)
    assert lines[("BM/4/PIN/CPU", False)].own_over_reference == pytest.approx(1.5, rel=1e-2)
    assert lines[("BM/4/PIN/GPU", False)].own_e2e_mean_ms is None


def test_report_reference_shows_a_labelled_section_and_never_pools_the_runs(tmp_path, reference_dir):
    db = tmp_path / "own.db"
    with Store(db) as store:
        for r in synthetic_runs("BM/4/PIN/CPU", 60.0, runs=3, host="my-laptop"):
            store.add(r)
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--db", str(db), "-o", str(out), "--reference", str(reference_dir)])
    assert result.exit_code == 0, result.output
    assert f"reference: 4 scenarios from {INFO.label}" in result.output
    html = out.read_text()
    section = html[html.index('<section id="reference">'):]
    assert "1x GPU-like test machine, 16 cores" in section and "2026-12-01" in section
    assert "bash scripts/device_check.sh" in section and "abc123" in section
    assert "BM/4/PIN/GPU" in section and "1.50x" in section
    # the user's results table holds the user's host only
    results = html[html.index('<section id="results">'):html.index('<section id="overhead">')]
    assert "my-laptop" in results and "ref-host" not in results


def test_a_report_without_reference_has_no_reference_section(tmp_path):
    db = tmp_path / "own.db"
    with Store(db) as store:
        for r in synthetic_runs("BM/1/PIN/CPU", 10.0, runs=2):
            store.add(r)
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["report", "--db", str(db), "-o", str(out)]).exit_code == 0
    assert 'id="reference"' not in out.read_text()


@pytest.mark.parametrize("break_it, message", [
    (lambda d: (d / "reference.json").unlink(), "is not a reference set"),
    (lambda d: (d / "reference.json").write_text(json.dumps({"schema": 9})), "reference schema 9 is not 1"),
    (lambda d: (d / "runs.jsonl").write_text("{not json\n"), "line 1 is not JSON"),
])
def test_an_unusable_reference_is_a_one_line_error(tmp_path, reference_dir, break_it, message):
    break_it(reference_dir)
    db = tmp_path / "own.db"
    with Store(db) as store:
        store.add(synthetic_runs("BM/1/PIN/CPU", 10.0, runs=1)[0])
    result = runner.invoke(app, ["report", "--db", str(db), "-o", str(tmp_path / "r.html"),
                                 "--reference", str(reference_dir)])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_manifest_command_writes_a_versioned_file(tmp_path):
    from deploybench.reference import main

    assert main(["manifest", str(tmp_path), "--machine", "m", "--command", "c", "--date", "2026-01-02"]) == 0
    data = json.loads((tmp_path / "reference.json").read_text())
    assert data == {"schema": 1, "machine": "m", "date": "2026-01-02", "command": "c", "git_revision": "",
                    "notes": ""}

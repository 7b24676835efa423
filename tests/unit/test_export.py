import csv
import json

from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.store import Store

from .fakes import record


def _db(tmp_path):
    db = tmp_path / "x.db"
    with Store(db) as s:
        s.add(record("BM/1/PIN/CPU", e2e_ms=[10, 20]))
        s.add(record("CN/2/VNL/CPU", e2e_ms=[5], platform={"accel": "native", "start_latency_s": 0.4}))
        s.add(record("BM/1/PIN/CPU", status="timeout", error="killed"))
    return db


def test_csv_export_has_runs_and_every_raw_sample(tmp_path):
    result = CliRunner().invoke(app, ["export", "--db", str(_db(tmp_path)), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    runs = list(csv.DictReader(open(tmp_path / "out/runs.csv")))
    samples = list(csv.DictReader(open(tmp_path / "out/samples.csv")))
    assert sorted(r["scenario"] for r in runs) == ["BM/1/PIN/CPU", "BM/1/PIN/CPU", "CN/2/VNL/CPU"]
    ok = next(r for r in runs if r["scenario"] == "BM/1/PIN/CPU" and r["status"] == "ok")
    assert float(ok["e2e_mean_ms"]) == 15.0 and ok["cores"] == "1" and ok["cpu_mode"] == "PIN"
    assert next(r for r in runs if r["status"] == "timeout")["error"] == "killed"
    assert len(samples) == 3
    mine = [s for s in samples if s["run_id"] == ok["run_id"]]
    assert [int(s["preprocess_ns"]) + int(s["infer_ns"]) + int(s["postprocess_ns"]) for s in mine] == [10_000_000, 20_000_000]


def test_jsonl_export_and_unknown_format(tmp_path):
    db = _db(tmp_path)
    assert CliRunner().invoke(app, ["export", "--db", str(db), "-o", str(tmp_path / "j"), "--format", "jsonl"]).exit_code == 0
    rows = [json.loads(line) for line in open(tmp_path / "j/runs.jsonl")]
    assert {r["status"] for r in rows} == {"ok", "timeout"}
    bad = CliRunner().invoke(app, ["export", "--db", str(db), "--format", "xlsx"])
    assert bad.exit_code == 2 and "unknown export format 'xlsx'" in bad.output

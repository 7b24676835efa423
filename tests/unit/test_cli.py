import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.store import Store

from .fakes import record

runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["run", "XX/1/PIN/CPU"], "error: unknown platform 'XX': use one of BM CN VM MVM VMCN"),
    (["run", "BM/999/PIN/CPU"], "asks for 999 cores but this host has"),
    (["run", "BM/1/PIN/CPU", "--app", "nosuchapp"], "error: unknown app 'nosuchapp'"),
    (["run", "BM/1/PIN/CPU", "--model-size", "huge"], "has no model size 'huge'"),
    (["run", "BM/1/PIN/GPU"], "no GPU on this host"),
    (["run", "BM/1/PIN/CPU", "--app", "json:nothing"], "has no app class 'nothing'"),
    (["show", "--db", "/nonexistent/x.db"], "error: no store at /nonexistent/x.db"),
    (["run", "BM/1/PIN/CPU", "--cpus", "999"], "error: cannot pin to CPUs 999: usable are"),
    (["run", "BM/1/PIN/CPU", "--cpus", "0-1"], "--cpus names 2 CPUs for a 1-core scenario"),
    (["run", "BM/1/PIN/CPU", "--cpus", "two"], "cannot read CPU list 'two'"),
    (["run", "CN/1/PIN/CPU", "--engine", "lxc"], "unknown container engine 'lxc'"),
    (["run", "VM/1/PIN/CPU", "--kernel", "/nonexistent/vmlinux"], "guest kernel /nonexistent/vmlinux does not exist"),
])
def test_bad_input_gives_one_line_errors(args, message, host):
    if "GPU" in args[1] and host.gpus:
        pytest.skip("this host has a GPU")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_show_json_has_the_documented_keys(tmp_path):
    db = tmp_path / "x.db"
    with Store(db) as s:
        for _ in range(3):
            s.add(record(e2e_ms=[10, 11, 12, 13]))
    result = runner.invoke(app, ["show", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    for key in ("scenario", "app", "runs", "e2e_mean_ms", "e2e_ci95_ms", "p50_ms", "p90_ms", "p99_ms",
                "pre_ms", "infer_ms", "post_ms", "samples_per_s", "affinity_cpus", "warnings"):
        assert key in row
    assert row["runs"] == 3 and row["scenario"] == "BM/1/PIN/CPU"
    assert row["e2e_mean_ms"] == pytest.approx(11.5)
    assert row["ci_basis"] == "runs" and row["e2e_ci95_ms"] == pytest.approx(0.0, abs=1e-9)


def test_help_does_not_import_torch():
    code = ("import sys; from deploybench.cli import app; from typer.testing import CliRunner; "
            "CliRunner().invoke(app, ['--help']); CliRunner().invoke(app, ['run', '--help']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_doctor_json_lists_checks():
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    names = [c["name"] for c in data["checks"]]
    assert "cgroups" in names and "platform BM" in names and "gpu" in names
    assert data["host"]["cores"] >= 1

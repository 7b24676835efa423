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
    for key in ("scenario", "app", "runs", "launches", "e2e_mean_ms", "e2e_ci95_ms", "ci_basis", "p50_ms",
                "p90_ms", "p99_ms", "pre_ms", "infer_ms", "post_ms", "queue_ms", "samples_per_s",
                "affinity_cpus", "warnings", "requests", "loadgen_scenario", "batch_size", "inference_only",
                "data_set", "data_count", "data_seed", "host", "hosts", "loadgen_valid",
                "loadgen_p99_ms", "loadgen_reason"):
        assert key in row, key
    assert row["runs"] == 3 and row["scenario"] == "BM/1/PIN/CPU"
    assert row["host"].startswith("hc-") and row["hosts"] == [record().host["host"]]  # class, names
    assert row["e2e_mean_ms"] == pytest.approx(11.5)
    # runs stored without a launch count as a launch each: the CI is over launches
    assert row["ci_basis"] == "launches" and row["launches"] == 3
    assert row["e2e_ci95_ms"] == pytest.approx(0.0, abs=1e-9)
    assert row["requests"] == 32 and "scenario_key" in row  # plain fields, not only inside the key


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


# -- one-line usage errors, everywhere -------------------------------------------------------------
@pytest.mark.parametrize("args, line", [
    (["run", "BM/1/PIN/CPU", "--requests", "0"], "error: --requests must be >= 1 (got 0)"),
    (["run", "BM/1/PIN/CPU", "--repeat", "0"], "error: --repeat must be >= 1 (got 0)"),
    (["run", "BM/1/PIN/CPU", "--warmup", "-1"], "error: --warmup must be >= 0 (got -1)"),
    (["run", "BM/1/PIN/CPU", "--timeout", "0"], "error: --timeout must be > 0 (got 0)"),
    (["sweep", "s.toml", "--timeout", "-5"], "error: --timeout must be > 0 (got -5)"),
    (["data", "--count", "0"], "error: --count must be >= 1 (got 0)"),
    (["run", "BM/1/PIN/CPU", "--requests", "many"], "error: --requests: input should be a valid integer"),
    (["run", "BM/1/PIN/CPU", "--nosuch"], "error: no such option: --nosuch (see `deploybench run --help`)"),
    (["run"], "error: missing SCENARIO... (see `deploybench run --help`)"),
    (["compare", "BM/1/PIN/CPU"], "error: missing B (see `deploybench compare --help`)"),
    (["sweep"], "error: missing STUDY.toml (see `deploybench sweep --help`)"),
    (["frobnicate"], "error: no such command 'frobnicate' (see `deploybench --help`)"),
])
def test_usage_errors_are_one_line_with_exit_status_2(args, line):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [line] or result.output.strip().startswith(line)
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and "╭" not in result.output


def test_version_prints_the_version_and_the_git_revision():
    from deploybench import __version__
    from deploybench.host import git_revision

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"deploybench {__version__} (git {git_revision()})"


# -- run and sweep: one set of options, one validation ----------------------------------------------
SWEEP_STUDY = """
name = "parity"
apps = ["ic"]
platforms = ["BM", "CN", "VMCN"]
cores = [1]
model_sizes = "tiny"
"""


@pytest.mark.parametrize("flags, message", [
    (["--runtime", "foo"], "error: unknown OCI runtime 'foo' (--runtime): use one of runc, crun"),
    (["--accel", "foo"], "error: unknown accelerator 'foo' (--accel): use one of auto, kvm, tcg"),
    (["--engine", "lxc"], "error: unknown container engine 'lxc'"),
    (["--kernel", "/nonexistent/vmlinux"], "error: guest kernel /nonexistent/vmlinux does not exist"),
    (["--initrd", "/etc/hostname"], "error: --initrd needs --kernel too"),
])
def test_sweep_refuses_every_bad_platform_flag_exactly_like_run(flags, message, tmp_path):
    study = tmp_path / "s.toml"
    study.write_text(SWEEP_STUDY)
    db = tmp_path / "x.db"
    as_run = runner.invoke(app, ["run", "BM/1/PIN/CPU", "--db", str(db), *flags])  # BM: no flag applies
    as_sweep = runner.invoke(app, ["sweep", str(study), "--db", str(db), *flags])
    for result in (as_run, as_sweep):
        assert result.exit_code == 2, result.output
        assert result.output.strip().startswith(message)
        assert len(result.output.strip().splitlines()) == 1
    assert as_run.output == as_sweep.output
    assert not db.exists()


def test_engine_on_vmcn_is_refused_by_run_and_sweep_alike(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text(SWEEP_STUDY)
    as_run = runner.invoke(app, ["run", "VMCN/1/PIN/CPU", "--engine", "docker"])
    as_sweep = runner.invoke(app, ["sweep", str(study), "--engine", "docker", "--plan"])
    assert as_run.exit_code == as_sweep.exit_code == 2
    assert as_run.output == as_sweep.output
    assert "--engine applies to CN only" in as_run.output


def test_sweep_app_must_be_one_of_the_studys(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text(SWEEP_STUDY)
    result = runner.invoke(app, ["sweep", str(study), "--app", "nlp", "--plan"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: study parity has no app 'nlp': its apps are ic "
                                     "(--app picks one of them)")


def _options(command: str) -> set[str]:
    """A command's options (for a group such as `fleet`: its subcommands'), hidden ones aside."""
    from typer.main import get_command

    cmd = get_command(app).commands[command]
    params = [p for sub in getattr(cmd, "commands", {}).values() for p in sub.params] + list(cmd.params)
    return {opt for p in params if not getattr(p, "hidden", False)
            for opt in p.opts if opt.startswith("--")} - {"--help"}


def test_every_run_option_is_in_sweep_or_in_the_table_of_run_only_options():
    from deploybench.cli import RUN_ONLY_OPTIONS

    run_help = runner.invoke(app, ["run", "--help"], terminal_width=200).output
    sweep_help = runner.invoke(app, ["sweep", "--help"], terminal_width=200).output
    run_options, sweep_options = _options("run"), _options("sweep")
    for option in run_options:
        assert option in run_help
        assert option in sweep_help or option in RUN_ONLY_OPTIONS, f"{option}: add it to sweep or the table"
    for option, reason in RUN_ONLY_OPTIONS.items():
        assert option in run_options and option not in sweep_options and reason
    for option in ("--engine", "--kernel", "--initrd", "--timeout", "--json", "--app", "--runtime", "--accel"):
        assert option in sweep_options


def test_the_readme_lists_exactly_the_options_of_each_command():
    import re
    from pathlib import Path

    from typer.main import get_command

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for bullet in re.split(r"\n- ", section):
        for command, spec in re.findall(r"`deploybench ([a-z]+)([^`]*)`", bullet):
            listed.setdefault(command, set()).update(re.findall(r"--[a-z][a-z-]*", spec))
    commands = set(get_command(app).commands)
    assert set(listed) - {"--version"} == commands | set()
    for command in commands:
        assert listed[command] == _options(command), command
    assert "deploybench --version" in section


def test_model_size_help_lists_each_apps_sizes():
    from deploybench.apps import BUILTIN_APPS, BUILTIN_SIZES, resolve_app_class

    assert set(BUILTIN_SIZES) == set(BUILTIN_APPS)
    for name, sizes in BUILTIN_SIZES.items():
        assert tuple(resolve_app_class(name).sizes) == sizes
    text = " ".join(runner.invoke(app, ["run", "--help"]).output.replace("│", " ").split())
    for name, sizes in BUILTIN_SIZES.items():
        assert f"{name} {'|'.join(sizes)}" in text


def test_the_data_file_default_is_the_same_everywhere():
    from typer.main import get_command

    from deploybench.datasets import DEFAULT_DATA_COUNT
    from deploybench.study import StudyModel

    def default(command, option):
        [param] = [p for p in get_command(app).commands[command].params if option in p.opts]
        return param.default

    assert default("run", "--data-count") == default("data", "--count") == DEFAULT_DATA_COUNT == 16
    assert StudyModel.model_fields["data_count"].default == DEFAULT_DATA_COUNT


def test_help_of_every_command_imports_no_torch():
    code = ("import sys; from deploybench.cli import app; from typer.testing import CliRunner; "
            "[CliRunner().invoke(app, [c, '--help']) for c in "
            "('run', 'sweep', 'show', 'compare', 'report', 'export', 'import', 'data', 'doctor')]; "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# -- reading commands: what the store has ---------------------------------------------------------
def test_show_and_compare_of_an_unknown_app_name_what_the_store_has(tmp_path):
    db = tmp_path / "x.db"
    with Store(db) as s:
        s.add(record(app="ic"))
        s.add(record(app="nlp"))
    for args in (["show"], ["compare", "BM/1/PIN/CPU", "BM/1/VNL/CPU"], ["report", "-o", str(tmp_path / "r.html")]):
        result = runner.invoke(app, [*args, "--db", str(db), "--app", "nosuch"])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (f"error: no runs of app 'nosuch' in {db}: it has runs of "
                                         "ic, nlp (e.g. --app ic)")
    assert not (tmp_path / "r.html").exists()


def test_compare_inference_only_says_when_only_e2e_runs_exist(tmp_path):
    db = tmp_path / "x.db"
    with Store(db) as s:
        for name in ("BM/1/PIN/CPU", "BM/1/VNL/CPU"):
            for _ in range(2):
                s.add(record(name=name))
    result = runner.invoke(app, ["compare", "BM/1/PIN/CPU", "BM/1/VNL/CPU", "--db", str(db),
                                 "--inference-only"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: no successful --inference-only runs of BM/1/PIN/CPU "
                                     "in this store, only E2E ones: drop --inference-only")


def test_a_parquet_export_without_pyarrow_leaves_nothing_behind(tmp_path, monkeypatch):
    db = tmp_path / "x.db"
    with Store(db) as s:
        s.add(record())
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", "--db", str(db), "--format", "parquet", "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: parquet export needs pyarrow: pip install pyarrow, or use --format csv"
    assert not out.exists()


def test_a_failing_export_removes_what_it_wrote(tmp_path, monkeypatch):
    from deploybench import export as export_mod

    db = tmp_path / "x.db"
    with Store(db) as s:
        s.add(record())

    def full_disk(path, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod, "_write_jsonl", full_disk)
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", "--db", str(db), "--format", "jsonl", "-o", str(out)])
    assert result.exit_code == 2
    assert "No space left on device" in result.output and not out.exists()


def test_import_adds_a_recovery_file_once(tmp_path):
    from deploybench.store import write_recovery

    db = tmp_path / "x.db"
    Store(db).close()
    lost = record(e2e_ms=[4, 5])
    saved = write_recovery([lost], db, reason="database or disk is full")
    first = runner.invoke(app, ["import", str(saved)])  # to the store it was meant for
    again = runner.invoke(app, ["import", str(saved), "--db", str(db)])
    assert first.exit_code == again.exit_code == 0
    assert first.output.strip() == f"{saved}: 1 run added to {db.resolve()}; the file may be deleted"
    assert again.output.strip() == f"{saved}: 0 runs added to {db}, 1 already there; the file may be deleted"
    with Store(db, readonly=True) as s:
        [back] = s.runs()
    assert back.run_id == lost.run_id and back.samples["infer_ns"] == lost.samples["infer_ns"]
    bad = runner.invoke(app, ["import", str(db)])
    assert bad.exit_code == 2 and "is not a recovery file" in bad.output


def test_data_reports_a_damaged_set_and_regenerates_it_with_force(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path))
    made = runner.invoke(app, ["data", "--app", "rs", "--count", "2"])
    assert made.exit_code == 0, made.output
    folder = made.output.splitlines()[0]
    cached = runner.invoke(app, ["data", "--app", "rs", "--count", "2"])
    assert cached.output.splitlines() == [folder, "cached: 2 files verified (sha256)"]
    victim = f"{folder}/req_00000.tsv"
    with open(victim, "r+b") as f:
        f.truncate(10)
    bad = runner.invoke(app, ["data", "--app", "rs", "--count", "2"])
    assert bad.exit_code == 2
    assert bad.output.strip().startswith(f"error: data set {folder} is damaged: {victim} is truncated")
    assert bad.output.strip().endswith("regenerate it with `deploybench data --app rs --force --count 2`")
    fixed = runner.invoke(app, ["data", "--app", "rs", "--count", "2", "--force"])
    assert fixed.exit_code == 0 and fixed.output.splitlines() == [folder, "generated"]


def test_a_platform_that_a_given_flag_makes_unavailable_is_refused_not_skipped(tmp_path, monkeypatch, host):
    from deploybench.platforms import container as container_mod

    if host.cgroup_problem:
        pytest.skip(host.cgroup_problem)
    which = container_mod.shutil.which
    monkeypatch.setattr(container_mod.shutil, "which", lambda name: None if name == "crun" else which(name))
    study = tmp_path / "s.toml"
    study.write_text(SWEEP_STUDY.replace('"BM", "CN", "VMCN"', '"BM", "CN"'))
    as_run = runner.invoke(app, ["run", "CN/1/PIN/CPU", "--runtime", "crun"])
    as_sweep = runner.invoke(app, ["sweep", str(study), "--runtime", "crun", "--plan"])
    assert as_run.exit_code == as_sweep.exit_code == 2
    assert as_sweep.output.strip() == "error: CN cannot run here with --runtime crun: crun is not installed " \
                                      "(apt-get install crun; scripts/install.sh does)"
    assert as_run.output.strip() == as_sweep.output.strip()

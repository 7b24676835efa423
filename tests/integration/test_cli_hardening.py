"""The command line as a new user meets it, on real bare-metal runs: every case of issue 11's
"Why" (read-only store file and folder, a directory as --db, a truncated JPEG, flags sweep
skipped or run accepted, usage errors, an unknown app, compare --inference-only, parquet
without pyarrow, silent progress), plus a full disk, a newer schema and a migrated older
store. Each asserts the exit status, a one-line message naming the fix, no traceback, and
that nothing already stored changed; a failed store write leaves a recovery file that
`deploybench import` adds once."""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "store-schema1.db"
RUN = ["run", "--app", "ic", "--model-size", "tiny", "--requests", "16"]


def cli(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploybench", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600, **kwargs)


def one_line_error(proc: subprocess.CompletedProcess, code: int, *says: str) -> str:
    """The command failed with ``code`` and one line on stderr saying all of ``says``."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in says:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def content(db: Path) -> dict:
    """Every row of every table of a store (read without writing anything)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            cur = con.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            out[table] = sorted(tuple(sorted(zip(names, map(str, row)))) for row in cur.fetchall())
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def env(home) -> dict[str, str]:
    return {**os.environ, "DEPLOYBENCH_HOME": str(home)}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, env) -> Path:
    """A store with 4 real E2E runs: BM/1/PIN/CPU and BM/1/VNL/CPU, 2 each (ic tiny)."""
    db = tmp_path_factory.mktemp("seed") / "seed.db"
    proc = cli(*RUN, "BM/1/PIN/CPU", "BM/1/VNL/CPU", "--repeat", "2", "--db", str(db), env=env)
    assert proc.returncode == 0, proc.stderr
    return db


@pytest.fixture()
def store(seeded, tmp_path) -> Path:
    db = tmp_path / "runs.db"
    shutil.copy(seeded, db)
    return db


def runs_in(db: Path) -> int:
    return len(content(db)["runs"])


@contextmanager
def mounted(*args: str, target: Path):
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(disk: Path) -> None:
    """Fill a (small) file system to the last byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def remount_read_only(target: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)


# -- the store ---------------------------------------------------------------------------------
def test_a_read_only_store_file_is_refused_before_measuring_and_still_read(store, env):
    before = store.read_bytes()
    store.chmod(0o444)
    try:
        proc = cli(*RUN, "BM/1/PIN/CPU", "--db", str(store), env=env)
        one_line_error(proc, 2, f"store {store} is a read-only file", f"chmod u+w {store}", "--db")
        assert proc.stdout == ""  # nothing was measured
        shown = cli("show", "--db", str(store), "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        assert {row["scenario"] for row in json.loads(shown.stdout)} == {"BM/1/PIN/CPU", "BM/1/VNL/CPU"}
    finally:
        store.chmod(0o644)
    assert store.read_bytes() == before


def test_a_store_in_a_read_only_folder_is_refused_for_runs_and_read_by_every_reader(store, env, tmp_path):
    folder = store.parent
    before = content(store)
    folder.chmod(0o555)
    try:
        proc = cli(*RUN, "BM/1/PIN/CPU", "--db", str(store), env=env)
        one_line_error(proc, 2, f"is in a read-only folder {folder}", "make the folder writable")
        for args in (["show"], ["compare", "BM/1/PIN/CPU", "BM/1/VNL/CPU"],
                     ["report", "-o", str(tmp_path.parent / f"{tmp_path.name}-r.html")],
                     ["export", "-o", str(tmp_path.parent / f"{tmp_path.name}-export")]):
            read = cli(*args, "--db", str(store), env=env)
            assert read.returncode == 0, (args, read.stderr)
            assert "Traceback" not in read.stderr
    finally:
        folder.chmod(0o755)
    assert content(store) == before


def test_a_wal_store_on_a_read_only_disk_is_read_in_both_wal_states(seeded, env, tmp_path):
    """A cleanly closed store (no -shm can be made there: read immutable) and one copied
    while open (its -wal and -shm beside it: read with the WAL's runs)."""
    from deploybench.store import Store

    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(seeded, source / "clean.db")
    live = Store(source / "live.db")
    for record in Store(seeded, readonly=True).runs():
        live.add(record)
    for suffix in ("", "-wal", "-shm"):  # copied while a writer has it open
        shutil.copy(f"{source / 'live.db'}{suffix}", f"{source / 'copied.db'}{suffix}")
    shutil.copy(source / "copied.db", source / "nowal.db")
    shutil.copy(f"{source / 'copied.db'}-wal", f"{source / 'nowal.db'}-wal")  # a -wal, no -shm
    live.close()
    assert Path(f"{source / 'copied.db'}-wal").stat().st_size > 0
    with mounted("--bind", str(source), target=tmp_path / "ro") as ro:
        remount_read_only(ro)
        for name in ("clean.db", "copied.db"):
            shown = cli("show", "--db", str(ro / name), "--json", env=env)
            assert shown.returncode == 0, (name, shown.stderr)
            assert sum(row["runs"] for row in json.loads(shown.stdout)) == 4, name
        one_line_error(cli("show", "--db", str(ro / "nowal.db"), env=env), 2,
                       "has changes in nowal.db-wal that cannot be read from a read-only folder",
                       "copy nowal.db and nowal.db-wal to a writable folder")
        one_line_error(cli(*RUN, "BM/1/PIN/CPU", "--db", str(ro / "clean.db"), env=env), 2,
                       "is on a read-only file system: pass --db on a writable disk")


@pytest.mark.parametrize("command", ["run", "show"])
def test_a_directory_as_db_is_named_a_directory(command, env, tmp_path):
    args = [*RUN, "BM/1/PIN/CPU"] if command == "run" else ["show"]
    proc = cli(*args, "--db", str(tmp_path), env=env)
    one_line_error(proc, 2, f"store {tmp_path} is a directory, not a file",
                   f"--db {tmp_path / 'deploybench.db'}")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(env, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n" * 50)
    for args in ([*RUN, "BM/1/PIN/CPU"], ["show"]):
        one_line_error(cli(*args, "--db", str(notes), env=env), 2, f"{notes} is not an SQLite file")
    assert notes.read_text() == "my notes, not a database\n" * 50


def test_a_newer_schema_is_refused_by_writers_and_readers_and_left_as_it_is(store, env):
    con = sqlite3.connect(store)
    con.execute("PRAGMA user_version = 3")
    con.execute("UPDATE meta SET value='3' WHERE key='schema'")
    con.commit()
    con.close()
    before = store.read_bytes()
    for args in ([*RUN, "BM/1/PIN/CPU"], ["show"], ["export", "-o", str(store.parent / "x")]):
        one_line_error(cli(*args, "--db", str(store), env=env), 2,
                       f"store {store} has schema 3, newer than this deploybench reads (2)",
                       "upgrade deploybench")
    assert store.read_bytes() == before and not (store.parent / "x").exists()


def test_an_older_store_is_migrated_by_a_run_with_nothing_lost(env, tmp_path):
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    before = content(db)
    proc = cli(*RUN, "BM/1/PIN/CPU", "--db", str(db), env=env)
    assert proc.returncode == 0, proc.stderr
    after = content(db)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone() == (2,)
    con.close()
    assert set(before["samples"]) <= set(after["samples"]) and after["stops"] == before["stops"]
    old_ids = {dict(row)["run_id"] for row in before["runs"]}
    kept = [dict(row) for row in after["runs"] if dict(row)["run_id"] in old_ids]
    for old, new in zip(before["runs"], sorted(tuple(sorted(r.items())) for r in kept)):
        assert {k: v for k, v in new if k not in ("launch_id", "launch_round", "block_id", "block_pos")} \
            == dict(old)
    assert len(after["runs"]) == 4
    shown = cli("show", "--db", str(db), "--json", env=env)
    assert shown.returncode == 0 and "BM/1/PIN/CPU" in shown.stdout


def test_a_full_disk_after_the_run_saves_it_to_a_recovery_file_that_imports_once(seeded, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "DEPLOYBENCH_HOME": str(home)}
    assert cli("data", "--app", "ic", env=env).returncode == 0
    with mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs", target=tmp_path / "small") as disk:
        db = disk / "runs.db"
        shutil.copy(seeded, db)
        before = content(db)
        proc = subprocess.Popen([sys.executable, "-m", "deploybench", *RUN, "BM/1/PIN/CPU",
                                 "--db", str(db)], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runs = home / "runs"
        deadline = time.monotonic() + 120
        while not (runs.is_dir() and any(runs.iterdir())) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.02)
        fill(disk)  # the disk fills while the run measures
        out, err = proc.communicate(timeout=300)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        line = one_line_error(done, 1, f"could not be stored in {db}", "deploybench import")
        saved = Path(re.search(r"its full record is saved in (\S+):", line).group(1))
        assert saved.parent == home / "unsaved"  # the store's disk took nothing
        [run] = json.loads(saved.read_text())["runs"]
        assert run["status"] == "ok" and len(run["samples"]["preprocess_ns"]) == 16
        (disk / "filler").unlink()
        assert content(db) == before  # nothing half-written
        first = cli("import", str(saved), env=env)
        again = cli("import", str(saved), env=env)
        assert first.returncode == again.returncode == 0, first.stderr
        assert first.stdout.startswith(f"{saved}: 1 run added to {db}")
        assert "0 runs added" in again.stdout and "1 already there" in again.stdout
        assert runs_in(db) == len(before["runs"]) + 1


def test_a_full_disk_before_the_run_is_refused_before_measuring(seeded, env, tmp_path):
    with mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=tmp_path / "small") as disk:
        db = disk / "runs.db"
        shutil.copy(seeded, db)
        before = content(db)
        fill(disk)
        one_line_error(cli(*RUN, "BM/1/PIN/CPU", "--db", str(db), env=env), 2,
                       f"the disk holding store {db} is full", "free some space or pass --db")
        shown = cli("show", "--db", str(db), "--json", env=env)  # a full disk is still read
        assert shown.returncode == 0, shown.stderr
        assert sum(row["runs"] for row in json.loads(shown.stdout)) == 4
        (disk / "filler").unlink()
        assert content(db) == before


# -- the data set ------------------------------------------------------------------------------
def _jpeg(home: Path) -> Path:
    return home / "data" / "ic-n16-s0" / "img_00003.jpg"


def test_a_truncated_jpeg_is_found_by_data_and_run_and_regenerated_with_force(tmp_path):
    env = {**os.environ, "DEPLOYBENCH_HOME": str(tmp_path / "home")}
    assert cli("data", "--app", "ic", env=env).returncode == 0
    jpeg = _jpeg(tmp_path / "home")
    jpeg.write_bytes(jpeg.read_bytes()[:2000])
    db = tmp_path / "runs.db"
    for args in (["data", "--app", "ic"], [*RUN, "BM/1/PIN/CPU", "--db", str(db)]):
        one_line_error(cli(*args, env=env), 2, f"{jpeg} is truncated",
                       "`deploybench data --app ic --force`")
    assert runs_in(db) == 0 if db.exists() else True
    fixed = cli("data", "--app", "ic", "--force", env=env)
    assert fixed.returncode == 0 and fixed.stderr.strip() == "generated"
    assert cli("data", "--app", "ic", env=env).stderr.strip() == "cached: 17 files verified (sha256)"


def test_a_jpeg_that_fails_to_decode_names_itself_in_the_stored_run(tmp_path):
    """A set from an older deploybench (no checksums): the decode error itself names the file."""
    env = {**os.environ, "DEPLOYBENCH_HOME": str(tmp_path / "home")}
    assert cli("data", "--app", "ic", env=env).returncode == 0
    jpeg = _jpeg(tmp_path / "home")
    manifest_path = jpeg.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest = {k: v for k, v in manifest.items() if k not in ("sha256", "bytes")} | {"schema": 1}
    manifest_path.write_text(json.dumps(manifest))
    jpeg.write_bytes(jpeg.read_bytes()[:2000])
    said = cli("data", "--app", "ic", env=env)
    assert said.returncode == 0 and "not verified" in said.stderr
    db = tmp_path / "runs.db"
    proc = cli(*RUN, "BM/1/PIN/CPU", "--db", str(db), env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    from deploybench.store import Store

    [record] = Store(db, readonly=True).runs()
    assert record.status == "failed"
    assert f"input {jpeg} cannot be read (OSError: image file is truncated" in record.error
    assert "deploybench data --app ic --force" in record.error
    assert "failed" in proc.stdout and str(jpeg) in proc.stdout  # its line says so too


# -- flags -------------------------------------------------------------------------------------
STUDY = """
name = "it-flags"
apps = ["ic", "rs"]
platforms = ["BM", "CN"]
cores = [1]
modes = ["PIN"]
model_sizes = "tiny"
requests = 8
timeout_s = 300

[stopping]
warmup_rounds = 0
max_launches = 1
blocks = 1
"""


@pytest.fixture()
def study(tmp_path) -> Path:
    path = tmp_path / "it-flags.toml"
    path.write_text(STUDY)
    return path


def test_sweep_refuses_a_bad_runtime_like_run_instead_of_skipping_cn(study, env, tmp_path):
    db = tmp_path / "x.db"
    as_sweep = cli("sweep", str(study), "--db", str(db), "--runtime", "foo", env=env)
    as_run = cli(*RUN, "CN/1/PIN/CPU", "--db", str(db), "--runtime", "foo", env=env)
    line = one_line_error(as_sweep, 2, "unknown OCI runtime 'foo' (--runtime): use one of runc, crun")
    assert one_line_error(as_run, 2) == line
    assert as_sweep.stdout == "" and not db.exists()


def test_run_refuses_a_bad_accelerator_even_for_bare_metal(env, tmp_path):
    proc = cli(*RUN, "BM/1/PIN/CPU", "--accel", "foo", "--db", str(tmp_path / "x.db"), env=env)
    one_line_error(proc, 2, "unknown accelerator 'foo' (--accel): use one of auto, kvm, tcg")
    assert not (tmp_path / "x.db").exists()


def test_requests_0_is_one_line(env):
    proc = cli(*RUN[:-2], "BM/1/PIN/CPU", "--requests", "0", env=env)
    assert one_line_error(proc, 2) == "error: --requests must be >= 1 (got 0)"


def test_show_of_an_unknown_app_names_the_apps_of_the_store(store, env):
    proc = cli("show", "--db", str(store), "--app", "nosuch", env=env)
    one_line_error(proc, 2, f"no runs of app 'nosuch' in {store}: it has runs of ic", "--app ic")


def test_compare_inference_only_says_only_e2e_runs_exist(store, env):
    proc = cli("compare", "BM/1/PIN/CPU", "BM/1/VNL/CPU", "--db", str(store), "--inference-only", env=env)
    one_line_error(proc, 2, "no successful --inference-only runs of BM/1/PIN/CPU in this store, "
                            "only E2E ones: drop --inference-only")
    compared = cli("compare", "BM/1/PIN/CPU", "BM/1/VNL/CPU", "--db", str(store), env=env)
    assert compared.returncode == 0, compared.stderr
    assert compared.stdout.startswith("BM/1/PIN/CPU vs BM/1/VNL/CPU · ic (tiny, torch")
    assert any(v in compared.stdout for v in ("faster than", "slower than", "equivalent", "not decided yet"))


def test_sweep_takes_app_timeout_and_json(study, env, tmp_path):
    db = tmp_path / "x.db"
    proc = cli("sweep", str(study), "--db", str(db), "--app", "ic", "--timeout", "200", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)  # stdout is only the JSON
    assert {r["app"] for r in rows} == {"ic"} and {r["scenario"] for r in rows} <= {"BM/1/PIN/CPU", "CN/1/PIN/CPU"}
    lines = [ln for ln in proc.stderr.splitlines() if re.match(r"\[\s*\d+", ln)]
    assert len(lines) == len(rows) and all(" ic (tiny, torch) #0 ok " in ln for ln in lines)
    one_line_error(cli("sweep", str(study), "--app", "sr", "--plan", env=env), 2,
                   "study it-flags has no app 'sr': its apps are ic, rs")


# -- output ------------------------------------------------------------------------------------
def test_a_parquet_export_without_pyarrow_leaves_nothing_behind(store, env, tmp_path):
    out = tmp_path / "export"
    code = ("import sys; sys.modules['pyarrow'] = None; from deploybench.cli import main; "
            f"sys.argv = ['deploybench', 'export', '--db', {str(store)!r}, '--format', 'parquet', "
            f"'-o', {str(out)!r}]; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    one_line_error(proc, 2, "parquet export needs pyarrow: pip install pyarrow, or use --format csv")
    assert not out.exists()


def test_run_piped_to_a_file_prints_a_line_per_run(env, tmp_path):
    db = tmp_path / "x.db"
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "deploybench", *RUN, "BM/1/PIN/CPU",
                               "BM/1/VNL/CPU", "--warmup", "1", "--repeat", "2", "--seed", "0",
                               "--db", str(db)], stdout=f, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("[")]
    # 2 rounds each over 2 launches, each launch with its warm-up round first: 8 lines
    assert len(lines) == 8
    for i, line in enumerate(lines):
        epoch, first_of_launch = i // 4, i % 4 < 2
        assert re.match(rf"\[\s*{i + 1}/8\s+\d+:\d\d\] BM/1/(PIN|VNL)/CPU · ic \(tiny, torch\) "
                        rf"#{epoch} {'warmup' if first_of_launch else 'ok    '}\s+\d+\.\d s  E2E \d+\.\d\d ms",
                        line), line
    from deploybench.store import Store

    statuses = sorted(r.status for r in Store(db, readonly=True).runs())
    assert statuses == ["ok"] * 4 + ["warmup"] * 4


def test_version_and_doctor_tell_the_truth(env):
    version = cli("--version", env=env)
    assert version.returncode == 0 and re.fullmatch(r"deploybench \S+ \(git \S+\)\n", version.stdout)
    doctor = cli("doctor", "--json", env=env)
    assert doctor.returncode == 0, doctor.stderr
    checks = {c["key"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert {"platform.BM", "platform.VM", "runtime.runc", "engine.docker", "kvm", "gpu", "firecracker"} <= set(checks)
    expected = {"no": "emulated", "ok": "ok", "info": "info"}[checks["kvm"]["status"]]
    for name in ("VM", "MVM", "VMCN"):
        status = checks[f"platform.{name}"]["status"]
        if status != "no":  # unavailable (no QEMU...) says so whatever KVM does
            assert status == expected, checks[f"platform.{name}"]
    if shutil.which("firecracker") is None:
        assert checks["firecracker"]["status"] == "info"

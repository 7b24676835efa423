import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from deploybench.store import (
    RECOVERY_KIND, STORE_SCHEMA, RunRecord, Store, StoreError, group_by_scenario, read_recovery,
    write_recovery,
)

from .fakes import record


def test_runs_round_trip_with_raw_samples(store):
    r = record(e2e_ms=[10, 12, 14], warnings=[{"code": "few_samples", "message": "m", "hint": "h"}],
               platform={"cpu_stat": {"nr_throttled": 1}}, loadgen={"validity": "VALID"})
    store.add(r)
    [back] = store.runs()
    assert back.scenario == r.scenario and back.run_id == r.run_id and back.status == "ok"
    assert back.samples["preprocess_ns"] == r.samples["preprocess_ns"]
    assert back.samples["sample_id"] == ["s0", "s1", "s2"]
    assert back.warning_codes == ["few_samples"]
    assert back.platform == {"cpu_stat": {"nr_throttled": 1}}
    assert back.summary["e2e_mean_ms"] == pytest.approx(12.0)


def test_failed_runs_are_stored_with_their_reason(store):
    store.add(record(status="timeout", error="killed after the 5 s timeout"))
    [back] = store.runs()
    assert back.status == "timeout" and back.error == "killed after the 5 s timeout"
    assert back.samples["preprocess_ns"] == []


def test_run_keys_are_idempotent(store):
    store.add(record(run_key="study:abc:0"))
    assert store.has_key("study:abc:0") and store.keys() == {"study:abc:0"}
    with pytest.raises(StoreError, match="already stored"):
        store.add(record(run_key="study:abc:0"))
    assert store.count() == 1


def test_a_failed_write_stores_nothing_of_that_run(store, monkeypatch):
    r = record()
    r.samples["preprocess_ns"][1] = None  # violates NOT NULL mid-insert of the samples
    with pytest.raises(sqlite3.IntegrityError):
        store.add(r)
    assert store.count() == 0
    assert list(store.iter_sample_rows()) == []
    store.add(record())  # the store is still usable
    assert store.count() == 1


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "x.db"
    with Store(path) as s:
        s.add(record(e2e_ms=[1, 2]))
    with Store(path) as s:
        assert len(s.runs()) == 1


def test_refuses_files_that_are_not_stores_naming_what_they_are(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database at all" * 100)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="is not an SQLite file"):
            Store(bad, readonly=readonly)
    assert bad.read_text() == "not a database at all" * 100
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"not a deploybench store \(its tables: songs\)"):
        Store(other)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "x.db")
    with pytest.raises(StoreError, match="is a directory, not a file"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="is a directory, not a file"):
        Store(tmp_path, readonly=True)
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "absent.db", readonly=True)
    assert not (tmp_path / "absent.db").exists()


def test_emulated_native_and_other_kinds_of_host_are_never_pooled_identical_hosts_are():
    box = {"host": "a", "cpu_model": "EPYC", "host_cores": 2, "memory_gib": 23.5, "kernel": "6.1"}
    native = record(name="VM/1/PIN/CPU", platform={"accel": "kvm"}, host=box)
    emulated = record(name="VM/1/PIN/CPU", platform={"accel": "tcg"}, host=box)
    bigger = record(name="VM/1/PIN/CPU", platform={"accel": "kvm"}, host={**box, "host_cores": 4})
    twin = record(name="VM/1/PIN/CPU", platform={"accel": "kvm"}, host={**box, "host": "b", "memory_gib": 23.4})
    groups = group_by_scenario([native, emulated, bigger, twin])
    assert sorted(len(g) for g in groups.values()) == [1, 1, 2]
    assert any({r.host["host"] for r in g} == {"a", "b"} for g in groups.values())


# -- schema versions ---------------------------------------------------------------------------
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-schema1.db"


def _dump(path: Path) -> dict:
    """Everything a store holds, table by table, read with plain sqlite3 (order-independent)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            cur = con.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            out[table] = sorted(tuple(sorted(zip(names, row))) for row in cur.fetchall())
        return out
    finally:
        con.close()


@pytest.fixture()
def old_store(tmp_path) -> Path:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    return path


def test_the_fixture_is_a_schema_1_store_without_user_version(old_store):
    con = sqlite3.connect(old_store)
    assert con.execute("PRAGMA user_version").fetchone() == (0,)
    assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("1",)
    assert "launch_id" not in [r[1] for r in con.execute("PRAGMA table_info(runs)")]
    con.close()


def test_an_older_store_migrates_with_nothing_lost(old_store):
    before = _dump(old_store)
    with Store(old_store) as s:
        assert s.schema == STORE_SCHEMA == 2
        records = s.runs()
    after = _dump(old_store)
    for table in ("samples", "stops"):
        assert after[table] == before[table]
    new_columns = {"launch_id", "launch_round", "block_id", "block_pos"}
    assert len(after["runs"]) == len(before["runs"]) == 3
    for old_row, new_row in zip(before["runs"], after["runs"]):
        new = dict(new_row)
        assert {k: v for k, v in new.items() if k not in new_columns} == dict(old_row)
        assert all(new[c] is None for c in new_columns)
    con = sqlite3.connect(old_store)
    assert con.execute("PRAGMA user_version").fetchone() == (2,)
    assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)
    con.close()
    by_id = {r.run_id: r for r in records}
    ok = by_id[f"{1:032x}"]
    assert ok.status == "ok" and ok.run_key == "k1" and ok.study == "fixture"
    assert ok.samples["preprocess_ns"] == [3_000_001, 3_001_001, 3_002_001, 3_003_001]
    assert ok.warning_codes == ["few_samples"] and ok.launch_id is None
    assert by_id[f"{3:032x}"].error == "the worker wrote no result (exit status 1)"


def test_a_failed_migration_changes_nothing(old_store, monkeypatch):
    from deploybench import store as store_mod

    before = _dump(old_store)
    monkeypatch.setitem(store_mod.MIGRATIONS, 1, store_mod.MIGRATIONS[1] + ("ALTER TABLE nosuch ADD x",))
    with pytest.raises(StoreError, match="from schema 1 to 2 failed, nothing was changed"):
        Store(old_store)
    assert _dump(old_store) == before
    con = sqlite3.connect(old_store)
    assert con.execute("PRAGMA user_version").fetchone() == (0,)
    con.close()


def test_an_older_store_is_read_as_it_is_without_migrating(old_store):
    data = old_store.read_bytes()
    with Store(old_store, readonly=True) as s:
        assert s.schema == 1
        assert len(s.runs()) == 3 and {r.block_id for r in s.runs()} == {None}
    assert old_store.read_bytes() == data


def test_a_newer_schema_is_refused_in_one_line_and_left_as_it_is(tmp_path):
    path = tmp_path / "new.db"
    with Store(path) as s:
        s.add(record())
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 3")
    con.execute("UPDATE meta SET value='3' WHERE key='schema'")
    con.commit()
    con.close()
    data = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError) as info:
            Store(path, readonly=readonly)
        message = str(info.value)
        assert "has schema 3, newer than this deploybench reads (2): upgrade deploybench" in message
        assert "\n" not in message
    assert path.read_bytes() == data


def test_a_new_store_records_its_schema_in_user_version_and_meta(tmp_path):
    path = tmp_path / "fresh.db"
    Store(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone() == (STORE_SCHEMA,)
    assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (str(STORE_SCHEMA),)
    con.close()


def test_launch_and_block_fields_are_stored_and_read_back(store):
    store.add(record(launch_id="L1", launch_round=2, block_id="B7", block_pos=3))
    store.add(record())
    first, second = store.runs()
    assert (first.launch_id, first.launch_round, first.block_id, first.block_pos) == ("L1", 2, "B7", 3)
    assert (second.launch_id, second.launch_round, second.block_id, second.block_pos) == (None,) * 4


# -- writable or not -----------------------------------------------------------------------------
def test_a_read_only_file_is_refused_for_writing_but_read(tmp_path):
    path = tmp_path / "ro.db"
    with Store(path) as s:
        s.add(record())
    path.chmod(0o444)
    try:
        with pytest.raises(StoreError, match=r"is a read-only file: make it writable \(chmod u\+w"):
            Store(path)
        with Store(path, readonly=True) as s:
            assert len(s.runs()) == 1
    finally:
        path.chmod(0o644)


def test_a_read_only_folder_is_refused_for_writing_but_read(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    with Store(folder / "x.db") as s:
        s.add(record())
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="is in a read-only folder .*archive"):
            Store(folder / "x.db")
        with pytest.raises(StoreError, match="read-only folder"):
            Store(folder / "new.db")
        with Store(folder / "x.db", readonly=True) as s:
            assert len(s.runs()) == 1
    finally:
        folder.chmod(0o755)


def test_check_writable_refuses_a_full_disk(store, monkeypatch):
    from deploybench import store as store_mod

    store.check_writable()
    monkeypatch.setattr(store_mod, "free_bytes", lambda _path: 12 * 1024)
    with pytest.raises(StoreError, match=r"is full \(12 KiB free\): free some space or pass --db"):
        store.check_writable()


def test_a_read_only_store_cannot_be_checked_writable(tmp_path):
    Store(tmp_path / "x.db").close()
    with Store(tmp_path / "x.db", readonly=True) as s, pytest.raises(StoreError, match="read-only"):
        s.check_writable()


# -- runs that cannot be stored ------------------------------------------------------------------
class FullDisk:
    """A connection whose inserts fail as on a full disk (reads work)."""

    def __init__(self, db):
        self.db = db

    def execute(self, sql, *args):
        if sql.startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_a_run_that_cannot_be_stored_goes_to_a_recovery_file_and_imports_once(tmp_path):
    path = tmp_path / "runs.db"
    store = Store(path)
    store.add(record())
    real = store.db
    store.db = FullDisk(real)
    lost = record(e2e_ms=[5, 6, 7], launch_id="L", block_pos=1, run_key="slot-1", study="s")
    saved = store.add_or_recover(lost)
    store.db = real
    assert saved is not None and saved.parent == tmp_path and saved.name.startswith("runs.db.unsaved-")
    assert store.count() == 1
    records, meant_for = read_recovery(saved)
    assert meant_for == str(path.resolve())
    [back] = records
    assert back.to_json() == lost.to_json()
    assert store.import_records(records) == (1, 0)
    assert store.import_records(read_recovery(saved)[0]) == (0, 1)
    assert store.count() == 2
    [stored] = store.runs(scenario_key=lost.scenario.key, study="s")
    assert stored.samples["preprocess_ns"] == lost.samples["preprocess_ns"]
    assert stored.run_key == "slot-1" and stored.launch_id == "L"
    store.close()


def test_an_imported_run_whose_slot_was_refilled_keeps_its_data_not_its_key(store, tmp_path):
    store.add(record(run_key="slot"))
    saved = write_recovery([record(run_key="slot")], store.path, reason="disk full")
    assert store.import_records(read_recovery(saved)[0]) == (1, 0)
    assert store.count() == 2 and store.keys() == {"slot"}


def test_recovery_falls_back_when_the_store_folder_takes_nothing(tmp_path, monkeypatch):
    from deploybench import store as store_mod

    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setattr(store_mod, "recovery_folders",
                        lambda _p: [blocker / "sub", tmp_path / "home" / "unsaved"])
    saved = write_recovery([record()], tmp_path / "x.db", reason="permission denied")
    assert saved.parent == tmp_path / "home" / "unsaved"
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary left


def test_recovery_files_are_checked_before_import(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "something else"}')
    with pytest.raises(StoreError, match="is not a deploybench recovery file"):
        read_recovery(bad)
    with pytest.raises(StoreError, match="no file"):
        read_recovery(tmp_path / "none.json")
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"kind": RECOVERY_KIND, "schema": 99, "runs": []}))
    with pytest.raises(StoreError, match="recovery schema 99"):
        read_recovery(newer)


def test_run_records_round_trip_through_json():
    r = record(e2e_ms=[1, 2], launch_id="x", launch_round=1, warnings=[{"code": "c", "message": "m", "hint": "h"}])
    back = RunRecord.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r


def test_a_damaged_store_is_called_damaged_not_foreign(tmp_path):
    path = tmp_path / "x.db"
    with Store(path) as s:
        for _ in range(20):
            s.add(record(e2e_ms=[1.0] * 50))
    data = path.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[:5000])
    for readonly in (False, True):
        with pytest.raises(StoreError, match="is a damaged SQLite file .*restore it from a copy"):
            Store(cut, readonly=readonly)
    assert cut.read_bytes() == data[:5000]

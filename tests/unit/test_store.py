import sqlite3

import pytest

from deploybench.store import Store, StoreError, group_by_scenario

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


def test_refuses_files_that_are_not_stores(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database at all" * 100)
    with pytest.raises(StoreError, match="is not a deploybench store"):
        Store(bad)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "x.db")


def test_emulated_and_native_runs_are_never_pooled():
    native = record(name="VM/1/PIN/CPU", platform={"accel": "kvm"})
    emulated = record(name="VM/1/PIN/CPU", platform={"accel": "tcg"})
    other_host = record(name="VM/1/PIN/CPU", platform={"accel": "kvm"}, host={"host": "other"})
    assert len(group_by_scenario([native, emulated, other_host])) == 3

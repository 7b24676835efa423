"""The adaptive sweep: stopping rule, warm-ups, resume after an interruption, failures,
seeded interleaved order, run keys."""
from __future__ import annotations

import math
from collections import Counter

import pytest
from .sweep_fakes import QUIET, FakePlatform, noisy, planned, scenarios

from deploybench.findings import failures, summarize
from deploybench.scenario import Scenario
from deploybench.sweep import (
    StopRule, decide_stop, next_index, round_order, run_key, run_one, run_sweep,
)

RULE = StopRule(warmup_runs=1, target_rel_ci=0.02, min_runs=3, max_runs=8, max_time_s=600)


def keyed_runs(store, study):
    return [r for r in store.study_runs(study) if r["run_key"] is not None]


def test_deterministic_scenario_stops_early_at_min_runs(store, tmp_path):
    plan = planned([FakePlatform()], tmp_path, RULE)
    decisions = run_sweep(plan, store, study="s")
    (decision,) = decisions.values()
    assert decision.reason == "converged"
    assert decision.runs == RULE.min_runs
    assert len(keyed_runs(store, "s")) == RULE.warmup_runs + RULE.min_runs


def test_noisy_scenario_stops_late_at_max_runs(store, tmp_path):
    plan = planned([FakePlatform(mean_ms=noisy(sd=5.0))], tmp_path, RULE)
    (decision,) = run_sweep(plan, store, study="s").values()
    assert decision.reason == "max_runs"
    assert decision.rel_ci > RULE.target_rel_ci
    assert len(keyed_runs(store, "s")) == RULE.warmup_runs + RULE.max_runs


def test_time_budget_stops_a_scenario_and_says_so(store, tmp_path):
    rule = StopRule(warmup_runs=0, min_runs=3, max_runs=50, max_time_s=1e-9)
    plan = planned([FakePlatform(mean_ms=noisy())], tmp_path, rule)
    (decision,) = run_sweep(plan, store, study="s").values()
    assert decision.reason == "time_budget"
    assert len(keyed_runs(store, "s")) == 1
    (stop,) = store.stops("s")
    assert stop["reason"] == "time_budget" and "s of" in stop["detail"]


def test_warmup_runs_are_stored_but_never_averaged(store, tmp_path):
    # the warm-up run is 10x slower; the summary must not see it
    plan = planned([FakePlatform(mean_ms=lambda i: 100.0 if i == 0 else 10.0)], tmp_path, RULE)
    run_sweep(plan, store, study="s")
    records = store.runs(study="s")
    assert Counter(r.status for r in records) == {"warmup": 1, "ok": 3}
    (summary,) = summarize(records)
    assert summary.runs == 3 and summary.failed_runs == 0
    assert summary.e2e_mean_ms == pytest.approx(10.0)
    assert failures(records) == []


def test_failing_scenario_stops_after_two_failures_and_the_sweep_goes_on(store, tmp_path):
    bad = FakePlatform(outcome=lambda i: "failed")
    good = FakePlatform()
    plan = planned([bad, good], tmp_path, RULE)
    decisions = run_sweep(plan, store, study="s")
    by_name = {p.scenario.key: decisions[p.key] for p in plan}
    assert by_name[plan[0].key].reason == "failing"
    assert "fake failed" in by_name[plan[0].key].detail
    assert by_name[plan[1].key].reason == "converged"
    assert bad.calls == RULE.max_consecutive_failures
    failed = [r for r in store.runs(study="s") if r.status == "failed"]
    assert len(failed) == 2 and all(r.error.startswith("fake failed") for r in failed)


def test_timeouts_count_as_failures(store, tmp_path):
    plan = planned([FakePlatform(outcome=lambda i: "timeout")], tmp_path, RULE)
    (decision,) = run_sweep(plan, store, study="s").values()
    assert decision.reason == "failing"


def test_platform_crash_is_a_recorded_failure_not_a_traceback(store, tmp_path):
    class Exploding(FakePlatform):
        def run(self, scenario, job, timeout_s):
            raise OSError("disk on fire")

    plan = planned([Exploding(), FakePlatform()], tmp_path, RULE)
    decisions = run_sweep(plan, store, study="s")
    assert decisions[plan[0].key].reason == "failing"
    assert "OSError: disk on fire" in decisions[plan[0].key].detail
    assert decisions[plan[1].key].reason == "converged"


def test_skipped_scenarios_are_recorded_with_their_reason(store, tmp_path):
    fake = FakePlatform()
    plan = planned([fake, FakePlatform()], tmp_path, RULE, skip={0: "platform CN is not implemented"})
    decisions = run_sweep(plan, store, study="s")
    assert decisions[plan[0].key].reason == "skipped"
    assert fake.calls == 0
    assert {s["reason"] for s in store.stops("s")} == {"skipped", "converged"}


def test_interrupted_sweep_resumes_with_exactly_the_missing_runs(store, tmp_path):
    """Ctrl-C after 5 runs, then restart: the same runs as an uninterrupted sweep, no
    duplicates, and the interrupted run is kept without a key."""
    n = 3
    expected = n * (RULE.warmup_runs + RULE.min_runs)

    shared_calls = {"n": 0}

    def outcome(i):
        shared_calls["n"] += 1
        return "interrupted" if shared_calls["n"] == 6 else "ok"

    plan = planned([FakePlatform(outcome=outcome) for _ in range(n)], tmp_path, RULE)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, store, study="s")
    assert len(keyed_runs(store, "s")) == 5
    # restart with fresh platforms (a new process)
    plan = planned([FakePlatform() for _ in range(n)], tmp_path, RULE)
    decisions = run_sweep(plan, store, study="s")
    assert all(d.reason == "converged" for d in decisions.values())
    rows = keyed_runs(store, "s")
    assert len(rows) == expected
    assert len({r["run_key"] for r in rows}) == expected
    for p in plan:
        reps = sorted(r["repetition"] for r in rows if r["scenario_key"] == p.key)
        assert reps == list(range(RULE.warmup_runs + RULE.min_runs))
        assert {r["run_key"] for r in rows if r["scenario_key"] == p.key} == {
            run_key("s", p.scenario, i) for i in reps}
    interrupted = [r for r in store.study_runs("s") if r["status"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["run_key"] is None
    # a third start has nothing left to do
    again = planned([FakePlatform() for _ in range(n)], tmp_path, RULE)
    run_sweep(again, store, study="s")
    assert sum(p.platform.calls for p in again) == 0


def test_resume_after_a_hard_crash_mid_run(store, tmp_path):
    """A crash (no record written for the run in flight) loses only that run."""
    class Crashing(FakePlatform):
        def run(self, scenario, job, timeout_s):
            if self.calls == 2:
                raise SystemExit("power loss")
            return super().run(scenario, job, timeout_s)

    plan = planned([Crashing()], tmp_path, RULE)
    with pytest.raises(SystemExit):
        run_sweep(plan, store, study="s")
    assert len(keyed_runs(store, "s")) == 2
    run_sweep(planned([FakePlatform()], tmp_path, RULE), store, study="s")
    reps = sorted(r["repetition"] for r in keyed_runs(store, "s"))
    assert reps == [0, 1, 2, 3]


def test_raised_max_runs_continues_a_finished_scenario(store, tmp_path):
    small = StopRule(warmup_runs=1, min_runs=2, max_runs=2)
    run_sweep(planned([FakePlatform(mean_ms=noisy())], tmp_path, small), store, study="s")
    assert len(keyed_runs(store, "s")) == 3
    bigger = StopRule(warmup_runs=1, min_runs=2, max_runs=4, target_rel_ci=1e-9)
    (decision,) = run_sweep(planned([FakePlatform(mean_ms=noisy(2))], tmp_path, bigger), store,
                            study="s").values()
    assert decision.reason == "max_runs"
    assert len(keyed_runs(store, "s")) == 5


def test_other_studies_in_the_same_store_are_separate(store, tmp_path):
    run_sweep(planned([FakePlatform()], tmp_path, RULE), store, study="a")
    fake = FakePlatform()
    run_sweep(planned([fake], tmp_path, RULE), store, study="b")
    assert fake.calls == RULE.warmup_runs + RULE.min_runs


def test_round_order_is_seeded_reproducible_and_interleaved(store, tmp_path):
    plan = planned([FakePlatform() for _ in range(8)], tmp_path, RULE)
    first = [p.key for p in round_order(plan, seed=7, round_no=3)]
    assert first == [p.key for p in round_order(list(reversed(plan)), seed=7, round_no=3)]
    others = {tuple(p.key for p in round_order(plan, seed=s, round_no=r))
              for s in range(3) for r in range(3)}
    assert len(others) > 1  # the order changes with the seed and the round

    def sweep_log(seed, db):
        from deploybench.store import Store

        log: list[str] = []
        with Store(tmp_path / db) as s:
            run_sweep(planned([FakePlatform(log=log) for _ in range(4)], tmp_path, RULE), s,
                      study="x", seed=seed)
        return log

    a, b, c = sweep_log(1, "a.db"), sweep_log(1, "b.db"), sweep_log(2, "c.db")
    assert a == b and a != c
    # interleaved: each round runs every scenario once before any runs again
    for r in range(RULE.warmup_runs + RULE.min_runs):
        assert len(set(a[r * 4:(r + 1) * 4])) == 4


def test_run_key_is_stable_and_distinct():
    s1, s2 = scenarios(2)
    assert run_key("st", s1, 0) == run_key("st", Scenario.from_json(s1.to_json()), 0)
    keys = {run_key("st", s1, 0), run_key("st", s1, 1), run_key("st", s2, 0), run_key("other", s1, 0)}
    assert len(keys) == 4


def test_decide_stop_and_next_index_on_rows():
    def row(i, status="ok", mean=10.0, key="k"):
        return {"run_key": f"{key}{i}" if key else None, "repetition": i, "status": status,
                "error": None, "started_at": 0.0, "finished_at": 1.0,
                "summary": {"e2e_mean_ms": mean} if status in ("ok", "warmup") else {}}

    rule = StopRule(warmup_runs=1, min_runs=2, max_runs=5, target_rel_ci=0.05, max_time_s=100)
    assert decide_stop([], rule) is None
    assert next_index([row(0), row(2)]) == 1
    assert next_index([row(0), row(1, status="interrupted", key=None)]) == 1
    rows = [row(0, "warmup", 99.0), row(1), row(2)]
    d = decide_stop(rows, rule)
    assert d.reason == "converged" and d.runs == 2 and d.mean_ms == pytest.approx(10.0)
    d = decide_stop([row(0, "warmup"), row(1, "failed"), row(2, "timeout")], rule)
    assert d.reason == "failing"
    assert decide_stop([row(0, "warmup"), row(1, "failed"), row(2)], rule) is None


def test_run_one_marks_warmups_and_records_conditions(tmp_path):
    (scenario,) = scenarios(1)
    record = run_one(scenario, FakePlatform(), data_dir=tmp_path, settings=QUIET, warmup=True)
    assert record.status == "warmup"
    assert record.host["conditions"]["host_load"] == "idle"
    failed = run_one(scenario, FakePlatform(outcome=lambda i: "failed"), data_dir=tmp_path,
                     settings=QUIET, warmup=True)
    assert failed.status == "failed"  # a failed warm-up is a failure, not a warm-up


def test_host_busy_warning_when_the_host_was_busy(monkeypatch, tmp_path):
    from deploybench import conditions
    from deploybench.sweep import RunSettings

    monkeypatch.setattr(conditions, "cpu_busy_fraction", lambda s: 0.9)
    (scenario,) = scenarios(1)
    settings = RunSettings(busy_probe_s=0.01)
    record = run_one(scenario, FakePlatform(), data_dir=tmp_path, settings=settings)
    assert "host_busy" in record.warning_codes
    assert record.host["conditions"]["busy_before"] == 0.9
    busy = Scenario.from_json({**scenario.to_json(), "host_load": "busy"})
    record = run_one(busy, FakePlatform(), data_dir=tmp_path, settings=settings)
    assert "host_busy" not in record.warning_codes  # deliberate: not a warning
    monkeypatch.setattr(conditions, "cpu_busy_fraction", lambda s: 0.05)
    record = run_one(scenario, FakePlatform(), data_dir=tmp_path, settings=settings)
    assert "host_busy" not in record.warning_codes


def test_summary_lists_mad_outlier_runs_and_keeps_them(store, tmp_path):
    means = [10.0, 10.1, 9.9, 10.0, 10.05, 30.0]
    rule = StopRule(warmup_runs=0, min_runs=6, max_runs=6, target_rel_ci=1e-9)
    run_sweep(planned([FakePlatform(mean_ms=lambda i: means[i])], tmp_path, rule), store, study="s")
    (summary,) = summarize(store.runs(study="s"))
    assert [o["e2e_mean_ms"] for o in summary.outlier_runs] == [pytest.approx(30.0)]
    assert summary.runs == 6 and summary.e2e_mean_ms == pytest.approx(sum(means) / 6)
    lo, hi = summary.p99_ci_ms
    assert lo <= summary.p99_ms <= hi and not math.isnan(lo)


def test_a_sweep_whose_store_fails_stops_with_the_run_in_a_recovery_file(store, tmp_path, monkeypatch):
    import sqlite3

    from deploybench.store import UnsavedRunError, read_recovery

    def full(record):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "add", full)
    items = planned([FakePlatform(), FakePlatform()], tmp_path, RULE)
    with pytest.raises(UnsavedRunError) as info:
        run_sweep(items, store, study="s", seed=1)
    saved = info.value.recovery_path
    message = str(info.value)
    assert f"could not be stored in {store.path}" in message and f"deploybench import {saved}" in message
    [back] = read_recovery(saved)[0]
    assert back.run_id == info.value.record.run_id and back.run_key is not None
    assert back.samples["preprocess_ns"] == info.value.record.samples["preprocess_ns"]

"""The sweep: launch epochs of warm (fake) sessions, interleaved blocks, racing to the
decisions, warm-ups, failures, budgets, and resuming after an interruption."""
from __future__ import annotations

from collections import Counter

import pytest
from .sweep_fakes import QUIET, FakePlatform, noisy, planned

from deploybench.execute import BlockSet, Contender, run_block_set, run_key
from deploybench.findings import failures, summarize
from deploybench.scenario import Scenario
from deploybench.sweep import Group, PlannedScenario, RaceRule, make_groups, run_sweep

RULE = RaceRule(warmup_rounds=1, margin=0.05, min_launches=3, max_launches=6, blocks=2,
                target_rel_ci=0.02, max_time_s=600)


def keyed(store, study):
    return [r for r in store.study_runs(study) if r["run_key"] is not None]


@pytest.fixture(autouse=True)
def private_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_LEDGER", str(tmp_path / "ledger"))
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))


def test_a_steady_scenario_alone_stops_once_its_ci_over_three_launches_is_tight(store, tmp_path):
    fake = FakePlatform()
    plan = planned([fake], tmp_path, RULE)
    (decision,) = run_sweep(plan, store, study="s").values()
    assert decision.reason == "decided"
    assert fake.launches == RULE.min_launches  # never fewer than 3 launches
    statuses = Counter(r["status"] for r in keyed(store, "s"))
    assert statuses == {"warmup": RULE.min_launches, "ok": RULE.min_launches * RULE.blocks}


def test_a_noisy_scenario_alone_runs_to_max_launches(store, tmp_path):
    fake = FakePlatform(mean_ms=noisy(sd=4.0))
    (decision,) = run_sweep(planned([fake], tmp_path, RULE), store, study="s").values()
    assert decision.reason == "max_launches"
    assert fake.launches == RULE.max_launches


def test_equal_scenarios_end_equivalent_and_a_slow_one_drops_out(store, tmp_path):
    """Two equal scenarios (2% noise) and one 40% slower: the slow one is decided slower than
    the best and dropped; the sweep stops when the selection is decided."""
    import random

    rng = random.Random(3)
    a = FakePlatform(mean_ms=lambda i, launch=0: 10 * rng.gauss(1, 0.01))
    b = FakePlatform(mean_ms=lambda i, launch=0: 10 * rng.gauss(1, 0.01))
    slow = FakePlatform(mean_ms=lambda i, launch=0: 14 * rng.gauss(1, 0.01))
    plan = planned([a, b, slow], tmp_path, RULE, names=["BM/1/PIN/CPU", "BM/1/VNL/CPU", "BM/2/PIN/CPU"])
    decisions = run_sweep(plan, store, study="s")
    assert {d.reason for d in decisions.values()} <= {"decided", "dropped"}
    assert slow.launches <= a.launches  # it stops being launched once decided
    assert a.launches >= RULE.min_launches
    # the stop says against what, by the scenario's label, never its JSON key
    details = [d.detail for d in decisions.values()]
    assert any("slower against BM/1/" in d for d in details), details
    assert not any("{" in d for d in details), details


def test_blocks_hold_each_scenario_once_in_a_fresh_order_with_the_others_paused(store, tmp_path):
    log: list[str] = []
    fakes = [FakePlatform(log=log) for _ in range(3)]
    seen_paused = []
    for f in fakes:
        original = f.open

        def opening(scenario, setup, original=original, fakes=fakes):
            session = original(scenario, setup)
            measure = session.measure

            def watched(job, timeout_s):
                seen_paused.append(all(s.paused for fk in fakes for s in fk.sessions
                                       if s is not session and not s.closed))
                return measure(job, timeout_s)

            session.measure = watched
            return session

        f.open = opening
    plan = planned(fakes, tmp_path, RULE, names=["BM/1/PIN/CPU", "BM/1/VNL/CPU", "BM/2/PIN/CPU"])
    contenders = tuple(p.contender() for p in plan)
    out = run_block_set(BlockSet(contenders, blocks=4, warmup_rounds=0, epoch=0, study="s", seed=1),
                        store.add)
    blocks: dict[str, list[str]] = {}
    for r in out.records:
        blocks.setdefault(r.block_id, []).append(r.scenario.key)
    assert len(blocks) == 4 and all(sorted(v) == sorted(c.key for c in contenders) for v in blocks.values())
    assert len({tuple(v) for v in blocks.values()}) > 1  # the order changes from block to block
    assert all(seen_paused)
    assert all(s.closed for f in fakes for s in f.sessions)
    positions = {(r.block_id, r.block_pos) for r in out.records}
    assert len(positions) == len(out.records)


def test_block_order_is_seeded_and_reproducible(tmp_path):
    from deploybench.store import Store

    def order(seed, db):
        log: list[str] = []
        fakes = [FakePlatform(log=log) for _ in range(3)]
        plan = planned(fakes, tmp_path, RULE, names=["BM/1/PIN/CPU", "BM/1/VNL/CPU", "BM/2/PIN/CPU"])
        with Store(tmp_path / db) as s:
            run_block_set(BlockSet(tuple(p.contender() for p in plan), blocks=3, study="x", seed=seed),
                          s.add)
        return log

    assert order(1, "a.db") == order(1, "b.db") != order(2, "c.db")


def _launch_events(store, tmp_path, epoch, width, monkeypatch, first_never_ready=False):
    import deploybench.execute as execute

    monkeypatch.setattr(execute, "launch_width", lambda e, cpus: 1 if e == 0 else width)
    events: list = []
    fakes = [FakePlatform(events=events, ready_fails=lambda i, k=k: first_never_ready and k == 0)
             for k in range(4)]
    plan = planned(fakes, tmp_path, RULE)
    out = run_block_set(BlockSet(tuple(p.contender() for p in plan), blocks=1, warmup_rounds=0,
                                 epoch=epoch, study="s"), store.add)
    return [kind for kind, _ in events], out, fakes


def test_a_wave_is_one_launch_in_the_first_epoch_and_as_many_as_the_cpus_after():
    from deploybench.execute import launch_width

    assert launch_width(0, 16) == 1 and launch_width(1, 16) == 16 and launch_width(5, 2) == 2
    assert launch_width(3, 0) == 1  # never a wave of none


def test_the_first_epoch_launches_one_session_at_a_time(store, tmp_path, monkeypatch):
    kinds, out, _ = _launch_events(store, tmp_path, 0, 2, monkeypatch)
    assert kinds == ["open", "ready"] * 4
    assert {r.platform["launched_with"] for r in out.records} == {1}


def test_later_epochs_start_sessions_in_waves_and_wait_for_each_wave(store, tmp_path, monkeypatch):
    kinds, out, _ = _launch_events(store, tmp_path, 1, 2, monkeypatch)
    # two start together and load side by side; the next two only once both are ready
    assert kinds == ["open", "open", "ready", "ready"] * 2
    assert [r.status for r in out.records] == ["ok"] * 4  # measured after every launch
    assert {r.platform["launched_with"] for r in out.records} == {2}


def test_a_session_of_a_wave_that_is_never_ready_is_a_failed_launch_and_the_rest_go_on(
        store, tmp_path, monkeypatch):
    kinds, out, fakes = _launch_events(store, tmp_path, 1, 4, monkeypatch, first_never_ready=True)
    assert kinds == ["open"] * 4 + ["ready"] * 4
    assert list(out.launch_failures.values()) == ["fake worker never ready"]
    assert sorted(r.status for r in out.records) == ["failed", "ok", "ok", "ok"]
    assert fakes[0].calls == 0 and all(f.calls == 1 for f in fakes[1:])
    assert all(s.closed for f in fakes for s in f.sessions)


def test_warmup_rounds_are_stored_but_never_averaged(store, tmp_path):
    # each launch's first round is 10x slower: the summary must not see it
    fake = FakePlatform()
    fake.mean_ms = lambda i, launch=0: 100.0 if fake.sessions[-1].rounds == 1 else 10.0
    run_sweep(planned([fake], tmp_path, RULE), store, study="s")
    records = store.runs(study="s")
    assert Counter(r.status for r in records) == {"warmup": 3, "ok": 6}
    (summary,) = summarize(records)
    assert summary.e2e_mean_ms == pytest.approx(10.0)
    assert failures(records) == []
    assert {r.launch_round for r in records if r.status == "warmup"} == {1}


def test_a_scenario_whose_launches_keep_failing_is_dropped_and_the_sweep_goes_on(store, tmp_path):
    bad = FakePlatform(launch_fails=lambda i: True)
    good = FakePlatform()
    plan = planned([bad, good], tmp_path, RULE)
    decisions = run_sweep(plan, store, study="s")
    assert decisions[plan[0].key].reason == "failing"
    assert good.launches >= RULE.min_launches
    failed = [r for r in store.runs(study="s") if r.status == "failed"]
    assert len(failed) == RULE.max_consecutive_failures
    assert all("fake launch failure" in r.error for r in failed)


def test_a_round_that_times_out_ends_its_session_and_is_recorded(store, tmp_path):
    fake = FakePlatform(outcome=lambda i: "timeout" if i == 2 else "ok")
    plan = planned([fake], tmp_path, RULE)
    run_block_set(BlockSet((plan[0].contender(),), blocks=4, warmup_rounds=0, study="s"), store.add)
    statuses = [r.status for r in store.runs(study="s")]
    assert statuses == ["ok", "ok", "timeout"]  # the session is over: no round after it


def test_a_platform_crash_is_a_recorded_failure_not_a_traceback(store, tmp_path):
    class Exploding(FakePlatform):
        def open(self, scenario, setup):
            raise OSError("disk on fire")

    plan = planned([Exploding(), FakePlatform()], tmp_path, RULE)
    decisions = run_sweep(plan, store, study="s")
    assert decisions[plan[0].key].reason == "failing"
    errors = [r.error for r in store.runs(study="s") if r.status == "failed"]
    assert errors and all("OSError: disk on fire" in e for e in errors)


def test_skipped_scenarios_are_recorded_with_their_reason(store, tmp_path):
    fake = FakePlatform()
    plan = planned([fake, FakePlatform()], tmp_path, RULE, skip={0: "platform CN is not implemented"})
    decisions = run_sweep(plan, store, study="s")
    assert decisions[plan[0].key].reason == "skipped"
    assert fake.launches == 0
    assert "skipped" in {s["reason"] for s in store.stops("s")}


def test_time_budget_stops_a_group_and_says_so(store, tmp_path):
    rule = RaceRule(warmup_rounds=0, min_launches=3, max_launches=50, blocks=2, max_time_s=1e-9)
    fake = FakePlatform(mean_ms=noisy())
    (decision,) = run_sweep(planned([fake], tmp_path, rule), store, study="s").values()
    assert decision.reason == "time_budget" and fake.launches == 1
    (stop,) = store.stops("s")
    assert stop["reason"] == "time_budget" and "s of" in stop["detail"]


def test_the_sweeps_budget_cuts_every_group_short(store, tmp_path):
    fake = FakePlatform(mean_ms=noisy())
    (decision,) = run_sweep(planned([fake], tmp_path, RULE), store, study="s", budget_s=1e-9).values()
    assert decision.reason == "budget" and fake.launches == 0
    assert "--budget" in decision.detail


def test_an_interrupted_sweep_resumes_with_only_what_is_missing(store, tmp_path):
    """Ctrl-C in the second epoch, then restart: the interrupted round is kept without a key,
    the finished rounds are not redone, and the sweep completes."""
    calls = {"n": 0}

    def outcome(i):
        calls["n"] += 1
        return "interrupted" if calls["n"] == 8 else "ok"

    plan = planned([FakePlatform(outcome=outcome) for _ in range(2)], tmp_path, RULE)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, store, study="s")
    before = {r["run_key"] for r in keyed(store, "s")}
    assert len(before) == 7
    plan = planned([FakePlatform() for _ in range(2)], tmp_path, RULE)
    run_sweep(plan, store, study="s")
    rows = keyed(store, "s")
    assert before <= {r["run_key"] for r in rows}
    assert len({r["run_key"] for r in rows}) == len(rows)  # no duplicates
    interrupted = [r for r in store.study_runs("s") if r["status"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["run_key"] is None
    again = planned([FakePlatform() for _ in range(2)], tmp_path, RULE)
    run_sweep(again, store, study="s")
    assert sum(p.platform.launches for p in again) == 0  # nothing left to do


def test_other_studies_in_the_same_store_are_separate(store, tmp_path):
    run_sweep(planned([FakePlatform()], tmp_path, RULE), store, study="a")
    fake = FakePlatform()
    run_sweep(planned([fake], tmp_path, RULE), store, study="b")
    assert fake.launches == RULE.min_launches


def test_run_key_is_stable_and_distinct():
    s1, s2 = Scenario.parse("BM/1/PIN/CPU"), Scenario.parse("BM/1/VNL/CPU")
    assert run_key("st", s1, "e0b0") == run_key("st", Scenario.from_json(s1.to_json()), "e0b0")
    keys = {run_key("st", s1, "e0b0"), run_key("st", s1, "e0b1"), run_key("st", s2, "e0b0"),
            run_key("other", s1, "e0b0")}
    assert len(keys) == 4


def test_groups_hold_one_workload_and_their_claims_pair_what_differs_in_one_thing(tmp_path):
    names = ["BM/1/PIN/CPU", "BM/1/VNL/CPU", "CN/1/PIN/CPU", "CN/1/VNL/CPU", "BM/2/PIN/CPU"]
    plan = [PlannedScenario(Scenario.parse(n, requests=16), platform=FakePlatform(), data_dir=tmp_path,
                            settings=QUIET) for n in names]
    plan.append(PlannedScenario(Scenario.parse("BM/1/PIN/CPU", requests=32), platform=FakePlatform(),
                                data_dir=tmp_path, settings=QUIET))
    groups = make_groups(plan)
    assert sorted(len(g.members) for g in groups) == [1, 5]  # 16 and 32 requests apart
    group: Group = next(g for g in groups if len(g.members) == 5)
    label = {p.key: p.scenario.name for p in plan}
    claims = {(label[a], label[b]) for a, b in group.claims()}
    assert ("CN/1/PIN/CPU", "BM/1/PIN/CPU") in claims  # overhead against BM
    assert ("BM/1/PIN/CPU", "BM/1/VNL/CPU") in claims  # pinning
    assert ("BM/2/PIN/CPU", "BM/1/PIN/CPU") in claims  # one step up in cores
    assert [sorted(label[k] for k in sel) for sel in group.selections()] == [sorted(names)]


def test_host_busy_warning_when_others_used_the_cpu_during_the_round(monkeypatch, store, tmp_path):
    from deploybench import conditions
    from deploybench.execute import RunSettings

    monkeypatch.setattr(conditions.HostMeter, "other_share", lambda self, ms, cpus: 0.9)
    fake = FakePlatform()
    contender = Contender(Scenario.parse("BM/1/PIN/CPU"), fake, tmp_path, RunSettings(busy_threshold=0.25))
    out = run_block_set(BlockSet((contender,), blocks=1), store.add)
    (record,) = out.records
    assert "host_busy" in record.warning_codes and record.host["other_cpu_share"] == 0.9
    quiet = Contender(contender.scenario, FakePlatform(), tmp_path, RunSettings(busy_threshold=0))
    (record,) = run_block_set(BlockSet((quiet,), blocks=1), store.add).records
    assert "host_busy" not in record.warning_codes


def test_another_live_session_marks_every_round_concurrent(monkeypatch, store, tmp_path):
    import subprocess
    import sys

    from deploybench.platforms.ledger import Ledger

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ledger = Ledger()
        handle = ledger.open("BM", "someone else's scenario")
        handle.entry.owner_pid = other.pid  # owned by a live process that is not us
        from deploybench.platforms.ledger import process_start

        handle.entry.owner_start = process_start(other.pid)
        handle.save()
        contender = Contender(Scenario.parse("BM/1/PIN/CPU"), FakePlatform(), tmp_path, QUIET)
        (record,) = run_block_set(BlockSet((contender,), blocks=1), store.add, ledger=ledger).records
        assert "concurrent_run" in record.warning_codes
        handle.close()
    finally:
        other.kill()
        other.wait()


def test_a_sweep_whose_store_fails_stops_with_the_run_in_a_recovery_file(store, tmp_path, monkeypatch):
    import sqlite3

    from deploybench.store import UnsavedRunError, read_recovery

    def full(record):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "add", full)
    items = planned([FakePlatform(), FakePlatform()], tmp_path, RULE)
    with pytest.raises(UnsavedRunError) as info:
        run_sweep(items, store, study="s", seed=1, sink=store.keep)
    saved = info.value.recovery_path
    message = str(info.value)
    assert f"could not be stored in {store.path}" in message and f"deploybench import {saved}" in message
    [back] = read_recovery(saved)[0]
    assert back.run_id == info.value.record.run_id and back.run_key is not None
    assert back.samples["preprocess_ns"] == info.value.record.samples["preprocess_ns"]
    assert all(s.closed for p in items for s in p.platform.sessions)  # nothing left open


def test_a_group_whose_last_claims_are_out_of_reach_stops_early_and_says_so(store, tmp_path):
    """VNL 4.5% slower than PIN, just inside the 5% margin, with 5% round noise: the best is
    selected at once, but the claim can neither be called slower nor equivalent in the
    launches left, so the group stops before max_launches with `out_of_reach`."""
    import random

    rng = random.Random(1)
    pin = FakePlatform(mean_ms=lambda i, launch=0: 10 * rng.gauss(1, 0.05))
    vnl = FakePlatform(mean_ms=lambda i, launch=0: 10.45 * rng.gauss(1, 0.05))
    plan = planned([pin, vnl], tmp_path, RULE, names=["BM/1/PIN/CPU", "BM/1/VNL/CPU"])
    decisions = run_sweep(plan, store, study="s")
    assert {d.reason for d in decisions.values()} == {"out_of_reach"}, decisions
    assert RULE.min_launches <= pin.launches < RULE.max_launches
    assert all("cannot be decided within the group" in d.detail for d in decisions.values())


def test_an_open_selection_gets_the_epochs_to_itself_after_min_launches(store, tmp_path):
    """Two idle scenarios within noise of each other (the recommendation's selection, open
    for a while) and a busy-host scenario only a claim needs (busy against idle): after the
    min_launches epochs everything runs, then only the selection's scenarios run until it is
    decided, and then the busy one comes back for its claim (it is never called dropped)."""
    import random

    from deploybench.scenario import HostLoad
    from deploybench.sweep import WAITS_FOR_SELECTION

    rng = random.Random(5)
    pin = FakePlatform(mean_ms=lambda i, launch=0: 10 * rng.gauss(1, 0.06))
    vnl = FakePlatform(mean_ms=lambda i, launch=0: 10.2 * rng.gauss(1, 0.06))
    busy = FakePlatform(mean_ms=lambda i, launch=0: 10.6 * rng.gauss(1, 0.03))
    rule = RaceRule(warmup_rounds=0, margin=0.05, min_launches=3, max_launches=12, blocks=2,
                    target_rel_ci=0.02, max_time_s=600)
    plan = planned([pin, vnl], tmp_path, rule, names=["BM/1/PIN/CPU", "BM/1/VNL/CPU"])
    busy_scenario = plan[0].scenario.with_(host_load=HostLoad.BUSY)
    plan.append(PlannedScenario(busy_scenario, platform=busy, data_dir=tmp_path, rule=rule,
                                settings=plan[0].settings))
    epochs = []
    decisions = run_sweep(plan, store, study="s",
                          on_epoch=lambda group, p, done: epochs.append(
                              (done, set(p.active), all(s.decided for s in p.selections))))
    assert [len(active) for done, active, _ in epochs[:3]] == [3, 3, 3]
    selecting = [(done, active) for done, active, decided in epochs if done >= 3 and not decided]
    assert selecting, epochs  # the selection stayed open past min_launches (not vacuous)
    assert all(busy_scenario.key not in active for _, active in selecting), epochs
    assert busy.launches == 3 + sum(1 for done, active, decided in epochs
                                    if done >= 3 and decided and busy_scenario.key in active)
    # it waited for the selection, then came back for its claim: never called "dropped"
    assert decisions[busy_scenario.key].reason not in ("dropped", "decided")
    assert WAITS_FOR_SELECTION not in decisions[busy_scenario.key].detail


def test_a_study_decides_its_claims_with_those_the_stores_report_already_makes(store, tmp_path):
    # practices-quick after paper-quick in one store: its claims face the report's family,
    # not only its own 2 pairs (PIN vs VNL at 1 and 2 cores)
    from deploybench.report.build import family_size
    from deploybench.sweep import study_family
    from deploybench.synthetic import synthetic_runs

    plan = planned([FakePlatform() for _ in range(4)], tmp_path, RaceRule())
    groups = make_groups(plan)
    own = study_family(groups)
    assert own >= 1 and study_family(groups, store, "mine") == own  # an empty store adds nothing
    earlier = (synthetic_runs("BM/1/PIN/CPU", 10.0, run_cv=0.005)
               + synthetic_runs("CN/1/PIN/CPU", 11.0, run_cv=0.005))
    for record in earlier:
        record.study = "earlier"
        store.add(record)
    stored = family_size(store.runs())
    assert stored >= 2  # CN vs BM, and best practice 1's claim on the phases
    assert study_family(groups, store, "mine") == own + stored
    assert study_family(groups, store, "earlier") == own  # its own runs are not counted twice

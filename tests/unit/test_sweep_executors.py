"""The sweep on an executor with several hosts (a fake fleet): groups side by side, one block
set in flight per free host, a group replanned when its epoch's results are in; lost block
sets measured again on the same host class; racing per host class; the same run keys as a
sweep on this host."""
from __future__ import annotations

import dataclasses
import time
from collections import Counter

import pytest

from .sweep_fakes import QUIET, FakePlatform

from deploybench.execute import run_block_set
from deploybench.executors import BlockSetDone, HostClass, LocalExecutor
from deploybench.scenario import Scenario
from deploybench.store import LOST_STATUS, RunRecord
from deploybench.sweep import PlannedScenario, RaceRule, class_rows, group_state, make_groups, run_sweep

#: every group runs exactly two launch epochs of two blocks (min_launches above max_launches)
FIXED = RaceRule(warmup_rounds=1, min_launches=3, max_launches=2, blocks=2, max_time_s=600)


@pytest.fixture(autouse=True)
def private_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_LEDGER", str(tmp_path / "ledger"))
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))


class _Stop(Exception):
    pass


class FakeFleet:
    """An Executor whose hosts are fake: ``hosts`` per class; a ``wait`` runs every block set
    submitted since the last one (so those were in flight together). ``lose`` (ticket ->
    records delivered first) makes a host die mid-block-set; ``dies`` takes that host away."""

    def __init__(self, hosts: dict[str, int], lose: dict[int, int] | None = None, dies: bool = False) -> None:
        self.hosts = dict(hosts)
        self.lose = lose or {}
        self.dies = dies
        self.pending: list[tuple[int, object, str, object]] = []
        self.together: list[list[tuple[str, int]]] = []  # per wait: (group key, epoch) in flight
        self.tickets = 0

    def host_classes(self):
        return [HostClass(c, f"class {c}", tuple(f"{c}-h{i}" for i in range(n))) for c, n in self.hosts.items()]

    def capacity(self, host_class):
        return self.hosts.get(host_class, 0)

    def submit(self, block_set, host_class, on_record):
        self.tickets += 1
        self.pending.append((self.tickets, block_set, host_class, on_record))
        in_class = sum(1 for _, _, c, _ in self.pending if c == host_class)
        assert in_class <= self.capacity(host_class), "more block sets in flight than hosts"
        return self.tickets

    def wait(self, timeout_s=None):
        batch, self.pending = self.pending, []
        self.together.append([(min(c.key for c in bs.contenders), bs.epoch) for _, bs, _, _ in batch])
        done = []
        for ticket, block_set, host_class, on_record in batch:
            host = f"{host_class}-h0"
            delivered = []

            def sink(record: RunRecord, host_class=host_class, host=host, delivered=delivered, ticket=ticket):
                if ticket in self.lose and len(delivered) >= self.lose[ticket]:
                    raise _Stop
                record.host.update(fingerprint=host_class, host=host)
                delivered.append(record)
                on_record(record)

            try:
                run_block_set(block_set, sink)
                done.append(BlockSetDone(ticket, "done", host))
            except _Stop:
                contender = block_set.contenders[0]
                now = time.time()
                on_record(RunRecord(contender.scenario, LOST_STATUS, now - 0.1, now, study=block_set.study,
                                    repetition=block_set.epoch, error=f"lost with host {host}",
                                    host={"fingerprint": host_class, "host": host}))
                if self.dies:
                    self.hosts[host_class] -= 1
                done.append(BlockSetDone(ticket, "lost", host, "its host died"))
        return done

    def close(self):
        self.pending.clear()


def plan(requests=(4, 8, 16), host_class=None) -> list[PlannedScenario]:
    """One group per request count (BM/1/PIN vs BM/1/VNL), fake platforms, fixed epochs."""
    from pathlib import Path

    return [PlannedScenario(Scenario.parse(name, requests=n), platform=FakePlatform(), data_dir=Path("/nonexistent"),
                            rule=FIXED, settings=QUIET, host_class=host_class)
            for n in requests for name in ("BM/1/PIN/CPU", "BM/1/VNL/CPU")]


def keys(store, study="s"):
    return sorted(r["run_key"] for r in store.study_runs(study) if r["run_key"])


def test_groups_run_side_by_side_one_block_set_per_free_host(store, tmp_path):
    fleet = FakeFleet({"hc-a": 2})
    decisions = run_sweep(plan(host_class="hc-a"), store, study="s", executor=fleet)
    assert {d.reason for d in decisions.values()} == {"max_launches"}
    assert max(len(w) for w in fleet.together) == 2  # two hosts, two block sets at once
    for in_flight in fleet.together:
        groups = [g for g, _ in in_flight]
        assert len(groups) == len(set(groups))  # never two epochs of one group at once
    epochs = Counter(g for w in fleet.together for g, _ in w)
    assert set(epochs.values()) == {FIXED.max_launches}  # each group replanned after its epoch


def test_a_fleet_sweep_makes_the_same_run_keys_as_a_sweep_on_this_host(tmp_path):
    from deploybench.store import Store

    with Store(tmp_path / "local.db") as local, Store(tmp_path / "fleet.db") as fleet_store:
        run_sweep(plan(), local, study="s", executor=LocalExecutor())
        run_sweep(plan(host_class="hc-a"), fleet_store, study="s", executor=FakeFleet({"hc-a": 3}))
        assert keys(local) == keys(fleet_store) and len(keys(local)) == 3 * 2 * 2 * (1 + 2)


def test_a_block_set_lost_with_its_host_is_measured_again_and_not_counted(store, tmp_path):
    fleet = FakeFleet({"hc-a": 2}, lose={1: 3})
    notes = []
    decisions = run_sweep(plan(requests=(4,), host_class="hc-a"), store, study="s", executor=fleet,
                          on_note=notes.append)
    rows = store.study_runs("s")
    lost = [r for r in rows if r["status"] == LOST_STATUS]
    assert len(lost) == 1 and lost[0]["run_key"] is None and lost[0]["repetition"] == 0
    assert any("epoch 0" in n and "lost on host hc-a-h0" in n for n in notes)
    (group,) = make_groups(plan(requests=(4,), host_class="hc-a"))
    state = group_state(group, class_rows(rows, "hc-a"))
    assert state.epochs_done == FIXED.max_launches and state.lost_epochs == 1 and state.next_epoch == 3
    assert all(n == 0 for n in state.failures_in_a_row.values())  # the host's fault, not the scenario's
    assert {d.reason for d in decisions.values()} == {"max_launches"}
    assert len(set(keys(store))) == len(keys(store))  # the three rounds kept from epoch 0 count once


def test_a_group_whose_host_class_has_no_host_left_stops_and_says_so(store, tmp_path):
    fleet = FakeFleet({"hc-a": 1}, lose={1: 2}, dies=True)
    decisions = run_sweep(plan(requests=(4,), host_class="hc-a"), store, study="s", executor=fleet)
    assert {d.reason for d in decisions.values()} == {"no_host"}
    assert all("no host of class hc-a is left" in d.detail for d in decisions.values())
    assert {s["reason"] for s in store.stops("s")} == {"no_host"}


def test_block_sets_lost_again_and_again_stop_the_group(store, tmp_path):
    fleet = FakeFleet({"hc-a": 1}, lose={i: 1 for i in range(1, 10)})
    decisions = run_sweep(plan(requests=(4,), host_class="hc-a"), store, study="s", executor=fleet)
    assert {d.reason for d in decisions.values()} == {"failing"}
    assert fleet.tickets == 3 and "3 block sets in a row were lost" in next(iter(decisions.values())).detail


def test_each_host_class_races_on_its_own_rounds_with_run_keys_that_never_collide(store, tmp_path):
    both = plan(requests=(4,), host_class="hc-a") + plan(requests=(4,), host_class="hc-b")
    fleet = FakeFleet({"hc-a": 1, "hc-b": 1})
    decisions = run_sweep(both, store, study="s", executor=fleet)
    assert len(decisions) == 4 and {d.reason for d in decisions.values()} == {"max_launches"}
    rows = store.study_runs("s")
    assert len(set(keys(store))) == len(keys(store)) == 2 * 2 * 2 * (1 + 2)
    for cls in ("hc-a", "hc-b"):
        mine = [r for r in rows if r["host_class"] == cls]
        group = next(g for g in make_groups(both) if g.host_class == cls)
        assert group_state(group, class_rows(rows, cls)).epochs_done == FIXED.max_launches
        assert len({r["repetition"] for r in mine}) == FIXED.max_launches  # its own epochs only
    assert max(len(w) for w in fleet.together) == 2  # both classes measured at once


def test_a_sweep_planned_for_several_classes_needs_every_scenario_to_name_one(store):
    with pytest.raises(ValueError, match="host_class"):
        run_sweep(plan(requests=(4,)), store, study="s", executor=FakeFleet({"hc-a": 1, "hc-b": 1}))


def test_a_plan_for_a_class_the_executor_lacks_stops_as_no_host(store):
    decisions = run_sweep(plan(requests=(4,), host_class="hc-z"), store, study="s", executor=FakeFleet({"hc-a": 1}))
    assert {d.reason for d in decisions.values()} == {"no_host"}


def test_runs_stored_before_fingerprints_count_for_every_class():
    rows = [{"host_class": None}, {"host_class": "hc-a"}, {"host_class": "hc-b"}]
    assert class_rows(rows, "hc-a") == rows[:2] and class_rows(rows, None) == rows
    assert dataclasses.is_dataclass(BlockSetDone)


def test_a_groups_spent_time_counts_its_launches_once_per_epoch_not_only_its_rounds(store):
    run_sweep(plan(), store, study="s", executor=LocalExecutor())
    rows = store.study_runs("s")
    (group, *_) = make_groups(plan())
    keys_ = {m.key for m in group.members}
    first = {}
    for r in rows:
        first[r["repetition"]] = min(first.get(r["repetition"], r["started_at"]), r["started_at"])
    without = [dict(r, launch_wall=None, ready_wall=None) for r in rows]
    # every launch of an epoch loading together for the 10 s before its first round
    together = [dict(r, launch_wall=first[r["repetition"]] - 10.0, ready_wall=first[r["repetition"]])
                for r in rows]
    launches = {r["launch_id"] for r in rows if r["scenario_key"] in keys_ and r["launch_round"] == 1}
    epochs = {r["repetition"] for r in rows if r["scenario_key"] in keys_}
    assert len(launches) > len(epochs) > 0
    spent = group_state(group, together).spent_s - group_state(group, without).spent_s
    assert spent == pytest.approx(10.0 * len(epochs))  # a wave's 10 s once, not once per launch

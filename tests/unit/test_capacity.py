"""Capacity searches on a simulated queue: bracket, bisect, repeat on another launch; the
answer's rule; LoadGen's early-stopping minimum; every probe stored with its rate."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from deploybench import capacity as cap
from deploybench.capacity import Criteria, Probe, SearchSettings, answer, search
from deploybench.cli import app
from deploybench.execute import Contender, RunSettings
from deploybench.scenario import Scenario, ScenarioError

from .capacity_fakes import QueuePlatform, simulate

QUIET = RunSettings(timeout_s=10, busy_threshold=0)
BASE = Scenario.parse("BM/1/PIN/CPU", app="ic", requests=662, loadgen_scenario="Server")


@pytest.fixture(autouse=True)
def private_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_LEDGER", str(tmp_path / "ledger"))
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))


def test_loadgen_minimum_requests_are_what_loadgen_reports():
    # LoadGen 6.0.17 itself: "Processed 200 queries. Would need to run at least 259 more" at
    # p99, "Processed 16 ... at least 28 more" at p90, every query within the bound
    assert cap.loadgen_min_requests(99) == 459
    assert cap.loadgen_min_requests(90) == 44
    assert cap.loadgen_min_requests(99, over_latency=1) > 459
    assert cap.default_requests(99) == cap.loadgen_min_requests(99, over_latency=1)


def test_a_probe_size_loadgen_can_never_call_valid_is_refused_by_the_cli():
    result = CliRunner().invoke(app, ["capacity", "BM/1/PIN/CPU", "--requests", "100"])
    assert result.exit_code == 2
    assert "--requests 100 can never make LoadGen's Server run VALID at p99" in result.output
    assert "459" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_target_qps_is_part_of_a_server_scenarios_identity_and_nothing_elses():
    a, b = BASE.with_(target_qps=50), BASE.with_(target_qps=80)
    assert a.key != b.key and "@50 qps" in a.label
    assert Scenario.from_json(a.to_json()) == a
    assert "target_qps" not in BASE.key  # stored Server runs without a rate keep their key
    offline = Scenario.parse("BM/1/PIN/CPU", app="ic")
    assert "target_qps" not in offline.key
    with pytest.raises(ScenarioError, match="arrival rate of LoadGen's Server scenario"):
        offline.with_(target_qps=10)
    with pytest.raises(ScenarioError, match="must be > 0"):
        BASE.with_(target_qps=0)


def test_run_sets_the_rate_only_for_server(tmp_path):
    result = CliRunner().invoke(app, ["run", "BM/1/PIN/CPU", "--target-qps", "5", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2 and "--target-qps is the arrival rate of the Server scenario" in result.output


def _p(rate, launch, passed, latency=10.0, step="bisect"):
    return Probe(rate, launch, passed, latency, passed, "" if passed else "too slow", step)


def test_the_answer_is_the_largest_rate_that_always_passed_below_every_failure():
    c = Criteria()
    probes = [_p(50, 0, True), _p(100, 0, False), _p(75, 0, True), _p(87, 0, False), _p(81, 0, True),
              _p(84, 0, False)]
    one = answer(probes, base=BASE, criteria=c)
    assert (one.capacity_qps, one.first_failure_qps, one.failing_qps) == (81, 84, 84)
    assert not one.confirmed and one.capacity_launches == 1
    two = answer(probes + [_p(81, 1, True), _p(84, 1, False)], base=BASE, criteria=c)
    assert two.confirmed and two.status == "confirmed"
    assert "81 qps meets p99 <= 100 ms (passed on 2 launches); 84 qps fails (on 2 launches)" in two.statement()
    # the capacity fails on the second launch: it is flaky, the capacity is the next pass below
    flaky = answer(probes + [_p(81, 1, False)], base=BASE, criteria=c)
    assert flaky.capacity_qps == 75 and flaky.first_failure_qps == 81 and flaky.flaky_qps == (81,)
    assert "passed on one launch and failed on another" in flaky.statement()
    # a pass above a failure does not raise the capacity, and is said
    odd = answer([_p(50, 0, True), _p(60, 0, False), _p(70, 0, True)], base=BASE, criteria=c)
    assert odd.capacity_qps == 50 and odd.passes_above_failure == (70,)
    assert answer([_p(5, 0, False)], base=BASE, criteria=c).status == "no capacity"


def _search(platform, tmp_path, store, **kw):
    settings = SearchSettings(Criteria(slo_ms=100, percentile=99), 662, **kw)
    return search(Contender(BASE, platform, tmp_path, QUIET), settings, sink=store.add)


def test_the_search_brackets_bisects_and_confirms_on_another_launch(store, tmp_path):
    platform = QueuePlatform(lambda launch: 0.010)
    a = _search(platform, tmp_path, store)
    assert a.confirmed and a.stop == "confirmed" and platform.launches == 2
    steps = [p.step for p in a.probes]
    assert steps[0] == "start" and "bisect" in steps and steps.count("repeat") == 2
    assert (a.first_failure_qps - a.capacity_qps) / a.capacity_qps <= 0.05
    # the bracket holds in the simulation itself: it passes at lo and fails at hi
    assert a.capacity_latency_ms <= 100
    assert {p.launch for p in a.probes if p.rate_qps in (a.capacity_qps, a.failing_qps)} == {0, 1}
    # a 10 ms server: the capacity under a 100 ms p99 is below 100 qps and well above half of it
    assert 60 < a.capacity_qps < 100
    # LoadGen judged every probe against the SLO itself
    probes = [j for j in platform.jobs if j.loadgen_scenario == "Server"]
    assert probes and all(j.server_target_latency_ms == 100 and j.server_latency_percentile == 99
                          for j in probes)
    # every probe is a stored run with its rate; each launch has an Offline warm-up, and the
    # second one a Server warm-up at the capacity before it repeats the bracket
    runs = store.runs()
    stored = [r for r in runs if r.status == "ok"]
    assert sorted(r.scenario.target_qps for r in stored) == sorted(p.rate_qps for p in a.probes)
    assert len({r.scenario.key for r in stored}) == len({p.rate_qps for p in a.probes})
    warmups = sorted((r.started_at, r.scenario.loadgen_scenario.value, r.scenario.target_qps)
                     for r in runs if r.status == "warmup")
    first_probe = {launch: min(r.started_at for r in stored if r.launch_id == launch)
                   for launch in {r.launch_id for r in stored}}
    assert [w[1] for w in warmups] == ["Offline", "Offline", "Server"]
    assert warmups[2][2] == max(p.rate_qps for p in a.probes if p.launch == 0 and p.passed)
    assert warmups[2][0] < max(first_probe.values())  # before the second launch's first probe
    assert all(r.host["capacity_probe"]["search_id"] == a.search_id for r in stored)


def test_the_answer_read_back_from_the_store_is_the_searchs(store, tmp_path):
    a = _search(QueuePlatform(lambda launch: 0.010), tmp_path, store)
    (read,) = cap.searches(store.runs())
    assert (read.capacity_qps, read.failing_qps, read.confirmed, read.search_id) == \
        (a.capacity_qps, a.failing_qps, a.confirmed, a.search_id)
    assert cap.CapacityAnswer.from_json(a.to_json()).statement() == a.statement()


def test_a_bracket_that_fails_on_the_second_launch_is_searched_again_and_repeated(store, tmp_path):
    """The second launch is 15% slower: its capacity is lower, so the first bracket's pass
    fails there; the search moves the lower end down (never bisecting back into the zone
    where verdicts flip) until a rate passes on both launches."""
    platform = QueuePlatform(lambda launch: 0.010 if launch == 0 else 0.0115)
    a = _search(platform, tmp_path, store)
    assert 2 <= platform.launches <= 3
    assert a.flaky_qps, "the first launch's capacity failed on the second"
    assert a.capacity_qps < min(a.flaky_qps) and a.failing_qps > max(a.flaky_qps)
    assert a.confirmed, a.statement()
    assert "passed on one launch and failed on another" in a.statement()


def test_a_later_launch_steps_outward_when_the_bracket_does_not_hold():
    history = [_p(50, 0, True, step="start"), _p(100, 0, False), _p(72, 0, True), _p(75, 0, False)]
    down = answer(history + [_p(72, 1, False, step="repeat")], base=BASE, criteria=Criteria())
    # the lower end failed on launch 1: step below it by twice the precision (the next pass of
    # launch 0, 50, is further away), never bisect back into the zone where verdicts flip
    assert cap.next_rate(down, 1, 50, 0.05) == (64.8, "step down")
    near = answer([_p(66, 0, True, step="start"), *history[1:], _p(72, 1, False, step="repeat")],
                  base=BASE, criteria=Criteria())
    assert cap.next_rate(near, 1, 66, 0.05) == (66, "repeat")  # a pass close below: repeat it
    up = answer(history + [_p(72, 1, True, step="repeat"), _p(75, 1, True, step="repeat")],
                base=BASE, criteria=Criteria())
    # the upper end passed on launch 1: step above it (launch 0's next failure, 100, is further)
    assert cap.next_rate(up, 1, 50, 0.05) == (82.5, "step up")
    confirmed = answer(history + [_p(72, 1, True, step="repeat"), _p(75, 1, False, step="repeat")],
                       base=BASE, criteria=Criteria())
    assert confirmed.confirmed and cap.next_rate(confirmed, 1, 50, 0.05) is None


def test_a_search_out_of_budget_says_it_is_unconfirmed(store, tmp_path):
    a = _search(QueuePlatform(lambda launch: 0.010), tmp_path, store, budget_s=0.0)
    assert a.status in ("not measured", "unconfirmed", "no capacity") and a.stop.startswith("budget")
    assert not a.confirmed


def test_the_simulated_queue_has_no_tail_at_a_low_rate_and_a_long_one_above_the_service_rate():
    low = simulate(10, 500, 0.01, 1)
    high = simulate(150, 500, 0.01, 1)
    assert max(low) < 0.05 and max(high) > 1.0


def test_the_failing_end_is_a_rate_that_failed_on_two_launches_where_there_is_one():
    probes = [_p(117, 0, True), _p(117, 1, True), _p(193, 1, False), _p(214, 1, False), _p(214, 2, False)]
    a = answer(probes, base=BASE, criteria=Criteria())
    assert (a.capacity_qps, a.failing_qps, a.first_failure_qps) == (117, 214, 193)
    assert a.confirmed


def test_a_study_asks_for_capacity_and_a_resumed_sweep_does_not_search_again(store, tmp_path):
    from deploybench.study import Study, StudyError
    from deploybench.sweep import PlannedScenario

    study = Study.from_dict({"name": "s", "apps": ["ic"], "platforms": ["BM"], "cores": [1],
                             "model_sizes": "tiny",
                             "capacity": {"scenarios": ["BM/1/PIN/CPU"], "slo_ms": 100, "percentile": 99}})
    (scenario,) = study.capacity_scenarios(kvm=True)
    assert scenario.loadgen_scenario.value == "Server" and scenario.target_qps is None
    assert scenario.requests == cap.default_requests(99)
    platform = QueuePlatform(lambda launch: 0.010)
    planned = [PlannedScenario(scenario, platform=platform, data_dir=tmp_path, settings=QUIET)]
    (a,) = cap.run_study_capacity(study, planned, store, sink=store.add)
    assert a.confirmed and all(r.study == "s" for r in store.runs())
    assert [s["reason"] for s in store.stops("s")] == ["capacity"]
    launches = platform.launches
    assert cap.run_study_capacity(study, planned, store, sink=store.add) == []
    assert platform.launches == launches  # searched before with the same SLO: not again
    with pytest.raises(StudyError, match="capacity: requests = 100 can never make LoadGen's Server run VALID"):
        Study.from_dict({"name": "s", "apps": ["ic"], "platforms": ["BM"], "cores": [1],
                         "capacity": {"scenarios": ["BM/1/PIN/CPU"], "requests": 100}})
    with pytest.raises(StudyError, match=r"capacity.scenarios\[0\]: cannot read scenario"):
        Study.from_dict({"name": "s", "apps": ["ic"], "platforms": ["BM"], "cores": [1],
                         "capacity": {"scenarios": ["BM/one"]}})


def test_a_probe_too_short_to_ever_queue_beyond_the_slo_is_said_not_searched(store, tmp_path):
    """A fast app (0.1 ms a request): 662 requests are 66 ms of work, all of which arriving at
    once could not make the last wait 100 ms. No rate can fail: the search says so."""
    platform = QueuePlatform(lambda launch: 0.0001)
    a = _search(platform, tmp_path, store)
    assert a.probes == () and a.stop.startswith("no rate can fail")
    assert "use --requests" in a.statement()

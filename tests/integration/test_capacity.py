"""Capacity on real BM and CN (IC tiny, one pinned core): the search finds a rate at which
LoadGen's Server run is VALID with p95 (queue included) within the SLO, and at 1.25 times
that rate a probe is INVALID or over the SLO (checked in a fresh session, right after a probe
at the rate itself); probes are stored runs with their rate, the bracket is repeated on a
second launch, and the CLI prints the answer -- for a user's own app too."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deploybench import capacity as cap
from deploybench.execute import Contender, RoundMeasurer, RunSettings, Slot
from deploybench.platforms.ledger import Ledger
from deploybench.platforms.baremetal import BareMetal
from deploybench.platforms.container import Container, probe
from deploybench.platforms.container.launchers import OciRuntime
from deploybench.scenario import Scenario
from tests.conftest import open_session

pytestmark = pytest.mark.usefixtures("needs_cgroups")
# 250 ms: this 2-core host is shared with other engineers' test runs, whose CPU-bound
# processes land on the pinned core too and put tails of 100-200 ms into any round.
# p95 (130 requests a probe, LoadGen's minimum there) rather than p99 (662): the search and
# its check are the same, in a fifth of the time (at p99 a probe took 7-10 s on a slow day,
# and the pair of tests up to 9 min of a 20 min suite)
CRITERIA = cap.Criteria(slo_ms=250.0, percentile=95.0)
REQUESTS = cap.default_requests(95.0)


def _platform(name):
    if name.startswith("CN"):
        problem = probe(OciRuntime("runc"))
        if problem:
            pytest.skip(f"runc cannot run a container here: {problem}")
        return Container()
    return BareMetal()


def _search(name, platform, scenario, ic_data, store):
    """One search, checked against its own probes: returns (answer, busy)."""
    settings = RunSettings(timeout_s=300)  # each round records the CPU others used meanwhile
    answer = cap.search(Contender(scenario, platform, ic_data, settings),
                        cap.SearchSettings(CRITERIA, REQUESTS, budget_s=600), sink=store.add, on_note=print)
    probes = [r for r in store.runs() if cap.is_probe(r) and
              r.host["capacity_probe"]["search_id"] == answer.search_id]
    shares = [r.host["other_cpu_share"] for r in probes if r.host.get("other_cpu_share") is not None]
    busy = f"others used {100 * sum(shares) / max(1, len(shares)):.0f}% of the host's CPU meanwhile"
    print(f"\n{name}: {answer.statement()} (stop: {answer.stop}; {busy})")
    assert answer.capacity_qps is not None, f"{answer.statement()} ({busy})"
    assert {r.scenario.target_qps for r in probes} == {p.rate_qps for p in answer.probes}
    assert len({r.launch_id for r in probes}) >= 2, f"the bracket was not repeated on another launch ({busy})"
    # at the found rate: every probe passed, LoadGen VALID and p95 (queue included) <= the SLO
    at_capacity = [r for r in probes if r.scenario.target_qps == answer.capacity_qps]
    for record in at_capacity:
        verdict = cap.judge(record, CRITERIA)
        assert record.loadgen["validity"] == "VALID" and verdict.latency_ms <= CRITERIA.slo_ms
        assert record.platform["footprint"]["worker_peak_rss_kb"] > 0
    return answer, busy


def _check(name, platform, scenario, answer, ic_data, store):
    """The capacity, then 1.25 times it, in pairs in one fresh session, so that both rounds
    of a pair see the same host; a pair is retried (up to 3) when it does not come out as
    pass/fail, unless two pairs in a row come out the same other way (both pass, or both
    fail: the host is faster or slower than the one searched, and a third pair of the same
    minute says no more). Returns the last pair's verdicts and every pair's."""
    over = scenario.with_(target_qps=cap.round_rate(1.25 * answer.capacity_qps))
    at = scenario.with_(target_qps=answer.capacity_qps)
    bound = RunSettings(timeout_s=300, busy_threshold=0, server_target_latency_ms=CRITERIA.slo_ms,
                        server_latency_percentile=CRITERIA.percentile)
    with open_session(over, platform, ic_data, timeout_s=300) as session:
        measure = RoundMeasurer(None, Ledger())
        # warmed as the search's launches are (a cold first round is not what was searched)
        warm = measure(Contender(at, platform, ic_data, bound), session,
                       Slot(0, None, None, None, warmup_index=0, key="check-warmup"), True)
        assert warm.status == "warmup", warm.error
        pairs = []
        for attempt in range(3):
            verdicts = []
            for n, target in enumerate((at, over)):
                slot = Slot(attempt, n, None, None, key=f"check-{answer.search_id[:8]}-{attempt}-{n}")
                record = measure(Contender(target, platform, ic_data, bound), session, slot, False)
                store.add(record)
                assert record.status == "ok", record.error
                verdicts.append(cap.judge(record, CRITERIA))
            pairs.append(verdicts)
            print(f"{name} pair {attempt + 1}: {at.target_qps:g} qps "
                  f"{'pass' if verdicts[0].passed else 'FAIL'} (p95 {verdicts[0].latency_ms:.1f} ms), "
                  f"{over.target_qps:g} qps {'pass' if verdicts[1].passed else 'FAIL'} "
                  f"(p95 {verdicts[1].latency_ms:.1f} ms, LoadGen {'VALID' if verdicts[1].loadgen_valid else 'INVALID'})")
            if verdicts[0].passed and not verdicts[1].passed:
                break
            if len(pairs) >= 2 and [v.passed for v in pairs[-2]] == [v.passed for v in pairs[-1]]:
                break  # two pairs the same way: the host has moved off the searched one for now
    return pairs[-1], pairs


@pytest.mark.parametrize("name", ["BM/1/PIN/CPU", "CN/1/PIN/CPU"])
def test_the_search_finds_a_rate_that_passes_and_a_quarter_more_fails(name, ic_data, store):
    """Search, then check at the capacity and at 1.25 times it. This 2-core host is shared:
    its speed can change by a third between the search and the check, either way (in CI a
    search on a slow minute found 138 qps, then 172 qps passed three times with p99 60 ms;
    here a search found 181 qps, then 181 qps failed three times with p99 450-1270 ms). When
    no check pair comes out pass/fail, the host is not the one that was searched, and the
    search and its check are done again, on the host as it is now, up to three searches in
    all (a fresh clone's run once found the host slower for its first check and faster for
    its second: 178 qps failed three times, then 215 qps passed three times after a search
    that found 172): the test needs one search that an independent check confirms."""
    platform = _platform(name)
    scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=REQUESTS, loadgen_scenario="Server")
    for attempt in range(3):
        answer, busy = _search(name, platform, scenario, ic_data, store)
        (at_rate, quarter_more), pairs = _check(name, platform, scenario, answer, ic_data, store)
        if at_rate.passed and not quarter_more.passed:
            break
        print(f"{name}: no check pair came out pass/fail ({pairs}): searching again (attempt {attempt + 2})")
    assert at_rate.passed and not quarter_more.passed, f"every pair: {pairs} ({busy})"
    assert not quarter_more.loadgen_valid or quarter_more.latency_ms > CRITERIA.slo_ms


def test_the_cli_prints_the_capacity_and_stores_every_probe(tmp_path, ic_data):
    db = tmp_path / "cap.db"
    out = subprocess.run([sys.executable, "-m", "deploybench", "capacity", "BM/1/PIN/CPU", "--app", "ic",
                          "--model-size", "tiny", "--slo-ms", "200", "--percentile", "90", "--requests", "64",
                          "--precision", "0.2", "--launches", "2", "--budget", "3m", "--db", str(db),
                          "--json", "--data-count", "8",
                          # other engineers' sessions may measure on this shared host meanwhile
                          "--allow-concurrent"], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    (answer,) = json.loads(out.stdout)
    assert answer["schema"] == 1 and answer["scenario"] == "BM/1/PIN/CPU" and answer["slo_ms"] == 200
    assert answer["capacity_qps"] and answer["statement"].startswith(f"{answer['capacity_qps']:g} qps meets p90")
    assert "probe BM/1/PIN/CPU @" in out.stderr  # the progress: one line per probe
    shown = subprocess.run([sys.executable, "-m", "deploybench", "show", "--db", str(db)],
                           capture_output=True, text=True, timeout=120)
    assert f"{len(answer['probes'])} capacity probes not in the table" in shown.stdout


def test_a_users_own_app_has_a_capacity_too(tmp_path):
    """The README's SignalApp (numpy only), found on PYTHONPATH by the CLI and the worker."""
    import os
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    env = {**os.environ, "PYTHONPATH": f"{examples}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "DEPLOYBENCH_HOME": str(tmp_path / "home")}
    # SignalApp serves a request in well under a millisecond: a tight SLO, enough requests
    out = subprocess.run([sys.executable, "-m", "deploybench", "capacity", "BM/1/PIN/CPU", "--app",
                          "my_app:SignalApp", "--model-size", "tiny", "--slo-ms", "5", "--percentile", "90",
                          "--requests", "2000", "--precision", "0.2", "--launches", "2", "--budget", "2m",
                          "--data-count", "8", "--db", str(tmp_path / "own.db"), "--json", "--allow-concurrent"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    (answer,) = json.loads(out.stdout)
    assert answer["app"] == "my_app:SignalApp" and answer["capacity_qps"], answer["statement"]
    print(f"\nSignalApp BM/1/PIN/CPU: {answer['statement']}")

"""Findings on synthetic runs with known answers (deploybench.synthetic makes launch means
exact and puts the rounds of one workload in shared blocks, as the racing sweep does)."""
from __future__ import annotations

import pytest

from deploybench.findings import (Judge, build_cells, causes, chr_trends, condition_effects,
                                  gpu_speedups, overheads, pin_gains, scale_ups)
from deploybench.practices import DOES_NOT_HOLD, HOLDS, NOT_ENOUGH, best_practices
from deploybench.recommend import Constraints, compare_scenarios, recommend
from deploybench.scenario import ScenarioError
from deploybench.stats import Verdict
from deploybench.synthetic import synthetic_runs, synthetic_study
from deploybench.warnings import WarningCode

SLOWER, FASTER, EQUIVALENT, UNDECIDED = Verdict.SLOWER, Verdict.FASTER, Verdict.EQUIVALENT, Verdict.UNDECIDED


def cells_of(*groups):
    return build_cells([r for g in groups for r in g])


def practices(cells):
    """The seven practices as the report makes them: two passes through one Judge."""
    judge = Judge()
    best_practices(cells, judge)
    judge.decide()
    return best_practices(cells, judge)


def practice(records, number):
    return practices(build_cells(records))[number - 1]


# -- overhead against BM ------------------------------------------------------------------
def test_platform_ten_percent_slower_with_tight_cis_is_decided_slower_by_ten_percent():
    cells = cells_of(synthetic_runs("BM/2/PIN/CPU", 100.0, runs=5, run_cv=0.005),
                     synthetic_runs("CN/2/PIN/CPU", 110.0, runs=5, run_cv=0.005))
    [ovh] = overheads(cells, Judge())
    assert ovh.cell.name == "CN/2/PIN/CPU" and ovh.baseline.name == "BM/2/PIN/CPU"
    assert ovh.ratio == pytest.approx(1.10, abs=2e-3)
    low, high = ovh.result.ci
    assert low < 1.10 < high and high - low < 0.03
    assert ovh.verdict is SLOWER and ovh.result.launch_pairs == 5
    assert ovh.text.startswith("1.100x (95% CI 1.0") and "slower" in ovh.text


def test_platform_one_percent_slower_with_wide_cis_is_undecided_not_an_overhead():
    cells = cells_of(synthetic_runs("BM/2/VNL/CPU", 100.0, run_means=[100.0, 100.0, 100.0]),
                     synthetic_runs("VM/2/VNL/CPU", 101.0, run_means=[93.0, 101.0, 109.0], accel="kvm"))
    [ovh] = overheads(cells, Judge())
    assert ovh.verdict is UNDECIDED and not ovh.decided
    assert ovh.result.ci[0] < 1 < ovh.result.ci[1]
    assert "undecided" in ovh.text


def test_platform_within_the_margin_with_tight_cis_is_decided_equivalent():
    cells = cells_of(synthetic_runs("BM/2/PIN/CPU", 100.0, runs=5, run_cv=0.003),
                     synthetic_runs("CN/2/PIN/CPU", 101.0, runs=5, run_cv=0.003))
    [ovh] = overheads(cells, Judge())
    assert ovh.verdict is EQUIVALENT and "equivalent" in ovh.text


def test_a_large_difference_over_fewer_than_three_launch_pairs_stays_undecided():
    cells = cells_of(synthetic_runs("BM/1/PIN/CPU", 100.0, runs=2, rounds=5, run_cv=0.01, round_cv=0.01),
                     synthetic_runs("CN/1/PIN/CPU", 130.0, runs=2, rounds=5, run_cv=0.01, round_cv=0.01))
    [ovh] = overheads(cells, Judge())
    assert ovh.verdict is UNDECIDED and ovh.result.launch_pairs == 2 and ovh.result.blocks == 10
    assert "needs >= 3 launch pairs" in ovh.text


def test_rounds_of_one_launch_are_not_independent_replicates():
    """Ten rounds in each of three launches are three launch pairs, not thirty blocks: a
    launch effect as large as the difference keeps the comparison undecided."""
    kw = dict(runs=3, rounds=10, round_cv=0.001)
    cells = cells_of(synthetic_runs("BM/1/PIN/CPU", 100.0, run_means=[100, 94, 106], **kw),
                     synthetic_runs("CN/1/PIN/CPU", 106.0, run_means=[112, 97, 109], **kw))
    [ovh] = overheads(cells, Judge())
    assert ovh.result.launch_pairs == 3 and ovh.result.blocks == 30
    assert ovh.verdict is UNDECIDED


def test_cells_never_measured_in_the_same_blocks_are_not_compared_and_say_so():
    cells = cells_of(synthetic_runs("BM/2/PIN/CPU", 100.0, blocks="first-study"),
                     synthetic_runs("CN/2/PIN/CPU", 150.0, blocks="second-study"))
    [ovh] = overheads(cells, Judge())
    assert ovh.verdict is UNDECIDED and "never measured in the same blocks" in ovh.text


def test_overhead_compares_only_the_same_cores_mode_and_workload():
    cells = cells_of(synthetic_runs("BM/2/PIN/CPU", 100.0), synthetic_runs("CN/4/PIN/CPU", 90.0),
                     synthetic_runs("CN/2/VNL/CPU", 120.0),
                     synthetic_runs("CN/2/PIN/CPU", 100.0, model_size="full"))
    assert overheads(cells, Judge()) == []


def test_the_judge_corrects_the_report_claims_as_one_family():
    """A claim that stands alone at p < 0.05 does not survive among many null comparisons."""
    records = (synthetic_runs("BM/2/PIN/CPU", 100.0, runs=3, run_means=[100.0, 100.0, 100.0])
               + synthetic_runs("CN/2/PIN/CPU", 115.0, runs=3, run_means=[113.0, 117.0, 115.0]))
    for cores in (1, 4, 8, 16):
        records += synthetic_runs(f"BM/{cores}/PIN/CPU", 100.0, runs=3, run_cv=0.05)
        records += synthetic_runs(f"CN/{cores}/PIN/CPU", 100.0, runs=3, run_cv=0.05)
    cells = build_cells(records)
    judge = Judge()
    alone = next(o for o in overheads(cells, judge) if o.cell.name == "CN/2/PIN/CPU")
    assert alone.verdict is SLOWER and alone.result.beyond_p_value < 0.05
    judge.decide()
    together = next(o for o in overheads(cells, judge) if o.cell.name == "CN/2/PIN/CPU")
    assert judge.family_size == 5
    assert together.result.adjusted_p_value > alone.result.beyond_p_value
    assert together.verdict is UNDECIDED


def test_emulated_vm_is_compared_but_flagged_and_never_recommended():
    cells = cells_of(synthetic_runs("BM/2/PIN/CPU", 100.0),
                     synthetic_runs("VM/2/PIN/CPU", 50.0, accel="tcg", warnings=[WarningCode.EMULATED_VM]))
    emulated = next(c for c in cells if c.emulated)
    assert "TCG" in emulated.display
    [rec] = recommend(cells)
    assert rec.best.name == "BM/2/PIN/CPU"
    assert rec.rejected == {"TCG-emulated (not comparable)": 1}


def test_busy_and_idle_host_runs_are_separate_cells_compared_in_shared_blocks():
    cells = cells_of(synthetic_runs("BM/2/PIN/CPU", 100.0, host_load="idle"),
                     synthetic_runs("BM/2/PIN/CPU", 140.0, host_load="busy"))
    loads = sorted((c.host_load, round(c.summary.e2e_mean_ms)) for c in cells)
    assert loads == [("busy", 140), ("idle", 100)]
    [effect] = condition_effects(cells, Judge())
    assert effect.cell.host_load == "busy" and effect.verdict is SLOWER


def test_phase_shares_come_from_the_phase_means():
    [cell] = cells_of(synthetic_runs("BM/1/PIN/CPU", 100.0, phase_shares=(0.3, 0.6, 0.1)))
    shares = cell.phase_shares()
    assert shares["pre"] == pytest.approx(0.3, abs=1e-3)
    assert shares["infer"] == pytest.approx(0.6, abs=1e-3)
    assert shares["post"] == pytest.approx(0.1, abs=1e-3)


# -- scale-up, pinning, CHR, GPU, causes ------------------------------------------------------
def knee_series(knee: int, platform: str = "BM", mode: str = "PIN", cv: float = 0.005):
    out = []
    for n in (1, 2, 4, 8, 16):
        out += synthetic_runs(f"{platform}/{n}/{mode}/CPU", 100.0 / min(n, knee) * (1 + 0.002 * n), runs=4, run_cv=cv)
    return out


@pytest.mark.parametrize("knee", [2, 4, 8])
def test_scale_up_knee_is_the_first_step_decided_not_faster(knee):
    [s] = scale_ups(cells_of(knee_series(knee)), Judge())
    assert s.knee == knee and s.decided
    assert s.best_cores == knee
    assert not s.keeps_improving
    assert f"after {knee} cores" in s.describe()
    assert [step.verdict for step in s.steps][:[1, 2, 4, 8].index(knee) + 1][-1] is EQUIVALENT


def test_scale_up_without_knee_keeps_improving_to_the_largest_cores():
    [s] = scale_ups(cells_of(knee_series(64)), Judge())
    assert s.knee == 16 and s.keeps_improving
    assert "no knee" in s.describe()


def test_scale_up_with_an_undecided_step_has_no_knee_yet():
    [s] = scale_ups(cells_of(knee_series(4, cv=0.2)), Judge())
    assert s.knee is None and not s.decided
    assert "undecided" in s.describe()


def test_pin_against_vnl_gain_per_platform():
    cells = cells_of(synthetic_runs("CN/2/PIN/CPU", 90.0, run_cv=0.005),
                     synthetic_runs("CN/2/VNL/CPU", 100.0, run_cv=0.005))
    [gain] = pin_gains(cells, Judge())
    assert gain.cell.name == "CN/2/PIN/CPU" and gain.baseline.name == "CN/2/VNL/CPU"
    assert gain.relative == pytest.approx(-0.10, abs=2e-3) and gain.verdict is FASTER


def test_vanilla_container_overhead_falls_as_chr_rises():
    records = []
    for n, extra in ((2, 0.30), (8, 0.10), (16, 0.01)):
        records += synthetic_runs(f"BM/{n}/VNL/CPU", 100.0 / n, run_cv=0.005, host_cores=16)
        records += synthetic_runs(f"CN/{n}/VNL/CPU", 100.0 / n * (1 + extra), run_cv=0.005, host_cores=16)
    [trend] = chr_trends(overheads(build_cells(records), Judge()))
    assert (trend.platform, trend.cpu_mode) == ("CN", "VNL")
    assert [p[0] for p in trend.points] == [0.125, 0.5, 1.0]
    assert trend.falls_with_chr
    assert "+30.0% at CHR 0.12" in trend.describe()


def test_gpu_speedup_e2e_is_smaller_than_inference_only_when_phases_dominate():
    records = (synthetic_runs("BM/4/PIN/CPU", 100.0, phase_shares=(0.3, 0.6, 0.1))
               + synthetic_runs("BM/4/PIN/GPU", 46.0, phase_shares=(30, 6, 10))
               + synthetic_runs("BM/4/PIN/CPU", 60.0, inference_only=True, phase_shares=(0, 1, 0))
               + synthetic_runs("BM/4/PIN/GPU", 6.0, inference_only=True, phase_shares=(0, 1, 0)))
    [g] = gpu_speedups(build_cells(records), Judge())
    e2e, _, _ = g.speedup(g.e2e)
    only, _, _ = g.speedup(g.inference_only)
    assert e2e == pytest.approx(100 / 46, rel=2e-3)
    assert only == pytest.approx(10.0, rel=1e-2)
    assert g.e2e.verdict is FASTER and g.inference_only.verdict is FASTER
    assert "10.0x (inference-only) vs 2.2x E2E" in g.describe()


def test_causes_report_throttling_migrations_and_oversubscription():
    [cell] = cells_of(synthetic_runs("CN/1/VNL/CPU", 100.0, throttled_share=0.4, migrations_per_request=3.0,
                                     warnings=[WarningCode.THREADS_OVER_BUDGET], start_latency_s=0.2))
    k = causes(cell)
    assert k.throttled_share == pytest.approx(0.4, abs=0.05)
    assert k.migrations_per_request == pytest.approx(3.0)
    assert k.oversubscribed_runs == 3
    assert k.start_latency_s == pytest.approx(0.2)


# -- recommendation and compare ---------------------------------------------------------------
def rec_cells():
    return cells_of(synthetic_runs("BM/4/PIN/CPU", 50.0, run_cv=0.005),
                    synthetic_runs("BM/2/PIN/CPU", 80.0, run_cv=0.005),
                    synthetic_runs("CN/2/PIN/CPU", 80.5, run_cv=0.05),
                    synthetic_runs("CN/1/PIN/CPU", 150.0, run_cv=0.005))


def test_recommendation_without_constraints_is_the_fastest_and_decided():
    [rec] = recommend(rec_cells())
    assert rec.best.name == "BM/4/PIN/CPU" and rec.runner_up.name == "BM/2/PIN/CPU"
    assert rec.decided and not rec.tie and rec.pcs >= 0.95
    assert "decided: every other scenario is slower" in rec.text
    data = rec.to_json()
    assert data["decided"] and data["undecided_pairs"] == [] and data["best"] == ["BM/4/PIN/CPU"]


def test_recommendation_respects_max_cores_and_stays_undecided_when_a_rival_may_be_faster():
    [rec] = recommend(rec_cells(), Constraints(max_cores=2))
    assert rec.best.name == "BM/2/PIN/CPU" and rec.runner_up.name == "CN/2/PIN/CPU"
    assert rec.tie and not rec.decided and rec.pcs is None
    assert "not decided yet: CN/2/PIN/CPU could still be faster" in rec.text
    assert rec.rejected == {"more than 2 cores": 1}
    assert rec.to_json()["undecided_pairs"] == [["BM/2/PIN/CPU", "CN/2/PIN/CPU"]]


def test_equivalent_scenarios_go_to_the_cheaper_deployment():
    cells = cells_of(synthetic_runs("CN/2/PIN/CPU", 79.5, runs=5, run_cv=0.002),
                     synthetic_runs("BM/2/PIN/CPU", 80.0, runs=5, run_cv=0.002),
                     synthetic_runs("BM/4/PIN/CPU", 79.0, runs=5, run_cv=0.002),
                     synthetic_runs("BM/1/PIN/CPU", 150.0, runs=5, run_cv=0.002))
    [rec] = recommend(cells)
    assert rec.decided and rec.best.name == "BM/4/PIN/CPU"
    assert {c.name for c in rec.equivalents} == {"CN/2/PIN/CPU", "BM/2/PIN/CPU"}
    assert rec.recommended.name == "BM/2/PIN/CPU"  # fewer cores, then less isolation
    assert "wins the tie" in rec.text


def test_a_rival_says_its_verdict_although_the_scenario_keys_hold_colons():
    # the rounds are keyed by scenario key (JSON: '{"app": "ic", ...}'); the text is the verdict
    cells = cells_of(synthetic_runs("BM/1/PIN/CPU", 10.0, runs=5, run_cv=0.002),
                     synthetic_runs("BM/2/PIN/CPU", 15.0, runs=5, run_cv=0.002))
    [rec] = recommend(cells)
    [rival] = rec.to_json()["rivals"]
    assert rival["scenario"] == "BM/2/PIN/CPU"
    assert rival["text"].startswith("1.5") and ", slower (p" in rival["text"]
    assert '"app"' not in rival["text"]


def test_recommendation_respects_platforms_and_the_p99_slo():
    cells = rec_cells()
    [rec] = recommend(cells, Constraints(platforms=("CN",)))
    assert rec.best.name == "CN/2/PIN/CPU"
    [rec] = recommend(cells, Constraints(latency_slo_ms=40.0, slo_percentile=99))
    assert rec.best is None and "no scenario meets the constraints" in rec.text
    assert rec.rejected == {"p99 over the SLO": 4}
    # the fastest on average has a heavy tail: its p99 misses the SLO, its p90 does not
    tail = cells_of(synthetic_runs("BM/4/PIN/CPU", 50.0, run_cv=0.005, request_cv=0.9),
                    synthetic_runs("BM/2/PIN/CPU", 80.0, run_cv=0.005))
    fast, slow = (next(c for c in tail if c.name == n) for n in ("BM/4/PIN/CPU", "BM/2/PIN/CPU"))
    slo = (fast.summary.p90_ms + fast.summary.p99_ms) / 2
    assert slow.summary.p99_ms < slo
    [rec] = recommend(tail, Constraints(latency_slo_ms=slo, slo_percentile=99))
    assert rec.best.name == "BM/2/PIN/CPU" and rec.rejected == {"p99 over the SLO": 1}
    [rec] = recommend(tail, Constraints(latency_slo_ms=slo, slo_percentile=90))
    assert rec.best.name == "BM/4/PIN/CPU"


def test_constraints_refuse_bad_values_in_one_line():
    with pytest.raises(ScenarioError, match="90 or 99"):
        Constraints(slo_percentile=95)
    with pytest.raises(ScenarioError, match="unknown platform"):
        Constraints.parse_platforms("BM,XX")


def test_compare_two_scenarios_and_refuse_unknown_ones():
    [comp] = compare_scenarios(rec_cells(), "BM/2/PIN/CPU", "BM/4/PIN/CPU", Judge())
    assert comp.ratio == pytest.approx(1.6, rel=2e-3) and comp.verdict is SLOWER
    with pytest.raises(ScenarioError, match="no successful runs of VM/2/PIN/CPU"):
        compare_scenarios(rec_cells(), "VM/2/PIN/CPU", "BM/4/PIN/CPU", Judge())


# -- best practices on crafted data -----------------------------------------------------------
def test_bp1_phases_matter_or_not_or_no_data():
    rec = synthetic_runs("BM/1/PIN/CPU", 100, phase_shares=(0.25, 0.7, 0.05))
    assert practice(rec, 1).verdict == HOLDS
    rec = synthetic_runs("BM/1/PIN/CPU", 100, phase_shares=(0.01, 0.98, 0.01)) + \
        synthetic_runs("BM/2/PIN/CPU", 60, phase_shares=(0.02, 0.97, 0.01))
    assert practice(rec, 1).verdict == DOES_NOT_HOLD
    rec = synthetic_runs("BM/1/PIN/CPU", 100, inference_only=True)
    bp = practice(rec, 1)
    assert bp.verdict == NOT_ENOUGH and bp.label.startswith("not enough data (needs: E2E runs")


def test_bp1_counts_a_share_only_when_its_launches_decide_it():
    # 2% of E2E on three launches is decided below 10%; with a third scenario of two
    # launches, "every scenario below" cannot be shown: undecided, not against
    small = synthetic_runs("BM/1/PIN/CPU", 100, phase_shares=(0.01, 0.98, 0.01))
    few = synthetic_runs("BM/2/PIN/CPU", 60, runs=2, phase_shares=(0.01, 0.98, 0.01))
    bp = practice(small + few, 1)
    assert bp.verdict == NOT_ENOUGH and (bp.supporting, bp.opposing, bp.undecided) == (0, 0, 1)
    assert "undecided: not counted" in bp.evidence[0]
    # shares that vary from launch to launch around 11%: the largest is not shown >= 10%
    noisy = []
    for launch, share in enumerate((0.06, 0.16, 0.11)):
        noisy += synthetic_runs("BM/1/PIN/CPU", 100, runs=1, seed=launch, blocks=f"b{launch}",
                                phase_shares=(share / 2, 1 - share, share / 2))
    assert practice(noisy, 1).verdict == NOT_ENOUGH
    # one workload per claim: two apps are two claims, each decided
    both = small + synthetic_runs("BM/1/PIN/CPU", 100, app="rs", phase_shares=(0.25, 0.7, 0.05))
    bp = practice(both, 1)
    assert bp.verdict == HOLDS and (bp.supporting, bp.opposing) == (1, 1)


def test_bp2_scale_up_knee_holds_no_knee_does_not_hold():
    bp = practice(knee_series(4), 2)
    assert bp.verdict == HOLDS and any("after 4 cores" in e for e in bp.evidence)
    assert practice(knee_series(64), 2).verdict == DOES_NOT_HOLD
    assert practice(synthetic_runs("BM/2/PIN/CPU", 100), 2).verdict == NOT_ENOUGH


def test_bp2_an_undecided_series_counts_neither_way():
    bp = practice(knee_series(4, cv=0.2), 2)
    assert bp.verdict == NOT_ENOUGH and (bp.supporting, bp.opposing, bp.undecided) == (0, 0, 1)
    assert "still undecided" in bp.needs


def test_bp3_all_cores_against_one_fewer():
    rec = (synthetic_runs("BM/16/PIN/CPU", 52, run_cv=0.005) + synthetic_runs("BM/15/PIN/CPU", 51, run_cv=0.005))
    bp = practice(rec, 3)
    assert bp.verdict == HOLDS and "BM/16/PIN/CPU (all 16 cores) vs BM/15/PIN/CPU" in bp.evidence[0]
    assert "equivalent" in bp.evidence[0]
    rec = (synthetic_runs("BM/16/PIN/CPU", 40, run_cv=0.005) + synthetic_runs("BM/15/PIN/CPU", 50, run_cv=0.005))
    assert practice(rec, 3).verdict == DOES_NOT_HOLD
    assert practice(synthetic_runs("BM/8/PIN/CPU", 40), 3).verdict == NOT_ENOUGH


def test_bp3_busy_host_slower_than_idle_holds():
    rec = (synthetic_runs("VM/16/VNL/CPU", 50, run_cv=0.005, host_load="idle", accel="kvm")
           + synthetic_runs("VM/16/VNL/CPU", 70, run_cv=0.005, host_load="busy", accel="kvm"))
    bp = practice(rec, 3)
    assert bp.verdict == HOLDS and "busy vs idle host" in bp.evidence[0]


def test_bp4_needs_storage_variants_and_uses_them_when_recorded():
    bp = practice(synthetic_runs("BM/2/PIN/CPU", 50), 4)
    assert bp.verdict == NOT_ENOUGH and "storage" in bp.needs
    rec = (synthetic_runs("BM/2/PIN/CPU", 50, run_cv=0.005, storage="native")
           + synthetic_runs("BM/2/PIN/CPU", 70, run_cv=0.005, storage="throttled"))
    assert practice(rec, 4).verdict == HOLDS


def test_bp4_never_counts_a_throttle_that_left_no_trace():
    rec = (synthetic_runs("BM/2/PIN/CPU", 50, run_cv=0.005, storage="native")
           + synthetic_runs("BM/2/PIN/CPU", 70, run_cv=0.005, storage="throttled",
                            warnings=[WarningCode.CONDITION_INEFFECTIVE]))
    bp = practice(rec, 4)
    assert bp.verdict == NOT_ENOUGH and bp.undecided == 1
    assert "left no trace" in bp.evidence[0]


def test_bp4_holds_when_one_app_gains_even_if_a_single_file_app_does_not():
    nlp = (synthetic_runs("BM/1/PIN/CPU", 80, app="nlp", run_cv=0.005, storage="native")
           + synthetic_runs("BM/1/PIN/CPU", 80, app="nlp", run_cv=0.005, storage="throttled"))
    rec = (synthetic_runs("BM/1/PIN/CPU", 50, run_cv=0.005, storage="native")
           + synthetic_runs("BM/1/PIN/CPU", 70, run_cv=0.005, storage="throttled") + nlp)
    bp = practice(rec, 4)
    assert bp.verdict == HOLDS and (bp.supporting, bp.opposing) == (1, 1)
    assert practice(nlp, 4).verdict == DOES_NOT_HOLD


def e2e_and_inference_only(e2e_speedup: float, infer_speedup: float):
    return (synthetic_runs("BM/1/PIN/CPU", 100, run_cv=0.005)
            + synthetic_runs("BM/2/PIN/CPU", 100 / e2e_speedup, run_cv=0.005)
            + synthetic_runs("BM/1/PIN/CPU", 60, run_cv=0.005, inference_only=True, phase_shares=(0, 1, 0))
            + synthetic_runs("BM/2/PIN/CPU", 60 / infer_speedup, run_cv=0.005, inference_only=True,
                             phase_shares=(0, 1, 0)))


def test_bp5_e2e_against_inference_only_speedups():
    bp = practice(e2e_and_inference_only(1.3, 1.9), 5)
    assert bp.verdict == HOLDS and "1.30x E2E vs 1.90x inference only" in bp.evidence[0]
    assert practice(e2e_and_inference_only(1.5, 1.5), 5).verdict == DOES_NOT_HOLD
    rec = synthetic_runs("BM/1/PIN/CPU", 100) + synthetic_runs("BM/2/PIN/CPU", 60)
    assert practice(rec, 5).verdict == NOT_ENOUGH


def test_bp6_needs_gpu_runs_and_judges_them_when_present():
    bp = practice(synthetic_runs("BM/4/PIN/CPU", 100), 6)
    assert bp.label == "not enough data (needs: GPU runs)"
    cpu = synthetic_runs("BM/4/PIN/CPU", 100, run_cv=0.005) + synthetic_runs("BM/16/PIN/CPU", 45, run_cv=0.005)
    gpu_as_fast = synthetic_runs("BM/4/PIN/GPU", 46, run_cv=0.005, phase_shares=(30, 6, 10))
    assert practice(cpu + gpu_as_fast, 6).verdict == HOLDS
    gpu_fast = synthetic_runs("BM/4/PIN/GPU", 20, run_cv=0.005, phase_shares=(6, 4, 4))
    assert practice(cpu + gpu_fast, 6).verdict == DOES_NOT_HOLD


def test_bp7_containers_at_chr_one():
    base = synthetic_runs("BM/16/VNL/CPU", 50, run_cv=0.005, host_cores=16)
    cn = synthetic_runs("CN/16/VNL/CPU", 51, run_cv=0.005, host_cores=16)
    vm = synthetic_runs("VM/16/VNL/CPU", 55, run_cv=0.005, host_cores=16, accel="kvm")
    assert practice(base + cn + vm, 7).verdict == HOLDS
    vm_fast = synthetic_runs("VM/16/VNL/CPU", 45, run_cv=0.005, host_cores=16, accel="kvm")
    assert practice(base + cn + vm_fast, 7).verdict == DOES_NOT_HOLD
    vm_tcg = synthetic_runs("VM/16/VNL/CPU", 45, run_cv=0.005, host_cores=16, accel="tcg")
    bp = practice(base + cn + vm_tcg, 7)
    assert bp.verdict == NOT_ENOUGH and "KVM, not TCG" in bp.needs


def test_whole_synthetic_study_gives_a_verdict_or_a_need_for_every_practice():
    rec = synthetic_study(apps=("ic",), gpu=True, busy=True, inference_only=True, emulated_vm=True)
    bps = practices(build_cells(rec))
    assert [bp.number for bp in bps] == list(range(1, 8))
    for bp in bps:
        assert bp.verdict in (HOLDS, DOES_NOT_HOLD, NOT_ENOUGH)
        assert bp.test and (bp.evidence or bp.needs)

"""The statistics of launches, rounds and blocks, on small hand-made data: the hierarchical
CI of a scenario, the paired comparison and its verdicts, Holm, the selection, the racing
plan. The simulated studies are in test_decisions.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from deploybench.stats import (
    MAX_BLOCKS, MIN_BLOCKS, EpochPlan, PairedBlock, PairedComparison, Round, ScenarioCI,
    Selection, Verdict, blocks_per_launch, compare_paired, compare_rounds, decide_family, holm,
    mean_ci, outlook, paired_blocks, plan_epoch, scenario_ci, select_best,
)


def blocks_from(pair_logs: list[list[float]], base_ms: float = 10.0) -> list[PairedBlock]:
    """Blocks whose log(a/b) are ``pair_logs[i][j]`` (launch pair i, block j)."""
    return [PairedBlock(f"p{i}b{j}", f"a{i}", f"b{i}", base_ms * math.exp(d), base_ms)
            for i, logs in enumerate(pair_logs) for j, d in enumerate(logs)]


# -- one scenario ------------------------------------------------------------------------

def test_scenario_ci_is_over_launch_means_not_rounds():
    rounds = [Round("S", "L1", v) for v in (10.0, 10.2, 10.1)] + \
             [Round("S", "L2", v) for v in (11.0, 11.1)] + [Round("S", "L3", 12.0)]
    ci = scenario_ci(rounds)
    launch_means = [10.1, 11.05, 12.0]
    expected = mean_ci(launch_means)
    assert ci.basis == "launches" and ci.launches == 3 and ci.rounds == 6
    assert ci.mean_ms == pytest.approx(expected.mean)
    assert ci.half_width_ms == pytest.approx(expected.half_width)
    assert ci.within_launch_sd_rel > 0 and ci.between_launch_sd_rel > ci.within_launch_sd_rel


def test_one_launch_falls_back_to_rounds_and_says_it_is_within_one_launch():
    ci = scenario_ci([Round("S", "L1", v) for v in (10.0, 10.2, 10.1)])
    assert ci.basis == "rounds" and ci.within_one_launch
    assert ci.half_width_ms == pytest.approx(mean_ci([10.0, 10.2, 10.1]).half_width)


def test_one_round_falls_back_to_its_requests():
    ci = scenario_ci([Round("S", "L1", 10.0)], request_ms=[9.0, 10.0, 11.0])
    assert ci.basis == "requests" and ci.within_one_launch and ci.requests == 3
    assert ci.half_width_ms == pytest.approx(mean_ci([9.0, 10.0, 11.0]).half_width)
    assert scenario_ci([]).basis == "none"


def test_never_converged_with_fewer_than_three_launches_however_narrow():
    two = [Round("S", f"L{i}", 10.0 + 1e-6 * j) for i in range(2) for j in range(5)]
    three = two + [Round("S", "L2", 10.0)]
    assert scenario_ci(two).relative < 1e-3
    assert not scenario_ci(two).converged(0.02)
    assert scenario_ci(three).converged(0.02)
    assert not scenario_ci(three).converged(0.02, min_launches=4)
    assert not scenario_ci([Round("S", "L1", v) for v in (10.0, 10.0, 10.0)]).converged(0.5)


def test_scenario_ci_takes_one_scenario_and_round_trips_json():
    with pytest.raises(ValueError, match="one scenario"):
        scenario_ci([Round("S", "L1", 1.0), Round("T", "L1", 1.0)])
    ci = scenario_ci([Round("S", "L1", 10.0), Round("S", "L2", 11.0)])
    assert ScenarioCI.from_json(ci.to_json()).to_json() == ci.to_json()


# -- two scenarios -----------------------------------------------------------------------

def test_paired_estimate_is_a_t_test_over_launch_pair_means():
    logs = [[0.10, 0.11, 0.09], [0.13, 0.12, 0.11], [0.15, 0.14, 0.13], [0.08, 0.07, 0.12]]
    c = compare_paired(blocks_from(logs), a="A", b="B")
    pair_means = [np.mean(x) for x in logs]
    t = scipy_stats.ttest_1samp(pair_means, 0.0)
    assert c.basis == "launch pairs" and c.launch_pairs == 4 and c.blocks == 12 and c.df == 3
    assert c.ratio == pytest.approx(math.exp(np.mean(pair_means)))
    assert c.p_value == pytest.approx(t.pvalue)
    ci = t.confidence_interval(0.95)
    assert c.ci == pytest.approx((math.exp(ci.low), math.exp(ci.high)))
    assert c.verdict is Verdict.SLOWER


def test_drift_shared_within_a_block_cancels():
    """The same blocks on a host whose speed halves over the study decide the same."""
    logs = [[0.10, 0.11, 0.09], [0.13, 0.12, 0.11], [0.15, 0.14, 0.13]]
    steady = compare_paired(blocks_from(logs))
    drifting = compare_paired([PairedBlock(x.block, x.launch_a, x.launch_b, x.mean_a_ms * s, x.mean_b_ms * s)
                               for x, s in zip(blocks_from(logs), np.linspace(1.0, 2.0, 9))])
    assert drifting.ratio == pytest.approx(steady.ratio) and drifting.ci == pytest.approx(steady.ci)


def test_faster_is_the_mirror_of_slower():
    c = compare_paired(blocks_from([[-0.10, -0.11], [-0.13, -0.12], [-0.15, -0.14]]), a="A", b="B")
    assert c.verdict is Verdict.FASTER and c.ratio < 1 / 1.05
    f = c.flipped()
    assert (f.a, f.b, f.verdict) == ("B", "A", Verdict.SLOWER)
    assert f.ratio == pytest.approx(1 / c.ratio)
    assert f.ci == pytest.approx((1 / c.ci[1], 1 / c.ci[0]))
    assert (f.tost_p_low, f.tost_p_high) == (c.tost_p_high, c.tost_p_low)


def test_equivalent_when_the_tost_interval_is_inside_the_margin():
    logs = [[0.01, 0.0, 0.01], [-0.01, -0.02, 0.0], [0.0, 0.01, 0.0], [0.02, 0.01, 0.02], [-0.01, 0.0, -0.01]]
    c = compare_paired(blocks_from(logs), margin=0.05)
    lo, hi = c.tost_ci
    assert 1 / 1.05 < lo < hi < 1.05
    assert c.tost_p_value < 0.05 and c.verdict is Verdict.EQUIVALENT
    # the same data with a margin the interval does not fit in
    tight = compare_paired(blocks_from(logs), margin=0.005)
    assert tight.verdict is Verdict.UNDECIDED


def test_a_significant_difference_within_the_margin_is_not_called_slower():
    logs = [[0.030, 0.031], [0.029, 0.030], [0.031, 0.030], [0.030, 0.029]]  # 3% +- 0.1%
    c = compare_paired(blocks_from(logs), margin=0.05)
    assert c.p_value < 0.001 and c.verdict is Verdict.EQUIVALENT


def test_slower_needs_the_whole_interval_beyond_the_margin_not_just_the_estimate():
    """The CI failure of the core 0 / core 1 A/A test: 1.051x, 95% CI 1.016..1.087 over 3
    launch pairs. The data say core 0 is slower, not that it is slower by more than 5%."""
    logs = [[0.035, 0.036, 0.034], [0.050, 0.049, 0.051], [0.065, 0.066, 0.064]]
    c = compare_paired(blocks_from(logs), margin=0.05)
    lo, hi = c.ci
    assert 1.0 < lo < 1.05 < c.ratio < hi
    assert c.p_value < 0.05 and c.beyond_p_value > 0.05
    assert c.verdict is Verdict.UNDECIDED
    # the same spread around 1.15: the whole interval is beyond the margin
    far = compare_paired(blocks_from([[d + 0.09 for d in x] for x in logs]), margin=0.05)
    assert far.ci[0] > 1.05 and far.verdict is Verdict.SLOWER
    assert far.adjusted_p_value == pytest.approx(far.beyond_p_value)
    # beyond_p_value is below alpha exactly when the (1-alpha) CI clears the margin
    t = scipy_stats.t.cdf(-(far.log_ratio - math.log(1.05)) / far.log_se, far.df)
    assert far.beyond_p_value == pytest.approx(2 * t)


def test_a_wide_interval_beyond_the_margin_is_undecided():
    c = compare_paired(blocks_from([[0.30], [-0.05], [0.10]]))
    assert c.ratio > 1.05 and c.ci[0] < 1 and c.verdict is Verdict.UNDECIDED


def test_nothing_is_decided_with_fewer_than_three_launch_pairs():
    huge = [[0.5, 0.51, 0.49, 0.5], [0.52, 0.5, 0.51, 0.5]]
    assert compare_paired(blocks_from(huge)).verdict is Verdict.UNDECIDED
    assert compare_paired(blocks_from(huge + [[0.5, 0.5]])).verdict is Verdict.SLOWER
    one_launch_pair = compare_paired(blocks_from([[0.5 + 0.001 * j for j in range(20)]]))
    assert one_launch_pair.basis == "blocks" and one_launch_pair.verdict is Verdict.UNDECIDED
    assert compare_paired(blocks_from(huge + [[0.5]]), min_launches=4).verdict is Verdict.UNDECIDED
    with pytest.raises(ValueError, match="min_launches"):
        compare_paired(blocks_from(huge), min_launches=1)


def test_an_outlier_round_is_left_out_and_listed_on_its_side():
    logs = [[0.10, 0.11, 0.09], [0.12, 0.12 + math.log(2.5), 0.11], [0.13, 0.14, 0.12]]
    blocks = blocks_from(logs)
    c = compare_paired(blocks, a="A", b="B")
    [flagged] = c.outliers
    assert flagged.block == "p1b1" and flagged.ratio > 2 * flagged.launch_pair_median  # A's round was slow
    assert c.blocks == 8
    clean = compare_paired([x for x in blocks if x.block != "p1b1"])
    assert c.ratio == pytest.approx(clean.ratio)
    kept = compare_paired(blocks, outlier_z=math.inf)
    assert not kept.outliers and kept.ratio > c.ratio * 1.1
    assert c.flipped().outliers[0].ratio == pytest.approx(1 / flagged.ratio)


def test_two_blocks_cannot_say_which_one_is_off_so_neither_is_flagged():
    c = compare_paired(blocks_from([[0.1, 0.1 + math.log(3)], [0.1, 0.11, 0.09], [0.1, 0.12, 0.1]]))
    assert not c.outliers


def test_paired_blocks_pairs_rounds_by_block():
    rounds = [Round("A", "a1", 10.0, "x"), Round("B", "b1", 5.0, "x"), Round("C", "c1", 1.0, "x"),
              Round("A", "a1", 11.0, "y"), Round("B", "b1", 5.5, "y"), Round("A", "a1", 9.0, "z"),
              Round("B", "b1", 4.0, None)]
    assert paired_blocks(rounds, "A", "B") == [PairedBlock("x", "a1", "b1", 10.0, 5.0),
                                               PairedBlock("y", "a1", "b1", 11.0, 5.5)]
    with pytest.raises(ValueError, match="two rounds of A"):
        paired_blocks(rounds + [Round("A", "a1", 1.0, "x")], "A", "B")


def test_comparison_json_has_the_cli_fields_and_round_trips():
    c = compare_paired(blocks_from([[0.10, 0.11, 0.5], [0.13, 0.12, 0.11], [0.15, 0.14, 0.13]]), a="A", b="B")
    data = c.to_json()
    assert data["verdict"] == "slower" and data["margin"] == 0.05 and len(data["ci"]) == 2
    assert data["ratio"] == pytest.approx(c.ratio) and data["outliers"]
    assert PairedComparison.from_json(data).to_json() == data
    assert "slower" in c.describe() and "launch pairs" in c.describe()


# -- Holm --------------------------------------------------------------------------------

def test_holm_matches_a_hand_worked_example():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5] and holm([]) == []
    assert holm([0.2, 0.3]) == pytest.approx([0.4, 0.4])  # 0.2 x 2; 0.3 x 1 < 0.4 carried
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([math.nan, 0.01]) == pytest.approx([1.0, 0.02])


def test_claims_that_hold_alone_can_fail_together():
    def slower(shift):  # about 16% slower: beyond the 5% margin at p about 0.04 each
        return compare_paired(blocks_from([[0.15 + shift], [0.115 + shift], [0.185 + shift]]))
    family = [slower(0.0), slower(0.003), slower(-0.003)]
    assert all(c.verdict is Verdict.SLOWER for c in family)
    assert all(0.0167 < c.claim_p_value < 0.05 for c in family)
    together = decide_family(family)
    assert all(c.verdict is Verdict.UNDECIDED for c in together)
    assert [c.adjusted_p_value for c in together] == pytest.approx(holm([c.claim_p_value for c in family]))
    with pytest.raises(ValueError, match="one alpha"):
        decide_family([family[0], compare_paired(blocks_from([[0.1]]), alpha=0.01)])


# -- selection ---------------------------------------------------------------------------

def block_rounds(true_logs: dict[str, list[list[float]]]) -> list[Round]:
    """Rounds of blocks: true_logs[s][epoch][block] is log(mean ms) of s's round there."""
    rounds = []
    for s, epochs in true_logs.items():
        for e, blocks in enumerate(epochs):
            for b, v in enumerate(blocks):
                rounds.append(Round(s, f"{s}@{e}", 10.0 * math.exp(v), f"e{e}b{b}"))
    return rounds


def noisy_logs(offset: float, seed: int, epochs: int = 4, blocks: int = 3) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return (offset + rng.normal(0, 0.01, (epochs, 1)) + rng.normal(0, 0.003, (epochs, blocks))).tolist()


def test_selection_picks_the_fastest_and_clears_every_rival():
    rounds = block_rounds({"A": noisy_logs(0.3, 1), "B": noisy_logs(0.0, 2), "C": noisy_logs(0.02, 3)})
    s = select_best(rounds, ["A", "B", "C"])
    assert s.best == "B" and s.decided and s.guaranteed_pcs == pytest.approx(0.95)
    by_name = {r.name: r for r in s.rivals}
    assert by_name["A"].comparison.verdict is Verdict.SLOWER
    assert by_name["C"].comparison.verdict is Verdict.EQUIVALENT and by_name["C"].cleared
    assert s.undecided_pairs == () and s.attained_pcs > 0.95
    assert Selection.from_json(s.to_json()).to_json() == s.to_json()


def test_a_rival_within_the_margin_can_be_cleared_even_when_it_is_a_little_faster():
    # B is 2% faster than A: picking A is still within the margin of the best
    rounds = block_rounds({"A": noisy_logs(0.0, 1), "B": noisy_logs(-0.02, 2)})
    s = select_best(rounds, ["A", "B"])
    assert s.best == "B" and s.decided
    flipped = [r for r in select_best(rounds, ["A", "B"]).rivals][0]
    assert flipped.name == "A"


def test_the_pick_is_made_among_survivors_not_through_rivals_dropped_early():
    # Z, far slower, was measured only in the first 3 epochs (racing dropped it), when X
    # happened to beat Y; over all 8 epochs, measured together, Y beats X. Averaging X's
    # and Y's ratios against Z (other launches) picked X; Y is the pick.
    rng = np.random.default_rng(7)
    x = [[(-0.062 if e < 3 else 0.058) + v for v in rng.normal(0, 0.002, 3)] for e in range(8)]
    y = [list(rng.normal(0, 0.002, 3)) for _ in range(8)]
    z = [list(0.7 + rng.normal(0, 0.002, 3)) for _ in range(3)]
    rounds = block_rounds({"X": x, "Y": y, "Z": z})
    direct = compare_rounds(rounds, "Y", "X")
    assert direct.launch_pairs == 8 and direct.ratio < 1
    assert compare_rounds(rounds, "Z", "Y").verdict is Verdict.SLOWER
    s = select_best(rounds, ["X", "Y", "Z"])
    assert s.best == "Y"
    assert {r.name: r.comparison.verdict for r in s.rivals}["Z"] is Verdict.SLOWER


def test_selection_is_undecided_with_fewer_than_three_epochs():
    rounds = block_rounds({"A": noisy_logs(0.3, 1, epochs=2), "B": noisy_logs(0.0, 2, epochs=2)})
    s = select_best(rounds, ["A", "B"])
    assert s.best == "B" and not s.decided and s.undecided_pairs == (("B", "A"),)
    assert s.guaranteed_pcs is None


# -- racing ------------------------------------------------------------------------------

def test_with_nothing_stored_everything_runs_with_the_fewest_blocks():
    plan = plan_epoch([], ["A", "B", "C"], claims=[("C", "D")], launch_s=4.0, round_s=0.3)
    assert plan.active == ("A", "B", "C", "D") and not plan.done
    assert plan.blocks_per_launch == MIN_BLOCKS and plan.epochs_done == 0
    assert all(o.basis == "minimum" and o.more_epochs == 3 for o in plan.outlooks)
    assert EpochPlan.from_json(plan.to_json()).to_json() == plan.to_json()


def test_a_scenario_decided_slower_drops_out_unless_a_claim_needs_it():
    rounds = block_rounds({"A": noisy_logs(0.3, 1, epochs=3), "B": noisy_logs(0.0, 2, epochs=3),
                           "C": noisy_logs(0.0, 3, epochs=3), "D": noisy_logs(0.01, 4, epochs=3)})
    plan = plan_epoch(rounds, ["A", "B", "C"])
    assert "A" not in plan.active and dict(plan.dropped)["A"].startswith("slower against")
    kept = plan_epoch(rounds, ["A", "B", "C"], claims=[("A", "D")])
    assert kept.claims[0].verdict is Verdict.SLOWER  # that claim is decided: A still not needed
    assert "A" not in kept.active
    # E is about the margin away from A: that claim stays open, and keeps A measured
    rounds += block_rounds({"E": noisy_logs(0.3 + math.log(1.05), 5, epochs=3)})
    needed = plan_epoch(rounds, ["A", "B", "C"], claims=[("A", "E")])
    assert needed.claims[0].verdict is Verdict.UNDECIDED and needed.pending[-1] == ("A", "E")
    assert {"A", "E"} <= set(needed.active) and "A" not in dict(needed.dropped)


def test_racing_is_done_when_every_needed_decision_is_made():
    rounds = block_rounds({"A": noisy_logs(0.3, 1), "B": noisy_logs(0.0, 2)})
    plan = plan_epoch(rounds, ["A", "B"], claims=[("A", "B")])
    assert plan.done and plan.active == () and plan.pending == () and plan.outlooks == ()


def test_blocks_per_launch_follows_the_variance_split_and_the_costs():
    assert blocks_per_launch(1e-4, 1e-4, launch_s=4.0, round_s=1.0) == MIN_BLOCKS  # sqrt(4) = 2
    assert blocks_per_launch(1e-5, 1e-4, launch_s=4.0, round_s=0.25) == MAX_BLOCKS  # sqrt(160)
    assert blocks_per_launch(1e-5, 1e-4, launch_s=1.0, round_s=0.5) == 4  # sqrt(20) = 4.5 -> 4
    assert blocks_per_launch(0.0, 1e-4, launch_s=1.0, round_s=1.0) == MAX_BLOCKS
    assert blocks_per_launch(math.nan, 1e-4, launch_s=1.0, round_s=1.0) == MIN_BLOCKS


def test_outlook_projects_the_epochs_a_decision_needs():
    c = compare_paired(blocks_from([[0.02, 0.03, 0.02], [0.0, 0.01, 0.0], [0.05, 0.04, 0.05]]))
    assert c.verdict is Verdict.UNDECIDED
    o = outlook(c, blocks_per_launch=3, level=0.05)
    assert o.basis == "projected" and o.more_epochs >= 1 and o.more_blocks == 3 * o.more_epochs
    total = c.launch_pairs + o.more_epochs
    var = c.between_var + c.within_var / 3
    half = lambda k: scipy_stats.t.ppf(0.95, k - 1) * math.sqrt(var / k)  # noqa: E731
    gap = c.log_margin - abs(c.log_ratio)
    assert half(total) < gap and (total - 1 <= c.launch_pairs or half(total - 1) >= gap)
    # beyond the margin: the two-sided CI must clear the margin, not just 1
    wide = compare_paired(blocks_from([[0.20, 0.21, 0.20], [0.02, 0.03, 0.02], [0.12, 0.11, 0.12]]))
    assert wide.verdict is Verdict.UNDECIDED and wide.log_ratio > wide.log_margin
    w = outlook(wide, blocks_per_launch=3, level=0.05)
    w_total = wide.launch_pairs + w.more_epochs
    w_var = wide.between_var + wide.within_var / 3
    w_half = lambda k: scipy_stats.t.ppf(0.975, k - 1) * math.sqrt(w_var / k)  # noqa: E731
    w_gap = wide.log_ratio - wide.log_margin
    assert w_half(w_total) < w_gap and (w_total - 1 <= wide.launch_pairs or w_half(w_total - 1) >= w_gap)
    # a rival 10% faster than the selected best can never be cleared against it
    faster = compare_paired(blocks_from([[-0.10, -0.11, -0.10], [-0.12, -0.11, -0.12], [-0.09, -0.1, -0.1]]))
    gone = outlook(faster, blocks_per_launch=3, level=0.05, test="clearance")
    assert (gone.more_epochs, gone.basis) == (None, "out of reach")
    # an estimate closer to the margin needs more epochs than one far from it
    near = compare_paired(blocks_from([[0.04, 0.05, 0.04], [0.02, 0.03, 0.02], [0.07, 0.06, 0.07]]))
    assert outlook(near, blocks_per_launch=3, level=0.05).more_epochs > o.more_epochs


def test_compare_rounds_is_compare_paired_on_the_shared_blocks():
    rounds = block_rounds({"A": noisy_logs(0.1, 1), "B": noisy_logs(0.0, 2)})
    assert compare_rounds(rounds, "A", "B") == compare_paired(paired_blocks(rounds, "A", "B"), a="A", b="B")

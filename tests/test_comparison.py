"""Method comparison arithmetic: relative scores, the best-arm rule, the Pareto front, the chart."""

import math

import pytest

from nofrog_core.evaluate import comparison
from nofrog_core.plots import plot_pareto


def run(name, forgetting, gain, group="arm"):
    return {"arm": name, "label": name, "group": group, "forgetting": forgetting, "forgetting_clipped": forgetting,
            "task_gain": gain, "replay_kl": 0.01, "wall_seconds": 10.0,
            "task": {"after": 1.0, "exact_match_after": 0.5},
            "general": {"general_text": {"after": 26.0, "relative_drop": forgetting}}}


def test_relative_scores_follow_the_definitions():
    sft, half = run("sft", 0.20, 4.0), run("half", 0.05, 3.0)
    comparison.add_relative_scores([sft, half], sft)
    assert sft["forgetting_reduction"] == pytest.approx(0.0) and sft["gain_ratio"] == pytest.approx(1.0)
    assert half["forgetting_reduction"] == pytest.approx(1 - 0.05 / 0.20)
    assert half["gain_ratio"] == pytest.approx(3.0 / 4.0)


def test_relative_scores_are_nan_when_sft_did_not_forget():
    sft, other = run("sft", 0.0, 4.0), run("other", 0.01, 4.0)
    comparison.add_relative_scores([other], sft)
    assert math.isnan(other["forgetting_reduction"])


def test_best_arm_must_keep_the_task_gain():
    sft = run("sft", 0.20, 4.0)
    learns_nothing = run("learns_nothing", 0.0, 0.1)  # no forgetting, but no gain either
    keeps_gain = run("keeps_gain", 0.10, 3.8)
    slightly_better_but_weaker = run("weaker", 0.08, 3.0)
    rows = comparison.add_relative_scores([learns_nothing, keeps_gain, slightly_better_but_weaker], sft)
    assert comparison.pick_best(rows, min_gain_ratio=0.9)["arm"] == "keeps_gain"
    # With no arm above the bar, the one with the best reduction x kept gain wins.
    assert comparison.pick_best([learns_nothing, slightly_better_but_weaker], 0.9)["arm"] == "weaker"


def test_pareto_front_drops_dominated_runs():
    rows = [run("a", 0.20, 4.0), run("b", 0.05, 3.0), run("c", 0.10, 2.0), run("d", 0.0, 1.0)]
    assert [r["arm"] for r in comparison.pareto_front(rows)] == ["d", "b", "a"]


def test_seed_spread():
    spread = comparison.seed_spread([0.10, 0.14])
    assert spread["mean"] == pytest.approx(0.12) and spread["half_range"] == pytest.approx(0.02)


def test_table_and_chart(tmp_path):
    sft, other = run("sft", 0.20, 4.0), run("other", 0.05, 3.0, group="grid")
    rows = comparison.add_relative_scores([sft, other], sft)
    table = comparison.markdown_table(rows, ["general_text", "arithmetic"])
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[3].count("|")
    assert "+75.0%" in lines[3] and "0.75" in lines[3]  # reduction and gain ratio of "other"
    png = plot_pareto(rows, comparison.pareto_front(rows), tmp_path / "pareto.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_seed_difference_matches_a_paired_t_interval():
    from scipy import stats

    a, b = [0.10, 0.14, 0.12], [0.02, 0.05, 0.03]
    out = comparison.paired_seed_difference(a, b)
    diffs = [x - y for x, y in zip(a, b)]
    low, high = stats.t.interval(0.95, 2, loc=sum(diffs) / 3, scale=stats.sem(diffs))
    assert out["mean"] == pytest.approx(sum(diffs) / 3) and out["ci"] == pytest.approx([low, high])
    assert out["exceeds_noise"] and out["n"] == 3
    noisy = comparison.paired_seed_difference([0.1, 0.0, 0.2], [0.05, 0.15, 0.1])
    assert not noisy["exceeds_noise"]  # the interval straddles 0
    assert comparison.paired_seed_difference([0.1], [0.0])["ci"] == [pytest.approx(float("nan"), nan_ok=True)] * 2
    same = comparison.paired_seed_difference([0.4, 0.5], [0.442, 0.542])  # one exact-match step at both seeds
    assert same["ci"][0] == pytest.approx(same["ci"][1]) and not same["exceeds_noise"]


def test_a_curve_is_read_linearly_between_its_traced_points_and_never_extrapolated():
    from nofrog_core.evaluate.comparison import curve_value_at

    curve = [(0.06, 0.5), (0.02, 0.2), (0.04, 0.35)]  # SFT's (forgetting, gain) at three LRs, any order
    assert curve_value_at(curve, 0.03) == pytest.approx(0.275)
    assert curve_value_at(curve, 0.06) == pytest.approx(0.5)
    assert math.isnan(curve_value_at(curve, 0.01)) and math.isnan(curve_value_at(curve, 0.07))
    assert curve_value_at([(0.02, 0.2), (0.02, 0.4), (0.04, 0.5)], 0.02) == pytest.approx(0.3)  # ties averaged


def test_a_method_is_compared_with_the_curve_at_its_own_forgetting_and_gain_paired_by_seed():
    from nofrog_core.evaluate.comparison import matched_to_curve

    curve = {3: [(0.02, 0.2), (0.06, 0.6)], 4: [(0.02, 0.1), (0.06, 0.5)], 5: [(0.02, 0.2), (0.06, 0.4)]}
    # Seed 3: at forgetting 0.04 SFT gains 0.4, the method 0.5 (+0.1); seed 4: 0.3 vs 0.4 (+0.1); seed 5 lies
    # outside the traced range (forgetting 0.01) and does not count.
    method = {3: (0.04, 0.5), 4: (0.04, 0.4), 5: (0.01, 0.3)}
    result = matched_to_curve(method, curve)
    at_forgetting = result["gain_at_matched_forgetting"]
    assert at_forgetting["values"] == pytest.approx([0.1, 0.1]) and at_forgetting["seeds_outside"] == [5]
    # At the method's gain SFT forgets 0.05, 0.05 and 0.04: the method forgets 0.01, 0.01 and 0.03 less (seed
    # 5's gain lies inside its curve's range).
    at_gain = result["forgetting_at_matched_gain"]
    assert at_gain["values"] == pytest.approx([-0.01, -0.01, -0.03]) and at_gain["seeds_outside"] == []

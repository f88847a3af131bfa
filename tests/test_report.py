"""The forgetting report, its intervals and the gate, on constructed per-item scores with known answers."""

import math

import numpy as np
import pytest

from nofrog_core.evaluate.metrics import METRICS, value
from nofrog_core.evaluate.report import forgetting_report, mcnemar, relative_drop, render_markdown
from nofrog_core.gate import decide


def evaluation(tasks: dict[str, tuple[str, str, dict]]) -> dict:
    """A results dict as `nofrog eval` writes it: {task: (role, metric, samples)}."""
    out = {"results": {}, "samples": {}, "task_info": {}, "item_ids": {}, "item_parts": {}}
    for task, (role, metric, samples) in tasks.items():
        n = len(next(iter(samples.values())))
        out["samples"][task] = samples
        out["item_ids"][task], out["item_parts"][task] = [f"{task}-{i}" for i in range(n)], ["test"] * n
        out["results"][task] = {f"{metric},none": value(metric, samples)}
        out["task_info"][task] = {"metric": metric, "higher_is_better": METRICS[metric].higher_is_better,
                                  "role": role}
    return out


def text(nll: list[float], num_bytes: int = 100) -> dict:
    return {"nll": nll, "bytes": [num_bytes] * len(nll), "words": [20] * len(nll)}


def test_relative_drop_is_sign_aware():
    assert relative_drop(0.6, 0.5, higher_is_better=True) == pytest.approx(1 / 6)
    assert relative_drop(20.0, 25.0, higher_is_better=False) == pytest.approx(0.25)
    assert relative_drop(0.5, 0.6, higher_is_better=True) == pytest.approx(-0.2)


def test_rolling_text_is_measured_in_bits_per_byte_so_a_doubled_nll_is_a_100_percent_drop():
    before = evaluation({"prose": ("forgetting", "bits_per_byte", text([50.0, 70.0]))})
    after = evaluation({"prose": ("forgetting", "bits_per_byte", text([100.0, 140.0]))})
    row = forgetting_report(before, after)["forgetting_tasks"][0]
    assert row["metric"] == "bits_per_byte" and row["drop"] == pytest.approx(1.0)
    # word perplexity (exp of NLL per word) rose far more than 100%; it stays in the row as a secondary figure
    assert before["results"]["prose"]["bits_per_byte,none"] == pytest.approx(120 / 200 / math.log(2))


def test_aggregate_is_the_mean_drop_raw_and_clipped_per_task():
    before = evaluation({"a": ("forgetting", "acc", {"acc": [1.0] * 8 + [0.0] * 2}),
                         "b": ("forgetting", "acc", {"acc": [1.0] * 4 + [0.0] * 6})})
    after = evaluation({"a": ("forgetting", "acc", {"acc": [1.0] * 6 + [0.0] * 4}),   # 0.8 -> 0.6: 25% worse
                        "b": ("forgetting", "acc", {"acc": [1.0] * 5 + [0.0] * 5})})  # 0.4 -> 0.5: 25% better
    report = forgetting_report(before, after)
    assert report["forgetting"] == pytest.approx(0.0)
    assert report["forgetting_clipped"] == pytest.approx(0.125)  # the improvement does not pay for the loss
    low, high = report["forgetting_clipped_ci"]
    assert low <= report["forgetting_clipped"] <= high


def test_paired_bootstrap_interval_matches_the_binomial_on_a_known_case():
    # Before: all 400 right. After: 40 wrong. The drop of every resample is the share of wrong items
    # it drew, a binomial proportion: 0.1 +- 1.96 * sqrt(0.1 * 0.9 / 400) = [0.0706, 0.1294].
    n = 400
    before = evaluation({"mc": ("forgetting", "acc", {"acc": [1.0] * n})})
    after = evaluation({"mc": ("forgetting", "acc", {"acc": [0.0] * 40 + [1.0] * (n - 40)})})
    report = forgetting_report(before, after, resamples=4000)
    row = report["forgetting_tasks"][0]
    assert row["drop"] == pytest.approx(0.1)
    assert row["ci"] == pytest.approx([0.0706, 0.1294], abs=0.006)
    assert report["forgetting_ci"] == pytest.approx(row["ci"])  # one task: the aggregate is that task


def test_an_unchanged_model_has_a_zero_width_interval():
    rng = np.random.default_rng(0)
    samples = {"acc": rng.integers(0, 2, 300).astype(float).tolist()}
    same = evaluation({"mc": ("forgetting", "acc", samples), "prose": ("forgetting", "bits_per_byte",
                                                                       text(rng.uniform(50, 90, 30).tolist()))})
    report = forgetting_report(same, same)
    assert report["forgetting"] == 0.0 and report["forgetting_ci"] == [0.0, 0.0]


def test_mcnemar_on_hand_counted_flips():
    # 8 right -> wrong, 2 wrong -> right, 10 unchanged: p = 2 * P(X <= 2 | 10, 0.5) = 2 * 56 / 1024.
    before = np.array([1] * 8 + [0] * 2 + [1] * 5 + [0] * 5)
    after = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 5)
    assert mcnemar(before, after) == {"right_to_wrong": 8, "wrong_to_right": 2, "p": pytest.approx(112 / 1024)}
    assert mcnemar(before, before)["p"] == 1.0


def test_zero_baseline_is_left_out_with_its_reason_and_the_aggregate_stays_finite():
    before = evaluation({"never": ("forgetting", "acc", {"acc": [0.0] * 10}),
                         "mc": ("forgetting", "acc", {"acc": [1.0] * 10})})
    after = evaluation({"never": ("forgetting", "acc", {"acc": [1.0] * 10}),
                        "mc": ("forgetting", "acc", {"acc": [1.0] * 9 + [0.0]})})
    report = forgetting_report(before, after)
    assert [row["task"] for row in report["forgetting_tasks"]] == ["mc"]
    assert report["excluded"] == [{"task": "never", "role": "forgetting",
                                   "reason": "base score 0.0 is 0 or undefined: no relative drop"}]
    assert report["forgetting_clipped"] == pytest.approx(0.1) and all(map(math.isfinite, report["forgetting_ci"]))
    assert "Left out: never" in render_markdown(report)


def test_gain_is_in_the_task_metric_with_flips_and_an_interval():
    before = evaluation({"qa": ("gain", "exact_match", {"exact_match": [0.0] * 20})})
    after = evaluation({"qa": ("gain", "exact_match", {"exact_match": [1.0] * 10 + [0.0] * 10})})
    report = forgetting_report(before, after)
    row = report["gain_tasks"][0]
    assert report["task_gain"] == row["gain"] == pytest.approx(0.5)
    assert row["wrong_to_right"] == 10 and row["right_to_wrong"] == 0
    assert report["task_gain_ci"][0] < 0.5 < report["task_gain_ci"][1]


def report_with(clipped: float, high: float, drops: dict | None = None, gain: float = 0.3) -> dict:
    rows = [{"task": t, "drop": d} for t, d in (drops or {"a": clipped}).items()]
    return {"forgetting": clipped, "forgetting_clipped": clipped, "forgetting_clipped_ci": [0.0, high],
            "forgetting_tasks": rows, "task_gain": gain, "excluded": []}


@pytest.mark.parametrize("decide_on, passed, why", [
    ("point", True, "forgetting 0.0200 <= 0.03"),
    ("upper_bound", False, "upper end of the forgetting interval 0.0450 > gate.max_forgetting 0.03"),
])
def test_gate_decides_on_the_point_or_the_upper_end_of_the_interval(decide_on, passed, why):
    decision = decide(report_with(0.02, 0.045), 0.03, 0.0, decide_on)
    assert decision.passed is passed and why in decision.reason


def test_gate_rules():
    assert decide(report_with(0.03, 0.03, gain=0.5), 0.03, 0.5).passed  # thresholds are inclusive
    assert "task gain 0.1000 < gate.min_task_gain 0.2" in decide(report_with(0.0, 0.0, gain=0.1), 0.03, 0.2).reason
    assert "not finite" in decide(report_with(math.nan, math.nan), 0.03, 0.0).reason
    capped = decide(report_with(0.02, 0.02, drops={"a": 0.0, "b": 0.04}), 0.03, 0.0, max_task_drop=0.035)
    assert not capped.passed and "b dropped 0.0400 > gate.max_task_drop 0.035" in capped.reason


def test_gate_can_require_beating_the_champion():
    report = report_with(0.0, 0.0, gain=1.0)
    assert decide(report, 0.03, 0.0, require_beat_champion=True, gain_over_champion=0.2).passed
    worse = decide(report, 0.03, 0.0, require_beat_champion=True, gain_over_champion=-0.1)
    assert not worse.passed and "champion" in worse.reason
    assert decide(report, 0.03, 0.0, require_beat_champion=True, gain_over_champion=None).passed  # none yet
    assert decide(report, 0.03, 0.0, gain_over_champion=-0.1).passed  # off by default


def test_renderer_signs_worse_is_a_positive_drop_everywhere():
    before = evaluation({"prose": ("forgetting", "bits_per_byte", text([50.0])),
                         "mc": ("forgetting", "acc", {"acc": [1.0, 1.0, 0.0, 0.0]})})
    after = evaluation({"prose": ("forgetting", "bits_per_byte", text([100.0])),   # NLL doubled: worse
                        "mc": ("forgetting", "acc", {"acc": [1.0, 1.0, 1.0, 0.0]})})  # 0.5 -> 0.75: better
    table = render_markdown(forgetting_report(before, after))
    assert "| prose | forgetting | bits_per_byte | 0.7213 | 1.443 | drop +100.00% |" in table
    assert "| mc | forgetting | acc | 0.5 | 0.75 | drop -50.00% |" in table


def test_judged_metric_comes_from_the_task_with_an_override_in_config():
    from nofrog_core.config import TaskMetricOverride
    from nofrog_core.evaluate.runner import judged_metric

    declared = [{"metric": "acc"}, {"metric": "acc_norm"}]
    assert judged_metric("t", declared, "multiple_choice", {}) == {"metric": "acc", "higher_is_better": True}
    assert judged_metric("t", ["acc_norm"], "multiple_choice", {})["metric"] == "acc_norm"  # plain names too
    # rolling log-likelihood tasks are judged in bits per byte, whatever metric_list lists first
    assert judged_metric("p", [{"metric": "word_perplexity"}], "loglikelihood_rolling", {}) == {
        "metric": "bits_per_byte", "higher_is_better": False}
    override = {"t": TaskMetricOverride(metric="acc_norm", higher_is_better=True)}
    assert judged_metric("t", declared, "multiple_choice", override)["metric"] == "acc_norm"
    with pytest.raises(ValueError, match=r"metric 'f1' cannot be computed .* eval.task_metrics.t.metric"):
        judged_metric("t", [{"metric": "f1"}], "generate_until", {})


def mc(correct: list[int]) -> dict:
    return {"acc": [float(c) for c in correct]}


def test_items_are_paired_by_id_not_by_position():
    before = evaluation({"q": ("forgetting", "acc", mc([1, 1, 0, 0])), "g": ("gain", "acc", mc([0, 0]))})
    after = evaluation({"q": ("forgetting", "acc", mc([0, 0, 1, 1])), "g": ("gain", "acc", mc([1, 1]))})
    after["item_ids"]["q"] = list(reversed(after["item_ids"]["q"]))  # the same items, shuffled
    report = forgetting_report(before, after)
    [row] = report["forgetting_tasks"]
    assert row["drop"] == 0.0 and row["right_to_wrong"] == row["wrong_to_right"] == 0
    assert report["split"]["q"]["paired"] == 4 and report["items_read"] == "test"


def test_an_excluded_forgetting_task_rejects_naming_it_unless_allowed():
    before = evaluation({"q": ("forgetting", "acc", mc([1] * 5)), "g": ("gain", "acc", mc([0, 0]))})
    after = evaluation({"q": ("forgetting", "acc", mc([0] * 4)), "g": ("gain", "acc", mc([1, 1]))})
    report = forgetting_report(before, after)  # one item lost: the items differ, the task is left out
    assert [e["task"] for e in report["excluded"]] == ["q"] and report["forgetting"] is None
    rejected = decide(report, 0.03, 0.0)
    assert not rejected.passed and "q (forgetting)" in rejected.reason and "allow_excluded" in rejected.reason
    before = evaluation({"q": ("forgetting", "acc", mc([1] * 5)), "z": ("forgetting", "acc", mc([0] * 3)),
                         "g": ("gain", "acc", mc([0, 0]))})
    after = evaluation({"q": ("forgetting", "acc", mc([1] * 5)), "z": ("forgetting", "acc", mc([0] * 3)),
                        "g": ("gain", "acc", mc([1, 1]))})
    report = forgetting_report(before, after)  # z's base score is 0: excluded
    assert not decide(report, 0.03, 0.0).passed
    allowed = decide(report, 0.03, 0.0, allow_excluded=True)
    assert allowed.passed and "accepted without z" in allowed.reason


def test_a_significant_loss_of_one_task_is_not_averaged_away():
    n = 200
    lost = [1] * 120 + [0] * 80
    before = evaluation({"knowledge": ("forgetting", "acc", mc([1] * 140 + [0] * 60)),
                         "text": ("forgetting", "bits_per_byte", text([50.0] * 40)),
                         "g": ("gain", "acc", mc([0, 0]))})
    after = evaluation({"knowledge": ("forgetting", "acc", mc(lost)),  # 140 -> 120 right: -14%, every flip a loss
                        "text": ("forgetting", "bits_per_byte", text([49.0] * 40)),  # text improved 2%
                        "g": ("gain", "acc", mc([1, 1]))})
    report = forgetting_report(before, after)
    assert report["forgetting_clipped"] == pytest.approx(0.5 * 20 / 140)
    # Past the aggregate alone (a loose 10% budget) the per-task rules still reject, naming the task.
    assert decide(report, 0.10, 0.0).passed
    per_task = decide(report, 0.10, 0.0, max_task_drop=0.05)
    assert not per_task.passed and "knowledge dropped" in per_task.reason
    beyond_noise = decide(report, 0.10, 0.0, max_significant_task_drop=0.03)
    assert not beyond_noise.passed and "beyond its noise" in beyond_noise.reason and "McNemar" in beyond_noise.reason
    assert n == len(lost)


def test_expanded_interval_covers_on_few_documents():
    # 15 documents whose NLL after is a noisy multiple of before: the drop's 95% interval must
    # cover the true drop (the ratio of expected totals) at least 93% of the time.
    rng = np.random.default_rng(0)
    true_ratio, covered, trials = 1.05, 0, 300
    for trial in range(trials):
        base = rng.lognormal(4.0, 0.5, size=15)
        after_nll = base * rng.normal(true_ratio, 0.05, size=15)
        before = evaluation({"t": ("forgetting", "bits_per_byte", text(list(base))), "g": ("gain", "acc", mc([0]))})
        after = evaluation({"t": ("forgetting", "bits_per_byte", text(list(after_nll))),
                            "g": ("gain", "acc", mc([1]))})
        [row] = forgetting_report(before, after, resamples=400, seed=trial)["forgetting_tasks"]
        covered += row["ci"][0] <= true_ratio - 1 <= row["ci"][1]
    assert covered / trials >= 0.93


def test_a_harm_scale_counts_bits_per_byte_in_accuracy_equivalent_units():
    # Text 10% worse in bits per byte, questions 20% worse: unscaled the mean is 15%; with bits per
    # byte worth 3 points of accuracy a point, the text task counts 30% and the mean is 25%.
    before = evaluation({"prose": ("forgetting", "bits_per_byte", text([50.0, 70.0])),
                         "quiz": ("forgetting", "acc", {"acc": [1.0] * 10}), "g": ("gain", "acc", mc([0, 0]))})
    after = evaluation({"prose": ("forgetting", "bits_per_byte", text([55.0, 77.0])),
                        "quiz": ("forgetting", "acc", {"acc": [1.0] * 8 + [0.0] * 2}), "g": ("gain", "acc", mc([1, 1]))})
    plain = forgetting_report(before, after)
    scaled = forgetting_report(before, after, harm_scale={"bits_per_byte": 3.0})
    assert plain["forgetting"] == pytest.approx(0.15) and scaled["forgetting"] == pytest.approx(0.25)
    prose = next(r for r in scaled["forgetting_tasks"] if r["task"] == "prose")
    assert prose["drop"] == pytest.approx(0.3) and prose["metric_drop"] == pytest.approx(0.1)
    assert prose["ci"][0] == pytest.approx(0.3) == pytest.approx(prose["ci"][1])  # every document rose 10%
    assert "harm_scale" not in next(r for r in scaled["forgetting_tasks"] if r["task"] == "quiz")
    assert "bits_per_byte +10.00% x 3" in render_markdown(scaled)
    # The per-task budget reads the scaled drop: 10% in bits per byte is over a 25% budget at scale 3.
    over = decide(scaled, 1.0, -1.0, max_task_drop=0.25)
    assert not over.passed and "prose dropped 0.3000" in over.reason
    assert decide(plain, 1.0, -1.0, max_task_drop=0.25).passed


def test_a_harm_scale_names_a_known_metric_and_is_positive():
    from nofrog_core.config import load_config

    assert load_config(None, ["eval.harm_scale={bits_per_byte: 4}"]).eval.harm_scale == {"bits_per_byte": 4.0}
    with pytest.raises(Exception, match="not a metric"):
        load_config(None, ["eval.harm_scale={bpb: 4}"])
    with pytest.raises(Exception, match="positive finite"):
        load_config(None, ["eval.harm_scale={bits_per_byte: 0}"])

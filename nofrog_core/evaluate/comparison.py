"""Comparing fine-tuning methods on one model, task, step budget and seed.

Definitions (docs/methods.md section 5), against the plain-SFT baseline run:

    forgetting_reduction = 1 - forgetting(method) / forgetting(SFT)
    gain_ratio           = task_gain(method) / task_gain(SFT)

A method "wins" only if it keeps most of SFT's task gain: cutting forgetting by
learning nothing is not a result. `pick_best` encodes that rule so the choice
of the best arm is written down, not made by eye.
"""

from __future__ import annotations

import math
import statistics


def _ratio(numerator: float, denominator: float) -> float:
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return math.nan
    return numerator / denominator


def add_relative_scores(rows: list[dict], baseline: dict) -> list[dict]:
    """Each row gains `forgetting_reduction` and `gain_ratio` relative to the baseline row."""
    for row in rows:
        row["forgetting_reduction"] = 1 - _ratio(row["forgetting"], baseline["forgetting"])
        row["gain_ratio"] = _ratio(row["task_gain"], baseline["task_gain"])
    return rows


def selection_score(row: dict, min_gain_ratio: float) -> float:
    """Forgetting reduction for arms that keep at least `min_gain_ratio` of SFT's gain; others rank
    below every qualifying arm, by reduction scaled by the gain they kept."""
    reduction, gain = row.get("forgetting_reduction", math.nan), row.get("gain_ratio", math.nan)
    if not (math.isfinite(reduction) and math.isfinite(gain)):
        return -math.inf
    if gain >= min_gain_ratio:
        return reduction
    return -10.0 + reduction * max(gain, 0.0)


def pick_best(rows: list[dict], min_gain_ratio: float) -> dict:
    if not rows:
        raise ValueError("pick_best: no runs to choose from")
    return max(rows, key=lambda row: selection_score(row, min_gain_ratio))


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both axes (less forgetting and more task gain), by forgetting."""
    finite = [r for r in rows if math.isfinite(r["forgetting"]) and math.isfinite(r["task_gain"])]
    front = [r for r in finite
             if not any(o["forgetting"] <= r["forgetting"] and o["task_gain"] >= r["task_gain"]
                        and (o["forgetting"], o["task_gain"]) != (r["forgetting"], r["task_gain"])
                        for o in finite)]
    return sorted(front, key=lambda r: r["forgetting"])


def mean_interval(values: list[float], confidence: float = 0.95) -> dict:
    """Mean of the finite values with a Student-t interval (NaN bounds with fewer than 2 values)."""
    from scipy import stats

    values = [v for v in values if math.isfinite(v)]
    n = len(values)
    if n < 2:
        return {"mean": statistics.fmean(values) if values else math.nan, "ci": [math.nan, math.nan], "n": n}
    mean, sem = statistics.fmean(values), statistics.stdev(values) / math.sqrt(n)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sem
    return {"mean": mean, "ci": [mean - half, mean + half], "n": n}


def seed_spread(values: list[float]) -> dict:
    """Mean, its t-interval over seeds, half the range and the values themselves."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return {"mean": math.nan, "ci": [math.nan, math.nan], "half_range": math.nan, "values": []}
    return {"mean": statistics.fmean(values), "ci": mean_interval(values)["ci"],
            "half_range": (max(values) - min(values)) / 2, "values": values}


def paired_seed_difference(a: list[float], b: list[float], confidence: float = 0.95) -> dict:
    """Mean over seeds of a_i - b_i (two methods run at the same seeds, paired by seed), with a
    Student-t interval. `exceeds_noise` = the interval excludes 0 and has a width: identical
    differences at every seed (common with few seeds and a coarse metric such as exact match on
    48 questions) give a zero-width interval, which is no evidence of anything."""
    diffs = [x - y for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
    result = mean_interval(diffs, confidence)
    low, high = result["ci"]
    width = high - low  # float noise makes "identical" differences differ by ~1e-17
    return {**result, "exceeds_noise": bool((low > 0 or high < 0) and width > 1e-9), "values": diffs}


def _pct(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.1%}"


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(rows: list[dict], general_tasks: list[str]) -> str:
    """One line per run: task score and gain, every general task after (relative drop), the
    aggregate, the replay KL, the two relative scores and the wall time."""
    header = (["run", "held-out exact match", "task gain", "answer NLL"]
              + [f"{t} after (drop)" for t in general_tasks]
              + ["forgetting", "clipped", "replay KL", "forgetting reduction", "gain ratio", "wall s"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        general = [f"{_num(row['general'][t]['after'])} ({_pct(row['general'][t]['relative_drop'])})"
                   if t in row["general"] else "n/a" for t in general_tasks]
        answer_loss = (row["task"].get("answer_loss") or [None, math.nan])[1]
        cells = ([row["label"], _num(row["task"]["after"], 2), _num(row["task_gain"], 2), _num(answer_loss)]
                 + general
                 + [_pct(row["forgetting"]), _pct(row["forgetting_clipped"]), _num(row.get("replay_kl"), 4),
                    _pct(row.get("forgetting_reduction")), _num(row.get("gain_ratio"), 2),
                    f"{row['wall_seconds']:.0f}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curve_value_at(curve: list[tuple[float, float]], x: float) -> float:
    """A traced curve's y at x, linear between the two traced points that bracket x; NaN outside the
    traced range (a comparison is made only where the reference was measured, never extrapolated).

    `curve`: (x, y) points, for example plain SFT's (forgetting, gain) at each learning rate of one
    seed. Points are sorted by x; equal x values are averaged."""
    import numpy as np

    points = sorted((px, py) for px, py in curve if math.isfinite(px) and math.isfinite(py))
    if len(points) < 2 or not math.isfinite(x) or not points[0][0] <= x <= points[-1][0]:
        return math.nan
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    unique = np.unique(xs)
    return float(np.interp(x, unique, [ys[xs == u].mean() for u in unique]))


def matched_to_curve(method: dict[int, tuple[float, float]], curve: dict[int, list[tuple[float, float]]]) -> dict:
    """A method against a reference curve traced over one knob (plain SFT over its learning rate),
    paired by seed: the method's gain minus the curve's gain at the method's forgetting ("at matched
    forgetting"), and its forgetting minus the curve's forgetting at the method's gain ("at matched
    gain"). `method`: seed -> (forgetting, gain); `curve`: seed -> [(forgetting, gain), ...].
    A seed whose point lies outside the curve's traced range does not count (reported as
    `seeds_outside`)."""
    seeds = sorted(set(method) & set(curve))
    at_forgetting = [(method[s][1], curve_value_at(curve[s], method[s][0])) for s in seeds]
    at_gain = [(method[s][0], curve_value_at([(g, f) for f, g in curve[s]], method[s][1])) for s in seeds]
    result = {"seeds": seeds}
    for key, pairs in (("gain_at_matched_forgetting", at_forgetting), ("forgetting_at_matched_gain", at_gain)):
        inside = [(a, b) for a, b in pairs if math.isfinite(b)]
        result[key] = {**paired_seed_difference([a for a, _ in inside], [b for _, b in inside]),
                       "reference_values": [b for _, b in pairs],
                       "seeds_outside": [s for s, (_, b) in zip(seeds, pairs) if not math.isfinite(b)]}
    return result

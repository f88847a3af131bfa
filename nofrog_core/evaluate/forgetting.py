"""Before/after comparison: forgetting on the general suite and gain on the new task.

Definitions (methods.md section 5): relative change is sign-aware, so a rise
in perplexity counts as a drop. Aggregate forgetting is the mean relative drop
over the general suite, reported raw and clipped at 0 per task.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..plots import plot_before_after

from .builtin import GENERAL_SUITE, HIGHER_IS_BETTER, TASK_METRIC
from .runner import metric_value


def relative_drop(before: float, after: float, higher_is_better: bool) -> float:
    """Fraction of the score lost: 0.1 = 10% worse. Negative = improved."""
    if before == 0:
        return math.nan
    drop = (before - after) / abs(before)
    return drop if higher_is_better else -drop


def forgetting_report(before: dict, after: dict) -> dict:
    rows = []
    for task, metric in GENERAL_SUITE.items():
        if task not in before["results"] or task not in after["results"]:
            continue
        b, a = metric_value(before, task, metric), metric_value(after, task, metric)
        rows.append({"task": task, "metric": metric, "before": b, "after": a, "delta": a - b,
                     "relative_drop": relative_drop(b, a, HIGHER_IS_BETTER[metric])})
    drops = [r["relative_drop"] for r in rows]
    gains = []
    for task, metric in TASK_METRIC.items():
        if task in before["results"] and task in after["results"]:
            b, a = metric_value(before, task, metric), metric_value(after, task, metric)
            sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
            gains.append({"task": task, "metric": metric, "before": b, "after": a, "gain": sign * (a - b)})
    # The replay KL is 0 for the base model by construction: no relative change, so it is reported
    # beside the aggregate, not in it.
    replay_kl = None
    if "replay_kl" in before["results"] and "replay_kl" in after["results"]:
        replay_kl = {"before": metric_value(before, "replay_kl", "replay_kl"),
                     "after": metric_value(after, "replay_kl", "replay_kl")}
    return {
        "general": rows,
        "replay_kl": replay_kl,
        "forgetting": sum(drops) / len(drops) if drops else math.nan,
        "forgetting_clipped": sum(max(0.0, d) for d in drops) / len(drops) if drops else math.nan,
        "new_task": gains,
        "task_gain": gains[0]["gain"] if gains else math.nan,
    }


def plot_report(report: dict, path: Path) -> Path:
    rows = report["general"] + report["new_task"]
    title = f"forgetting {report['forgetting']:+.1%}, task gain {report['task_gain']:+.3g}"
    return plot_before_after(rows, path, title)

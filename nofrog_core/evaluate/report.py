"""The forgetting report: before vs after on the same items, with paired intervals.

Definitions (docs/methods.md section 5):

- Each task declares its metric and direction (`task_info` in the results) and a role:
  `forgetting` (an old capability), `gain` (the new task), `extra` (reported only) or `round`
  (an earlier retraining round's held-out rows: judged by its relative drop like a forgetting
  task, but only against the champion that learned it, never against the base, which never
  knew it, and never in the aggregate: `round_tasks`, `gate.decide_rounds`).
- Forgetting of a task: the relative drop of its metric, sign-aware,
  `(before - after) / |before|` when higher is better, `(after - before) / |before|` when
  lower is better. Rolling text tasks are measured in bits per byte, linear in NLL.
- Harm scale: a metric with an `eval.harm_scale` entry (bits per byte by default) has its drop
  multiplied by it, so every forgetting task is counted in accuracy-equivalent units: bits per
  byte moves several times less than accuracy for the same damage (`bench/harm_scale.py`), and
  unscaled a large knowledge loss would average away beside text tasks that "moved 1%".
- Aggregate forgetting: the mean per-task drop, raw and clipped at 0 per task (an
  improvement on one capability does not pay for a loss on another).
- Gain of a task: the change of its metric in its own units, positive = better.
- Items: the report reads one part of every task's items (`part`: `test` for the gate,
  `selection` for a screen or the fit's choice; `nofrog_core/splits.py`) and pairs the two
  evaluations by item id (a content hash), never by position or count.
- Intervals: before and after scored the same items, so every resample draws the same
  items for both (paired bootstrap), recomputes every per-task figure, and the aggregate
  from those; the interval is the central `confidence` range of the resamples, each
  task's resamples first widened about its point value by sqrt(n/(n-1)) t_{n-1} / z (the
  expanded percentile interval), which the plain percentile interval needs on a task of few
  documents (0.90 coverage on 15 documents; tests/test_report.py simulates it).
- Binary per-item metrics (accuracy, exact match) also report flips (right -> wrong b,
  wrong -> right c) and McNemar's exact p-value, the binomial test of b against c.
- A task whose base score is 0 or not finite, or whose items differ between the two
  evaluations, is left out of every aggregate with the reason: it never makes one NaN,
  and the gate rejects a candidate whose forgetting task was left out (`gate.py`).
"""

from __future__ import annotations

import math

import numpy as np

from .. import splits
from .metrics import METRICS, as_arrays

ROLES = ("forgetting", "gain", "extra", "round")
DROP_ROLES = ("forgetting", "round")  # judged by their relative drop


def relative_drop(before, after, higher_is_better: bool):
    """Fraction of the score lost: 0.1 = 10% worse, negative = improved. Works on arrays too."""
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = (np.asarray(before, dtype=float) - after) / np.abs(before)
    drop = drop if higher_is_better else -drop
    if np.ndim(drop) == 0:
        return float(drop)
    return np.where(np.isfinite(drop), drop, np.nan)  # a resample whose base score is 0 has no drop


def mcnemar(before_right: np.ndarray, after_right: np.ndarray) -> dict:
    """Flips between two 0/1 score vectors on the same items and McNemar's exact two-sided p."""
    from scipy.stats import binomtest

    lost = int(np.sum((before_right == 1) & (after_right == 0)))
    won = int(np.sum((before_right == 0) & (after_right == 1)))
    p = binomtest(lost, lost + won, 0.5).pvalue if lost + won else 1.0
    return {"right_to_wrong": lost, "wrong_to_right": won, "p": float(p)}


def interval(draws: np.ndarray, confidence: float) -> list[float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return [float(low), float(high)]


def expansion(n: int, confidence: float) -> float:
    """How much wider than the bootstrap's spread a small sample's interval must be: sqrt(n/(n-1))
    (the bootstrap's variance is the plug-in one) times t_{n-1} / z (Hesterberg's expanded
    percentile interval). 1.005 at 300 items, 1.12 at 15."""
    from scipy.stats import norm, t

    if n < 2:
        return math.nan
    tail = 0.5 + confidence / 2
    return math.sqrt(n / (n - 1)) * t.ppf(tail, n - 1) / norm.ppf(tail)


def part_ids(results: dict, task: str, part: str) -> list[str] | None:
    """The ids of a task's scored items in `part` (every scored item for `all`); None without ids."""
    ids, parts = results.get("item_ids", {}).get(task), results.get("item_parts", {}).get(task)
    if ids is None or parts is None:
        return None
    return [ids[i] for i in splits.keep(parts, part)]


def paired_items(task: str, before: dict, after: dict, part: str) -> tuple[dict, dict] | str:
    """Both evaluations' per-item arrays of `task` on the `part` items, aligned by item id, or the
    reason they cannot be paired."""
    if task not in before.get("samples", {}) or task not in after.get("samples", {}):
        return "no per-item scores in both evaluations"
    ids_b, ids_a = part_ids(before, task, part), part_ids(after, task, part)
    if ids_b is None or ids_a is None:
        return "no item ids in both evaluations (written by an older nofrog): re-run `nofrog eval`"
    if not ids_a:
        return f"no {part} items were scored after (before: {len(ids_b)})"
    missing, extra = set(ids_a) - set(ids_b), set(ids_b) - set(ids_a)
    if missing or extra or len(set(ids_a)) != len(ids_a):
        return (f"the {part} items differ: {len(missing)} of the {len(ids_a)} scored after are not among the "
                f"{len(ids_b)} scored before and {len(extra)} scored before are missing after (another task "
                "version, split or item set?)")
    where_b = {item: i for i, item in enumerate(before["item_ids"][task])}
    where_a = {item: i for i, item in enumerate(after["item_ids"][task])}
    b_all, a_all = as_arrays(before["samples"][task]), as_arrays(after["samples"][task])
    b_index = np.array([where_b[item] for item in ids_a], dtype=int)
    a_index = np.array([where_a[item] for item in ids_a], dtype=int)
    return {k: v[b_index] for k, v in b_all.items()}, {k: v[a_index] for k, v in a_all.items() if k in b_all}


def _task_row(task: str, spec: dict, b_items: dict, a_items: dict, before: dict, after: dict, resamples: int, rng,
              confidence: float, harm_scale: dict):
    """One row and its resampled figure (drop for forgetting, gain otherwise), on paired items."""
    metric = METRICS[spec["metric"]]
    hib = spec["higher_is_better"]
    n = len(next(iter(b_items.values())))
    index = rng.integers(0, n, size=(resamples, n))
    try:
        b, a = float(metric.compute(b_items)), float(metric.compute(a_items))
    except KeyError as err:  # e.g. an eval.task_metrics override naming a metric this task's items lack
        return None, f"its per-item scores have no {err} for metric {metric.name}"
    b_draws = metric.compute({k: v[index] for k, v in b_items.items()})
    a_draws = metric.compute({k: v[index] for k, v in a_items.items()})
    row = {"task": task, "metric": metric.name, "higher_is_better": hib, "before": b, "after": a, "items": n}
    if spec["role"] in DROP_ROLES:
        if not (math.isfinite(b) and b != 0):
            return None, f"base score {b} is 0 or undefined: no relative drop"
        # In accuracy-equivalent units where the metric has a harm scale (bits per byte moves several
        # times less than accuracy for the same damage); the metric's own relative change stays beside it.
        scale = harm_scale.get(metric.name, 1.0)
        draws = scale * relative_drop(b_draws, a_draws, hib)
        row["drop"] = point = scale * relative_drop(b, a, hib)
        if scale != 1.0:
            row["harm_scale"], row["metric_drop"] = scale, point / scale
    else:
        # Gain is positive when the model got better; a reported-only task shows after - before as is.
        sign = 1.0 if hib or spec["role"] != "gain" else -1.0
        figure = "gain" if spec["role"] == "gain" else "change"
        row[figure] = point = sign * (a - b)
        draws = sign * (a_draws - b_draws)
    draws = point + (draws - point) * expansion(n, confidence)
    row["ci"] = interval(draws, confidence)
    if metric.binary:
        row.update(mcnemar(b_items[metric.name], a_items[metric.name]))
    secondary = {m.split(",")[0]: [before["results"][task].get(m), after["results"][task].get(m)]
                 for m in after["results"].get(task, {}) if m.endswith(",none") and "_stderr" not in m
                 and m.split(",")[0] != metric.name}
    if secondary:
        row["secondary"] = secondary
    return (row, draws), None


def forgetting_report(before: dict, after: dict, resamples: int = 1000, seed: int = 0,
                      confidence: float = 0.95, part: str = splits.TEST, harm_scale: dict | None = None) -> dict:
    """The report the gate reads, on the `part` items of every task (see the module docstring).
    `harm_scale`: metric -> accuracy-equivalent points per point of that metric's relative change."""
    harm_scale = harm_scale or {}
    rng = np.random.default_rng(seed)
    info = after.get("task_info", {})
    rows = {role: [] for role in ROLES}
    draws = {role: [] for role in ROLES}
    excluded, split = [], {}
    for task, spec in info.items():
        if spec["role"] == "round" and task not in before.get("task_info", {}):
            continue  # an earlier round's rows, scored by the candidate; judged against the champion, not here
        paired = paired_items(task, before, after, part)
        result, reason = (None, paired) if isinstance(paired, str) else \
            _task_row(task, spec, *paired, before, after, resamples, rng, confidence, harm_scale)
        split[task] = {**spec.get("items", {}), "read": part,
                       "paired": 0 if result is None else result[0]["items"]}
        if result is None:
            excluded.append({"task": task, "role": spec["role"], "reason": reason})
            continue
        rows[spec["role"]].append(result[0])
        draws[spec["role"]].append(result[1])
    report = {"forgetting_tasks": rows["forgetting"], "gain_tasks": rows["gain"], "other_tasks": rows["extra"],
              "round_tasks": rows["round"], "excluded": excluded, "resamples": resamples, "confidence": confidence, "seed": seed,
              "items_read": part, "split": split, "harm_scale": harm_scale}
    report.update(_aggregate(rows["forgetting"], draws["forgetting"], confidence))
    gains = [r["gain"] for r in rows["gain"]]
    report["task_gain"] = float(np.mean(gains)) if gains else None
    report["task_gain_ci"] = interval(np.mean(draws["gain"], axis=0), confidence) if gains else [None, None]
    return report


def _aggregate(rows: list[dict], draws: list[np.ndarray], confidence: float) -> dict:
    """Mean per-task drop, raw and clipped at 0 per task, each with its interval."""
    if not rows:
        # No usable forgetting task: nothing was shown to be kept, so the gate cannot pass on it. JSON
        # has no NaN: the figures are null, with the reason beside them.
        return {"forgetting": None, "forgetting_clipped": None, "forgetting_ci": [None, None],
                "forgetting_clipped_ci": [None, None],
                "forgetting_unavailable": "no forgetting task could be scored (see excluded)"}
    stacked = np.vstack(draws)
    drops = np.array([r["drop"] for r in rows])
    return {"forgetting": float(drops.mean()), "forgetting_clipped": float(np.maximum(drops, 0).mean()),
            "forgetting_ci": interval(stacked.mean(axis=0), confidence),
            "forgetting_clipped_ci": interval(np.maximum(stacked, 0).mean(axis=0), confidence)}


# ------------------------------------------------------------------ rendering
def _pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.2%}"


def _num(value) -> str:
    return "n/a" if not isinstance(value, (int, float)) or not math.isfinite(value) else f"{value:.4g}"


def _flips(row: dict) -> str:
    if "right_to_wrong" not in row:
        return ""
    return f"{row['right_to_wrong']} / {row['wrong_to_right']} (p={row['p']:.3g})"


def _drop(row: dict) -> str:
    """A forgetting row's drop, with the metric's own change where a harm scale converted it."""
    if "harm_scale" not in row:
        return f"drop {_pct(row['drop'])}"
    return f"drop {_pct(row['drop'])} ({row['metric']} {_pct(row['metric_drop'])} x {row['harm_scale']:g})"


def _items_line(report: dict) -> str:
    counts = ", ".join(f"{task} {row['paired']}" for task, row in report.get("split", {}).items())
    return f"Items read: the {report.get('items_read', 'test')} part of each task, paired by item id ({counts})."


def render_markdown(report: dict, title: str = "Before vs after fine-tuning") -> str:
    """The one rendering of a report: CLI, Prefect artifact, MLflow and the benchmark all use it.

    Drops are positive when the model got worse; gains positive when it got better.
    """
    pct = f"{report.get('confidence', 0.95):.0%}"
    lines = [f"### {title}", "",
             f"| task | role | metric | before | after | drop or gain | {pct} interval | flips lost / won (McNemar p) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["forgetting_tasks"]:
        lines.append(f"| {row['task']} | forgetting | {row['metric']} | {_num(row['before'])} | {_num(row['after'])} "
                     f"| {_drop(row)} | [{_pct(row['ci'][0])}, {_pct(row['ci'][1])}] | {_flips(row)} |")
    for key, label in (("gain_tasks", "gain"), ("other_tasks", "change")):
        for row in report[key]:
            lines.append(f"| {row['task']} | {'gain' if label == 'gain' else 'reported'} | {row['metric']} "
                         f"| {_num(row['before'])} | {_num(row['after'])} | {label} {row[label]:+.4g} "
                         f"| [{row['ci'][0]:+.4g}, {row['ci'][1]:+.4g}] | {_flips(row)} |")
    scaled = ", ".join(f"{metric} x {scale:g}" for metric, scale in report.get("harm_scale", {}).items())
    units = f" in accuracy-equivalent units ({scaled}: eval.harm_scale)" if scaled else ""
    lines += ["", _items_line(report),
              f"Forgetting (mean relative drop{units}, positive = worse): {_pct(report['forgetting'])} "
                  f"[{_pct(report['forgetting_ci'][0])}, {_pct(report['forgetting_ci'][1])}]; "
                  f"clipped at 0 per task (what the gate reads): {_pct(report['forgetting_clipped'])} "
                  f"[{_pct(report['forgetting_clipped_ci'][0])}, {_pct(report['forgetting_clipped_ci'][1])}].",
              f"Task gain: {_num(report['task_gain'])} "
              f"[{_num(report['task_gain_ci'][0])}, {_num(report['task_gain_ci'][1])}]."]
    for entry in report["excluded"]:
        lines.append(f"Left out: {entry['task']} ({entry['role']}): {entry['reason']}.")
    if "earlier_rounds" in report:
        lines += ["", *render_earlier_rounds(report["earlier_rounds"])]
    return "\n".join(lines) + "\n"


def render_earlier_rounds(rounds: dict) -> list[str]:
    """The report's "earlier rounds" section: what each earlier round taught, before (the champion)
    and after (this candidate), or why it was not judged."""
    lines = ["#### Earlier rounds", ""]
    if not rounds.get("protected"):
        return lines + [f"Not judged: {rounds['reason']}."]
    lines += [f"Each earlier round's held-out rows, judged against {rounds['against']} on the same items "
              f"(gate.max_round_drop {rounds['max_round_drop']:g}).", "",
              "| round | metric | champion | candidate | drop | interval | flips lost / won (McNemar p) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rounds["rounds"]:
        lines.append(f"| {row['task']} | {row['metric']} | {_num(row['before'])} | {_num(row['after'])} "
                     f"| {_pct(row['drop'])} | [{_pct(row['ci'][0])}, {_pct(row['ci'][1])}] | {_flips(row)} |")
    for entry in rounds.get("excluded", []):
        lines.append(f"Not judged: {entry['task']}: {entry['reason']}.")
    return lines

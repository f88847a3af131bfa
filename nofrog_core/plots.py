"""PNG charts of results a person compares (logged to MLflow beside the numbers)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from .history import read_history  # noqa: E402


def plot_loss_and_lr(history_path: Path, out_path: Path) -> Path:
    history = read_history(history_path)
    steps = [h["step"] for h in history]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_loss.plot(steps, [h["loss"] for h in history], label="batch loss")
    if history and "ema_loss" in history[0]:
        ax_loss.plot(steps, [h["ema_loss"] for h in history], label="EMA loss (FINCH)")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.legend()
    ax_lr.plot(steps, [h["lr"] for h in history], color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    fig.suptitle("Training loss and learning rate")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_forgetting(report: dict, out_path: Path, max_forgetting: float | None = None) -> Path:
    """Every forgetting task's drop with its interval, the aggregate (raw and clipped) and the gate's
    threshold; the gain in the title. Right of zero = worse."""
    rows = report["forgetting_tasks"]
    labels = [f"{r['task']} ({r['metric']})" for r in rows] + ["aggregate", "aggregate, clipped (gated)"]
    points = [r["drop"] for r in rows] + [report["forgetting"], report["forgetting_clipped"]]
    cis = [r["ci"] for r in rows] + [report["forgetting_ci"], report["forgetting_clipped_ci"]]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(labels)))
    y = list(range(len(labels)))[::-1]
    for position, point, (low, high) in zip(y, points, cis):
        if point is None or low is None:  # an aggregate with no usable forgetting task (report: null, with why)
            ax.annotate("not computed", (0, position), fontsize=8, color="tab:red")
            continue
        ax.errorbar(100 * point, position, xerr=[[100 * (point - low)], [100 * (high - point)]], fmt="o",
                    color="tab:blue" if position > 1 else "tab:red", capsize=4)
    ax.axvline(0, color="grey", linewidth=0.8)
    if max_forgetting is not None:
        ax.axvline(100 * max_forgetting, color="tab:red", linestyle="--", label=f"gate {max_forgetting:.0%}")
        ax.legend(loc="lower right")
    ax.set_yticks(y, labels)
    ax.set_xlabel(f"relative drop, % (right = worse; bars: {report.get('confidence', 0.95):.0%} paired bootstrap)")
    gain, (low, high) = report["task_gain"], report["task_gain_ci"]
    gain_text = "not computed" if gain is None else f"{gain:+.3g} [{low:+.3g}, {high:+.3g}]"
    ax.set_title(f"Forgetting per task; task gain {gain_text}")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_pareto(rows: list[dict], front: list[dict], out_path: Path, title: str) -> Path:
    """Task gain vs forgetting, one labelled point per run; the frontier (no run beats it on both
    axes) is joined by a line. Up and to the left is better."""
    fig, ax = plt.subplots(figsize=(10, 6.5))
    for number, row in enumerate(rows):
        marker = {"grid": "x", "seed": "^"}.get(row.get("group"), "o")
        ax.scatter(100 * row["forgetting"], row["task_gain"], marker=marker, s=40,
                   color="tab:red" if row.get("baseline") else "tab:blue")
        # Sweep points sit close together: stagger their labels so they stay readable.
        offset = (4, 3) if row.get("group") != "grid" else (6, -12 + 8 * (number % 4))
        ax.annotate(row.get("short_label") or row["label"], (100 * row["forgetting"], row["task_gain"]),
                    fontsize=7, xytext=offset, textcoords="offset points")
    if front:
        ax.plot([100 * r["forgetting"] for r in front], [r["task_gain"] for r in front],
                color="tab:green", linewidth=1, label="Pareto front")
        ax.legend(loc="lower right")
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("aggregate forgetting on the general suite (%; lower is better)")
    ax.set_ylabel("task gain (held-out exact match, after - before; higher is better)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def plot_fit(summary: dict, out_path: Path) -> Path:
    """gate.fit=interpolate: forgetting and task gain (with intervals) against the candidate weight alpha."""
    finite = lambda p, k: isinstance(p.get(k), (int, float)) and None not in p[k + "_ci"]  # noqa: E731
    points = sorted((p for p in summary["points"] if finite(p, "forgetting") and finite(p, "task_gain")),
                    key=lambda p: p["alpha"])
    alphas = [p["alpha"] for p in points]
    confirmed = summary.get("confirmed")
    fig, (ax_f, ax_g) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, ci, title in ((ax_f, "forgetting", "forgetting_ci", "forgetting (clipped)"),
                               (ax_g, "task_gain", "task_gain_ci", "task gain")):
        values = [p[key] for p in points]
        errors = [[v - p[ci][0] for v, p in zip(values, points)], [p[ci][1] - v for v, p in zip(values, points)]]
        ax.errorbar(alphas, values, yerr=errors, marker="o", capsize=4, label="selection items (chosen on)")
        if confirmed and finite(confirmed, key):
            value = confirmed[key]
            ax.errorbar([confirmed["alpha"]], [value], yerr=[[value - confirmed[ci][0]], [confirmed[ci][1] - value]],
                        marker="s", color="black", capsize=4, label=f"{confirmed['items']} items (judged on)")
        ax.set_xlabel("alpha (0 = base, 1 = candidate)")
        ax.set_title(title)
    ax_f.axhline(summary["max_forgetting"], color="red", linestyle="--", label="gate")
    ax_f.legend()
    if summary["chosen"]:
        for ax in (ax_f, ax_g):
            ax.axvline(summary["chosen"]["alpha"], color="green", linestyle=":")
    fig.suptitle("Weight interpolation between the base and the candidate (WiSE-FT)")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)

"""PNG charts of results a person compares (logged to MLflow beside the numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def read_history(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


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


def plot_before_after(rows: list[dict], out_path: Path, title: str) -> Path:
    """Bars of before vs after per task metric; rows carry task, metric, before, after."""
    labels = [f"{r['task']}\n{r['metric']}" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(4, 2.2 * len(rows)), 4))
    ax.bar([i - 0.2 for i in x], [r["before"] for r in rows], width=0.4, label="before")
    ax.bar([i + 0.2 for i in x], [r["after"] for r in rows], width=0.4, label="after")
    ax.set_xticks(list(x), labels)
    ax.set_title(title)
    ax.legend()
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
    ax.set_ylabel("task gain (drop in held-out answer NLL, nats; higher is better)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path

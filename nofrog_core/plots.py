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

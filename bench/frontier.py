"""Plain SFT's frontier, and every method measured against it rather than against one SFT point.

A lower learning rate alone makes plain SFT forget less and learn less, so "method X forgets less
than SFT" says nothing unless X also learns as much. This benchmark traces plain SFT (constant LR)
over several learning rates at the same steps and task rows, at several seeds, and places each method
against that curve, paired by seed:

- gain at matched forgetting: the method's exact-match gain minus SFT's, read off SFT's curve at the
  method's forgetting (linear between the two LRs that bracket it);
- forgetting at matched gain: the method's clipped forgetting minus SFT's at the method's gain.

A method is above SFT's curve only where the first is > 0 (or the second < 0) with the interval over
seeds excluding 0. Points outside the curve's traced range are not compared (no extrapolation).

Scale: that of bench/forgetting.py (the arms, the scale and the run machinery are its own: 16 people or
16 date units, 48 task rows, 18 optimizer steps of 8 task rows, 64 replay samples). These runs make
claims, so they are judged on **test items** at seeds that chose nothing (3, 4, 5 by default; recipes are
screened at 0-2). Results: bench/results/frontier/<task>.{json,md,png}.

    .venv/bin/python bench/frontier.py --task people
    .venv/bin/python bench/frontier.py --task date_format
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forgetting as fb  # noqa: E402  (the method benchmark: its scale, arms and run machinery)

from nofrog_core.config import load_config  # noqa: E402
from nofrog_core.evaluate import comparison  # noqa: E402
from nofrog_core.splits import SCREENING_SEEDS  # noqa: E402

# 5e-5: where SFT learns the people task within 18 steps (SFT_LR); 2e-6 reaches below the default's forgetting.
SFT_LRS = (2e-6, 5e-6, 1e-5, 2e-5, 5e-5)
FRESH_SEEDS = (3, 4, 5)
JUDGE_ON_TEST = "eval.judge_items=test"


def sft_arm(lr: float) -> fb.Arm:
    return fb.Arm(f"sft_lr{lr:g}", f"SFT, constant LR {lr:g}", fb.constant(lr), knobs={"lr": lr},
                  short_label=f"SFT {lr:g}")


def default_arm() -> fb.Arm:
    """configs/default.yaml's recipe at this scale: every training knob it sets (FINCH and its LRs, the
    frozen embedding and bottom layers, LLRD, replay mixed on top of 8 task rows with its KL)."""
    d = load_config(fb.CONFIG)
    t, mix = d.train, d.replay.mix
    task_rows = 8  # the scale's batch: every arm trains on the same task rows per step
    replay_rows = round(task_rows * mix.ratio / (1 - mix.ratio))
    overrides = ("train.schedule=finch", f"train.finch.base_lr={t.finch.base_lr}", f"train.finch.lr_max={t.finch.lr_max}",
                 f"train.freeze_embeddings={str(t.freeze_embeddings).lower()}", f"train.freeze_bottom={t.freeze_bottom}",
                 f"train.llrd={t.llrd}", f"train.batch_size={task_rows + replay_rows}",
                 *fb.replay_knobs(mix.ratio, mix.nll_weight, mix.kl_weight))
    return fb.Arm("default", "default config (configs/default.yaml's recipe, no fit)", overrides,
                  fb.UNBIASED_TEMPERATURE, short_label="default")


def asft_arm() -> fb.Arm:
    """ASFT (arXiv 2509.23753): DFT's probability-weighted NLL plus a KL anchor to the base on the task
    tokens at the authors' weight 0.1, at SFT's top LR (the paper trains ASFT at SFT's LR)."""
    return fb.Arm("asft", f"ASFT (DFT + 0.1 x task KL), constant LR {fb.SFT_LR:g}",
                  fb.constant(fb.SFT_LR) + ("train.objective=dft", "train.extra_terms={task_kl: 0.1}"),
                  short_label="ASFT")


def method_arms() -> list[fb.Arm]:
    """The default and ASFT (FINCH alone is in the method benchmark, bench/results/methods)."""
    return [default_arm(), asft_arm()]


class FrontierBench(fb.Bench):
    """The method benchmark's runs, judged on test items (these runs make claims and choose nothing);
    a trained model is scored on the test items only (the base on all)."""

    def __init__(self, args):
        super().__init__(args)
        self.candidate_part = "test"

    def config(self, overrides) -> object:
        return load_config(fb.CONFIG, [*self.scale, *fb.NEUTRAL, JUDGE_ON_TEST, *overrides])


def point(row: dict) -> tuple[float, float]:
    return row["forgetting_clipped"], row["task_gain"]


def analyse(rows: dict, seeds: list[int], methods: list[fb.Arm]) -> dict:
    curve = {s: [point(rows[fb.seeded_name(sft_arm(lr).name, s)]) for lr in SFT_LRS] for s in seeds}
    sft = {f"{lr:g}": {key: comparison.seed_spread([rows[fb.seeded_name(sft_arm(lr).name, s)][key] for s in seeds])
                       for key in ("forgetting_clipped", "task_gain")} for lr in SFT_LRS}
    compared = {}
    for arm in methods:
        runs = {s: rows[fb.seeded_name(arm.name, s)] for s in seeds}
        compared[arm.name] = {
            "label": arm.label,
            **{key: comparison.seed_spread([r[key] for r in runs.values()]) for key in ("forgetting_clipped", "task_gain")},
            "matched": comparison.matched_to_curve({s: point(r) for s, r in runs.items()}, curve),
            "world_knowledge_drop": comparison.seed_spread(
                [r["general"].get("world_knowledge", {}).get("relative_drop", math.nan) for r in runs.values()]),
        }
    return {"sft_curve": sft, "methods": compared}


def verdict(entry: dict) -> str:
    def one(key: str, better: str) -> str:
        m = entry["matched"][key]
        if m["n"] == 0:
            return "outside SFT's traced range"
        if m["n"] < 2:
            return f"{m['mean']:+.3g} (1 seed in range)"
        low, high = m["ci"]
        above = (low > 0) if better == "up" else (high < 0)
        below = (high < 0) if better == "up" else (low > 0)
        word = "above SFT's curve" if above else "below SFT's curve" if below else "on SFT's curve (within the noise)"
        fmt = (lambda v: f"{v:+.3f}") if key.startswith("gain") else (lambda v: f"{v:+.1%}")
        out = f"{fmt(m['mean'])} [{fmt(low)}, {fmt(high)}], {word}"
        return out + (f"; seeds outside the curve: {m['seeds_outside']}" if m["seeds_outside"] else "")
    return (f"gain at matched forgetting {one('gain_at_matched_forgetting', 'up')}; "
            f"forgetting at matched gain {one('forgetting_at_matched_gain', 'down')}")


def plot(analysis: dict, rows: dict, seeds: list[int], out: Path, title: str) -> Path:
    """SFT's curve (mean and 95% over seeds, each seed's thin) and each method with its intervals; the
    right panel zooms in on the low-forgetting end, where the methods sit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs = list(analysis["sft_curve"])
    f = [analysis["sft_curve"][lr]["forgetting_clipped"] for lr in lrs]
    g = [analysis["sft_curve"][lr]["task_gain"] for lr in lrs]
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for ax in axes:
        for s in seeds:
            pts = sorted(point(rows[fb.seeded_name(sft_arm(float(lr)).name, s)]) for lr in lrs)
            ax.plot([100 * p[0] for p in pts], [p[1] for p in pts], color="tab:red", alpha=0.25, linewidth=1)
        ax.errorbar([100 * x["mean"] for x in f], [y["mean"] for y in g],
                    xerr=[[100 * (x["mean"] - x["ci"][0]) for x in f], [100 * (x["ci"][1] - x["mean"]) for x in f]],
                    yerr=[[y["mean"] - y["ci"][0] for y in g], [y["ci"][1] - y["mean"] for y in g]],
                    color="tab:red", marker="o", capsize=3,
                    label="plain SFT over its LR (mean, 95% over seeds; thin: each seed)")
        for lr, x, y in zip(lrs, f, g):
            ax.annotate(f"LR {lr}", (100 * x["mean"], y["mean"]), fontsize=8, xytext=(4, -10), textcoords="offset points")
        for name, entry in analysis["methods"].items():
            x, y = entry["forgetting_clipped"], entry["task_gain"]
            ax.errorbar([100 * x["mean"]], [y["mean"]],
                        xerr=[[100 * (x["mean"] - x["ci"][0])], [100 * (x["ci"][1] - x["mean"])]],
                        yerr=[[y["mean"] - y["ci"][0]], [y["ci"][1] - y["mean"]]], marker="s", capsize=3, label=name)
        ax.set_xlabel("forgetting, clipped (% on the general suite's test items; lower is better)")
        ax.set_ylabel("task gain (held-out exact match on test items; higher is better)")
    low = [100 * x["ci"][1] for x in f if x["mean"] < 0.15] + [100 * e["forgetting_clipped"]["ci"][1]
                                                            for e in analysis["methods"].values()
                                                            if e["forgetting_clipped"]["mean"] < 0.15]
    axes[1].set_xlim(0, max(low, default=10) + 1)
    axes[0].set_title(title)
    axes[1].set_title("the low-forgetting end")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def markdown(summary: dict) -> str:
    a = summary["analysis"]
    lines = [f"# Plain SFT's frontier and the methods against it: `{summary['task']}` task", "",
             f"Produced by `{summary['command']}`. Items: **{summary['items']}**; training seeds "
             f"{summary['seeds']} (none chose anything; screens use {list(SCREENING_SEEDS)}). Scale: "
             f"{', '.join(summary['scale'])}.", "",
             "| plain SFT LR | forgetting, clipped [95% over seeds] | exact-match gain [95% over seeds] |", "|---|---|---|"]
    for lr, e in a["sft_curve"].items():
        f, g = e["forgetting_clipped"], e["task_gain"]
        lines.append(f"| {lr} | {f['mean']:+.1%} [{f['ci'][0]:+.1%}, {f['ci'][1]:+.1%}] | "
                     f"{g['mean']:.3f} [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}] |")
    lines += ["", "| method | forgetting, clipped | exact-match gain | world_knowledge drop | against SFT's curve (paired by seed) |",
              "|---|---|---|---|---|"]
    for name, e in a["methods"].items():
        f, g, w = e["forgetting_clipped"], e["task_gain"], e["world_knowledge_drop"]
        lines.append(f"| {e['label']} | {f['mean']:+.1%} [{f['ci'][0]:+.1%}, {f['ci'][1]:+.1%}] | "
                     f"{g['mean']:.3f} [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}] | {w['mean']:+.1%} | {verdict(e)} |")
    lines += ["", "Matched comparisons: per seed, SFT's gain (or forgetting) is read off that seed's SFT curve, linear "
              "between the two LRs that bracket the method's forgetting (or gain); the difference is averaged over "
              "seeds with a Student-t interval. Above the curve = more gain at matched forgetting, or less forgetting "
              "at matched gain, with the interval excluding 0.", "",
              f"![SFT's frontier]({summary['task']}.png)", ""]
    return "\n".join(lines)


def without_nan(value):
    """JSON has no NaN: a figure that could not be computed (outside SFT's range, one seed) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="people", choices=("people", "date_format"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(FRESH_SEEDS))
    parser.add_argument("--work", type=Path, default=None, help="default bench/work/frontier-<task>")
    parser.add_argument("--results", type=Path, default=fb.ROOT / "bench" / "results" / "frontier")
    args = parser.parse_args(argv)
    if set(args.seeds) & set(SCREENING_SEEDS):
        raise SystemExit(f"--seeds {args.seeds}: seeds {list(SCREENING_SEEDS)} screen recipes; claims need fresh seeds")
    # The method benchmark's scale and run machinery; the attributes its Bench reads.
    bench_args = argparse.Namespace(task=args.task, people=16, steps=18, replay_samples=64, keep_models=False,
                                    work=args.work or fb.WORK / f"frontier-{args.task}")
    bench_args.work.mkdir(parents=True, exist_ok=True)
    bench = FrontierBench(bench_args)
    bench.base_results()
    methods = method_arms()
    # SFT's curve and the default first, a seed at a time (an interrupted run leaves whole seeds); then
    # the other methods, each at every seed.
    first = [sft_arm(lr) for lr in SFT_LRS] + methods[:1]
    order = [(arm, seed) for seed in args.seeds for arm in first] + \
            [(arm, seed) for arm in methods[1:] for seed in args.seeds]
    for number, (arm, seed) in enumerate(order, start=1):
        bench.run(fb.with_seed(arm, seed), f"[{number}/{len(order)}]")
    analysis = analyse(bench.rows, args.seeds, methods)
    args.results.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": " ".join(["python bench/frontier.py", *(sys.argv[1:] if argv is None else argv)]),
        "task": args.task, "items": "test", "seeds": args.seeds, "sft_lrs": list(SFT_LRS),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "scale": list(bench.scale), "neutral": [*fb.NEUTRAL, JUDGE_ON_TEST],
        "compute_seconds": round(sum(r["wall_seconds"] for r in bench.rows.values()) + sum(bench.timings.values()), 1),
        "analysis": analysis,
        "runs": [{k: v for k, v in r.items() if k != "request"} for r in bench.rows.values()],
    }
    stem = args.results / args.task
    stem.with_suffix(".json").write_text(json.dumps(without_nan(summary), indent=2) + "\n")
    plot(analysis, bench.rows, args.seeds, stem.with_suffix(".png"),
         f"Gemma 3 270M, {args.task} task, 18 steps, test items, seeds {args.seeds}")
    stem.with_suffix(".md").write_text(markdown(summary))
    for name, entry in analysis["methods"].items():
        fb.log(f"{name}: {verdict(entry)}")
    fb.log(f"done: {stem}.md ({summary['compute_seconds'] / 60:.0f} min of compute)")


if __name__ == "__main__":
    main()

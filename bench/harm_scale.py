"""How much a relative rise of bits per byte is worth in relative accuracy: the scale that puts the
general suite's text tasks and question tasks in one unit of harm (`eval.harm_scale`).

A forgetting model loses on both kinds of task, but not by the same number: bits per byte is a
log-loss averaged over every byte, accuracy a count of questions, and the text figure moves several
times less for the same damage. Averaging the two raw figures lets a large knowledge loss hide
beside text tasks that "moved 1%". This benchmark walks a forgetting path, the weight mixes
theta(a) = (1 - a) theta_base + a theta_sft between the base and a plain-SFT model for a in
--alphas, scores each on the **selection** items (a choice is made from this, so it never reads a
test item) and fits the slope, through the origin, of the mean question-task drop against the mean
text-task drop: one point of bits per byte per that many points of accuracy. The per-task intervals
of the mildest mix show each task's noise, which the per-task gate budgets are set against.

    .venv/bin/python bench/harm_scale.py              # ~12 min on 2 CPU cores; finished parts are reused

Seed 0 (a screening seed), configs/default.yaml's data and suite, plain SFT at constant --lr for
--steps steps. Writes bench/results/harm_scale.{json,md}; work files in bench/work/harm_scale/.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nofrog_core.config import load_config  # noqa: E402
from nofrog_core.evaluate.stage import run_evaluation, run_report  # noqa: E402
from nofrog_core.fit import write_interpolated  # noqa: E402
from nofrog_core.models import resolve_model  # noqa: E402
from nofrog_core.splits import CHOOSE_ON_SELECTION, SCREENING_SEEDS  # noqa: E402
from nofrog_core.train.stage import run_training  # noqa: E402

TEXT_METRICS = {"bits_per_byte"}
# Plain SFT, whatever the default turns on; no harm scale, so the drops are the raw relative changes.
PLAIN_SFT = ("train.schedule=constant", "replay.mix.ratio=0", "replay.mix.kl_weight=0", "train.freeze_embeddings=false",
             "train.freeze_bottom=0", "train.llrd=1.0", "compute.num_workers=0", "train.checkpoint_every=0",
             "eval.harm_scale={}")


def reuse_or(path: Path, make) -> dict:
    """The JSON at `path` when an earlier run wrote it, else what `make(path)` writes there."""
    return json.loads(path.read_text()) if path.exists() else make(path)


def slope_through_origin(x: list[float], y: list[float]) -> float:
    x_, y_ = np.asarray(x), np.asarray(y)
    return float((x_ * y_).sum() / (x_ * x_).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0])
    parser.add_argument("--operating-range", type=float, default=0.10,
                        help="fit the scale on mixes whose mean question drop is at most this: near the budget")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "harm_scale")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "harm_scale.json")
    args = parser.parse_args()
    seed = SCREENING_SEEDS[0]
    args.work.mkdir(parents=True, exist_ok=True)  # a finished base evaluation, SFT model and mix are reused
    config = load_config(ROOT / "configs" / "default.yaml",
                         [CHOOSE_ON_SELECTION, *PLAIN_SFT, f"train.lr={args.lr}", f"train.max_steps={args.steps}",
                          f"train.seed={seed}", f"tracking.output_dir={args.work}"])
    started = time.time()
    base = reuse_or(args.work / "base.json", lambda path: run_evaluation(config, path))
    if not (args.work / "sft" / "metadata.json").exists():
        shutil.rmtree(args.work / "sft", ignore_errors=True)
        run_training(config, args.work / "sft")
    base_dir = resolve_model(config.model).path
    points = []
    for alpha in args.alphas:
        def score(path: Path, alpha=alpha) -> dict:
            model = write_interpolated(base_dir, args.work / "sft" / "model", alpha, args.work / f"mix{alpha}")
            after = run_evaluation(config, path, model=str(model))
            shutil.rmtree(model)  # 1 GB a mix; its scores are kept
            return after

        after = reuse_or(args.work / f"eval{alpha}.json", score)
        report = reuse_or(args.work / f"forgetting{alpha}.json",
                          lambda path: run_report(config, base, after, path))
        rows = report["forgetting_tasks"]
        text = [r["drop"] for r in rows if r["metric"] in TEXT_METRICS]
        questions = [r["drop"] for r in rows if r["metric"] not in TEXT_METRICS]
        points.append({"alpha": alpha, "question_drop": float(np.mean(questions)), "text_drop": float(np.mean(text)),
                       "tasks": {r["task"]: {"metric": r["metric"], "drop": r["drop"], "ci": r["ci"],
                                             "half_width": (r["ci"][1] - r["ci"][0]) / 2} for r in rows},
                       "task_gain": report["task_gain"]})
        print(f"alpha {alpha}: questions {points[-1]['question_drop']:+.2%}, text {points[-1]['text_drop']:+.2%}",
              flush=True)
    # Accuracy saturates toward chance and bits per byte has no ceiling, so the two curve apart as
    # forgetting grows: the scale is the slope where the gate decides, not over the whole path.
    near = [p for p in points if p["question_drop"] <= args.operating_range]
    scale = slope_through_origin([p["text_drop"] for p in near], [p["question_drop"] for p in near])
    whole_path = slope_through_origin([p["text_drop"] for p in points], [p["question_drop"] for p in points])
    split = {task: {k: info["items"][k] for k in ("selection", "test")}
             for task, info in base["task_info"].items() if info["role"] == "forgetting"}
    result = {"command": " ".join(["python bench/harm_scale.py", *sys.argv[1:]]), "items": "selection",
              "seed": seed, "split": split, "sft": {"lr": args.lr, "steps": args.steps},
              "points": points, "operating_range": args.operating_range, "fitted_on": [p["alpha"] for p in near],
              "bits_per_byte_scale": scale, "whole_path_slope": whole_path, "seconds": round(time.time() - started)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    tasks = list(result["points"][0]["tasks"])
    lines = ["# One unit of harm: relative accuracy per relative bits per byte", "",
             f"Produced by `{result['command']}` (its last invocation {result['seconds']} s on 2 CPU cores, reusing what "
             "earlier ones finished): weight mixes between the "
             f"base and plain SFT (constant {result['sft']['lr']:g}, {result['sft']['steps']} steps, seed "
             f"{result['seed']}, a screening seed), scored on the **selection** items of the general suite (never "
             "a test item). Drops are raw relative changes (no scale applied).", "",
             "| alpha | question tasks (mean drop) | text tasks (mean bits-per-byte rise) | ratio | "
             + " | ".join(tasks) + " |", "|---|---|---|---|" + "---|" * len(tasks)]
    for p in result["points"]:
        ratio = p["question_drop"] / p["text_drop"] if p["text_drop"] else math.nan
        lines.append(f"| {p['alpha']} | {p['question_drop']:+.2%} | {p['text_drop']:+.2%} | {ratio:.2f} | "
                     + " | ".join(f"{p['tasks'][t]['drop']:+.1%} (+-{p['tasks'][t]['half_width']:.1%})"
                                  for t in tasks) + " |")
    lines += ["", f"Slope through the origin on the mixes whose question tasks lost at most "
              f"{result['operating_range']:.0%} (alpha {', '.join(map(str, result['fitted_on']))}: where the gate "
              f"decides): **{result['bits_per_byte_scale']:.2f} points of accuracy per point of bits per byte**. Over "
              f"the whole path the slope is {result['whole_path_slope']:.2f}: accuracy saturates toward chance while "
              "bits per byte has no ceiling, so the two curve apart as forgetting grows. The per-task +- figures are each task's 95% half-width on the "
              "selection part; the test part, larger by the split, is narrower by sqrt(selection / test).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Can the built-in general suite gate at 3%? Its interval half-width and wall time on the default model.

    python bench/general_suite.py [--steps 6] [--out bench/results/general_suite.json]

1. Scores the base model (Gemma 3 270M, configs/default.yaml) on `eval.forgetting_tasks`
   (the general suite), timing every task.
2. Reports the base against itself: every drop and interval must be exactly 0.
3. Trains a lightly fine-tuned candidate (the default recipe without replay, `--steps` optimizer
   steps on the demo task) and reports it against the base: the aggregate interval's half-width is what
   a candidate that forgets little sees, the figure the gate's `decide_on` choice rests on.

Writes the JSON and a markdown summary beside it; work files go to bench/work/general_suite/.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nofrog_core.config import load_config  # noqa: E402
from nofrog_core.splits import CHOOSE_ON_SELECTION  # noqa: E402
from nofrog_core.evaluate.report import render_markdown  # noqa: E402
from nofrog_core.evaluate.stage import run_evaluation, run_report  # noqa: E402
from nofrog_core.train.stage import run_training  # noqa: E402


def half_width(ci: list[float]) -> float:
    return (ci[1] - ci[0]) / 2


def summary_of(report: dict) -> dict:
    return {"forgetting": report["forgetting"], "forgetting_ci": report["forgetting_ci"],
            "forgetting_half_width": half_width(report["forgetting_ci"]),
            "forgetting_clipped": report["forgetting_clipped"],
            "forgetting_clipped_ci": report["forgetting_clipped_ci"],
            "forgetting_clipped_half_width": half_width(report["forgetting_clipped_ci"]),
            "tasks": {r["task"]: {"drop": r["drop"], "ci": r["ci"], "half_width": half_width(r["ci"]),
                                  **{k: r[k] for k in ("right_to_wrong", "wrong_to_right", "p") if k in r}}
                      for r in report["forgetting_tasks"]},
            "task_gain": report["task_gain"], "task_gain_ci": report["task_gain_ci"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps of the lightly trained candidate")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "general_suite.json")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "general_suite")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    config = load_config(ROOT / "configs" / "default.yaml",
                         # No replay set: the light candidate only needs to move a little.
                         [CHOOSE_ON_SELECTION, "replay.mix.ratio=0", "replay.mix.kl_weight=0",
                          "data.demo_people=16", f"train.max_steps={args.steps}",
                          "train.checkpoint_every=0",
                          f"tracking.output_dir={args.work}"])

    started = time.time()
    base = run_evaluation(config, args.work / "base.json")
    base_seconds = time.time() - started
    itself = run_report(config, base, base, args.work / "base_vs_base.json")

    started = time.time()
    run_training(config, args.work / "train")
    train_seconds = time.time() - started
    started = time.time()
    after = run_evaluation(config, args.work / "candidate.json", model=str(args.work / "train" / "model"))
    candidate_seconds = time.time() - started
    light = run_report(config, base, after, args.work / "candidate_vs_base.json")

    split = {task: {k: info["items"][k] for k in ("selection", "test")}
             for task, info in base["task_info"].items() if info["role"] == "forgetting"}
    results = {
        "command": " ".join(["python bench/general_suite.py", *sys.argv[1:]]),
        "model": config.model.name_or_path, "dtype": config.model.dtype,
        "suite": {task: {"items": base["n-samples"][task]["original"], **info,
                         "base": base["results"][task][f"{info['metric']},none"],
                         "seconds": base["results"][task].get("seconds"),
                         "tokens_per_second": base["results"][task].get("tokens_per_second")}
                  for task, info in base["task_info"].items() if info["role"] == "forgetting"},
        "eval_seconds": {"base": round(base_seconds, 1), "candidate": round(candidate_seconds, 1)},
        "train_seconds": round(train_seconds, 1), "candidate_steps": args.steps,
        "base_vs_base": summary_of(itself),
        "light_candidate_vs_base": summary_of(light),
        # Read on selection items (this benchmark informs choices); the gate reads the test part, whose
        # interval is narrower by sqrt(selection items / test items) (a standard error goes as 1/sqrt(n)).
        "items_read": "selection", "split": split,
        "projected_test_half_width": half_width(light["forgetting_clipped_ci"]) * math.sqrt(
            sum(c["selection"] for c in split.values()) / sum(c["test"] for c in split.values())),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# The built-in general suite: base scores, wall time, interval width", "",
             f"Produced by `{results['command']}` on {config.model.name_or_path} ({config.model.dtype}), on the "
             "selection items (a benchmark that informs choices never reads a test item).", "",
             "| task | selection items | test items | metric | base (selection) | seconds |",
             "| --- | --- | --- | --- | --- | --- |"]
    for task, row in results["suite"].items():
        lines.append(f"| {task} | {split[task]['selection']} | {split[task]['test']} | {row['metric']} | "
                     f"{row['base']:.4g} | {row['seconds'] or 0:.0f} |")
    lines += ["", f"Evaluation wall time per model: {base_seconds:.0f} s (base), "
                  f"{candidate_seconds:.0f} s (candidate).",
              "", render_markdown(light, f"Lightly trained candidate ({args.steps} steps) vs the base"),
              f"Aggregate half-width: raw {half_width(light['forgetting_ci']):.2%}, "
              f"clipped {half_width(light['forgetting_clipped_ci']):.2%}; base vs itself: "
              f"{half_width(itself['forgetting_ci']):.2%}. On the test part the gate reads, the clipped "
              f"half-width scales to {results['projected_test_half_width']:.2%} (x sqrt(selection / test items))."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The main job over seeds: `nofrog run --config configs/default.yaml` at train.seed k, and the
plain-SFT reference the default must keep 90% of: constant LR 2e-5, no replay, nothing frozen,
for exactly the run's optimizer steps with the run's task rows per step (the default trains 8
task rows + 2 replay rows a step, so SFT trains batches of 8: the same steps and the same task
rows), scored on the same held-out questions and general suite against the run's base scores.

Per seed it reports what the user's run decided: the gate, the fit (if any), the forgetting the
gate read with its interval, the held-out exact match and its gain with their intervals, the
wall time of every stage, and the SFT reference's exact match and forgetting; over seeds, the
means with t-intervals and the exact match minus SFT's paired by seed. Writes
bench/results/default_run.{json,md}. A seed whose run (or reference) finished is reused.

    .venv/bin/python bench/default_run.py --seeds 0 1 2         # ~13-19 + 8 min per seed on 2 CPU cores
    .venv/bin/python bench/default_run.py --seeds 3 4 5 --results-name default_confirm

Seeds 0-2 are the screening seeds (`bench/screen_default.py` chose the recipe on them); a
confirmation reads seeds nobody screened (3-5). Every run judges on test items
(`eval.judge_items: test`, the default); the results file names the seeds and the items.

A candidate recipe runs through the same main job with `--set key=value` (repeatable) on top of
configs/default.yaml and `--name N` (its own work dir and bench/results/default_run_N.{json,md});
the SFT reference depends only on the seed, steps and task rows, so a finished one is reused from
any run's work.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nofrog_core.evaluate.comparison import mean_interval, paired_seed_difference
from nofrog_core.splits import CHOOSE_ON_SELECTION, SCREENING_SEEDS
from nofrog_core.train.loop import rows_per_batch

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "default.yaml"
RESULTS = ROOT / "bench" / "results"
NOFROG = Path(sys.executable).parent / "nofrog"
# Plain SFT whatever the default turns on: every control the recipe may set is reset here.
SFT_REFERENCE = ("train.schedule=constant", "train.lr=2e-5", "replay.mix.ratio=0", "replay.mix.kl_weight=0",
                 "train.freeze_embeddings=false", "train.freeze_bottom=0", "train.llrd=1.0",
                 "train.lora.enabled=false", "train.osf.enabled=false", "train.objective=sft", "compute.num_workers=0",
                 "gate.fit=none")
MIN_GAIN_RATIO = 0.9


def items_read(rows: list[dict]) -> dict:
    """Which items every run's report read and how many of each task's items that is (from the
    first seed's forgetting.json: the split depends on item content alone, so every seed's is the same)."""
    if not rows:
        return {}
    report = json.loads((Path(rows[0]["run_dir"]) / "forgetting.json").read_text())
    return {"read": report.get("items_read"), "split": report.get("split")}


def log(message: str) -> None:
    print(f"[default-run {time.strftime('%H:%M:%S')}] {message}", flush=True)


def nofrog(args: list[str], work: Path, log_file: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    with open(log_file, "a") as out:
        subprocess.run([str(NOFROG), *args], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def sets(overrides) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


def judging(seed: int) -> list[str]:
    """A screening seed's run chose the recipe, so it reads selection items (and is never promoted);
    a fresh seed's run is a confirmation and reads the test items, as a user's run does."""
    return [CHOOSE_ON_SELECTION] if seed in SCREENING_SEEDS else []


def default_run(seed: int, work: Path, recipe: list[str]) -> Path:
    """The run directory of `nofrog run` at this seed (an earlier finished one is reused)."""
    marker = work / f"seed{seed}.run"
    if marker.exists() and (Path(marker.read_text().strip()) / "run_summary.json").exists():
        return Path(marker.read_text().strip())
    existing = set(glob.glob(str(work / "runs" / "2*")))
    log(f"seed {seed}: nofrog run --config configs/default.yaml {' '.join(sets(recipe))} --set train.seed={seed}")
    nofrog(["run", "--config", str(CONFIG),
            *sets([*recipe, *judging(seed), f"train.seed={seed}", f"tracking.output_dir={work / 'runs'}"])],
           work, work / f"seed{seed}.log")
    run_dir = Path(max(set(glob.glob(str(work / "runs" / "2*"))) - existing))
    marker.write_text(f"{run_dir}\n")
    return run_dir


def task_rows_per_batch(config: dict) -> int:
    """The task rows of each of the run's micro-batches (its batch less the replay rows), from the
    config its training recorded; the SFT reference inherits the run's grad_accum, so it sees the
    same task rows per optimizer step."""
    task_rows, _ = rows_per_batch(config["train"]["batch_size"], config["replay"]["mix"]["ratio"], has_replay=True)
    return task_rows


def sft_reference(seed: int, steps: int, task_rows: int, run_dir: Path, work: Path) -> dict:
    """Plain SFT for the run's optimizer steps at its task rows per step, scored against the run's
    own base scores. It lives beside the recipes' work dirs, keyed by seed, steps and rows, so
    every recipe at that budget shares it."""
    work = work.parent / "sft-reference"
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"seed{seed}_steps{steps}_rows{task_rows}_plain"  # "_plain": freeze_bottom and llrd reset too
    report_file = out / "eval_forgetting.json"  # `nofrog eval --baseline` writes it beside eval.json
    if not report_file.exists():
        overrides = [*SFT_REFERENCE, *judging(seed), f"train.seed={seed}", f"train.batch_size={task_rows}",
                     f"train.max_steps={steps}", "train.epochs=1000"]  # epochs never bind: max_steps stops it
        log(f"seed {seed}: SFT reference, {steps} steps of {task_rows} task rows ({' '.join(SFT_REFERENCE)})")
        started = time.time()
        nofrog(["train", "--config", str(CONFIG), *sets(overrides), "--out", str(out / "train")], work,
               work / f"sft_seed{seed}.log")
        trained = time.time()
        nofrog(["eval", "--config", str(CONFIG), *sets(overrides), "--model", str(out / "train" / "model"),
                "--out", str(out / "eval.json"), "--baseline", str(run_dir / "eval_base.json")], work,
               work / f"sft_seed{seed}.log")
        (out / "seconds.json").write_text(json.dumps({"train": trained - started, "eval": time.time() - trained}))
    trained_steps = len((out / "train" / "history.jsonl").read_text().splitlines())
    return {**json.loads(report_file.read_text()), "train_steps": trained_steps}


def gain_row(report: dict) -> dict:
    task = report["gain_tasks"][0]
    return {"exact_match": task["after"], "exact_match_base": task["before"], "gain": report["task_gain"],
            "gain_ci": report["task_gain_ci"]}


def task_drops(report: dict) -> dict:
    """Each forgetting task's relative drop, with its right-to-wrong / wrong-to-right item counts and
    their McNemar p (question tasks only): which old capability the forgetting figure comes from."""
    return {t["task"]: {"drop": t["drop"], "right_to_wrong": t.get("right_to_wrong"),
                        "wrong_to_right": t.get("wrong_to_right"), "p": t.get("p")}
            for t in report["forgetting_tasks"]}


def seed_result(seed: int, work: Path, recipe: list[str]) -> dict:
    run_dir = default_run(seed, work, recipe)
    summary = json.loads((run_dir / "run_summary.json").read_text())
    report = json.loads((run_dir / "forgetting.json").read_text())
    unfitted = run_dir / "forgetting_unfitted.json"
    unfitted_report = json.loads(unfitted.read_text()) if unfitted.exists() else report
    meta = json.loads((run_dir / "train" / "metadata.json").read_text())
    task_rows = task_rows_per_batch(meta["config"])
    sft = sft_reference(seed, summary["train_steps"], task_rows, run_dir, work)
    replay_meta = json.loads((Path(meta["replay"]["dir"]) / "metadata.json").read_text())
    row = {
        "seed": seed, "run_dir": str(run_dir),
        "engine": meta["training"]["engine"], "world_size": meta["training"].get("world_size"),
        "task_rows_per_step": task_rows,
        "replay_backend": replay_meta["backend"], "train_steps": summary["train_steps"],
        "gate": summary["gate"], "registered": summary["registered"],
        "fitted_alpha": summary["fit"]["chosen"]["alpha"] if summary.get("fit") and summary["fit"]["chosen"] else None,
        "forgetting_clipped": report["forgetting_clipped"], "forgetting_clipped_ci": report["forgetting_clipped_ci"],
        "unfitted_forgetting_clipped": unfitted_report["forgetting_clipped"],
        "unfitted_forgetting_clipped_ci": unfitted_report["forgetting_clipped_ci"],
        **gain_row(report),
        "unfitted": gain_row(unfitted_report),
        "task_drops": task_drops(report), "unfitted_task_drops": task_drops(unfitted_report),
        "stage_seconds": summary["stage_seconds"], "wall_seconds": round(sum(summary["stage_seconds"].values()), 1),
        "sft": {**gain_row(sft), "train_steps": sft["train_steps"], "forgetting_clipped": sft["forgetting_clipped"],
                "forgetting_clipped_ci": sft["forgetting_clipped_ci"]},
    }
    row["gain_ratio_vs_sft"] = row["exact_match"] / row["sft"]["exact_match"] if row["sft"]["exact_match"] else None
    return row


def over_seeds(rows: list[dict]) -> dict:
    """Means with t-intervals over seeds, and the run's exact match minus SFT's, paired by seed."""
    def column(get):
        return [get(r) for r in rows]

    return {
        "forgetting_gated": mean_interval(column(lambda r: r["forgetting_clipped"])),
        "forgetting_as_trained": mean_interval(column(lambda r: r["unfitted_forgetting_clipped"])),
        "sft_forgetting": mean_interval(column(lambda r: r["sft"]["forgetting_clipped"])),
        "exact_match": mean_interval(column(lambda r: r["exact_match"])),
        "sft_exact_match": mean_interval(column(lambda r: r["sft"]["exact_match"])),
        "exact_match_minus_sft": paired_seed_difference(column(lambda r: r["exact_match"]),
                                                        column(lambda r: r["sft"]["exact_match"])),
    }


def against(rows: list[dict], other_file: Path) -> dict:
    """This recipe minus another recipe's 3-seed results (an earlier default), paired by seed: the
    gate's forgetting, the forgetting as trained, and the exact match."""
    other = {r["seed"]: r for r in json.loads(other_file.read_text())["seeds"]}
    both = [r for r in rows if r["seed"] in other]

    def paired(get):
        return paired_seed_difference([get(r) for r in both], [get(other[r["seed"]]) for r in both])

    return {"file": other_file.name, "seeds": [r["seed"] for r in both],
            "forgetting_gated": paired(lambda r: r["forgetting_clipped"]),
            "forgetting_as_trained": paired(lambda r: r["unfitted_forgetting_clipped"]),
            "exact_match": paired(lambda r: r["exact_match"])}


def drops_table(rows: list[dict]) -> list[str]:
    """Per-task drops of each seed, as the gate read them and as trained (before any fit)."""
    tasks = list(rows[0].get("task_drops", {})) if rows else []
    if not tasks or any("task_drops" not in r for r in rows):
        return []  # results written before the rows recorded them
    lines = ["", "Per-task drops, as the gate read them / as trained (the forgetting figure's parts):", "",
             "| seed | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for r in rows:
        cells = [f"{r['task_drops'][t]['drop']:+.1%} / {r['unfitted_task_drops'][t]['drop']:+.1%}" for t in tasks]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
    return lines


def seeds_line(result: dict) -> str:
    seeds, screening = result.get("seeds_run", []), result.get("screening_seeds", list(SCREENING_SEEDS))
    kind = ("a confirmation: none of them chose anything" if result.get("confirmation")
            else f"screening seeds {screening} are among them: the recipe was chosen on these runs")
    items = result.get("items") or {}
    counts = ", ".join(f"{task} {part.get('paired', '?')}" for task, part in (items.get("split") or {}).items())
    return (f"Seeds {seeds} ({kind}). Every report read the {items.get('read', '?')} items of each task "
            f"({counts}; split by content hash, `nofrog_core/splits.py`).")


def markdown(result: dict) -> str:
    title = " ".join(["nofrog run --config configs/default.yaml", *(f"--set {v}" for v in result["recipe"])])
    lines = [f"# The main job over seeds: `{title}`", "",
             f"Produced by `{result['command']}` on {result['machine']['cpus']} CPU cores. SFT reference: "
             f"{', '.join(SFT_REFERENCE)}, for the run's optimizer steps at its task rows per step (the same "
             "steps and the same task rows; the run adds its replay rows on top), scored on the same base results.",
             "", seeds_line(result), "",
             "| seed | engine | replay | gate | fit alpha | forgetting (clipped) [95%] | unfitted | exact match "
             "(gain [95%]) | SFT steps x task rows | SFT exact match | SFT forgetting | EM / SFT EM | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["seeds"]:
        f, fc = r["forgetting_clipped"], r["forgetting_clipped_ci"]
        g = r["gain_ci"]
        lines.append(
            f"| {r['seed']} | {r['engine']} | {r['replay_backend']} | {r['gate']['label']} | "
            f"{r['fitted_alpha'] if r['fitted_alpha'] is not None else '-'} | {f:+.1%} [{fc[0]:+.1%}, {fc[1]:+.1%}] | "
            f"{r['unfitted_forgetting_clipped']:+.1%} | {r['exact_match']:.3f} ({r['gain']:+.3f} [{g[0]:+.3f}, "
            f"{g[1]:+.3f}]) | {r['sft']['train_steps']} x {r['task_rows_per_step']} | {r['sft']['exact_match']:.3f} | "
            f"{r['sft']['forgetting_clipped']:+.1%} | {r['gain_ratio_vs_sft']:.2f} | {r['wall_seconds']:.0f} |")
    lines += ["", "Wall seconds per stage (replay and evaluate_base near 0 where the Prefect cache reused what the "
              "first run in this work dir computed):", ""]
    for r in result["seeds"]:
        lines.append(f"- seed {r['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["stage_seconds"].items()))
    lines += drops_table(result["seeds"])
    s = result["summary"]
    lines += ["", f"Over seeds: exact match / SFT's {s['gain_ratio_mean']:.2f} (per seed "
              f"{', '.join(f'{v:.2f}' for v in s['gain_ratios'])}); target >= {MIN_GAIN_RATIO}: "
              f"{'met' if s['gain_target_met'] else 'missed'}. Gate passed on {s['passed']} of {len(result['seeds'])} "
              "seeds.", ""]
    if "exact_match_minus_sft" in s:
        def interval(stat, fmt):
            return f"{fmt(stat['mean'])} [{fmt(stat['ci'][0])}, {fmt(stat['ci'][1])}]"

        pct, num = (lambda v: f"{v:+.1%}"), (lambda v: f"{v:.3f}")
        diff = s["exact_match_minus_sft"]
        lines += ["Means over seeds with 95% t-intervals:", "",
                  f"- forgetting the gate read {interval(s['forgetting_gated'], pct)}; as trained "
                  f"{interval(s['forgetting_as_trained'], pct)}; plain SFT {interval(s['sft_forgetting'], pct)}",
                  f"- exact match {interval(s['exact_match'], num)}; plain SFT {interval(s['sft_exact_match'], num)}",
                  f"- exact match minus SFT's, paired by seed: {interval(diff, lambda v: f'{v:+.3f}')} "
                  f"({'beyond' if diff['exceeds_noise'] else 'within'} the noise)"]
        if "against" in s:
            other = s["against"]
            lines += ["", f"This recipe minus `{other['file']}`, paired by seed ({len(other['seeds'])} seeds; "
                      "mean [95% t-interval]):", ""]
            for key, name, fmt in (("forgetting_gated", "forgetting the gate read", pct),
                                   ("forgetting_as_trained", "forgetting as trained", pct),
                                   ("exact_match", "exact match", lambda v: f"{v:+.3f}")):
                d = other[key]
                lines.append(f"- {name}: {interval(d, fmt)} ({'beyond' if d['exceeds_noise'] else 'within'} "
                             "the noise)")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SCREENING_SEEDS),
                        help="train.seed values (default: the screening seeds 0 1 2; confirm at 3 4 5)")
    parser.add_argument("--results-name", default="default_run",
                        help="results file stem in bench/results (default_confirm for a confirmation)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "default-run")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="recipe", action="append", default=[], metavar="KEY=VALUE",
                        help="a candidate recipe's change to configs/default.yaml (repeatable)")
    parser.add_argument("--name", default=None, help="the candidate's name (default: the shipped default)")
    parser.add_argument("--against", type=Path, default=None, metavar="RESULTS_JSON",
                        help="another recipe's results file (an earlier default): adds paired differences")
    args = parser.parse_args()
    if args.recipe and not args.name:
        parser.error("--set needs --name: a candidate's runs and results must not overwrite the default's")
    suffix = f"_{args.name}" if args.name else ""
    stem = f"{args.results_name}{suffix}"
    work = args.work.parent / f"{args.work.name}{suffix}"
    work.mkdir(parents=True, exist_ok=True)
    rows = [seed_result(seed, work, args.recipe) for seed in args.seeds]
    ratios = [r["gain_ratio_vs_sft"] for r in rows if r["gain_ratio_vs_sft"] is not None]
    result = {
        "command": " ".join(["python bench/default_run.py", "--seeds", *map(str, args.seeds),
                             *([f"--results-name {args.results_name}"] if args.results_name != "default_run" else []),
                             *(f"--set {value}" for value in args.recipe),
                             *([f"--name {args.name}"] if args.name else []),
                             *([f"--against {args.against}"] if args.against else [])]),
        "recipe": args.recipe,
        "seeds_run": args.seeds, "screening_seeds": list(SCREENING_SEEDS),
        "confirmation": not set(args.seeds) & set(SCREENING_SEEDS),
        "items": items_read(rows),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "sft_reference": list(SFT_REFERENCE), "seeds": rows,
        "summary": {"gain_ratios": ratios, "gain_ratio_mean": statistics.fmean(ratios) if ratios else None,
                    "gain_target_met": bool(ratios) and min(ratios) >= MIN_GAIN_RATIO,
                    "passed": sum(r["gate"]["passed"] for r in rows), **over_seeds(rows)},
    }
    if args.against:
        result["summary"]["against"] = against(rows, args.against)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(markdown(result))
    log(f"-> {args.results / f'{stem}.md'}")


if __name__ == "__main__":
    main()

"""The main job over seeds: `nofrog run --config configs/default.yaml` at train.seed k, and the
plain-SFT reference the default must keep 90% of (constant LR 2e-5, no replay, nothing frozen,
the same epochs over the same task rows; capped at the default run's optimizer steps, but with 8
task rows per step where the default trains 6 task + 2 replay rows, its 3 epochs end at 135 of
the default's 180 steps), scored on the same held-out questions and general suite. A second
reference trains plain SFT for exactly the run's optimizer steps (a third more task rows), the
issue's literal "same steps"; the target is read against both.

Per seed it reports what the user's run decided: the gate, the fit (if any), the forgetting the
gate read with its interval, the held-out exact match and its gain with their intervals, the
wall time of every stage, and the SFT reference's exact match and forgetting. Writes
bench/results/default_run.{json,md}. A seed whose run (or reference) finished is reused.

    .venv/bin/python bench/default_run.py --seeds 3            # ~17 + 7 min per seed on 2 CPU cores

A candidate recipe runs through the same main job with `--set key=value` (repeatable) on top of
configs/default.yaml and `--name N` (its own work dir and bench/results/default_run_N.{json,md});
the SFT reference does not depend on the recipe, so a finished one is reused from any run's work.
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

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "default.yaml"
RESULTS = ROOT / "bench" / "results"
NOFROG = Path(sys.executable).parent / "nofrog"
# Plain SFT whatever the default turns on: every control the recipe may set is reset here.
SFT_REFERENCE = ("train.schedule=constant", "train.lr=2e-5", "replay.mix.ratio=0", "train.freeze_embeddings=false",
                 "train.freeze_bottom=0", "train.llrd=1.0", "train.lora.enabled=false", "train.osf.enabled=false",
                 "train.objective=sft", "compute.num_workers=0", "gate.fit=none")
MIN_GAIN_RATIO = 0.9


def log(message: str) -> None:
    print(f"[default-run {time.strftime('%H:%M:%S')}] {message}", flush=True)


def nofrog(args: list[str], work: Path, log_file: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    with open(log_file, "a") as out:
        subprocess.run([str(NOFROG), *args], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def sets(overrides) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


def default_run(seed: int, work: Path, recipe: list[str]) -> Path:
    """The run directory of `nofrog run` at this seed (an earlier finished one is reused)."""
    marker = work / f"seed{seed}.run"
    if marker.exists() and (Path(marker.read_text().strip()) / "run_summary.json").exists():
        return Path(marker.read_text().strip())
    existing = set(glob.glob(str(work / "runs" / "2*")))
    log(f"seed {seed}: nofrog run --config configs/default.yaml {' '.join(sets(recipe))} --set train.seed={seed}")
    nofrog(["run", "--config", str(CONFIG),
            *sets([*recipe, f"train.seed={seed}", f"tracking.output_dir={work / 'runs'}"])],
           work, work / f"seed{seed}.log")
    run_dir = Path(max(set(glob.glob(str(work / "runs" / "2*"))) - existing))
    marker.write_text(f"{run_dir}\n")
    return run_dir


def sft_reference(seed: int, steps: int, run_dir: Path, work: Path, same_steps: bool = False) -> dict:
    """Plain SFT scored against the run's own base scores: on the same task rows (the default's
    epochs, at most its steps) or, with `same_steps`, for the run's optimizer steps (8 task rows
    each where the run trains 6 + 2 replay rows: a third more task rows). It lives beside the
    recipes' work dirs, keyed by seed and steps, so every recipe at that budget shares it."""
    work = work.parent / "sft-reference"
    work.mkdir(parents=True, exist_ok=True)
    # "_plain": freeze_bottom and llrd reset too
    out = work / f"seed{seed}_steps{steps}_plain{'_same_steps' if same_steps else ''}"
    report_file = out / "eval_forgetting.json"  # `nofrog eval --baseline` writes it beside eval.json
    if not report_file.exists():
        replay_dir = json.loads((run_dir / "train" / "metadata.json").read_text())["replay"]["dir"]
        overrides = [*SFT_REFERENCE, f"train.seed={seed}", f"train.max_steps={steps}", f"replay.mix.dir={replay_dir}",
                     *(["train.epochs=1000"] if same_steps else [])]  # epochs never bind: max_steps stops it
        log(f"seed {seed}: SFT reference, {steps} steps{' exactly' if same_steps else ''} ({' '.join(SFT_REFERENCE)})")
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


def seed_result(seed: int, work: Path, recipe: list[str]) -> dict:
    run_dir = default_run(seed, work, recipe)
    summary = json.loads((run_dir / "run_summary.json").read_text())
    report = json.loads((run_dir / "forgetting.json").read_text())
    unfitted = run_dir / "forgetting_unfitted.json"
    unfitted_report = json.loads(unfitted.read_text()) if unfitted.exists() else report
    meta = json.loads((run_dir / "train" / "metadata.json").read_text())
    sft = sft_reference(seed, summary["train_steps"], run_dir, work)
    replay_meta = json.loads((Path(meta["replay"]["dir"]) / "metadata.json").read_text())
    row = {
        "seed": seed, "run_dir": str(run_dir),
        "engine": meta["training"]["engine"], "world_size": meta["training"].get("world_size"),
        "replay_backend": replay_meta["backend"], "train_steps": summary["train_steps"],
        "gate": summary["gate"], "registered": summary["registered"],
        "fitted_alpha": summary["fit"]["chosen"]["alpha"] if summary.get("fit") and summary["fit"]["chosen"] else None,
        "forgetting_clipped": report["forgetting_clipped"], "forgetting_clipped_ci": report["forgetting_clipped_ci"],
        "unfitted_forgetting_clipped": unfitted_report["forgetting_clipped"],
        "unfitted_forgetting_clipped_ci": unfitted_report["forgetting_clipped_ci"],
        **gain_row(report),
        "unfitted": gain_row(unfitted_report),
        "stage_seconds": summary["stage_seconds"], "wall_seconds": round(sum(summary["stage_seconds"].values()), 1),
        "sft": {**gain_row(sft), "train_steps": sft["train_steps"], "forgetting_clipped": sft["forgetting_clipped"],
                "forgetting_clipped_ci": sft["forgetting_clipped_ci"]},
    }
    row["gain_ratio_vs_sft"] = row["exact_match"] / row["sft"]["exact_match"] if row["sft"]["exact_match"] else None
    same = sft_reference(seed, summary["train_steps"], run_dir, work, same_steps=True)
    row["sft_same_steps"] = {**gain_row(same), "train_steps": same["train_steps"],
                             "forgetting_clipped": same["forgetting_clipped"],
                             "forgetting_clipped_ci": same["forgetting_clipped_ci"]}
    row["gain_ratio_vs_sft_same_steps"] = (row["exact_match"] / same["gain_tasks"][0]["after"]
                                           if same["gain_tasks"][0]["after"] else None)
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
        "sft_same_steps_forgetting": mean_interval(column(lambda r: r["sft_same_steps"]["forgetting_clipped"])),
        "sft_same_steps_exact_match": mean_interval(column(lambda r: r["sft_same_steps"]["exact_match"])),
        "exact_match_minus_sft_same_steps": paired_seed_difference(
            column(lambda r: r["exact_match"]), column(lambda r: r["sft_same_steps"]["exact_match"])),
        "gain_ratios_same_steps": column(lambda r: r["gain_ratio_vs_sft_same_steps"]),
    }


def same_steps_cells(row: dict) -> str:
    same = row.get("sft_same_steps")
    if not same:
        return "- | -"
    return (f"{same['exact_match']:.3f} ({same['forgetting_clipped']:+.1%}, {same['train_steps']} steps) | "
            f"{row['gain_ratio_vs_sft_same_steps']:.2f}")


def markdown(result: dict) -> str:
    title = " ".join(["nofrog run --config configs/default.yaml", *(f"--set {v}" for v in result["recipe"])])
    lines = [f"# The main job over seeds: `{title}`", "",
             f"Produced by `{result['command']}` on {result['machine']['cpus']} CPU cores. SFT reference: "
             f"{', '.join(SFT_REFERENCE)}, the default's epochs over the same task rows (at most the default's "
             "steps: 8 task rows per step where the default trains 6 + 2 replay rows, so it stops at 3/4 of them), "
             "scored on the same base results.", "",
             "| seed | engine | replay | gate | fit alpha | forgetting (clipped) [95%] | unfitted | exact match "
             "(gain [95%]) | SFT exact match | SFT forgetting | EM / SFT EM | SFT same steps: EM (forgetting) | "
             "EM / that | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["seeds"]:
        f, fc = r["forgetting_clipped"], r["forgetting_clipped_ci"]
        g = r["gain_ci"]
        lines.append(
            f"| {r['seed']} | {r['engine']} | {r['replay_backend']} | {r['gate']['label']} | "
            f"{r['fitted_alpha'] if r['fitted_alpha'] is not None else '-'} | {f:+.1%} [{fc[0]:+.1%}, {fc[1]:+.1%}] | "
            f"{r['unfitted_forgetting_clipped']:+.1%} | {r['exact_match']:.3f} ({r['gain']:+.3f} [{g[0]:+.3f}, "
            f"{g[1]:+.3f}]) | {r['sft']['exact_match']:.3f} | {r['sft']['forgetting_clipped']:+.1%} | "
            f"{r['gain_ratio_vs_sft']:.2f} | {same_steps_cells(r)} | {r['wall_seconds']:.0f} |")
    lines += ["", "Wall seconds per stage (replay and evaluate_base near 0 where the Prefect cache reused what the "
              "first run in this work dir computed):", ""]
    for r in result["seeds"]:
        lines.append(f"- seed {r['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["stage_seconds"].items()))
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
        if s.get("exact_match_minus_sft_same_steps"):
            same = s["exact_match_minus_sft_same_steps"]
            lines += [f"- against SFT for the same optimizer steps: exact match "
                      f"{interval(s['sft_same_steps_exact_match'], num)}, forgetting "
                      f"{interval(s['sft_same_steps_forgetting'], pct)}; the run's exact match minus it "
                      f"{interval(same, lambda v: f'{v:+.3f}')} ({'beyond' if same['exceeds_noise'] else 'within'} "
                      f"the noise); ratios per seed {', '.join(f'{v:.2f}' for v in s['gain_ratios_same_steps'])}"]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "default-run")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="recipe", action="append", default=[], metavar="KEY=VALUE",
                        help="a candidate recipe's change to configs/default.yaml (repeatable)")
    parser.add_argument("--name", default=None, help="the candidate's name (default: the shipped default)")
    args = parser.parse_args()
    if args.recipe and not args.name:
        parser.error("--set needs --name: a candidate's runs and results must not overwrite the default's")
    suffix = f"_{args.name}" if args.name else ""
    work = args.work.parent / f"{args.work.name}{suffix}"
    work.mkdir(parents=True, exist_ok=True)
    rows = [seed_result(seed, work, args.recipe) for seed in range(args.seeds)]
    ratios = [r["gain_ratio_vs_sft"] for r in rows if r["gain_ratio_vs_sft"] is not None]
    result = {
        "command": " ".join(["python bench/default_run.py", f"--seeds {args.seeds}",
                             *(f"--set {value}" for value in args.recipe),
                             *([f"--name {args.name}"] if args.name else [])]),
        "recipe": args.recipe,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "sft_reference": list(SFT_REFERENCE), "seeds": rows,
        "summary": {"gain_ratios": ratios, "gain_ratio_mean": statistics.fmean(ratios) if ratios else None,
                    "gain_target_met": bool(ratios) and min(ratios) >= MIN_GAIN_RATIO,
                    "passed": sum(r["gate"]["passed"] for r in rows), **over_seeds(rows)},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"default_run{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / f"default_run{suffix}.md").write_text(markdown(result))
    log(f"-> {args.results / f'default_run{suffix}.md'}")


if __name__ == "__main__":
    main()

"""Method comparison on the default base model: how much does each method forget, at what task gain?

Every arm trains Gemma 3 270M on the same built-in knowledge-acquisition task
(fictitious people), with the same data, optimizer steps, batch and seed, through
`run_training` and `run_evaluation`, the functions behind `nofrog train` and
`nofrog eval`. Each trained model is scored on the held-out task questions and
the whole general suite (world knowledge, arithmetic, general-text perplexity,
replay KL) and compared with the base model.

Arms: (1) SFT, constant LR; (2) SFT, cosine; (3) FINCH; (4) SFT + replay;
(5) FINCH + replay; (6) LoRA; (6b) PEFT's OSF; (7) LLRD with the bottom layers frozen;
(8) Anchored Learning (8b: at the paper's schedule, K=5 epochs x T=5 snapshots); (9) FINCH +
replay + KL to the base on the replay rows; (11) the shipped default recipe (FINCH + replay +
frozen embedding). (1b), (3c) and (7b) add the frozen embedding to (1), (3) and (7).
Arms (5) and (9) are swept over replay ratio, weight and sampling temperature
(a star around the centre point: one knob changed at a time). A control, (3b),
trains SFT at the mean LR FINCH used, to tell FINCH's loss adaptation apart from
its lower LR. Then the best replay point is combined with LLRD + freezing, and
SFT, FINCH and the best run (if another) get a second seed.

Budget (chosen so the whole benchmark fits 90 minutes on 2 CPU cores; measured:
70 min): 16 people (48 training rows), 18 optimizer steps of 8 rows (3 epochs of
the task-only arms), 64 replay samples (+16 held out) of up to 64 tokens per
temperature. An SFT step takes ~5-6 s here and scoring one model ~70 s. Results: bench/results/methods/forgetting.{json,md},
bench/results/methods/forgetting_pareto.png, and one MLflow run per arm in the experiment
`nofrog-forgetting-bench` (sqlite:///mlflow.db unless $MLFLOW_TRACKING_URI).
Finished arms are reused on a rerun (delete --work to start over); `--resume-from FILE` also
counts the arms of an earlier results file as finished, on a machine without its work directory.

    .venv/bin/python bench/forgetting.py            # or: make bench
    # the method questions over seeds, arm by arm (each arm at seeds 0..2 before the next):
    .venv/bin/python bench/forgetting.py --seeds 3 --arms finch,default_recipe,finch_replay,...
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nofrog_core.config import load_config  # noqa: E402
from nofrog_core.splits import CHOOSE_ON_SELECTION  # noqa: E402
from nofrog_core.evaluate import comparison  # noqa: E402
from nofrog_core.evaluate.stage import run_evaluation, run_report  # noqa: E402
from nofrog_core.plots import plot_pareto  # noqa: E402
from nofrog_core.replay.stage import run_replay  # noqa: E402
from nofrog_core.train.stage import run_training  # noqa: E402

CONFIG = ROOT / "configs" / "default.yaml"
RESULTS = ROOT / "bench" / "results" / "methods"  # the current method comparison
WORK = ROOT / "bench" / "work"
EXPERIMENT = "nofrog-forgetting-bench"
UNBIASED_TEMPERATURE = 1.0  # the replay set the replay KL is always measured on
MIN_GAIN_RATIO = 0.9  # an arm must keep this much of SFT's task gain to count as "best"

SFT_LR = 5e-5  # constant LR at which SFT clearly learns the task within the step budget
LLRD_FREEZE = ("train.llrd=0.9", "train.freeze_bottom=0.8")
# Every arm states it: the shipped default freezes them, the methods under test mostly do not.
FROZEN_EMBEDDINGS = ("train.freeze_embeddings=true",)  # guide: decay ~0.9-0.96, freeze 80-90%


def replay_knobs(ratio: float, weight: float, kl_weight: float = 0.0) -> tuple[str, ...]:
    return (f"replay.mix.ratio={ratio}", f"replay.mix.nll_weight={weight}", f"replay.mix.kl_weight={kl_weight}")


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    overrides: tuple[str, ...]
    replay_temperature: float | None = None  # which replay set trains this arm; None = no replay
    group: str = "arm"  # arm | grid | combination | seed
    knobs: dict = field(default_factory=dict, compare=False)  # grid coordinates, for the report
    short_label: str = ""  # what the chart writes beside the point (default: the label)
    fit_of: str | None = None  # fits this arm's trained model into the gate's budget (gate.fit) instead of training
    max_seeds: int | None = None  # cap on --seeds for an arm too long to run at every seed


def grid_arm(base: str, label: str, schedule: tuple[str, ...], ratio: float, weight: float, kl: float,
             temperature: float, moved: str) -> Arm:
    knobs = {"replay_ratio": ratio, "replay_weight": weight, "replay_kl_weight": kl, "temperature": temperature}
    suffix = f"r{ratio}-w{weight}-kl{kl}-T{temperature}"
    return Arm(f"{base}_{suffix}", f"{label} [{suffix}]", schedule + replay_knobs(ratio, weight, kl),
               temperature, "grid", knobs, f"{label.split()[0]} {moved}")


def constant(sft_lr: float) -> tuple[str, ...]:
    return ("train.schedule=constant", f"train.lr={sft_lr}")


def finch(sft_lr: float) -> tuple[str, ...]:
    """FINCH capped at SFT's LR, base_lr at the authors' ratio base_lr / eta_max = 2e-5 / 5e-5
    (with the default SFT LR of 5e-5: exactly the authors' defaults)."""
    return ("train.schedule=finch", f"train.finch.base_lr={0.4 * sft_lr:.3g}", f"train.finch.lr_max={sft_lr}")


def method_arms(sft_lr: float) -> list[Arm]:
    sft_schedule, finch_schedule = constant(sft_lr), finch(sft_lr)
    default_recipe = finch_schedule + replay_knobs(0.25, 1.0) + FROZEN_EMBEDDINGS
    fitted = ("gate.fit=interpolate",)
    return [
        Arm("sft", f"(1) SFT, constant LR {sft_lr:.2g}", sft_schedule),
        Arm("sft_frozen_emb", "(1b) SFT, embeddings frozen", sft_schedule + FROZEN_EMBEDDINGS),
        Arm("finch_frozen_emb", "(3c) FINCH, embeddings frozen", finch_schedule + FROZEN_EMBEDDINGS),
        Arm("sft_cosine", "(2) SFT, cosine", ("train.schedule=cosine", f"train.lr={sft_lr}", "train.warmup_steps=2")),
        Arm("finch", "(3) FINCH", finch_schedule),
        Arm("sft_replay", "(4) SFT + replay", sft_schedule + replay_knobs(0.25, 1.0), UNBIASED_TEMPERATURE),
        Arm("finch_replay", "(5) FINCH + replay", finch_schedule + replay_knobs(0.25, 1.0), UNBIASED_TEMPERATURE,
            knobs={"replay_ratio": 0.25, "replay_weight": 1.0, "replay_kl_weight": 0.0, "temperature": 1.0}),
        # LoRA updates far fewer weights; the usual practice is a ~10x higher LR than full fine-tuning.
        Arm("lora", f"(6) LoRA r8, LR {10 * sft_lr:.3g}", constant(10 * sft_lr) + ("train.lora.enabled=true",)),
        # OSF keeps each weight's top half of singular directions and trains in their complement.
        Arm("osf", "(6b) PEFT OSF, top 50% of singular directions kept", sft_schedule + ("train.osf.enabled=true",)),
        Arm("llrd_freeze", "(7) LLRD 0.9 + bottom 80% frozen", sft_schedule + LLRD_FREEZE),
        Arm("llrd_freeze_frozen_emb", "(7b) LLRD 0.9 + bottom 80% frozen + embeddings frozen",
            sft_schedule + LLRD_FREEZE + FROZEN_EMBEDDINGS),
        Arm("anchored", "(8) Anchored Learning", sft_schedule + ("train.objective=anchored",)),
        # The paper's schedule: K = 5 epochs per snapshot, T = 5 snapshots (no step cap).
        Arm("anchored_paper", "(8b) Anchored Learning, K=5 epochs x T=5 snapshots",
            sft_schedule + ("train.objective=anchored", "train.max_steps=null",
                            "train.anchored.snapshot_every_epochs=5", "train.anchored.outer_iterations=5"),
            max_seeds=2),
        # Anchored Learning's student trains 25 epochs (150 steps here) after its 3-epoch SFT reference; plain
        # SFT for as long tells "Anchored Learning forgets more than SFT" apart from "it trains 8x longer".
        Arm("sft_anchored_budget", "(8c) SFT for Anchored Learning's 25 student epochs",
            sft_schedule + ("train.max_steps=null", "train.epochs=25"), max_seeds=2),
        Arm("finch_replay_kl", "(9) FINCH + replay + KL", finch_schedule + replay_knobs(0.25, 1.0, 1.0),
            UNBIASED_TEMPERATURE,
            knobs={"replay_ratio": 0.25, "replay_weight": 1.0, "replay_kl_weight": 1.0, "temperature": 1.0}),
        # What configs/default.yaml trained before LLRD/freeze (FINCH at the authors' LRs, replay 2 rows
        # in 8, the embedding frozen), in process: Ray Train runs the same loop (the resume tests pin that).
        Arm("default_recipe", "(11) default recipe: FINCH + replay 0.25 + embeddings frozen",
            default_recipe, UNBIASED_TEMPERATURE),
        # The same trained models, fitted into the budget like `nofrog run` does (gate.fit: interpolate).
        Arm("default_recipe_fit", "(11b) default recipe + gate.fit (interpolated into the 3% budget)",
            default_recipe + fitted, UNBIASED_TEMPERATURE, fit_of="default_recipe"),
        # The same on the layers LLRD/freeze leaves trainable: configs/default.yaml's layers, at the authors'
        # FINCH LRs (the default now runs 2.5x them, its replay rows on top of 8 task rows:
        # bench/screen_default.py). Replay rows are fresh draws here too: 36 rows from 64 samples.
        Arm("default_recipe_llrd", "(12) default recipe + LLRD 0.9 + bottom 80% frozen",
            default_recipe + LLRD_FREEZE, UNBIASED_TEMPERATURE),
        Arm("default_recipe_llrd_fit", "(12b) (12) + gate.fit (interpolated into the 3% budget)",
            default_recipe + LLRD_FREEZE + fitted, UNBIASED_TEMPERATURE, fit_of="default_recipe_llrd"),
    ]


def grid_arms(sft_lr: float) -> list[Arm]:
    """A star around each centre (ratio 0.25, weight 1, temperature 1): one knob moved at a time.
    For (9) the weight swept is the KL weight, the knob that arm adds."""
    arms = []
    centres = (("finch_replay", "(5) FINCH + replay", 0.0), ("finch_replay_kl", "(9) FINCH + replay + KL", 1.0))
    for base, label, kl in centres:
        arms.append(grid_arm(base, label, finch(sft_lr), 0.5, 1.0, kl, 1.0, "ratio 0.5"))
        if kl:
            arms.append(grid_arm(base, label, finch(sft_lr), 0.25, 1.0, 3.0, 1.0, "KL weight 3"))
        else:
            arms.append(grid_arm(base, label, finch(sft_lr), 0.25, 3.0, 0.0, 1.0, "weight 3"))
        arms.append(grid_arm(base, label, finch(sft_lr), 0.25, 1.0, kl, 0.7, "T 0.7"))
    return arms


# What configs/default.yaml turned on after the arms' results were recorded (LLRD/freeze at 32ad118, the
# replay KL later): every arm starts from none of them too. They are applied beside the scale but kept
# out of the request key, which records what an arm's results ran at: before those commits the
# default held exactly these values, so earlier results stay the same request.
# The benchmark chooses (its table ranks methods), so it reads selection items only.
NEUTRAL = ("train.freeze_bottom=0", "train.llrd=1.0", "replay.mix.kl_weight=0", CHOOSE_ON_SELECTION)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work: Path = args.work
        # The shipped default turns on replay, Ray, the frozen embedding and the fit: every arm starts
        # from none of them and turns on what it tests.
        self.scale = (f"data.demo_people={args.people}", f"train.max_steps={args.steps}", "train.batch_size=8",
                      "train.seed=0", "train.checkpoint_every=0", "replay.mix.ratio=0", "compute.num_workers=0",
                      "train.freeze_embeddings=false", "gate.fit=none",
                      f"replay.num_samples={args.replay_samples}", "replay.max_new_tokens=64",
                      "replay.heldout_fraction=0.25", f"tracking.experiment={EXPERIMENT}")
        if args.task != "people":  # the people task's scale stays as earlier results recorded it
            self.scale += (f"data.builtin_task={args.task}",)
        self.rows: dict[str, dict] = {}
        self.timings_file = self.work / "timings.json"  # shared inputs' cost, kept across reruns
        self.timings: dict[str, float] = (json.loads(self.timings_file.read_text())
                                          if self.timings_file.exists() else {})
        self.replay_ready: set[float] = set()
        self.fitted_later: set[str] = set()  # arms whose models a fit arm reads (kept until it ran)
        self.started = time.time()
        self.candidate_part = None  # every item (NEUTRAL's judge_items=selection keeps it to selection items)

    def timed(self, key: str, work) -> None:
        started = time.time()
        work()
        self.timings[key] = round(time.time() - started, 1)
        self.timings_file.write_text(json.dumps(self.timings, indent=2) + "\n")

    # ---- inputs shared by every arm ------------------------------------------------------------
    def config(self, overrides) -> object:
        return load_config(CONFIG, [*self.scale, *NEUTRAL, *overrides])

    def replay_dir(self, temperature: float) -> Path:
        out = self.work / f"replay-T{temperature}"
        if temperature not in self.replay_ready:
            config = self.config([f"replay.temperature={temperature}"])
            if (out / "metadata.json").exists():
                run_replay(config, out)  # checks the set matches this request, then reuses it
            else:
                log(f"replay set at temperature {temperature}")
                self.timed(f"replay-T{temperature}", lambda: run_replay(config, out))
            self.replay_ready.add(temperature)
        return out

    def eval_config(self, overrides):
        # Replay KL is always measured on the temperature-1 held-out samples (the unbiased estimate).
        return self.config([*overrides, f"replay.mix.dir={self.replay_dir(UNBIASED_TEMPERATURE)}"])

    def base_results(self) -> dict:
        path = self.work / "base_eval.json"
        if not path.exists():
            config = self.eval_config([])
            log("scoring the base model")
            self.timed("base_eval", lambda: run_evaluation(config, path))
        return json.loads(path.read_text())

    # ---- one arm -------------------------------------------------------------------------------
    def run(self, arm: Arm, position: str) -> dict:
        arm_dir = self.work / arm.name
        result_file = arm_dir / "result.json"
        overrides = list(arm.overrides)
        if arm.replay_temperature is not None:
            overrides.append(f"replay.mix.dir={self.replay_dir(arm.replay_temperature)}")
        wanted = {"scale": list(self.scale), "overrides": overrides}
        if result_file.exists():
            saved = json.loads(result_file.read_text())
            if saved["request"] == wanted:
                log(f"{position} {arm.name}: reusing {result_file}")
                # Names may have been edited since the run.
                saved.update(label=arm.label, group=arm.group, knobs=arm.knobs,
                             short_label=arm.short_label or arm.label)
                return self.remember(saved)
        if arm_dir.exists():
            log(f"{position} {arm.name}: removing the unfinished attempt in {arm_dir}")
            shutil.rmtree(arm_dir)
        config = self.config(overrides)
        before = self.base_results()
        if arm.fit_of:
            row, after, model_dir = self.fit(arm, position, overrides, before)
        else:
            log(f"{position} {arm.name}: training ({' '.join(arm.overrides)})")
            started = time.time()
            run_training(config, arm_dir / "train")
            trained = time.time()
            model_dir = arm_dir / "train" / "model"
            after = run_evaluation(self.eval_config(overrides), arm_dir / "eval.json", model=str(model_dir),
                                   part=self.candidate_part)
            finished = time.time()
            report = run_report(config, before, after, arm_dir / "forgetting.json")
            row = summarise(arm, report,
                            {"train_seconds": trained - started, "eval_seconds": finished - trained})
        row["request"] = wanted
        baseline = self.rows.get(baseline_name(arm.name))
        if baseline is not None:
            comparison.add_relative_scores([row], baseline)
        row["mlflow_run_id"] = log_arm(config, arm, arm_dir, row, after)
        # 1 GB each; the scores and history stay. A model a fit arm will read stays until that arm ran.
        if not self.args.keep_models and arm.name.split("_seed")[0] not in self.fitted_later:
            shutil.rmtree(model_dir, ignore_errors=True)
        result_file.write_text(json.dumps(row, indent=2) + "\n")
        gc.collect()
        log(f"{position} {arm.name}: task gain {row['task_gain']:.3f}, forgetting {row['forgetting']:+.1%}, "
            f"{row['wall_seconds']:.0f} s (bench at {(time.time() - self.started) / 60:.1f} min)")
        return self.remember(row)

    def restore(self, results_files: list[Path]) -> None:
        """Seed --work with the arms of earlier results files that ran at this scale: the bench resumes
        on a machine that lacks the earlier work directories. Arms on a replay set are left to rerun
        (the set's directory is part of the request), as is any arm whose result file exists."""
        for path in results_files:
            summary = json.loads(Path(path).read_text())
            if summary.get("scale") != list(self.scale):
                log(f"{path}: ran at another scale, nothing restored")
                continue
            for row in summary["arms"]:
                result_file = self.work / row["arm"] / "result.json"
                if row.get("replay_temperature") is not None or result_file.exists():
                    continue
                result_file.parent.mkdir(parents=True, exist_ok=True)
                restored = {**row, "request": {"scale": list(self.scale), "overrides": row["overrides"]},
                            "restored_from": str(path), "mlflow_run_id": None}
                result_file.write_text(json.dumps(restored, indent=2) + "\n")
                log(f"restored {row['arm']} from {path}")

    def fit(self, arm: Arm, position: str, overrides: list[str], before: dict) -> tuple[dict, dict, Path]:
        """The fit arm: the trained model of `arm.fit_of` (same seed) through the gate, and through
        `gate.fit` when it fails on forgetting, as `nofrog run` does. The row reports the model that
        run would register: the candidate if it passes, else the best passing mix, else the candidate."""
        from nofrog_core import models
        from nofrog_core.evaluate.stage import run_fit
        from nofrog_core.evaluate.stage import decide_with

        seed = seed_of(arm.name)
        source = self.work / seeded_name(arm.fit_of, seed)
        if not (source / "result.json").exists():
            raise SystemExit(f"{arm.name}: run {source.name} first (its scores are the candidate's)")
        model_dir = source / "train" / "model"
        config = self.eval_config(overrides)
        report = json.loads((source / "forgetting.json").read_text())
        after = json.loads((source / "eval.json").read_text())
        decision = decide_with(report, config.gate)
        started = time.time()
        fitted = None
        if not decision.passed:
            log(f"{position} {arm.name}: {source.name} fails the gate ({decision.reason}): fitting")
            if not model_dir.is_dir():
                # Its model was not kept (an earlier invocation): train the same config again. Training on
                # CPU is deterministic (the resume tests pin it bit for bit), so this is the same model.
                log(f"{position} {arm.name}: retraining {source.name}'s model (not kept)")
                model_dir = self.work / arm.name / "candidate" / "model"
                run_training(self.config(overrides), model_dir.parent)
            base_dir = models.resolve_model(config.model).path
            fitted = run_fit(config, base_dir, model_dir, before, self.work / arm.name / "fit")
            if fitted["confirmed"]:  # the chosen mix's fresh evaluation on the judged items
                report = json.loads(Path(fitted["confirmed"]["report"]).read_text())
                after = json.loads(Path(fitted["confirmed"]["eval"]).read_text())
        arm_dir = self.work / arm.name
        # The training record travels with the arm (its MLflow run logs the history and curves).
        shutil.copytree(source / "train", arm_dir / "train", ignore=shutil.ignore_patterns("model", "checkpoint*"),
                        dirs_exist_ok=True)
        (arm_dir / "forgetting.json").write_text(json.dumps(report, indent=2) + "\n")
        (arm_dir / "eval.json").write_text(json.dumps(after, indent=2) + "\n")
        trained_row = json.loads((source / "result.json").read_text())
        row = summarise(arm, report, {"train_seconds": trained_row["train_seconds"],
                                      "eval_seconds": trained_row["eval_seconds"],
                                      "fit_seconds": time.time() - started})
        row["fit"] = {"candidate_passed": decision.passed, "candidate_reason": decision.reason,
                      "points": fitted["points"] if fitted else [],
                      "chosen_alpha": fitted["chosen"]["alpha"] if fitted and fitted["chosen"] else None}
        return row, after, model_dir

    def remember(self, row: dict) -> dict:
        self.rows[row["arm"]] = row
        return row


def seed_of(arm_name: str) -> int:
    head, _, seed = arm_name.rpartition("_seed")
    return int(seed) if head and seed.isdigit() else 0


def seeded_name(arm_name: str, seed: int) -> str:
    """An arm's run at `seed`: seed 0 keeps the arm's own name."""
    return f"{arm_name}_seed{seed}" if seed else arm_name


def baseline_name(arm_name: str) -> str:
    """Relative scores are paired by seed: a seed-k run is compared with SFT at seed k."""
    seed = seed_of(arm_name)
    return seeded_name("sft", seed)


def summarise(arm: Arm, report: dict, seconds: dict) -> dict:
    task = report["gain_tasks"][0]
    kl = next((r for r in report["other_tasks"] if r["task"] == "replay_kl"), None)
    return {
        "arm": arm.name, "label": arm.label, "short_label": arm.short_label or arm.label, "group": arm.group,
        "overrides": list(arm.overrides),
        "knobs": arm.knobs, "replay_temperature": arm.replay_temperature,
        "task": {"metric": task["metric"], "before": task["before"], "after": task["after"], "ci": task["ci"],
                 "answer_loss": task.get("secondary", {}).get("answer_loss")},
        "task_gain": report["task_gain"], "task_gain_ci": report["task_gain_ci"],
        "general": {r["task"]: {"metric": r["metric"], "before": r["before"], "after": r["after"],
                                "relative_drop": r["drop"], "ci": r["ci"]} for r in report["forgetting_tasks"]},
        "forgetting": report["forgetting"], "forgetting_clipped": report["forgetting_clipped"],
        "forgetting_ci": report["forgetting_ci"], "forgetting_clipped_ci": report["forgetting_clipped_ci"],
        "replay_kl": kl["after"] if kl else math.nan,
        **{k: round(v, 1) for k, v in seconds.items()},
        "wall_seconds": round(sum(seconds.values()), 1),
    }


def log_arm(config, arm: Arm, arm_dir: Path, row: dict, after: dict) -> str:
    from nofrog_core import tracking

    tracking.setup(config.tracking)
    tags = {"bench": "forgetting", "arm": arm.name, "group": arm.group, "label": arm.label}
    scalars = {k: row.get(k, math.nan) for k in ("task_gain", "forgetting", "forgetting_clipped", "replay_kl",
                                                 "forgetting_reduction", "gain_ratio", "train_seconds",
                                                 "eval_seconds", "wall_seconds")}
    files = [arm_dir / name for name in ("eval.json", "forgetting.png", "train/loss_lr.png", "train/metadata.json",
                                         "train/history.jsonl", "fit/fit.json", "fit/fit.png")]
    return tracking.log_training_run(arm.name, tags, config.flat(), arm_dir / "train" / "history.jsonl",
                                     {"after": after}, {"": files}, metrics=scalars)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def with_seed(arm: Arm, seed: int) -> Arm:
    return replace(arm, name=seeded_name(arm.name, seed), label=f"{arm.label} (seed {seed})",
                   overrides=arm.overrides + (f"train.seed={seed}",), group="seed")


def matched_lr_arm(finch_history: Path) -> Arm:
    """Constant-LR SFT at FINCH's mean LR in the FINCH run: separates "FINCH adapts the LR to the
    loss" from "FINCH trains at a lower LR than SFT"."""
    from nofrog_core.history import read_history

    lrs = [record["lr"] for record in read_history(finch_history)]
    mean_lr = float(f"{sum(lrs) / len(lrs):.2g}")
    return Arm("sft_finch_mean_lr", f"(3b) SFT, constant LR {mean_lr:.2g} (FINCH's mean LR)", constant(mean_lr))


def combination_arm(best_replay: Arm) -> Arm:
    """The best replay point plus LLRD and freezing, the one control that composes with it
    (LoRA changes the LR scale, Anchored Learning replaces the loss)."""
    return Arm("combination", f"(10) {best_replay.label} + LLRD/freeze",
               best_replay.overrides + LLRD_FREEZE, best_replay.replay_temperature, "combination",
               {**best_replay.knobs, "from": best_replay.name})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=18, help="optimizer steps per arm")
    parser.add_argument("--sft-lr", type=float, default=SFT_LR, help="SFT's constant LR; FINCH's cap")
    parser.add_argument("--people", type=int, default=16, help="built-in task size (3 rows per unit)")
    parser.add_argument("--task", default="people", help="the built-in task: people (facts) or date_format "
                        "(instruction following with a fixed output format)")
    parser.add_argument("--replay-samples", type=int, default=64)
    parser.add_argument("--arms", default="all", help="comma-separated arm names (a quick check), or all")
    parser.add_argument("--second-seed", action="store_true", help="with --arms: also run each chosen arm at seed 1")
    parser.add_argument("--seeds", type=int, default=0, help="with --arms: run each chosen arm at seeds 0..N-1")
    parser.add_argument("--work", type=Path, default=WORK, help="run directories; finished arms are reused")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep-models", action="store_true", help="keep every arm's model/ (1 GB each)")
    parser.add_argument("--resume-from", type=Path, nargs="*", default=[],
                        help="earlier results files (forgetting.json) whose arms count as finished here when "
                             "they ran at this scale with the same overrides (a new machine, an empty --work)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)

    if args.resume_from:
        bench.restore(args.resume_from)
    base = bench.base_results()
    everything = args.arms == "all"
    if not everything:
        chosen_arms(bench, args)
        write_results(bench, base, None, time.time() - bench.started)
        return
    arms = method_arms(args.sft_lr) + grid_arms(args.sft_lr)
    total = len(arms) + 5  # + the matched-LR control, the combination, three seed-1 runs
    by_name = {}
    for number, arm in enumerate(arms, start=1):
        bench.run(arm, f"[{number}/{total}]")
        by_name[arm.name] = arm
    best = None
    if everything:
        control = matched_lr_arm(args.work / "finch" / "train" / "history.jsonl")
        bench.run(control, f"[{len(arms) + 1}/{total}]")
        by_name[control.name] = control
        replay_points = comparison.add_relative_scores(
            [bench.rows[a.name] for a in arms if a.replay_temperature is not None], bench.rows["sft"])
        best_replay = by_name[comparison.pick_best(replay_points, MIN_GAIN_RATIO)["arm"]]
        combo = combination_arm(best_replay)
        bench.run(combo, f"[{len(arms) + 2}/{total}]")
        by_name[combo.name] = combo
        candidates = comparison.add_relative_scores(
            [r for r in bench.rows.values() if r["arm"] != "sft"], bench.rows["sft"])
        best = by_name[comparison.pick_best(candidates, MIN_GAIN_RATIO)["arm"]]
        # Second seeds: SFT, FINCH (its target is checked on both) and the best run if it is another.
        seeded = ["sft", "finch"] + ([best.name] if best.name not in ("sft", "finch") else [])
        total = len(arms) + 2 + len(seeded)
        for number, name in enumerate(seeded, start=len(arms) + 3):
            bench.run(with_seed(by_name[name], 1), f"[{number}/{total}]")
    write_results(bench, base, best, time.time() - bench.started)


def chosen_arms(bench: Bench, args) -> None:
    """`--arms a,b,c [--seeds N]`: each arm at seeds 0..N-1 before the next arm, so an interrupted
    run leaves whole seed sets. SFT always runs (every ratio is relative to it); the matched-LR
    control reads FINCH's seed-0 history, so FINCH runs before it."""
    names = args.arms.split(",")
    if "sft_finch_mean_lr" in names and "finch" not in names:
        names.insert(names.index("sft_finch_mean_lr"), "finch")
    names = list(dict.fromkeys(["sft", *names]))
    known = {a.name: a for a in method_arms(args.sft_lr) + grid_arms(args.sft_lr)}
    unknown = [n for n in names if n not in known and n != "sft_finch_mean_lr"]
    if unknown:
        raise SystemExit(f"--arms: unknown arm(s) {', '.join(unknown)}; known: {', '.join(known)}, sft_finch_mean_lr")
    finch_history = args.work / "finch" / "train" / "history.jsonl"
    if "sft_finch_mean_lr" in names and not finch_history.exists() and (args.work / "finch").exists():
        log("finch: its LR history is not here (restored from a results file): rerunning it")
        shutil.rmtree(args.work / "finch")
    seeds = range(max(args.seeds, 2 if args.second_seed else 1))
    bench.fitted_later = {known[n].fit_of for n in names if n in known and known[n].fit_of}
    total = sum(min(len(seeds), known[n].max_seeds or len(seeds)) if n in known else len(seeds) for n in names)
    number = 0
    for name in names:
        arm = matched_lr_arm(finch_history) if name == "sft_finch_mean_lr" else known[name]
        for seed in seeds[:arm.max_seeds]:
            number += 1
            bench.run(with_seed(arm, seed) if seed else arm, f"[{number}/{total}]")


def write_results(bench: Bench, base: dict, best: Arm | None, seconds: float) -> None:
    results_dir: Path = bench.args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    rows = list(bench.rows.values())
    for row in rows:
        baseline = bench.rows.get(baseline_name(row["arm"]), bench.rows["sft"])
        comparison.add_relative_scores([row], baseline)
        row["compared_with"] = baseline["arm"]
        row["baseline"] = row["arm"] == baseline_name(row["arm"])
    log_relative_scores(bench.config([]), rows)
    front = comparison.pareto_front([r for r in rows if r["group"] != "seed"])
    seeds = {}
    seeded_arms = [r["arm"] for r in rows if seed_of(r["arm"]) == 0 and seeded_name(r["arm"], 1) in bench.rows]
    for arm_name in dict.fromkeys(["sft", "finch"] + ([best.name] if best else []) + seeded_arms):
        runs = [bench.rows[n] for n in [seeded_name(arm_name, k) for k in range(10)]
                if n in bench.rows]
        seeds[arm_name] = {k: comparison.seed_spread([r[k] for r in runs])
                           for k in ("task_gain", "forgetting", "forgetting_clipped", "forgetting_reduction",
                                     "gain_ratio", "replay_kl", "wall_seconds")}
        # The evaluation's own noise: the mean half-width of each run's paired bootstrap interval.
        seeds[arm_name]["eval_half_width"] = {
            k: statistics.fmean((r[f"{k}_ci"][1] - r[f"{k}_ci"][0]) / 2 for r in runs)
            for k in ("task_gain", "forgetting_clipped")}
        seeds[arm_name]["label"] = runs[0]["label"]
    for arm_name in seeds:
        seeds[arm_name]["reduction_of_seed_means"] = (
            1 - seeds[arm_name]["forgetting"]["mean"] / seeds["sft"]["forgetting"]["mean"])
    targets = targets_check(bench.rows)
    paired = paired_comparisons(bench.rows, seeded_arms)
    summary = {
        "command": " ".join(["python bench/forgetting.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "scale": list(bench.scale), "neutral": list(NEUTRAL), "config": str(CONFIG.relative_to(ROOT)),
        # What every figure below read: a benchmark that ranks methods chooses, so selection items only.
        "items": "selection", "train_seeds": sorted({seed_of(r["arm"]) for r in rows}),
        "base": {"results": {task: {m: v for m, v in metrics.items() if isinstance(v, float)}
                             for task, metrics in base["results"].items()}, "task_info": base["task_info"]},
        "shared_input_seconds": bench.timings,
        "min_gain_ratio_for_best": MIN_GAIN_RATIO,
        "best": best.name if best else None,
        "pareto_front": [r["arm"] for r in front],
        "seeds": seeds,
        "paired_over_seeds": paired,
        "targets": targets,
        "bench_wall_seconds": round(seconds, 1),  # this invocation (finished arms are reused)
        "compute_seconds": round(sum(bench.timings.values()) + sum(r["wall_seconds"] for r in rows), 1),
        "arms": [{k: v for k, v in r.items() if k not in ("request", "baseline")} for r in rows],
    }
    (results_dir / "forgetting.json").write_text(json.dumps(summary, indent=2) + "\n")
    png = plot_pareto(rows, front, results_dir / "forgetting_pareto.png",
                      f"Gemma 3 270M, {bench.args.task} task, {bench.args.steps} steps: task gain vs forgetting")
    (results_dir / "forgetting.md").write_text(markdown(summary, rows, bench))
    log_summary(bench.config([]), results_dir, png)
    log(f"done in {seconds / 60:.1f} min: {results_dir / 'forgetting.md'}")


# (method, reference): each pair's difference over seeds, paired by seed.
PAIRS = [("finch", "sft"), ("finch", "sft_finch_mean_lr"), ("sft_finch_mean_lr", "sft"),
         ("sft_frozen_emb", "sft"), ("finch_frozen_emb", "finch"), ("finch_frozen_emb", "sft"),
         ("finch_replay", "finch"), ("default_recipe", "finch_replay"), ("default_recipe", "sft"),
         ("llrd_freeze", "sft"), ("llrd_freeze_frozen_emb", "llrd_freeze"), ("lora", "sft"), ("osf", "sft"),
         ("default_recipe_fit", "sft"), ("default_recipe_llrd", "default_recipe"), ("default_recipe_llrd", "sft"),
         ("default_recipe_llrd_fit", "sft"), ("default_recipe_llrd", "llrd_freeze_frozen_emb"),
         ("anchored_paper", "sft"), ("anchored_paper", "sft_anchored_budget"), ("sft_anchored_budget", "sft")]


def paired_comparisons(rows: dict, seeded_arms: list[str]) -> list[dict]:
    """For each pair run at the same seeds: the difference in forgetting (clipped, the gate's figure)
    and in exact-match gain, mean and 95% t-interval over seeds, and whether it exceeds the noise."""
    out = []
    for method, reference in PAIRS:
        if method not in seeded_arms or reference not in seeded_arms:
            continue
        names = [(seeded_name(method, k), seeded_name(reference, k))
                 for k in range(10)]
        names = [(a, b) for a, b in names if a in rows and b in rows]
        entry = {"method": method, "reference": reference, "seeds": len(names)}
        for key in ("forgetting_clipped", "task_gain"):
            entry[key] = comparison.paired_seed_difference([rows[a][key] for a, _ in names],
                                                           [rows[b][key] for _, b in names])
        reference_gain = statistics.fmean(rows[b]["task_gain"] for _, b in names)
        entry["gain_ratio_of_means"] = (statistics.fmean(rows[a]["task_gain"] for a, _ in names) / reference_gain
                                        if reference_gain else math.nan)  # a reference that learned nothing
        out.append(entry)
    return out


def targets_check(rows: dict) -> list[dict]:
    """The papers' claims, as measured here: met or missed, by how much."""
    checks = []
    wanted = [(name, reduction, gain) for arm, reduction, gain in (("finch", 0.90, 0.95), ("finch_replay", 0.95, None))
              for name in (arm, f"{arm}_seed1")]
    for arm, reduction, gain in wanted:
        row = rows.get(arm)
        if row is None:
            continue
        met = row["forgetting_reduction"] >= reduction and (gain is None or row["gain_ratio"] >= gain)
        checks.append({"arm": arm, "target_reduction": reduction, "target_gain_ratio": gain,
                       "forgetting_reduction": row["forgetting_reduction"], "gain_ratio": row["gain_ratio"],
                       "met": bool(met)})
    return checks


def markdown(summary: dict, rows: list[dict], bench: Bench) -> str:
    tasks = sorted({t for row in rows for t in row["general"]})
    order = {"arm": 0, "grid": 1, "combination": 2, "seed": 3}
    rows = sorted(rows, key=lambda r: order[r["group"]])
    base = summary["base"]
    lines = [
        "# Method comparison: forgetting vs task gain",
        "",
        f"Gemma 3 270M (fp32, CPU), built-in task `{bench.args.task}` at size {bench.args.people} "
        f"({3 * bench.args.people} training rows), {bench.args.steps} optimizer steps of 8 rows. Produced by `{summary['command']}`: "
        f"{summary['compute_seconds'] / 60:.0f} min of compute on {summary['machine']['cpus']} CPU cores "
        "(base model scored once, replay sets generated once, then every run's training + evaluation).",
        "",
        "Base model: " + ", ".join(f"{t} {info['metric']} {base['results'][t][info['metric'] + ',none']:.3f}"
                                   for t, info in base["task_info"].items() if t in base["results"]) + ".",
        "Forgetting = mean relative drop over the forgetting suite (accuracy down or bits per byte up = drop; "
        "paired bootstrap intervals per run in its forgetting.json); task gain = held-out exact match after "
        "minus before; forgetting reduction = 1 - forgetting(run) / forgetting(SFT); gain ratio = "
        "gain(run) / gain(SFT), with SFT at the run's seed. Replay KL = mean per-token log p_base - log p_run "
        "on held-out temperature-1 base samples (0 for the base).",
        "",
        comparison.markdown_table(rows, tasks),
        (f"Best run (largest forgetting reduction with a gain ratio of at least {MIN_GAIN_RATIO}): "
         f"`{summary['best']}`. " if summary["best"] else "") + f"Pareto front: {', '.join(summary['pareto_front'])}.",
        "",
        "Over seeds: mean and 95% t-interval over the seeds; the evaluation's own noise is the mean half-width "
        "of each run's paired bootstrap interval (±).",
        "",
        "| run | seeds | exact-match gain [95% over seeds] | (eval ±) | forgetting, clipped [95% over seeds] | "
        "(eval ±) | replay KL | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, spread in summary["seeds"].items():
        g, f = spread["task_gain"], spread["forgetting_clipped"]
        lines.append(
            f"| {spread['label'].split(' (seed')[0]} | {len(g['values'])} | {g['mean']:.3f} [{g['ci'][0]:.3f}, "
            f"{g['ci'][1]:.3f}] | ±{spread['eval_half_width']['task_gain']:.3f} | {f['mean']:+.1%} "
            f"[{f['ci'][0]:+.1%}, {f['ci'][1]:+.1%}] | ±{spread['eval_half_width']['forgetting_clipped']:.1%} | "
            f"{spread['replay_kl']['mean']:.3f} | {spread['wall_seconds']['mean']:.0f} |")
    lines += ["", "Per seed:", ""]
    for arm, spread in summary["seeds"].items():
        gain = spread["task_gain"]
        line = (f"- `{arm}`: task gain {gain['mean']:.3f} ± {gain['half_range']:.3f}, "
                f"forgetting {spread['forgetting']['mean']:+.1%} ± {spread['forgetting']['half_range']:.1%}")
        if arm != "sft":
            reductions = ", ".join(f"{v:.1%}" for v in spread["forgetting_reduction"]["values"])
            ratios = ", ".join(f"{v:.2f}" for v in spread["gain_ratio"]["values"])
            line += (f"; forgetting reduction per seed {reductions} (of the seed means: "
                     f"{spread['reduction_of_seed_means']:.1%}), gain ratio per seed {ratios}")
        lines.append(line)
    if summary["paired_over_seeds"]:
        lines += ["", "Paired over seeds (method minus reference at the same seed; mean [95% t-interval]):", ""]
        for entry in summary["paired_over_seeds"]:
            f, g = entry["forgetting_clipped"], entry["task_gain"]
            ratio = entry["gain_ratio_of_means"]
            ratio = f"{ratio:.2f}" if math.isfinite(ratio) else "n/a (the reference gained nothing)"
            lines.append(
                f"- `{entry['method']}` vs `{entry['reference']}` ({entry['seeds']} seeds): forgetting (clipped) "
                f"{f['mean']:+.1%} [{f['ci'][0]:+.1%}, {f['ci'][1]:+.1%}]"
                f" ({'exceeds' if f['exceeds_noise'] else 'within'} the noise); exact-match gain "
                f"{g['mean']:+.3f} [{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}]"
                f" ({'exceeds' if g['exceeds_noise'] else 'within'} the noise); gain ratio of the means {ratio}")
    lines += ["", "Targets from the papers:", ""]
    for check in summary["targets"]:
        gain = f" at gain ratio >= {check['target_gain_ratio']}" if check["target_gain_ratio"] else ""
        lines.append(f"- `{check['arm']}`: forgetting reduction >= {check['target_reduction']:.0%}{gain}: "
                     f"measured {check['forgetting_reduction']:.1%} at gain ratio {check['gain_ratio']:.2f}: "
                     f"{'met' if check['met'] else 'missed'}")
    lines += ["", "![task gain vs forgetting](forgetting_pareto.png)", ""]
    return "\n".join(lines)


def log_relative_scores(config, rows: list[dict]) -> None:
    """The final relative scores on every arm's MLflow run (an arm run before its SFT baseline
    could not log them itself)."""
    from mlflow.tracking import MlflowClient

    from nofrog_core import tracking

    tracking.setup(config.tracking)
    client = MlflowClient()
    for row in rows:
        for key in ("forgetting_reduction", "gain_ratio"):
            if row.get("mlflow_run_id") and math.isfinite(row[key]):
                client.log_metric(row["mlflow_run_id"], key, float(row[key]))


def log_summary(config, results_dir: Path, png: Path) -> None:
    import mlflow

    from nofrog_core import tracking

    tracking.setup(config.tracking)
    # One comparison run per experiment: a rerun (finished arms reused) replaces the earlier one.
    for old in mlflow.search_runs(filter_string="tags.group = 'summary'", output_format="list"):
        mlflow.delete_run(old.info.run_id)
    with mlflow.start_run(run_name="comparison", tags={"bench": "forgetting", "group": "summary"}):
        for name in ("forgetting.json", "forgetting.md"):
            mlflow.log_artifact(str(results_dir / name))
        mlflow.log_artifact(str(png))


if __name__ == "__main__":
    main()

"""Sequential retraining rounds: does each round keep what the earlier rounds taught?

Three rounds, each starting from the previous round's model, as a nightly deployment runs them:
people A (16 invented people), the date-format task, people B (16 other people: disjoint names,
drawn from one sample). After every round, on **test items** at seeds that chose nothing:

- the new task's held-out exact match;
- every earlier round's held-out exact match (backward transfer: after minus right after it was learned);
- general forgetting against the original base (the general suite, clipped aggregate as the gate reads it).

Three chains per seed:
- `sft`: plain SFT at constant LR 5e-5 (the method benchmark's SFT), every round adopted;
- `default`: configs/default.yaml's training recipe at this scale (bench/frontier.py), every round adopted;
- `default_protected`: the default recipe through the gate's round rule (`gate.decide_rounds`, the
  pipeline's own function): a round that forgets more than gate.max_round_drop of an earlier round's
  exact match against the champion's is rejected, and the next round starts from the champion it kept.
  The base-forgetting part of the gate is left out on purpose: this measures what the round rule does.

Scale: the method benchmark's (18 optimizer steps of 8 task rows, 48 training rows per round, 64 replay
samples). Results: bench/results/rounds/rounds.{json,md,png}.

    .venv/bin/python bench/rounds.py              # seeds 3 4 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forgetting as fb  # noqa: E402  (the method benchmark's scale and helpers)
import frontier  # noqa: E402  (the default recipe at this scale)

from nofrog_core.config import load_config  # noqa: E402
from nofrog_core.demo_data import make_date_task, make_people_task, write_jsonl  # noqa: E402
from nofrog_core.evaluate import comparison  # noqa: E402
from nofrog_core.evaluate.stage import run_evaluation, run_report  # noqa: E402
from nofrog_core.gate import GateDecision, decide_rounds  # noqa: E402
from nofrog_core.replay.stage import run_replay  # noqa: E402
from nofrog_core.rounds import earlier_rounds_section, round_task_name, write_round_record  # noqa: E402
from nofrog_core.splits import SCREENING_SEEDS  # noqa: E402
from nofrog_core.train.stage import run_training  # noqa: E402

UNITS = 16  # people (or dates) per round: the method benchmark's size
DATA_SEED = 101  # the rounds' data; the training seeds are --seeds
CHAINS = {"sft": fb.constant(fb.SFT_LR), "default": frontier.default_arm().overrides}
PROTECTED = "default_protected"
SCALE = ("train.max_steps=18", "train.batch_size=8", "train.checkpoint_every=0", "replay.mix.ratio=0",
         "compute.num_workers=0", "train.freeze_embeddings=false", "gate.fit=none", "replay.num_samples=64",
         "replay.max_new_tokens=64", "replay.heldout_fraction=0.25", "tracking.experiment=nofrog-rounds-bench",
         "train.freeze_bottom=0", "train.llrd=1.0", "replay.mix.kl_weight=0", "eval.judge_items=test")


def write_rounds(data_dir: Path) -> list[dict]:
    """The three rounds' train and held-out files: people A, dates, people B (disjoint people)."""
    people_train, people_heldout = make_people_task(2 * UNITS, DATA_SEED)
    dates_train, dates_heldout = make_date_task(UNITS, DATA_SEED)
    half = 3 * UNITS  # 3 rows per person
    rounds = [("people_a", people_train[:half], people_heldout[:half]), ("dates", dates_train, dates_heldout),
              ("people_b", people_train[half:], people_heldout[half:])]
    out = []
    for number, (name, train, heldout) in enumerate(rounds, start=1):
        directory = data_dir / f"round{number}-{name}"
        directory.mkdir(parents=True, exist_ok=True)
        write_jsonl(train, directory / "train.jsonl")
        write_jsonl(heldout, directory / "heldout.jsonl")
        out.append({"number": number, "name": name, "train": directory / "train.jsonl",
                    "heldout": directory / "heldout.jsonl"})
    return out


class Rounds:
    def __init__(self, args):
        self.args, self.work = args, args.work
        self.rounds = write_rounds(self.work / "data")
        self.replay_dir = self.work / "replay-T1.0"

    def config(self, round_: dict, overrides=()):
        return load_config(fb.CONFIG, [*SCALE, f"data.path={round_['train']}", f"data.eval_file={round_['heldout']}",
                                       f"replay.mix.dir={self.replay_dir}", *self.args.set, *overrides])

    def prepare(self) -> None:
        if not (self.replay_dir / "metadata.json").exists():
            fb.log("replay set")
        run_replay(self.config(self.rounds[0], ["replay.mix.dir=null"]), self.replay_dir)

    def base_eval(self, round_: dict) -> dict:
        """The base model on the general suite and this round's held-out rows (once per round)."""
        path = self.work / f"base-round{round_['number']}.json"
        if not path.exists():
            fb.log(f"scoring the base on round {round_['number']}")
            run_evaluation(self.config(round_), path)
        return json.loads(path.read_text())

    def step(self, chain_dir: Path, round_: dict, champion: str | None, earlier: list[str], overrides, seed: int) -> dict:
        """One round: train from `champion` (None = the base), score the new task, the general suite and
        every earlier round; the report against the base, and against the champion on the earlier rounds."""
        out = chain_dir / f"round{round_['number']}"
        done = out / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        shutil.rmtree(out, ignore_errors=True)
        model_overrides = [f"model.name_or_path={champion}"] if champion else []
        rounds_overrides = [f"eval.earlier_rounds={json.dumps(earlier)}"]
        config = self.config(round_, [*overrides, f"train.seed={seed}", *model_overrides, *rounds_overrides])
        started = time.time()
        run_training(config, out / "train")
        model = str(out / "train" / "model")
        # The earlier rounds are scored by the candidate (and the champion below); the base stays the base.
        eval_config = self.config(round_, [*overrides, *rounds_overrides])
        after = run_evaluation(eval_config, out / "eval.json", model=model, part="test")
        report = run_report(eval_config, self.base_eval(round_), after, out / "forgetting.json")
        section = None
        if earlier:
            # The champion's own scores on the earlier rounds, on the same items: the round tasks (and the new
            # task's rows, which are cheap), not the general suite.
            champion_config = self.config(round_, rounds_overrides)
            champion_eval = run_evaluation(champion_config, out / "eval_champion_rounds.json", model=champion,
                                           tasks=["heldout_answers"], part="test")
            vs_champion = run_report(champion_config, champion_eval, after, out / "forgetting_vs_champion.json")
            section = earlier_rounds_section(True, [round_task_name(d) for d in earlier], "previous round",
                                             vs_champion, config.gate.max_round_drop)
        record = write_round_record(config, out, after)
        record_dir = chain_dir / "records" / f"v{round_['number']}"
        shutil.rmtree(record_dir, ignore_errors=True)
        shutil.copytree(record, record_dir)
        scores = {round_task_name(d): after["results"][round_task_name(d)]["exact_match,none"] for d in earlier}
        result = {"round": round_["number"], "task": round_["name"], "model": model, "record": str(record_dir),
                  "exact_match": report["gain_tasks"][0]["after"], "exact_match_before": report["gain_tasks"][0]["before"],
                  "earlier_rounds_exact_match": scores, "forgetting_clipped": report["forgetting_clipped"],
                  "forgetting_clipped_ci": report["forgetting_clipped_ci"],
                  "world_knowledge_drop": next((r["drop"] for r in report["forgetting_tasks"]
                                                if r["task"] == "world_knowledge"), math.nan),
                  "earlier_rounds": section, "seconds": round(time.time() - started, 1)}
        done.write_text(json.dumps(result, indent=2) + "\n")
        fb.log(f"{chain_dir.name} round {round_['number']} ({round_['name']}): exact match {result['exact_match']:.3f}, "
               f"earlier {scores}, forgetting {result['forgetting_clipped']:+.1%}, {result['seconds']:.0f} s")
        return result

    def chain(self, name: str, seed: int) -> list[dict]:
        """Every round adopted (`sft`, `default`) or through the round rule (`default_protected`), which
        shares the default chain's runs until its first rejection."""
        overrides = CHAINS.get(name, CHAINS["default"])
        chain_dir = self.work / f"{name}_seed{seed}"
        shared_dir = self.work / f"default_seed{seed}"
        champion, earlier, kept, history = None, [], {}, []
        diverged = name != PROTECTED
        for round_ in self.rounds:
            result = self.step(chain_dir if diverged else shared_dir, round_, champion, earlier, overrides, seed)
            adopted = True
            if name == PROTECTED:
                decision = decide_rounds(GateDecision(True, "the round rule alone"), result["earlier_rounds"])
                adopted = decision.passed
                result = {**result, "adopted": adopted, "gate_reason": decision.reason}
            if adopted:
                champion, earlier = result["model"], [*earlier, result["record"]]
                kept[round_["number"]] = result["exact_match"]
            else:
                diverged = True  # later rounds start from the champion it kept: runs of its own
            history.append({**result, "exact_match_when_learned": dict(kept)})
        return history


def backward_transfer(history: list[dict]) -> dict:
    """After the last round: each earlier round's exact match now minus right after it was learned."""
    last, learned = history[-1], history[-1]["exact_match_when_learned"]
    return {task: now - learned[int(task.removeprefix("round_v"))]
            for task, now in last["earlier_rounds_exact_match"].items() if int(task.removeprefix("round_v")) in learned}


def summarise(chains: dict[str, dict[int, list[dict]]], seeds: list[int]) -> dict:
    out = {}
    for name, by_seed in chains.items():
        rows = {}
        for number in range(1, 4):
            per_seed = [by_seed[s][number - 1] for s in seeds]
            rows[number] = {
                "task": per_seed[0]["task"],
                "exact_match": comparison.seed_spread([r["exact_match"] for r in per_seed]),
                "forgetting_clipped": comparison.seed_spread([r["forgetting_clipped"] for r in per_seed]),
                "world_knowledge_drop": comparison.seed_spread([r["world_knowledge_drop"] for r in per_seed]),
                "adopted": [r.get("adopted", True) for r in per_seed],
                "earlier": {task: comparison.seed_spread([r["earlier_rounds_exact_match"].get(task, math.nan)
                                                          for r in per_seed])
                            for task in per_seed[0]["earlier_rounds_exact_match"]},
            }
        kept_fraction = {}
        for s in seeds:
            last = by_seed[s][-1]
            for task, now in last["earlier_rounds_exact_match"].items():
                learned = last["exact_match_when_learned"].get(int(task.removeprefix("round_v")))
                kept_fraction.setdefault(task, []).append(now / learned if learned else math.nan)
        out[name] = {"rounds": rows,
                     "backward_transfer": {t: comparison.seed_spread(
                         [backward_transfer(by_seed[s]).get(t, math.nan) for s in seeds]) for t in kept_fraction},
                     "kept_fraction_after_last_round": {t: comparison.seed_spread(v) for t, v in kept_fraction.items()}}
    return out


def plot(chains: dict, seeds: list[int], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(chains), figsize=(5 * len(chains), 4), sharey=True)
    for ax, (name, by_seed) in zip(axes, chains.items()):
        for task_round, label in ((1, "round 1: people A"), (2, "round 2: dates"), (3, "round 3: people B")):
            xs, ys = [], []
            for number in range(task_round, 4):
                values = []
                for s in seeds:
                    r = by_seed[s][number - 1]
                    values.append(r["exact_match_when_learned"].get(task_round, math.nan) if number == task_round
                                  else r["earlier_rounds_exact_match"].get(f"round_v{task_round}", math.nan))
                xs.append(number)
                ys.append(sum(values) / len(values))
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_title(name)
        ax.set_xlabel("after round")
        ax.set_xticks([1, 2, 3])
    axes[0].set_ylabel(f"held-out exact match (test items, mean of seeds {seeds})")
    axes[-1].legend(fontsize=8)
    fig.suptitle("What each round keeps of the earlier rounds")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def markdown(summary: dict) -> str:
    lines = ["# Sequential retraining rounds: what each round keeps", "",
             f"Produced by `{summary['command']}`. Items: **test**; seeds {summary['seeds']}"
             + (f" (of {summary['seeds_requested']} asked for: the rest did not finish)"
                if summary["seeds"] != summary["seeds_requested"] else "") + f" (screens use "
             f"{list(SCREENING_SEEDS)}). Rounds: people A, dates, people B ({UNITS} units each, disjoint people), "
             "each starting from the previous round's model; mean [95% t-interval over seeds].", "",
             "| chain | after round | new task exact match | earlier rounds' exact match | forgetting vs base, clipped | world_knowledge drop | adopted (per seed) |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda s, pct=False: (f"{s['mean']:+.1%} [{s['ci'][0]:+.1%}, {s['ci'][1]:+.1%}]" if pct  # noqa: E731
                                else f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]")
    for name, chain in summary["chains"].items():
        for number, row in chain["rounds"].items():
            earlier = "; ".join(f"{t} {fmt(s)}" for t, s in row["earlier"].items()) or "-"
            lines.append(f"| {name} | {number} ({row['task']}) | {fmt(row['exact_match'])} | {earlier} | "
                         f"{fmt(row['forgetting_clipped'], True)} | {fmt(row['world_knowledge_drop'], True)} | "
                         f"{row['adopted']} |")
    lines += ["", "After the last round, each earlier round's exact match as a fraction of what it was right after "
              "it was learned (the target: at least 0.9):", ""]
    for name, chain in summary["chains"].items():
        kept = "; ".join(f"{t} {fmt(s)}" for t, s in chain["kept_fraction_after_last_round"].items())
        lines.append(f"- `{name}`: {kept}")
    lines += ["", "![rounds](rounds.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(frontier.FRESH_SEEDS))
    parser.add_argument("--chains", nargs="+", default=["sft", "default", PROTECTED])
    parser.add_argument("--work", type=Path, default=fb.WORK / "rounds")
    parser.add_argument("--results", type=Path, default=fb.ROOT / "bench" / "results" / "rounds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="another override for every run (a smaller model or budget, for a quick check)")
    args = parser.parse_args(argv)
    if set(args.seeds) & set(SCREENING_SEEDS):
        raise SystemExit(f"--seeds {args.seeds}: seeds {list(SCREENING_SEEDS)} screen recipes; claims need fresh seeds")
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Rounds(args)
    bench.prepare()
    chains = {name: {} for name in args.chains}
    for number, seed in enumerate(args.seeds, start=1):
        for name in args.chains:
            chains[name][seed] = bench.chain(name, seed)
        # After every seed: an interrupted benchmark still leaves the seeds it finished, named as such.
        write_results(args, argv, chains, args.seeds[:number])


def write_results(args, argv, chains: dict, seeds: list[int]) -> None:
    chains = {name: {s: by_seed[s] for s in seeds} for name, by_seed in chains.items()}
    summary = {"command": " ".join(["python bench/rounds.py", *(sys.argv[1:] if argv is None else argv)]),
               "items": "test", "seeds": seeds, "seeds_requested": args.seeds,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "scale": [*SCALE, *args.set],
               "chain_overrides": {k: list(v) for k, v in CHAINS.items()},
               "max_round_drop": load_config(fb.CONFIG).gate.max_round_drop,
               "chains": summarise(chains, seeds),
               "runs": {name: {str(s): h for s, h in by_seed.items()} for name, by_seed in chains.items()}}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "rounds.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(chains, seeds, args.results / "rounds.png")
    (args.results / "rounds.md").write_text(markdown(summary))
    fb.log(f"done: {args.results / 'rounds.md'}")


if __name__ == "__main__":
    main()

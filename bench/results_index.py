"""bench/results/INDEX.md: every results file, what it measures, the command that wrote it, the commit
and date it landed, and whether it is current or archived.

What each file measures is written here by hand (ENTRIES); the command is read from the file itself
where it records one, the commit and date from git. tests/test_docs.py fails when a file under
bench/results is not in the index, or the index names a file that is gone.

    .venv/bin/python bench/results_index.py          # rewrites bench/results/INDEX.md
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# path (relative to bench/results) -> what it measures. Archived files say what superseded them.
ENTRIES = {
    "default_confirm.json": "The main job (`nofrog run`, configs/default.yaml) at fresh seeds 4-6 on test items, "
                            "against plain SFT at the same steps: the confirmation the README cites",
    "default_confirm.md": "The same, as tables",
    "frontier/people.json": "Plain SFT traced over 5 learning rates, and the default and ASFT against that curve "
                            "(gain at matched forgetting, forgetting at matched gain, paired by seed); people task, "
                            "fresh seeds 3-5, test items",
    "frontier/people.md": "The same, as tables",
    "frontier/people.png": "The same: SFT's curve with each seed's, each method with its interval",
    "rounds/rounds.json": "Three sequential retraining rounds (people A, dates, people B), each from the last model: "
                          "the new task, every earlier round and general forgetting, for plain SFT, the default and "
                          "the default through the round rule; fresh seeds 3-5, test items",
    "rounds/rounds.md": "The same, as tables",
    "rounds/rounds.png": "The same: each round's exact match over the later rounds",
    "general_suite.json": "The built-in general suite on the base: scores, wall time, interval width (selection items)",
    "general_suite.md": "The same, as tables",
    "harm_scale.json": "eval.harm_scale: accuracy lost per relative bits-per-byte rise along a base-to-SFT path "
                       "(selection items, seed 0)",
    "harm_scale.md": "The same, as tables",
    "kl_cost.json": "What the replay KL costs in a default training step, with and without the shared trunk",
    "lm_eval_parity.json": "nofrog's scoring against lm-eval's on the base model: the same numbers",
    "lm_eval_parity_candidate.json": "The same on a fine-tuned model",
    "methods/forgetting.json": "The method comparison (SFT, FINCH, replay, LoRA, OSF, LLRD/freezing, Anchored "
                               "Learning, ...) over 3 seeds on the people task; measured before the item split, "
                               "so a screen, not a claim",
    "methods/forgetting.md": "The same, as tables",
    "methods/forgetting_pareto.png": "The same: gain against forgetting per arm",
    "methods_date_format/forgetting.json": "A second task (date_format): FINCH, the default recipe, LoRA over 3 seeds",
    "methods_date_format/forgetting.md": "The same, as tables",
    "methods_date_format/forgetting_pareto.png": "The same: gain against forgetting per arm",
    "replay_dtype.json": "vLLM replay in bf16 against fp32: speed and the KL between their samples' models",
    "replay_throughput.json": "Replay sampling speed, vLLM against transformers",
    "train_throughput.json": "Training tokens/s per speed lever on the default's batches (replay rows included)",
    "train_throughput_task_rows_only.json": "Training tokens/s per speed lever on task rows only",
    "train_throughput_bf16_run.log": "The bf16 arm's log: why bf16 does not pay on this AVX2-only CPU",
    "train_throughput_shared_trunk.json": "The default step with and without the shared frozen trunk, against fp32_full",
    "workers_parity.json": "One Ray Train worker against two at the same global batch on the real model: losses "
                           "and LRs step by step",
    "archive/default_run.json": "The main job at seeds 0-3 before the item split (judged on the items it was "
                                "chosen on). Superseded by default_confirm",
    "archive/default_run.md": "The same, as tables",
    "archive/default_run_finch_replay.json": "An earlier default (FINCH + replay on every layer). Superseded",
    "archive/default_run_finch_replay.md": "The same, as tables",
    "archive/default_run_llrd_replay128.json": "An earlier default (LLRD + freezing, 128 replay samples). Superseded",
    "archive/default_run_llrd_replay128.md": "The same, as tables",
    "archive/default_run_replay_nll.json": "The default before the replay KL (replay NLL only). Superseded",
    "archive/default_run_replay_nll.md": "The same, as tables",
    "archive/default_run_task6_replay2.json": "An earlier default (6 task + 2 replay rows a step). Superseded",
    "archive/default_run_task6_replay2.md": "The same, as tables",
    "archive/default_run_task8_replay4.json": "A candidate default tried and not shipped (8 task + 4 replay rows)",
    "archive/default_run_task8_replay4.md": "The same, as tables",
    "archive/default_run_uncached_run_summary.json": "One default run with nothing cached: its stage times",
    "archive/default_recipe_screen.json": "The screen that chose the default recipe (seeds 0-2, before the split)",
    "archive/default_recipe_screen.md": "The same, as tables",
    "archive/forgetting.json": "The first method comparison (one seed). Superseded by methods/",
    "archive/forgetting.md": "The same, as tables",
    "archive/forgetting_pareto.png": "The same: gain against forgetting",
    "archive/measurement/forgetting.json": "FINCH at two seeds, when the measurement was reworked. Superseded",
    "archive/measurement/forgetting.md": "The same, as tables",
    "archive/measurement/forgetting_pareto.png": "The same: gain against forgetting",
    "archive/seeds/forgetting.json": "SFT, FINCH and frozen-embedding FINCH over 3 seeds. Superseded by methods/",
    "archive/seeds/forgetting.md": "The same, as tables",
    "archive/seeds/forgetting_pareto.png": "The same: gain against forgetting",
    "archive/methods_partial/default_recipe_llrd_seed0.json": "One arm's partial results, kept for a README figure",
}


def results_files() -> list[str]:
    return sorted(str(p.relative_to(RESULTS)) for p in RESULTS.rglob("*") if p.is_file() and p.name != "INDEX.md")


def command_of(path: Path) -> str:
    text = path.read_text(errors="replace") if path.suffix in (".json", ".md", ".log") else ""
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        command = data.get("command") or (data.get("setup") or {}).get("command") if isinstance(data, dict) else None
        if command:
            return command
    found = re.search(r"(?:Produced by|Command:) `([^`]+)`", text)
    return found.group(1) if found else ""


def landed(path: Path) -> tuple[str, str]:
    out = subprocess.run(["git", "log", "--follow", "-1", "--format=%h %ad", "--date=short", "--", str(path)],
                         cwd=ROOT, capture_output=True, text=True).stdout.split()
    return (out[0], out[1]) if len(out) == 2 else ("uncommitted", "")


def index() -> str:
    lines = ["# Results", "",
             "Every file under `bench/results/`: what it measures, the command that wrote it, the commit and date "
             "it last changed. Current files are what the README and docs cite; `archive/` keeps what they "
             "superseded, for the record. Written by `python bench/results_index.py`; a test fails when a "
             "file is missing here.", ""]
    for title, archived in (("Current", False), ("Archive", True)):
        lines += [f"## {title}", "", "| file | what it measures | command | commit | date |", "| --- | --- | --- | --- | --- |"]
        for name in results_files():
            if name.startswith("archive/") != archived:
                continue
            commit, date = landed(RESULTS / name)
            command = command_of(RESULTS / name).replace("|", "\\|")
            lines.append(f"| [{name}]({name}) | {ENTRIES.get(name, '(not described)')} | "
                         f"{'`' + command + '`' if command else ''} | {commit} | {date} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    (RESULTS / "INDEX.md").write_text(index())
    print(f"wrote {RESULTS / 'INDEX.md'}")

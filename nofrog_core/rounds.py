"""What a retraining round taught, kept with its registered version so that later rounds can be
judged on it: the held-out rows its gain was measured on and its scores on them.

Every pipeline run writes `round/` (beside its other results, logged to MLflow as the run's
`round/` artifacts): `heldout.jsonl`, the gain task's rows as they were, and `round.json`, their
data hash, the gain task's metric and the run's per-item scores with their item ids. The registered
version's `round_record` tag says whether it has one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .data import configured_task_files
from .outputs import write_json

ROUND_DIR = "round"
GAIN_TASK = "heldout_answers"


def write_round_record(config, run_dir: Path, after: dict) -> Path | None:
    """`run_dir/round/` from the config's held-out file and the candidate's evaluation `after`; None when
    there is nothing to keep (no held-out file: the rows came from a validation split; no gain task)."""
    files = configured_task_files(config)
    if files.heldout is None or GAIN_TASK not in after.get("samples", {}):
        return None
    out = Path(run_dir) / ROUND_DIR
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files.heldout, out / "heldout.jsonl")
    write_json(out / "round.json", {
        "task": GAIN_TASK, "data_hash": files.data_hash, "heldout_file": str(files.heldout),
        "metric": after["task_info"][GAIN_TASK]["metric"],
        "score": after["results"][GAIN_TASK], "item_ids": after["item_ids"][GAIN_TASK],
        "item_parts": after["item_parts"][GAIN_TASK], "samples": after["samples"][GAIN_TASK],
        "model_hash": after.get("config", {}).get("model_hash"),
    })
    return out


def round_task_name(round_dir: Path) -> str:
    """The evaluation task an earlier round's rows are scored as: `round_<directory name>` (`round_v3`)."""
    return f"round_{Path(round_dir).name}"


def round_examples(round_dir: Path, tokenizer, bos_token_id, max_length: int):
    """An earlier round's held-out rows as examples (its file's own shape, detected); the config check
    (`check_evaluable`) has made sure the file is there."""
    from .data import load_examples

    examples, _ = load_examples(Path(round_dir) / "heldout.jsonl", tokenizer, bos_token_id, max_length)
    return examples


def earlier_rounds_section(protect: bool, expected: list[str], champion_version, champion_report: dict | None,
                           max_round_drop: float) -> dict:
    """The report's `earlier_rounds`: each protected round's row from the report against the champion
    (`round_tasks`), the rounds it could not judge, and what the gate allows."""
    if not protect:
        return {"protected": False, "reason": "eval.protect_rounds is false: earlier rounds were not scored"}
    if champion_report is None:
        return {"protected": False, "reason": "no champion: this round is the first of its lineage"}
    excluded = [{**e, "nothing_to_keep": e["reason"].startswith("base score 0.0 ")}
                for e in champion_report.get("excluded", []) if e["role"] == "round"]
    return {"protected": True, "against": f"the champion (version {champion_version})", "expected": expected,
            "rounds": champion_report.get("round_tasks", []), "excluded": excluded, "max_round_drop": max_round_drop}

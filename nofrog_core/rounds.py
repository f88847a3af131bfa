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

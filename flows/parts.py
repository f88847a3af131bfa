"""Flows for parts of the pipeline, for a person who needs just one of them from the UI or a schedule.

- `replay_only`: context-free samples of the base model (cached like in the full pipeline);
- `evaluate_only`: the configured suite on the base model or on any model directory.
"""

from __future__ import annotations

from pathlib import Path

from nofrog_tasks.json_results import json_flow

from nofrog_core.config import load_config
from nofrog_tasks import stages


@json_flow(name="nofrog-replay", log_prints=True)
def replay_only(config_path: str | None = None, overrides: list[str] | None = None) -> str:
    config = load_config(config_path, overrides)
    base = stages.prepare_base_model(config)
    replay_dir = stages.cached_replay(config, base)
    print(f"replay samples: {replay_dir}")
    return replay_dir


@json_flow(name="nofrog-evaluate", log_prints=True)
def evaluate_only(config_path: str | None = None, overrides: list[str] | None = None, model: str | None = None,
                  out_file: str = "eval.json") -> dict:
    config = load_config(config_path, overrides)
    results = stages.evaluate(config, Path(out_file), model=model)
    print(f"results: {out_file}")
    return results

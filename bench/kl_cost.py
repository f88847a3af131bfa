"""What the replay KL costs in one default training step, and how much of it the shared trunk saves.

The default step's objective (configs/default.yaml: the top 4 of 18 layers and no embedding train)
on fixed batches of the default's shape: 8 task rows of 40 tokens (10 labelled) and 2 replay rows of
128 tokens (all labelled), forward and backward, in this process. Arms:

  task           the task NLL alone
  replay_nll     + the replay rows' NLL
  kl_shared      + the replay KL, the base running only its top layers from the shared trunk
  kl_full_base   + the replay KL, the base running its whole forward (train.share_trunk=false)

Median seconds over the timed repeats (after one warm-up); every arm alternates with the others so
that drift in the machine's speed falls on all of them.

    .venv/bin/python bench/kl_cost.py --repeats 6 --out bench/results/kl_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

CONFIG = Path(__file__).parent.parent / "configs" / "default.yaml"
ARMS = {"task": (["task_nll"], True), "replay_nll": (["task_nll", "replay_nll"], True),
        "kl_shared": (["task_nll", "replay_nll", "replay_kl"], True),
        "kl_full_base": (["task_nll", "replay_nll", "replay_kl"], False)}


def batch(rows: int, length: int, labelled: int, generator) -> dict:
    ids = torch.randint(10, 20000, (rows, length), generator=generator)
    labels = ids.clone()
    labels[:, :length - labelled] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kl_cost.json")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from nofrog_core import models
    from nofrog_core.config import load_config
    from nofrog_core.train.loop import frozen_copy, prepare_model
    from nofrog_core.train.objective import TrainingObjective
    from nofrog_core.train.terms import WeightedTerm, build_term

    config = load_config(CONFIG)
    tc = config.train
    torch.set_num_threads(config.compute.cpus_per_worker)
    model = AutoModelForCausalLM.from_pretrained(models.resolve_model(config.model).path, dtype=torch.float32)
    model, _ = prepare_model(model, tc.freeze_bottom, tc.lora, tc.freeze_embeddings, tc.osf)
    base = frozen_copy(model)
    generator = torch.Generator().manual_seed(0)
    task, replay = batch(8, 40, 10, generator), batch(2, 128, 127, generator)
    objectives = {}
    for name, (terms, share) in ARMS.items():
        objectives[name] = TrainingObjective(model, tc.loss_chunk_size, [WeightedTerm(build_term(t), 1.0) for t in terms],
                                             keep_logits_up_to=tc.keep_logits_up_to, share_trunk=share)
        objectives[name].frozen["base"] = base
    seconds = {name: [] for name in ARMS}
    for repeat in range(args.repeats + 1):
        for name, objective in objectives.items():
            started = time.perf_counter()
            sums = objective(task, replay if name != "task" else None)
            loss = objective.weighted(sums, "task") + (objective.weighted(sums, "replay") if name != "task" else 0)
            loss.backward()
            model.zero_grad()
            if repeat:  # the first round warms up
                seconds[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    results = {
        "command": "python bench/kl_cost.py --repeats " + str(args.repeats),
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "batches": "8 task rows x 40 tokens (10 labelled) + 2 replay rows x 128 tokens (127 labelled); "
                   "configs/default.yaml's model, freezing and loss chunks; random token ids (seed 0)",
        "seconds": {name: {"median": round(medians[name], 3), "all": [round(v, 3) for v in seconds[name]]}
                    for name in ARMS},
        "parts": {"replay_rows": round(medians["replay_nll"] - medians["task"], 3),
                  "kl_with_shared_trunk": round(medians["kl_shared"] - medians["replay_nll"], 3),
                  "kl_with_full_base": round(medians["kl_full_base"] - medians["replay_nll"], 3)},
        "comparisons": {"shared_trunk_step_over_full_base_step": medians["kl_full_base"] / medians["kl_shared"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("parts", "comparisons")}, indent=2))


if __name__ == "__main__":
    main()

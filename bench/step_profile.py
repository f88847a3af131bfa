"""Where one training step of the default run spends its time.

Runs the Trainer's own operations on the default config's model and batches, timing each phase
of a step: data (collate), forward (decoder body), loss (chunked output projection + CE),
backward, optimizer (clip + AdamW), sync (reading the loss to the host). One setting per call:

    .venv/bin/python bench/step_profile.py [--steps 6] [--precision bf16] [--freeze-embeddings] [--fused] [--keep-logits]

Task rows only (no replay rows), the default's batch of 8.

Prints one JSON line: mean seconds per phase over the timed steps (the first step is warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

CONFIG = Path(__file__).parent.parent / "configs" / "default.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--freeze-embeddings", action="store_true")
    parser.add_argument("--fused", action="store_true", help="fused AdamW")
    parser.add_argument("--keep-logits", action="store_true", help="small loss chunks keep their logits")
    args = parser.parse_args()

    from nofrog_core.config import load_config
    from nofrog_core.data import collate
    from nofrog_core.losses import chunked_losses, labelled_hidden
    from nofrog_core.train import controls
    from nofrog_core.train.inputs import load_worker_inputs
    from nofrog_core.train.loop import endless_example_batches

    config = load_config(CONFIG, ["train.checkpoint_every=0"])
    inputs, _ = load_worker_inputs(config)
    model = inputs.model.train()
    if args.freeze_embeddings:
        controls.freeze_embeddings(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=args.fused or None)
    stream = endless_example_batches(inputs.examples, config.train.batch_size, config.train.seed)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
    phases: dict[str, list[float]] = {k: [] for k in ("data", "forward", "loss", "backward", "optimizer", "sync")}
    tokens = []
    for step in range(args.steps + 1):
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            if step:  # step 0 is warm-up
                phases[name].append(now - clock)
            clock = now

        batch = collate(next(stream)[1], inputs.pad_token_id)
        tokens.append(int(batch["attention_mask"].sum()))
        lap("data")
        with autocast:
            hidden, targets, _ = labelled_hidden(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
            lap("forward")
            nll, _ = chunked_losses(model, hidden, targets, config.train.loss_chunk_size,
                                    keep_logits_up_to=512 if args.keep_logits else 0)
            loss = nll.sum() / targets.numel()
        lap("loss")
        loss.backward()
        lap("backward")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lap("optimizer")
        loss.item()
        lap("sync")
    means = {name: statistics.mean(values) for name, values in phases.items()}
    step_seconds = sum(means.values())
    print(json.dumps({"setting": vars(args), "seconds": {k: round(v, 3) for k, v in means.items()},
                      "step_seconds": round(step_seconds, 3),
                      "tokens_per_second": round(statistics.mean(tokens[1:]) / step_seconds, 1),
                      "padded_tokens_per_step": batch["input_ids"].numel(), "real_tokens_per_step": tokens[-1]}))


if __name__ == "__main__":
    main()

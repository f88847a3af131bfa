"""Training throughput of full fine-tuning on the default base model.

Arms, each in its own process (so peak memory is its own), on the same batches
(demo task, configs/default.yaml's batch size and max length, seed 0):

  nofrog_constant   nofrog's Trainer, constant LR
  nofrog_finch      nofrog's Trainer, FINCH (its one-time ema_0 pass timed apart)
  plain_same_loss   a plain PyTorch loop: same batches, same chunked loss, AdamW, clipping
  plain_hf_loss     a plain PyTorch loop with transformers' own loss (full logits)

Reported per arm: median tokens/s over the timed steps (after warm-up steps),
peak resident memory, and model FLOP/s as a fraction of this machine's
measured fp32 matmul peak. Targets: FINCH within 1% of constant, nofrog within
5% of the plain loop on the same loss. Writes bench/results/train_throughput.json.

    .venv/bin/python bench/train_throughput.py [--steps 8] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
CONFIG = Path(__file__).parent.parent / "configs" / "default.yaml"
ARMS = ["nofrog_constant", "nofrog_finch", "plain_same_loss", "plain_hf_loss"]


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def schedule_update_seconds(repeats: int = 100_000) -> dict:
    """What FINCH adds to a step, measured directly: one `next_lr` call vs the constant schedule's.
    (End-to-end tokens/s of two runs differ by more than this from run-to-run noise alone.)"""
    from nofrog_core.schedules import ConstantSchedule, FinchSchedule

    out = {}
    for name, schedule in (("constant", ConstantSchedule(2e-5)), ("finch", FinchSchedule(2e-5, 5e-5, 2.0))):
        started = time.perf_counter()
        for _ in range(repeats):
            schedule.next_lr(1.5)
        out[name] = (time.perf_counter() - started) / repeats
    return out


def load(overrides: list[str]):
    from nofrog_core import models
    from nofrog_core.config import load_config
    from nofrog_core.train.inputs import load_worker_inputs

    config = load_config(CONFIG, ["train.checkpoint_every=0", *overrides])
    inputs, _ = load_worker_inputs(config)
    return config, inputs, models


def model_flops_per_step(model, batches) -> tuple[float, float]:
    """6 x parameters x tokens for the decoder body, and for the output projection only at
    labelled positions (the only ones nofrog projects); the chunk recompute is not counted."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    head = config.vocab_size * config.hidden_size
    body = sum(p.numel() for p in model.parameters()) - head  # tied: the embedding matrix is the head
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    labelled = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches) / len(batches)
    return 6 * body * tokens + 6 * head * labelled, tokens


def batches_for(config, inputs, count: int) -> list[dict]:
    from nofrog_core.data import collate
    from nofrog_core.train.loop import endless_example_batches

    stream = endless_example_batches(inputs.examples, config.train.batch_size, config.train.seed)
    return [collate(next(stream)[1], inputs.pad_token_id) for _ in range(count)]


def run_nofrog(schedule: str, steps: int, warmup: int) -> dict:
    from nofrog_core.train.checkpoints import LocalCheckpoints
    from nofrog_core.train.distributed import World
    from nofrog_core.train.loop import Trainer

    config, inputs, _ = load([f"train.schedule={schedule}", f"train.max_steps={steps + warmup}"])
    flops, tokens = model_flops_per_step(inputs.model, batches_for(config, inputs, steps + warmup))
    with tempfile.TemporaryDirectory() as out:
        out = Path(out)
        started = time.time()
        summary = Trainer(config, inputs, out, World(), LocalCheckpoints(out / "checkpoints")).run()
        total = time.time() - started
        history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    timed = [h["tokens_per_second"] for h in history[warmup:]]
    return {"tokens_per_second": statistics.median(timed), "tokens_per_second_all": timed,
            "flops_per_step": flops, "tokens_per_step": tokens, "run_seconds_incl_ema0_and_export": round(total, 2),
            "train_seconds": round(summary["wall_seconds"], 2), "ema0": summary["ema0"]}


def run_plain(loss: str, steps: int, warmup: int) -> dict:
    from nofrog_core.losses import token_nll

    config, inputs, _ = load([f"train.max_steps={steps + warmup}"])
    model = inputs.model.train()
    batches = batches_for(config, inputs, steps + warmup)
    flops, tokens = model_flops_per_step(model, batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    rates = []
    for batch in batches:
        started = time.time()
        if loss == "same":
            nll, _, count = token_nll(model, batch["input_ids"], batch["labels"], batch["attention_mask"],
                                      config.train.loss_chunk_size)
            (nll / count).backward()
        else:
            model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        rates.append(int(batch["attention_mask"].sum()) / (time.time() - started))
    return {"tokens_per_second": statistics.median(rates[warmup:]), "tokens_per_second_all": rates[warmup:],
            "flops_per_step": flops, "tokens_per_step": tokens}


def run_arm(arm: str, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    if arm.startswith("nofrog_"):
        result = run_nofrog(arm.removeprefix("nofrog_"), steps, warmup)
    else:
        result = run_plain("same" if arm == "plain_same_loss" else "hf", steps, warmup)
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--arm", choices=ARMS, help="(internal) run one arm and print its JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.arm:
        print("RESULT " + json.dumps(run_arm(args.arm, args.steps, args.warmup)))
        return
    peak = matmul_peak_flops()
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    arms = {}
    for arm in ARMS:
        started = time.time()
        proc = subprocess.run([sys.executable, __file__, "--arm", arm, "--steps", str(args.steps),
                               "--warmup", str(args.warmup)], capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"arm {arm} failed:\n{proc.stderr[-3000:]}")
        result = arms[arm] = json.loads(line.removeprefix("RESULT "))
        # FLOP/s = FLOPs per step / seconds per step, and seconds per step = tokens per step / tokens per second.
        result["model_flops_per_second"] = result["flops_per_step"] * result["tokens_per_second"] / result["tokens_per_step"]
        print(f"{arm}: {arms[arm]['tokens_per_second']:.1f} tokens/s, peak RSS {arms[arm]['peak_rss_gib']} GiB "
              f"({time.time() - started:.0f} s)")
    results = summarise(arms, peak, schedule_update_seconds(), args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["comparisons"], indent=2))


def spread(rates: list[float]) -> float:
    """Half the range of a run's per-step rates, relative to its median: the noise floor."""
    return (max(rates) - min(rates)) / 2 / statistics.median(rates)


def summarise(arms: dict, peak: float, update: dict, args) -> dict:
    const, finch = arms["nofrog_constant"]["tokens_per_second"], arms["nofrog_finch"]["tokens_per_second"]
    plain = arms["plain_same_loss"]["tokens_per_second"]
    step_seconds = arms["nofrog_finch"]["tokens_per_step"] / finch
    ema0_seconds = arms["nofrog_finch"]["run_seconds_incl_ema0_and_export"] - arms["nofrog_constant"][
        "run_seconds_incl_ema0_and_export"]
    return {
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "fp32_matmul_peak_gflops": round(peak / 1e9, 1)},
        "setup": {"config": "configs/default.yaml (batch 8, max_length 128, fp32, AdamW)", "timed_steps": args.steps,
                  "warmup_steps": args.warmup, "command": "bench/train_throughput.py"},
        "arms": arms,
        "comparisons": {
            "finch_overhead_vs_constant_end_to_end": 1 - finch / const,
            "per_step_noise": {arm: spread(r["tokens_per_second_all"]) for arm, r in arms.items()},
            "finch_update_seconds": update["finch"],
            "constant_update_seconds": update["constant"],
            "finch_update_overhead_per_step": (update["finch"] - update["constant"]) / step_seconds,
            "finch_target_met": (update["finch"] - update["constant"]) / step_seconds < 0.01,
            "finch_ema0_pass_seconds_approx": round(ema0_seconds, 1),
            "nofrog_vs_plain_same_loss": const / plain - 1,
            "plain_target_met": const / plain >= 0.95,  # nofrog at most 5% slower than the plain loop
            "nofrog_vs_plain_hf_loss": const / arms["plain_hf_loss"]["tokens_per_second"] - 1,
            "nofrog_mfu": arms["nofrog_constant"]["model_flops_per_second"] / peak,
        },
    }


if __name__ == "__main__":
    main()

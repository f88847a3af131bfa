"""Training throughput on the default config: today's fp32 full fine-tuning against the shipped default.

Arms, each in its own process (so peak memory is its own), on the same batches (the demo task,
configs/default.yaml's batch size and max length, seed 0), through nofrog's own Trainer:

  fp32_full          the default's batches with every speed lever undone: fp32, every weight
                     trainable, the for-loop AdamW, logits recomputed in the backward pass,
                     task and replay rows padded together to the longest row
  fused_adamw        fp32_full + torch's fused AdamW
  frozen_embeddings  fp32_full + the tied embedding / LM head frozen (train.freeze_embeddings)
  kept_logits        fp32_full + small loss chunks keep their logits (train.keep_logits_up_to)
  rows_apart         fp32_full + task and replay rows collated apart (less padding)
  bf16               fp32_full + bf16 autocast (fp32 master weights); few steps: see --bf16-steps
  default_full_base  the default with every model running its whole forward (train.share_trunk=false):
                     the replay KL's base recomputes the 14 frozen layers the student already ran
  default            the shipped configs/default.yaml, its replay rows included (a replay set is
                     generated once into bench/work/throughput-replay, outside every arm's time)

Reported per arm: median tokens/s over the timed steps (after warm-up), peak resident memory,
and model FLOP utilisation against this machine's measured fp32 and bf16 matmul peaks. The FLOPs
are what the arm's step must compute: forward 2N per token, backward 2N for input gradients plus
2N for the weight gradients of trainable weights only; the output projection counts at labelled
positions only (the only ones nofrog projects), its chunk recompute not at all.

    .venv/bin/python bench/train_throughput.py --steps 12 --out bench/results/train_throughput.json
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
# The shipped default's batches (replay rows included) with the speed levers undone: fp32, every
# weight trainable, the for-loop AdamW, logits recomputed in every chunk, task and replay rows
# padded together to the longest row; and without the replay KL, which the default added after the
# speed issue measured these arms (the "default" arm times it with its frozen base forward).
FP32_FULL = ["train.precision=fp32", "train.freeze_embeddings=false", "train.fused_adamw=false",
             "train.keep_logits_up_to=0", "train.collate_together=true", "replay.mix.kl_weight=0"]
REPLAY_DIR = Path(__file__).parent / "work" / "throughput-replay"
ARMS = {
    "fp32_full": FP32_FULL,
    "fused_adamw": [*FP32_FULL, "train.fused_adamw=true"],
    "frozen_embeddings": [*FP32_FULL, "train.freeze_embeddings=true"],
    "kept_logits": [*FP32_FULL, "train.keep_logits_up_to=512"],
    "rows_apart": [*FP32_FULL, "train.collate_together=false"],
    "bf16": [*FP32_FULL, "train.precision=bf16"],
    "default_full_base": ["train.share_trunk=false"],
    "default": [],
}


def matmul_peak_flops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """The best of `repeats` square matmuls; a dtype without fast kernels here (bf16 on an AVX2-only
    CPU runs at well under 1 GFLOP/s) is measured at a size that takes seconds, not minutes."""
    probe = torch.randn(256, 256, dtype=dtype)
    started = time.perf_counter()
    probe @ probe
    if time.perf_counter() - started > 0.01:
        size, repeats = 256, 2
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def step_flops(model, batches) -> float:
    """FLOPs of one training step (see the module docstring), averaged over `batches`."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    head = model.get_output_embeddings().weight
    body = [p for p in model.parameters() if p is not head]
    n_body = sum(p.numel() for p in body) - head.numel() * (model.get_input_embeddings().weight is not head)
    n_body_trainable = sum(p.numel() for p in body if p.requires_grad)
    n_head = config.vocab_size * config.hidden_size
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    labelled = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches) / len(batches)
    body_flops = (4 * n_body + 2 * n_body_trainable) * tokens
    head_flops = (4 + 2 * head.requires_grad) * n_head * labelled
    return body_flops + head_flops


def run_arm(name: str, steps: int, warmup: int) -> dict:
    from nofrog_core.config import load_config
    from nofrog_core.data import collate
    from nofrog_core.train.checkpoints import LocalCheckpoints
    from nofrog_core.train.distributed import World
    from nofrog_core.train.inputs import load_worker_inputs
    from nofrog_core.train.loop import Trainer, endless_example_batches, prepare_model

    torch.manual_seed(0)
    # FINCH's one-time ema_0 pass is not a training step: capped at 5 batches, and outside the timed steps.
    config = load_config(CONFIG, ["train.checkpoint_every=0", f"train.max_steps={steps + warmup}",
                                  "train.finch.init_batches=5", *ARMS[name]])
    if config.replay.mix.ratio > 0:
        config = config.with_values({"replay.mix.dir": str(REPLAY_DIR)})
    inputs, _ = load_worker_inputs(config)
    stream = endless_example_batches(inputs.examples, config.train.batch_size, config.train.seed)
    batches = [collate(next(stream)[1], inputs.pad_token_id) for _ in range(steps + warmup)]
    tc = config.train
    counted, _ = prepare_model(__import__("copy").deepcopy(inputs.model), tc.freeze_bottom, tc.lora,
                               tc.freeze_embeddings)
    flops = step_flops(counted, batches)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    del counted
    with tempfile.TemporaryDirectory() as out:
        out = Path(out)
        summary = Trainer(config, inputs, out, World(), LocalCheckpoints(out / "checkpoints")).run()
        history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    timed = [h["tokens_per_second"] for h in history[warmup:]]
    return {"overrides": ARMS[name], "steps_timed": len(timed), "tokens_per_second": statistics.median(timed),
            "tokens_per_second_all": timed, "flops_per_step": flops, "tokens_per_step": tokens,
            "trainable_parameters": summary["trainable_parameters"],
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--bf16-steps", type=int, default=2,
                        help="timed steps of the bf16 arm (slow where the CPU lacks bf16 matmul kernels)")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ",".join(ARMS))
    parser.add_argument("--arm", choices=list(ARMS), help="(internal) run one arm and print its JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.arm:
        print("RESULT " + json.dumps(run_arm(args.arm, args.steps, args.warmup)))
        return
    # In a child process: the vLLM engine leaves threads behind that would slow every arm after it.
    subprocess.run([sys.executable, "-c", "from nofrog_core.config import load_config; "
                    "from nofrog_core.replay.stage import run_replay; "
                    f"run_replay(load_config({str(CONFIG)!r}), {str(REPLAY_DIR)!r})"], check=True)
    peaks = {"fp32": matmul_peak_flops(torch.float32), "bf16": matmul_peak_flops(torch.bfloat16)}
    print(", ".join(f"{k} matmul peak {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()))
    arms = {}
    for name in args.arms.split(","):
        started = time.time()
        steps = args.bf16_steps if name == "bf16" else args.steps
        proc = subprocess.run([sys.executable, __file__, "--arm", name, "--steps", str(steps),
                               "--warmup", str(min(args.warmup, 1) if name == "bf16" else args.warmup)],
                              capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"arm {name} failed:\n{proc.stderr[-3000:]}")
        result = arms[name] = json.loads(line.removeprefix("RESULT "))
        result["wall_seconds"] = round(time.time() - started, 1)
        # FLOP/s = FLOPs per step / seconds per step, and seconds per step = tokens per step / tokens per second.
        flops_per_second = result["flops_per_step"] * result["tokens_per_second"] / result["tokens_per_step"]
        result["model_flops_per_second"] = flops_per_second
        result["mfu"] = {dtype: flops_per_second / peak for dtype, peak in peaks.items()}
        print(f"{name}: {result['tokens_per_second']:.1f} tokens/s, MFU {result['mfu']['fp32']:.1%} of the fp32 "
              f"peak, peak RSS {result['peak_rss_gib']} GiB ({time.time() - started:.0f} s)", flush=True)
    results = {
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "matmul_peak_gflops": {k: round(v / 1e9, 2) for k, v in peaks.items()}},
        "setup": {"config": "configs/default.yaml (batch 8, max_length 128)", "timed_steps": args.steps,
                  "bf16_timed_steps": args.bf16_steps, "warmup_steps": args.warmup,
                  "command": " ".join(["python bench/train_throughput.py", *sys.argv[1:]])},
        "arms": arms,
        "comparisons": {f"{name}_over_fp32_full": arms[name]["tokens_per_second"] / arms["fp32_full"]["tokens_per_second"]
                        for name in arms if name != "fp32_full" and "fp32_full" in arms},
    }
    if {"default", "default_full_base"} <= set(arms):  # the same step, with and without the shared trunk
        results["comparisons"]["shared_trunk_over_full_base"] = (
            arms["default"]["tokens_per_second"] / arms["default_full_base"]["tokens_per_second"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["comparisons"], indent=2))


if __name__ == "__main__":
    main()

"""The training loop: the same code in one process and in every Ray Train worker.

One optimizer step = `train.grad_accum` micro-batches on each of the world's
workers. A micro-batch holds the task rows of this worker's shard and, with
replay, `round(replay_ratio * batch_size)` context-free samples. The step
minimises  L_task + replay_weight * L_replay (+ replay_kl_weight * KL(base || model)
on the replay tokens), each a token-weighted mean over all the step's tokens on
all workers. L_task, all-reduced, is the loss FINCH reads, so every worker
sets the same learning rate.

Anchored Learning runs two phases through this loop: a plain SFT reference,
then a student restarted from the base that distils to the moving anchor.

The main worker appends one line per step to history.jsonl as it happens, so a
crash keeps the curve up to that point; a resumed run rewrites it from its
checkpoint's step.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from ..data import IGNORE_INDEX, Example, collate, example_batches
from ..outputs import write_json
from ..history import read_history
from ..schedules import make_schedule
from . import controls
from .checkpoints import read_checkpoint, trainable_state, write_checkpoint
from .distributed import World
from .monitor import ForgettingMonitor
from .objective import AnchorSettings, TrainingObjective


log = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"  # the main worker's account of the run, read by the driver


@dataclass
class TrainingInputs:
    """What every worker loads before training: the base model and the data."""

    model: torch.nn.Module
    tokenizer: object
    examples: list[Example]
    pad_token_id: int
    replay: list[Example] | None = None
    probes: dict[str, list[Example]] = field(default_factory=dict)


NON_FINITE_MARK = "is not finite; no model was exported"


class NonFiniteLoss(ValueError):
    """The loss or the gradient turned NaN or infinite: training stops, nothing is exported."""


@dataclass
class CrashAt:
    """Kill one worker once, at one step: how the fault-tolerance test loses a worker mid-run."""

    rank: int
    step: int
    marker: Path  # written before the crash, so the restarted worker goes on


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rows_per_batch(train_config) -> tuple[int, int]:
    """(task rows, replay rows) of every micro-batch."""
    replay = round(train_config.replay_ratio * train_config.batch_size) if train_config.replay_dir else 0
    return train_config.batch_size - replay, replay


def steps_per_epoch(train_config, num_examples: int) -> int:
    task_rows, _ = rows_per_batch(train_config)
    return max(1, math.ceil(num_examples / task_rows) // train_config.grad_accum)


def total_steps(train_config, num_examples: int) -> int:
    """Optimizer steps of one phase on a shard of `num_examples` task rows."""
    planned = max(1, math.ceil(train_config.epochs * steps_per_epoch(train_config, num_examples)))
    return min(planned, train_config.max_steps) if train_config.max_steps else planned


def student_phase_plan(train_config, num_examples: int) -> tuple[int, int]:
    """Anchored Learning's student phase: (steps, steps between snapshots).

    K inner epochs x T outer iterations by default; with `train.max_steps` the
    phase gets that many steps and T snapshots spread evenly over them.
    """
    a = train_config.anchored
    if train_config.max_steps:
        return train_config.max_steps, max(1, math.ceil(train_config.max_steps / a.outer_iterations))
    every = max(1, math.ceil(a.snapshot_every_epochs * steps_per_epoch(train_config, num_examples)))
    return every * a.outer_iterations, every


def endless_example_batches(examples: list[Example], rows: int, seed: int) -> Iterator[tuple[int, list[Example]]]:
    """(epoch, rows) forever, reshuffled every epoch (seed + epoch)."""
    epoch = 0
    while True:
        for batch in example_batches(examples, rows, seed=seed + epoch):
            yield epoch, batch
        epoch += 1


def count_labels(examples: list[Example]) -> int:
    """Labelled tokens, counting only positions that predict something (not the first token)."""
    return sum(sum(1 for t in e.labels[1:] if t != IGNORE_INDEX) for e in examples)


def prepare_model(model, train_config):
    """Freeze, then wrap in LoRA; returns (model, frozen layer count)."""
    frozen = controls.freeze_bottom_layers(model, train_config.freeze_bottom) if train_config.freeze_bottom else 0
    if train_config.lora.enabled:
        model = controls.apply_lora(model, train_config.lora)
    return model, frozen


def frozen_copy(model) -> torch.nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


@dataclass
class Phase:
    name: str  # "train", or "reference" / "student" for Anchored Learning
    steps: int
    history_path: Path
    snapshot_every: int | None = None  # Anchored Learning's student phase only


@dataclass
class PhaseResult:
    model: torch.nn.Module
    steps: int
    final_loss: float
    ema0: float | None
    trainable_parameters: int
    resumed_from_step: int | None = None
    stopped_early_at: int | None = None
    kept_step: int | None = None
    monitor_baseline: dict | None = None  # probe NLLs before training


class Trainer:
    """Runs the configured objective on one worker of a world (of one, in process).

    `wrap` turns the objective module into what runs the forward pass: itself
    in process, DDP under Ray Train. `checkpoints` is a LocalCheckpoints or a
    RayCheckpoints.
    """

    def __init__(self, config, inputs: TrainingInputs, out_dir: Path, world: World, checkpoints,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m, crash_at: CrashAt | None = None):
        self.config, self.tc = config, config.train
        self.inputs, self.out_dir, self.world = inputs, Path(out_dir), world
        self.checkpoints, self.wrap, self.crash_at = checkpoints, wrap, crash_at
        self.task_rows, self.replay_rows = rows_per_batch(self.tc)
        self.examples = world.shard(inputs.examples)
        self.replay = world.shard(inputs.replay) if self.replay_rows else None
        if self.replay_rows and not self.replay:
            raise ValueError("train.replay_ratio > 0 but this worker's share of the replay dataset is empty")
        self.frozen_layers = 0

    # ----------------------------------------------------------------- phases
    def run(self) -> dict:
        seed_everything(self.tc.seed)
        started = time.time()
        base = self.inputs.model.to(self.world.device)
        steps = total_steps(self.tc, len(self.examples))
        with self.checkpoints.latest() as directory:
            resume = json.loads((directory / "state.json").read_text())["phase"] if directory else None
        if self.tc.objective == "sft":
            result = self._run_phase(Phase("train", steps, self.out_dir / "history.jsonl"), base)
        else:
            result = self._run_anchored(base, steps, resume)
        summary = {"steps": result.steps, "final_loss": result.final_loss, "ema0": result.ema0,
                   "trainable_parameters": result.trainable_parameters, "frozen_layers": self.frozen_layers,
                   "resumed_from_step": result.resumed_from_step,
                   "stopped_early_at": result.stopped_early_at, "kept_step": result.kept_step,
                   "monitor_baseline": result.monitor_baseline,
                   "wall_seconds": round(time.time() - started, 2), "world_size": self.world.size}
        if self.world.is_main:
            # Exported into a staging directory, then renamed: a run killed mid-export leaves no
            # half-written model/, and its rerun resumes from the last checkpoint.
            staging = self.out_dir / ".model.partial"
            shutil.rmtree(staging, ignore_errors=True)
            controls.export_model(result.model).save_pretrained(staging, safe_serialization=True)
            self.inputs.tokenizer.save_pretrained(staging)
            write_json(self.out_dir / SUMMARY_FILE, summary)
            staging.rename(self.out_dir / "model")
        self.world.barrier()
        return summary

    def _run_anchored(self, base, steps: int, resume_phase: str | None) -> PhaseResult:
        student_base = frozen_copy(base)  # the student restarts from the base model
        reference_phase = Phase("reference", steps, self.out_dir / "history_reference.jsonl")
        if resume_phase == "student":
            reference = None  # comes back from the student checkpoint
        else:
            reference = frozen_copy(self._run_phase(reference_phase, base).model)
        student_steps, every = student_phase_plan(self.tc, len(self.examples))
        student = student_base.train().requires_grad_(True)
        return self._run_phase(Phase("student", student_steps, self.out_dir / "history.jsonl", every), student,
                               reference=reference)

    def _run_phase(self, phase: Phase, model, reference=None) -> PhaseResult:
        tc, world = self.tc, self.world
        model, self.frozen_layers = prepare_model(model, tc)
        anchored = phase.name == "student"
        settings = AnchorSettings(tc.anchored.alpha, tc.anchored.temperature, tc.anchored.interpolation)
        objective = TrainingObjective(model, tc.loss_chunk_size, settings if anchored else None)
        if tc.replay_kl_weight > 0:
            objective.frozen.base = frozen_copy(model)
        if anchored:
            objective.frozen.reference = reference
            objective.frozen.snapshot = frozen_copy(model)
        optimizer = torch.optim.AdamW(controls.param_groups(model, tc.llrd, tc.weight_decay), lr=tc.lr)
        trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])

        start_step, state = self._resume(phase, model, optimizer, objective)
        ema0 = state.get("ema0") if state else None
        if ema0 is None and tc.schedule == "finch":
            ema0 = self._mean_task_loss(objective)
        schedule = make_schedule(tc, phase.steps, ema0)
        if state and state.get("schedule"):
            schedule.load_state_dict(state["schedule"])
        elif state:
            schedule.step = start_step
        monitor = ForgettingMonitor(self.inputs.probes, self.inputs.pad_token_id, tc, world)
        monitor.load_state_dict(state.get("monitor") if state else None, model, start_step)
        if monitor.enabled and monitor.baseline is None:
            monitor.start(model)

        runner = self.wrap(objective)
        task_stream = endless_example_batches(self.examples, self.task_rows, tc.seed)
        replay_stream = endless_example_batches(self.replay, self.replay_rows, tc.seed + 10_000) if self.replay_rows else None
        for _ in range(start_step * tc.grad_accum):  # data order continues where the checkpoint left it
            next(task_stream)
            if replay_stream:
                next(replay_stream)
        history = self._open_history(phase.history_path, start_step)
        model.train()
        result = PhaseResult(model, start_step, state.get("final_loss", math.nan) if state else math.nan, ema0,
                             trainable, resumed_from_step=start_step or None)
        result.monitor_baseline = monitor.baseline
        worker_log = self._open_worker_log(phase)
        bar = tqdm(total=phase.steps, initial=start_step, desc=phase.name, unit="step", disable=not world.is_main)
        for step in range(start_step + 1, phase.steps + 1):
            self._maybe_crash(step)
            record = self._step(step, runner, objective, optimizer, schedule, task_stream, replay_stream)
            record.update(monitor.maybe_score(step, model))
            result.steps, result.final_loss = step, record["loss"]
            if history:
                history.write(json.dumps(record) + "\n")
                history.flush()
            if worker_log:
                worker_log.write(json.dumps({"step": step, "lr": record["lr"], "loss": record["loss"],
                                             "ema_loss": record.get("ema_loss")}) + "\n")
                worker_log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                            tok_s=f"{record['tokens_per_second']:.0f}")
            if anchored and step % phase.snapshot_every == 0 and step < phase.steps:
                objective.frozen.snapshot.load_state_dict(model.state_dict())
            if monitor.should_stop:
                result.stopped_early_at, result.kept_step = step, monitor.restore_best(model)
                break
            if tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < phase.steps:
                self._save(phase, step, model, optimizer, schedule, monitor, objective, result, ema0)
        bar.close()
        for handle in (history, worker_log):
            if handle:
                handle.close()
        return result

    # ------------------------------------------------------------------ steps
    def _step(self, step, runner, objective, optimizer, schedule, task_stream, replay_stream) -> dict:
        tc, world = self.tc, self.world
        started = time.time()
        micro = []
        for _ in range(tc.grad_accum):
            epoch, task = next(task_stream)
            replay = next(replay_stream)[1] if replay_stream else []
            micro.append((epoch, task, replay))
        local_counts = [sum(count_labels(t) for _, t, _ in micro), sum(count_labels(r) for _, _, r in micro),
                        sum(len(e.input_ids) for _, t, r in micro for e in t + r)]
        task_tokens, replay_tokens, seen_tokens = world.sum(local_counts)
        sums = torch.zeros(4, dtype=torch.float64)  # task, task_nll, replay_nll, replay_kl
        for index, (_, task, replay) in enumerate(micro):
            batch = {k: v.to(world.device) for k, v in collate(task + replay, self.inputs.pad_token_id).items()}
            last = index == len(micro) - 1
            # DDP all-reduces gradients on the last micro-batch of the step only.
            sync = nullcontext() if last or not hasattr(runner, "no_sync") else runner.no_sync()
            with sync:
                terms = runner(batch["input_ids"], batch["labels"], batch["attention_mask"], len(task))
                loss = terms["task"] / task_tokens
                if replay:
                    loss = loss + (tc.replay_weight * terms["replay_nll"]
                                   + tc.replay_kl_weight * terms["replay_kl"]) / replay_tokens
                # DDP averages gradients over workers; the sums above are already global means.
                (loss * world.size).backward()
            sums += torch.tensor([terms["task"].item(), terms["task_nll"].item(),
                                  terms["replay_nll"].item() if replay else 0.0,
                                  terms["replay_kl"].item() if replay else 0.0], dtype=torch.float64)
        task_sum, task_nll_sum, replay_sum, kl_sum = world.sum(sums.tolist())
        loss_value = task_sum / task_tokens
        lr = schedule.next_lr(loss_value)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]  # every group moves by the same factor
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip or float("inf")).item()
        replay_loss = (replay_sum + kl_sum) / replay_tokens if replay_stream else 0.0
        if not all(map(math.isfinite, (loss_value, grad_norm, replay_loss))):
            # Before the optimizer step: the weights (and the last checkpoint) are still the good ones.
            raise NonFiniteLoss(f"training stopped at step {step}: loss {loss_value}, gradient norm {grad_norm}"
                                f"{f', replay loss {replay_loss}' if replay_stream else ''} {NON_FINITE_MARK} "
                                "(lower train.lr, or check the data)")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"step": step, "epoch": micro[-1][0], "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                  "tokens_per_second": seen_tokens / (time.time() - started)}
        if tc.schedule == "finch":
            record["ema_loss"] = schedule.ema_loss
        if objective.anchored is not None:
            record["task_nll"] = task_nll_sum / task_tokens
        if replay_stream:
            record["replay_loss"] = replay_sum / replay_tokens
            if tc.replay_kl_weight > 0:
                record["replay_kl"] = kl_sum / replay_tokens
        return record

    @torch.no_grad()
    def _mean_task_loss(self, objective) -> float:
        """FINCH's ema_0: the objective's mean task loss on the training set before any step
        (capped at `train.finch_init_batches` batches per worker), token-weighted over all workers."""
        objective.eval()
        total = tokens = 0.0
        batches = example_batches(self.examples, self.tc.batch_size)
        for index, rows in enumerate(tqdm(batches, desc="FINCH ema_0", leave=False, disable=not self.world.is_main)):
            if self.tc.finch_init_batches and index >= self.tc.finch_init_batches:
                break
            batch = {k: v.to(self.world.device) for k, v in collate(rows, self.inputs.pad_token_id).items()}
            total += objective(batch["input_ids"], batch["labels"], batch["attention_mask"], len(rows))["task"].item()
            tokens += count_labels(rows)
        objective.train()
        total, tokens = self.world.sum([total, tokens])
        return total / tokens

    # ------------------------------------------------------------ checkpoints
    def _save(self, phase, step, model, optimizer, schedule, monitor, objective, result, ema0) -> None:
        state = {"phase": phase.name, "step": step, "ema0": ema0, "final_loss": result.final_loss,
                 "schedule": schedule.state_dict() if hasattr(schedule, "state_dict") else None,
                 "monitor": monitor.state_dict()}
        extra = {}
        if objective.frozen.snapshot is not None:
            # The frozen models differ from the base only where the student trains.
            trained = trainable_state(model).keys()
            for prefix, frozen in (("snapshot.", objective.frozen.snapshot), ("reference.", objective.frozen.reference)):
                weights = dict(frozen.named_parameters())
                extra.update({prefix + name: weights[name] for name in trained})

        def write(directory: Path) -> None:
            write_checkpoint(directory, model, optimizer, self.inputs.tokenizer, state, extra)

        self.checkpoints.save(step, write, {"step": step, "phase": phase.name, "loss": result.final_loss},
                              self.world.is_main)

    def _resume(self, phase, model, optimizer, objective) -> tuple[int, dict | None]:
        with self.checkpoints.latest() as directory:
            if directory is None:
                return 0, None
            if json.loads((directory / "state.json").read_text())["phase"] != phase.name:
                return 0, None  # a checkpoint of the other Anchored Learning phase
            state, extra = read_checkpoint(directory, model, optimizer)
        if extra:
            objective.frozen.snapshot = self._frozen_from(model, extra, "snapshot.")
            objective.frozen.reference = self._frozen_from(model, extra, "reference.")
        if self.world.is_main:
            log.warning("resuming phase %s from its checkpoint at step %s", phase.name, state["step"])
        return int(state["step"]), state

    @staticmethod
    def _frozen_from(model, extra: dict, prefix: str):
        frozen = frozen_copy(model)
        frozen.load_state_dict({k[len(prefix):]: v for k, v in extra.items() if k.startswith(prefix)}, strict=False)
        return frozen

    def _open_history(self, path: Path, start_step: int):
        """The main worker's history file, keeping only the lines up to a resumed step."""
        if not self.world.is_main:
            return None
        kept = [record for record in read_history(path) if record["step"] <= start_step] \
            if start_step and path.exists() else []
        handle = open(path, "w")
        handle.writelines(json.dumps(record) + "\n" for record in kept)
        return handle

    def _open_worker_log(self, phase: Phase):
        """With several workers, each keeps its own view of every step in OUT/workers/: the LR it set
        and the loss it read, to check that all workers agree."""
        if self.world.size == 1:
            return None
        directory = self.out_dir / "workers"
        directory.mkdir(exist_ok=True)
        return open(directory / f"{phase.name}-rank{self.world.rank}.jsonl", "a")

    def _maybe_crash(self, step: int) -> None:
        crash = self.crash_at
        if crash and crash.rank == self.world.rank and crash.step == step and not crash.marker.exists():
            crash.marker.write_text(f"worker {self.world.rank} killed at step {step}\n")
            os._exit(1)

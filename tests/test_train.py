"""The in-process training loop on the tiny model.

The first losses of a seeded run are pinned: a silent change to data order,
masking, loss or optimizer shows up here as a number that moved.
"""

import json
import math
import shutil
from pathlib import Path

import pytest

from nofrog_core.history import read_history
from nofrog_core.train.stage import run_training
from tests.fault_injection import RaiseAt

# Recorded from this loop on the tiny model (seed 0); tolerance covers BLAS differences.
PINNED_FIRST_LOSSES = [6.385897159576416, 6.273060692681207, 6.206972122192383]


def test_constant_lr_run_learns_and_writes_its_outputs(tiny_config, tmp_path):
    config = tiny_config("train.schedule=constant", "train.lr=3e-3", "train.max_steps=40",
                         "train.epochs=10")
    out = run_training(config, tmp_path / "train")
    history = read_history(out["history"])
    assert [h["step"] for h in history] == list(range(1, 41))
    assert all(h["lr"] == 3e-3 for h in history)
    assert history[-1]["loss"] < history[0]["loss"] * 0.75
    for key in ("loss", "lr", "grad_norm", "tokens_per_second"):
        assert all(math.isfinite(h[key]) for h in history), key
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert meta["config"]["train"]["max_steps"] == 40 and meta["base_model"]["content_hash"]
    assert meta["training"]["engine"] == "in_process" and meta["training"]["world_size"] == 1
    assert meta["data"]["report"]["rows_kept"] == 24 and len(meta["data"]["data_hash"]) == 64
    assert (tmp_path / "train" / "loss_lr.png").stat().st_size > 1000
    from transformers import AutoModelForCausalLM
    assert AutoModelForCausalLM.from_pretrained(out["model_dir"]) is not None


def test_finch_history_follows_the_formula(tiny_config, tmp_path):
    config = tiny_config("train.schedule=finch", "train.finch.base_lr=1e-3", "train.finch.lr_max=2e-3", "train.max_steps=5")
    run_training(config, tmp_path / "train")
    history = read_history(tmp_path / "train" / "history.jsonl")
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    ema = meta["finch"]["ema0"]
    assert ema > 0
    for h in history:
        ema = 0.9 * ema + 0.1 * h["loss"]
        assert h["ema_loss"] == pytest.approx(ema, rel=1e-9)
        assert h["lr"] == pytest.approx(min(1e-3 / math.sqrt(ema), 2e-3), rel=1e-9)


def test_first_losses_are_pinned(tiny_config, tmp_path):
    config = tiny_config("train.schedule=constant", "train.lr=1e-3", "train.max_steps=3")
    run_training(config, tmp_path / "train")
    losses = [h["loss"] for h in read_history(tmp_path / "train" / "history.jsonl")]
    assert losses == pytest.approx(PINNED_FIRST_LOSSES, rel=1e-4)


def test_refuses_to_overwrite_a_finished_run(tiny_config, tmp_path):
    config = tiny_config("train.max_steps=1")
    run_training(config, tmp_path / "train")
    before = (tmp_path / "train" / "history.jsonl").read_text()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        run_training(config, tmp_path / "train")
    assert (tmp_path / "train" / "history.jsonl").read_text() == before


def crash_at(step: int, config, out_dir) -> None:
    """Runs training into `out_dir` and makes it crash as optimizer step `step` begins."""
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(config, out_dir, hooks=[RaiseAt(step)])


def test_a_crashed_run_resumes_from_its_checkpoint_exactly(tiny_config, tmp_path, monkeypatch):
    config = tiny_config("train.schedule=finch", "train.finch.base_lr=1e-3", "train.finch.lr_max=2e-3", "train.max_steps=6",
                         "train.checkpoint_every=2", "train.lora.enabled=true", "train.lora.dropout=0.1")
    run_training(config, tmp_path / "straight")
    crash_at(5, config, tmp_path / "crashed")
    with pytest.raises(FileExistsError, match="unfinished run with another config"):
        run_training(tiny_config("train.max_steps=7"), tmp_path / "crashed")
    run_training(config, tmp_path / "crashed")
    meta = json.loads((tmp_path / "crashed" / "metadata.json").read_text())
    assert meta["training"]["resumed_from_step"] == 4
    # Weights, optimizer, FINCH state, data order and dropout RNG all came back: the same run.
    straight = read_history(tmp_path / "straight" / "history.jsonl")
    resumed = read_history(tmp_path / "crashed" / "history.jsonl")
    assert [h["step"] for h in resumed] == list(range(1, 7))
    for a, b in zip(straight, resumed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6) and b["lr"] == pytest.approx(a["lr"], rel=1e-9)


def test_a_loss_that_turns_non_finite_stops_training_and_exports_nothing(tiny_config, tmp_path):
    from nofrog_core.train.loop import NonFiniteLoss

    # A huge step with no clipping throws the tiny model's weights past what fp32 can hold.
    config = tiny_config("train.schedule=constant", "train.lr=1e30", "train.grad_clip=null",
                         "train.max_steps=6", "train.checkpoint_every=1")
    with pytest.raises(NonFiniteLoss, match=r"training stopped at step \d: loss .* is not finite; no model"):
        run_training(config, tmp_path / "train")
    assert not (tmp_path / "train" / "model").exists()
    assert list((tmp_path / "train" / "checkpoints").iterdir())  # the last good state is kept


def test_weights_that_turn_non_finite_after_the_last_step_are_never_exported(tiny_config, tmp_path):
    from nofrog_core.train.loop import NonFiniteLoss

    # The loss and gradient are finite; AdamW's decoupled decay then throws every weight past fp32.
    config = tiny_config("train.schedule=constant", "train.lr=1e-3", "train.weight_decay=1e300", "train.max_steps=1")
    with pytest.raises(NonFiniteLoss, match=r"after step 1 the weights of \d+ tensors .* is not finite; no model"):
        run_training(config, tmp_path / "train")
    assert not (tmp_path / "train" / "model").exists() and not (tmp_path / "train" / ".model.partial").exists()


def test_a_mix_with_non_finite_weights_is_never_written(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from nofrog_core.fit import write_interpolated

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    [weights_file] = broken.glob("*.safetensors")
    weights = load_file(weights_file)
    name = next(iter(weights))
    weights[name] = weights[name].clone().fill_(float("inf"))
    save_file(weights, weights_file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="non-finite weights in 1 tensors"):
        write_interpolated(tiny_model_dir, broken, 0.5, tmp_path / "mix")
    assert not (tmp_path / "mix").exists() and not (tmp_path / "mix.partial").exists()


def test_train_never_writes_into_a_directory_it_did_not_create(tiny_config, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "history.jsonl").write_text("my notes\n")
    (mine / "training_summary.json").write_text("{}")
    with pytest.raises(FileExistsError, match="is not empty and holds no nofrog training run"):
        run_training(tiny_config("train.max_steps=1"), mine)
    assert (mine / "history.jsonl").read_text() == "my notes\n" and (mine / "training_summary.json").read_text() == "{}"


def test_a_users_own_run_config_is_never_taken_for_a_nofrog_run(tiny_config, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "run_config.json").write_text('{"my": "experiment settings"}')
    with pytest.raises(FileExistsError, match="holds no nofrog training run"):
        run_training(tiny_config("train.max_steps=1"), mine)
    assert (mine / "run_config.json").read_text() == '{"my": "experiment settings"}'
    assert [p.name for p in mine.iterdir()] == ["run_config.json"]


def test_a_run_that_failed_before_its_first_checkpoint_does_not_lock_out_the_corrected_rerun(tiny_config, tmp_path):
    from nofrog_core.models import ModelError

    with pytest.raises((ModelError, FileNotFoundError, OSError, ValueError)):
        run_training(tiny_config("train.max_steps=1", f"model.name_or_path={tmp_path / 'no-such-model'}"),
                     tmp_path / "train")
    (tmp_path / "train").mkdir(exist_ok=True)
    (tmp_path / "train" / "run_config.json").write_text(
        json.dumps({"nofrog_training_run": 1, "config": {"model": "an earlier, failed attempt"}}))
    result = run_training(tiny_config("train.max_steps=1"), tmp_path / "train")
    assert result["steps"] == 1


def test_a_run_killed_during_the_model_export_resumes_instead_of_locking_itself_out(tiny_config, tmp_path,
                                                                                     monkeypatch):
    from nofrog_core.train import controls

    config = tiny_config("train.max_steps=2", "train.checkpoint_every=1")
    real_export = controls.export_model

    def export_then_die(model):
        """The export starts writing (a config.json) and the process is interrupted."""
        exported = real_export(model)

        def half_save(directory, **kwargs):
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / "config.json").write_text("{}")
            raise KeyboardInterrupt

        exported.save_pretrained = half_save
        return exported

    monkeypatch.setattr(controls, "export_model", export_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_training(config, tmp_path / "train")
    monkeypatch.undo()
    assert not (tmp_path / "train" / "model").exists()  # only the staging directory was half-written
    result = run_training(config, tmp_path / "train")
    assert (tmp_path / "train" / "model" / "model.safetensors").is_file() and result["steps"] == 2
    assert json.loads((tmp_path / "train" / "metadata.json").read_text())["training"]["resumed_from_step"] >= 1


def test_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(tiny_config, tmp_path, monkeypatch, caplog):
    config = tiny_config("train.max_steps=4", "train.checkpoint_every=1", "train.checkpoints_to_keep=2")
    crash_at(4, config, tmp_path / "train")
    newest = sorted((tmp_path / "train" / "checkpoints").glob("step-*"))[-1]
    weights = newest / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short
    run_training(config, tmp_path / "train")
    assert f"checkpoint {newest} is unreadable" in caplog.text
    assert json.loads((tmp_path / "train" / "metadata.json").read_text())["training"]["resumed_from_step"] == 2


def test_a_history_cut_short_mid_line_resumes_and_a_damaged_one_is_named(tiny_config, tmp_path):
    from nofrog_core.history import read_history

    history = tmp_path / "history.jsonl"
    history.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert read_history(history) == [{"step": 1, "loss": 2.0}]  # the line being written when killed
    history.write_text('{"step": 1, "lo\n{"step": 2, "loss": 2.0}\n')
    with pytest.raises(ValueError, match=r"history.jsonl line 1 is not a JSON record"):
        read_history(history)

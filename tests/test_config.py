from pathlib import Path

import pytest

from nofrog_core.config import ConfigError, dump_config, load_config, parse_override


def test_defaults_are_valid_and_round_trip(tmp_path):
    config = load_config(None)
    assert config.train.schedule == "finch" and config.train.finch.base_lr == 2e-5 and config.train.finch.lr_max == 5e-5
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_overrides_are_typed_by_yaml():
    config = load_config(None, ["train.schedule=constant", "train.lr=3e-5", "train.max_steps=7", "compute.use_gpu=true",
                                "eval.tasks=[general_text]", "replay.top_k=null"])
    assert config.train.lr == 3e-5 and config.train.max_steps == 7 and config.compute.use_gpu is True
    assert config.eval.tasks == ["general_text"] and config.replay.top_k is None


@pytest.mark.parametrize("yaml_text, key", [
    ("train:\n  learning_rate: 1e-5\n", "train.learning_rate"),
    ("not_a_section:\n  x: 1\n", "not_a_section"),
])
def test_unknown_keys_are_named(tmp_path, yaml_text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=rf"{key}.*unknown config key"):
        load_config(path)


@pytest.mark.parametrize("override, key, expected", [
    ("train.finch.base_lr=-1", "train.finch.base_lr", "greater than 0"),
    ("data.validation_fraction=1.5", "data.validation_fraction", "less than 1"),
    ("replay.heldout_fraction=-0.1", "replay.heldout_fraction", "greater than or equal to 0"),
    ("replay.temperature=-1", "replay.temperature", "greater than or equal to 0"),
    ("replay.num_samples=0", "replay.num_samples", "greater than or equal to 1"),
    ("train.schedule=linear", "train.schedule", "'finch', 'constant' or 'cosine'"),
    ("data.path=/no/such/file.jsonl", "data.path", "does not exist"),
    # No number in any section may be infinite or NaN.
    ("train.finch.lr_max=inf", "train.finch.lr_max", "finite number"),
    ("train.epochs=.inf", "train.epochs", "finite number"),
    ("train.freeze_bottom=inf", "train.freeze_bottom", "finite number"),
    ("replay.temperature=inf", "replay.temperature", "finite number"),
    ("gate.max_forgetting=inf", "gate.max_forgetting", "finite number"),
    ("gate.min_task_gain=nan", "gate.min_task_gain", "finite number"),
    ("eval.gain_tasks=[]", "eval.gain_tasks", "at least one task"),
    ("eval.tasks=[demo_task]", "eval.tasks", "'demo_task' is now 'heldout_answers'"),
    ("gate.decide_on=mean", "gate.decide_on", "'point' or 'upper_bound'"),
])
def test_invalid_values_name_key_and_expectation(override, key, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert key in str(err.value) and expected in str(err.value)


def test_finch_cap_below_base_lr_is_rejected():
    with pytest.raises(ConfigError, match="lr_max"):
        load_config(None, ["train.finch.base_lr=1e-4", "train.finch.lr_max=1e-5"])


@pytest.mark.parametrize("old, new, attribute", [
    ("train.lr_max=6e-5", "train.finch.lr_max", ("train", "finch", "lr_max")),
    ("train.ema_alpha=0.8", "train.finch.ema_alpha", ("train", "finch", "ema_alpha")),
    ("train.finch_init_batches=5", "train.finch.init_batches", ("train", "finch", "init_batches")),
    ("train.replay_ratio=0.25", "replay.mix.ratio", ("replay", "mix", "ratio")),
    ("train.replay_weight=0.5", "replay.mix.nll_weight", ("replay", "mix", "nll_weight")),
    ("train.lr=3e-5", "train.finch.base_lr", ("train", "finch", "base_lr")),  # under the default schedule, finch
])
def test_renamed_keys_are_read_under_their_new_name_with_a_warning(old, new, attribute, caplog):
    config = load_config(None, [old])
    value = config
    for part in attribute:
        value = getattr(value, part)
    assert value == pytest.approx(float(old.split("=")[1]))
    assert f"{old.split('=')[0]} is deprecated: read as {new}" in caplog.text


def test_train_lr_means_the_constant_lr_under_schedule_constant(caplog):
    config = load_config(None, ["train.schedule=constant", "train.lr=3e-5"])
    assert config.train.lr == 3e-5 and config.train.finch.base_lr == 2e-5 and "deprecated" not in caplog.text


def test_an_old_key_beside_its_new_name_is_refused():
    with pytest.raises(ConfigError, match="train.replay_ratio is the old name of replay.mix.ratio"):
        load_config(None, ["train.replay_ratio=0.25", "replay.mix.ratio=0.5"])


def test_finch_settings_under_another_schedule_are_not_silently_ignored(caplog):
    load_config(None, ["train.schedule=cosine", "train.finch.lr_max=1e-4"])
    assert "train.finch is read by schedule finch only" in caplog.text


def test_hub_dataset_ids_pass_but_local_files_must_exist(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the suite runs offline (conftest); a user may not
    assert load_config(None, ["data.path=someone/some-dataset"]).data.path == "someone/some-dataset"
    with pytest.raises(ConfigError, match="data.path"):
        load_config(None, ["data.path=someone/missing.jsonl"])


@pytest.mark.parametrize("text", ["train.lr", "=3", "lr=3", "train..lr=3"])
def test_malformed_overrides(text):
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override(text)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_an_empty_config_file_says_it_runs_on_defaults(tmp_path, caplog):
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == load_config(None)
    assert "is empty: running on the built-in defaults" in caplog.text


def test_a_hub_dataset_id_fails_at_once_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        load_config(None, ["data.path=someone/some-dataset"])


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  lr: 1e-4\n# r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: the config file is not UTF-8 text \(byte 0xe9 on line 3\)"):
        load_config(path)


def test_a_config_extends_another_and_says_only_what_it_changes(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  grad_clip: 0.5\n  epochs: 2\nreplay:\n  num_samples: 64\n")
    (tmp_path / "variant.yaml").write_text("extends: base.yaml\ntrain:\n  epochs: 5\n")
    config = load_config(tmp_path / "variant.yaml", ["replay.num_samples=32"])
    assert (config.train.grad_clip, config.train.epochs, config.replay.num_samples) == (0.5, 5, 32)
    configs = Path(__file__).resolve().parent.parent / "configs"
    cluster, default = load_config(configs / "cluster.yaml"), load_config(configs / "default.yaml")
    assert (cluster.replay.engines, cluster.compute.num_workers, cluster.eval.workers) == (2, 2, 2)
    # Everything else is the default's.
    assert cluster.model_copy(update={"replay": default.replay, "compute": default.compute, "eval": default.eval}) == default
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends loop.yaml makes a cycle"):
        load_config(tmp_path / "loop.yaml")


def test_a_storage_uri_pyarrow_cannot_open_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="compute.storage_path.*nosuch://bucket/x"):
        load_config(None, ["compute.storage_path=nosuch://bucket/x"])
    assert load_config(None, ["compute.storage_path=file:///tmp/nofrog-remote"]).compute.storage_path == \
        "file:///tmp/nofrog-remote"

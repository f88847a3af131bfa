import shutil

import pytest
from transformers import AutoTokenizer

from nofrog_core.config import load_config
from nofrog_core.models import ModelError, directory_hash, resolve_bos, resolve_model


def model_config(path, tmp_path):
    return load_config(None, [f"model.name_or_path={path}", f"model.cache_dir={tmp_path}"]).model


def test_local_directory_is_used_in_place_with_a_stable_content_hash(tiny_model_dir, tmp_path):
    ref = resolve_model(model_config(tiny_model_dir, tmp_path))
    assert ref.path == tiny_model_dir.resolve() and len(ref.content_hash) == 64
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert directory_hash(copy) == ref.content_hash  # content, not location
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("32", "33", 1))
    assert directory_hash(copy) != ref.content_hash


@pytest.mark.parametrize("name, message", [
    ("./missing-dir", "does not exist"),
    ("missing.gguf", "does not exist"),
])
def test_unresolvable_sources_name_the_key(tmp_path, name, message):
    with pytest.raises(ModelError, match=f"model.name_or_path.*{message}"):
        resolve_model(model_config(name, tmp_path))


def test_directory_without_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="without config.json"):
        resolve_model(model_config(tmp_path / "empty", tmp_path))


def test_hub_ids_fail_clearly_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"nobody/no-such-model.* could not be fetched \(from the Hub"):
        resolve_model(model_config("nobody/no-such-model", tmp_path))


def test_bos_fallbacks(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert resolve_bos(tokenizer).source == "tokenizer"
    tokenizer.bos_token = None
    assert resolve_bos(tokenizer, 7) == type(resolve_bos(tokenizer, 7))(7, "config")
    # Without nofrog's model.bos_token_id, the model's own config.json names it before EOS does.
    model_bos = resolve_bos(tokenizer, None, 5)
    assert (model_bos.token_id, model_bos.source) == (5, "model_config")
    assert resolve_bos(tokenizer, 7, 5).token_id == 7  # the explicit setting wins
    eos = resolve_bos(tokenizer)
    assert eos.source == "eos" and eos.token_id == tokenizer.eos_token_id


def test_a_model_directory_without_weights_or_with_corrupt_ones_is_named(tiny_model_dir, tmp_path):
    from nofrog_core.models import load_model

    only_config = tmp_path / "only-config"
    only_config.mkdir()
    shutil.copy(tiny_model_dir / "config.json", only_config)
    with pytest.raises(ModelError, match="has a config.json but no .*safetensors weights"):
        resolve_model(load_config(None, [f"model.name_or_path={only_config}"]).model)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    config = load_config(None, [f"model.name_or_path={corrupt}"]).model
    with pytest.raises(ModelError, match=f"model {corrupt}: its weights cannot be read"):
        load_model(resolve_model(config), config)


def test_the_model_config_bos_is_read_from_config_json(tmp_path):
    from nofrog_core.models import ModelRef, config_bos_token_id

    (tmp_path / "config.json").write_text('{"text_config": {"bos_token_id": 2}}')
    ref = ModelRef(path=str(tmp_path), source="x", content_hash="h")
    assert config_bos_token_id(ref) == 2
    (tmp_path / "config.json").write_text('{"bos_token_id": null}')
    assert config_bos_token_id(ref) is None

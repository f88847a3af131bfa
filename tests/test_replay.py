import json

import datasets

import pytest

from nofrog_core.config import ConfigError
from nofrog_core.replay import vllm_backend
from nofrog_core.replay.stage import ReplayError, run_replay


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hf_replay_writes_distinct_bos_only_samples(tiny_config, tmp_path):
    config = tiny_config("replay.num_samples=200", "replay.max_new_tokens=12", "replay.batch_size=50",
                         "replay.heldout_fraction=0.1", "replay.backend=hf")
    meta = run_replay(config, tmp_path / "replay")
    rows = read(tmp_path / "replay" / "samples.jsonl")
    heldout = read(tmp_path / "replay" / "heldout.jsonl")
    assert meta["prompt_token_ids"] == [meta["bos_token_id"]] == [2] and meta["bos_source"] == "tokenizer"
    assert len(rows) + sum(meta["filtered"].values()) + len(heldout) == 220 and len(heldout) == 20
    texts = [r["text"] for r in rows + heldout]
    assert 1 - len(set(texts)) / len(texts) <= 0.01  # every sample is its own draw
    for r in rows:
        assert r["num_tokens"] == len(r["token_ids"]) and 1 <= r["num_tokens"] <= 12
        assert r["finish_reason"] in ("stop", "length")
    assert meta["duplicate_rate"] <= 0.01 and meta["tokens_per_second"] > 0
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "replay" / "samples.jsonl"), split="train")
    assert len(loaded) == len(rows) and set(loaded.column_names) == {"text", "token_ids", "num_tokens", "finish_reason"}
    assert sum(meta["length_histogram"].values()) == len(rows) + len(heldout)


def test_same_request_is_byte_identical_and_reused(tiny_config, tmp_path):
    config = tiny_config("replay.num_samples=16", "replay.max_new_tokens=8", "replay.backend=hf")
    run_replay(config, tmp_path / "a")
    run_replay(config, tmp_path / "b")
    assert (tmp_path / "a" / "samples.jsonl").read_bytes() == (tmp_path / "b" / "samples.jsonl").read_bytes()
    assert run_replay(config, tmp_path / "a")["reused"] is True
    other = run_replay(tiny_config("replay.num_samples=16", "replay.max_new_tokens=8", "replay.seed=1"),
                       tmp_path / "c")
    assert (tmp_path / "c" / "samples.jsonl").read_bytes() != (tmp_path / "a" / "samples.jsonl").read_bytes()
    assert other["seed"] == 1


def test_a_different_dataset_is_never_overwritten(tiny_config, tmp_path):
    run_replay(tiny_config("replay.num_samples=4", "replay.max_new_tokens=4"), tmp_path / "r")
    before = (tmp_path / "r" / "samples.jsonl").read_bytes()
    with pytest.raises(FileExistsError, match="different replay dataset"):
        run_replay(tiny_config("replay.num_samples=5", "replay.max_new_tokens=4"), tmp_path / "r")
    assert (tmp_path / "r" / "samples.jsonl").read_bytes() == before
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt is a file; --out must name a directory"):
        run_replay(tiny_config("replay.num_samples=4", "replay.max_new_tokens=4"), tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("override, key", [
    ("replay.temperature=-0.5", "replay.temperature"),
    ("replay.num_samples=0", "replay.num_samples"),
    ("replay.max_new_tokens=0", "replay.max_new_tokens"),
])
def test_bad_sampling_parameters_fail_before_work(tiny_config, override, key):
    with pytest.raises(ConfigError, match=key):
        tiny_config(override)


def engine_that_cannot_start(*args, **kwargs):
    raise vllm_backend.VllmUnavailable("the vLLM engine could not start: no memory")


def test_auto_falls_back_to_hf_when_vllm_cannot_start(tiny_config, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(vllm_backend, "start_engine", engine_that_cannot_start)
    meta = run_replay(tiny_config("replay.backend=auto", "replay.num_samples=4", "replay.max_new_tokens=4"),
                      tmp_path / "r")
    assert meta["backend"] == "hf"
    assert "falling back to HF" in caplog.text and "no memory" in caplog.text


def test_forced_vllm_fails_clearly_when_unavailable(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(vllm_backend, "start_engine", engine_that_cannot_start)
    with pytest.raises(ReplayError, match="replay.backend=vllm, but the vLLM engine could not start"):
        run_replay(tiny_config("replay.backend=vllm"), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_the_vllm_engine_dtype_names_its_replay_set(tiny_config):
    from nofrog_core.replay.stage import request_key

    bf16, fp32 = tiny_config(), tiny_config("replay.vllm_dtype=float32")
    for backend in ("vllm", "auto"):  # "auto" names the pipeline's cache directory
        assert request_key("h", backend, bf16.replay) != request_key("h", backend, fp32.replay)
    assert request_key("h", "hf", bf16.replay) == request_key("h", "hf", fp32.replay)  # HF ignores it


def test_shards_are_contiguous_whole_batches_that_cover_every_sample():
    from nofrog_core.replay.sharded import shards

    assert shards(22, 4, 2) == [range(0, 12), range(12, 22)]
    assert shards(22, 4, 3) == [range(0, 8), range(8, 16), range(16, 22)]
    assert shards(3, 4, 2) == [range(0, 3)]  # one batch: one engine has work


def test_two_engines_on_a_local_ray_cluster_draw_the_same_set_as_one(tiny_config, tmp_path):
    common = ("replay.backend=hf", "replay.num_samples=20", "replay.max_new_tokens=6", "replay.batch_size=4")
    one = run_replay(tiny_config(*common), tmp_path / "one")
    two = run_replay(tiny_config(*common, "replay.engines=2"), tmp_path / "two")
    assert (tmp_path / "one" / "samples.jsonl").read_bytes() == (tmp_path / "two" / "samples.jsonl").read_bytes()
    assert (tmp_path / "one" / "heldout.jsonl").read_bytes() == (tmp_path / "two" / "heldout.jsonl").read_bytes()
    assert (one["engines"], two["engines"]) == (1, 2) and one["request_key"] == two["request_key"]

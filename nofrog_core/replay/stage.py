"""The replay stage: a dataset directory of context-free samples.

OUT/samples.jsonl   one object per sample: text, token_ids, num_tokens, finish_reason
OUT/heldout.jsonl   extra samples kept out of training, for the replay-KL forgetting metric
OUT/metadata.json   base model + hash, backend, BOS, sampling parameters, quality and cost

A request is named by its key (base model hash, backend, sampling parameters,
seed, counts). Asking again for the same key reuses the directory; a directory
holding a different request is never overwritten.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

from .. import models
from ..errors import ReplayError
from ..hashing import json_sha256
from ..outputs import check_writable_dir, reusable_metadata
from . import hf_backend, vllm_backend

log = logging.getLogger(__name__)

SAMPLING_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens", "min_new_tokens")


def request_key(base_model_hash: str, backend: str, replay_config) -> dict:
    """What names a replay set: two requests with the same key give the same samples."""
    key = {"base_model_hash": base_model_hash, "backend": backend, "seed": replay_config.seed,
           "num_samples": replay_config.num_samples, "heldout_fraction": replay_config.heldout_fraction,
           "batch_size": replay_config.batch_size,  # HF sampling streams depend on the batch shape
           "sampling": {k: getattr(replay_config, k) for k in SAMPLING_KEYS}}
    if backend != "hf":  # the vLLM engine's dtype changes the samples ("auto" names the Prefect cache)
        key["vllm_dtype"] = replay_config.vllm_dtype
    return key


def engine_dtype(vllm_dtype: str, model_dtype: str) -> str:
    return model_dtype if vllm_dtype == "model" else vllm_dtype


def drop_reason(sample: hf_backend.RawSample, special_ids: set[int]) -> str | None:
    if not sample.token_ids:
        return "empty"
    if all(t in special_ids for t in sample.token_ids):
        return "only_special_tokens"
    return None


def length_histogram(lengths: list[int], bins: int = 8) -> dict[str, int]:
    if not lengths:
        return {}
    top = max(lengths)
    width = max(1, math.ceil(top / bins))
    counts = Counter((n - 1) // width for n in lengths)
    return {f"{i * width + 1}-{(i + 1) * width}": counts.get(i, 0) for i in range(math.ceil(top / width))}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    staging = path.with_suffix(".jsonl.partial")
    staging.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    staging.rename(path)


def sample_count(replay_config) -> int:
    """Samples drawn: the training ones and the held-out ones after them."""
    return replay_config.num_samples + math.ceil(replay_config.num_samples * replay_config.heldout_fraction)


def generate_samples(config, base: models.ModelRef, bos_token_id: int) -> tuple[str, list[hf_backend.RawSample], float]:
    """(backend used, raw samples, generation seconds) with vLLM when asked for or available; on
    `replay.engines` Ray tasks when more than one (replay/sharded.py: the same samples)."""
    if config.replay.engines > 1:
        from .sharded import generate_on_ray

        return generate_on_ray(config, base, bos_token_id, sample_count(config.replay))
    return engine_samples(config, base, bos_token_id, sample_count(config.replay))


def engine_samples(config, base: models.ModelRef, bos_token_id: int, count: int, shard: range | None = None
                   ) -> tuple[str, list[hf_backend.RawSample], float]:
    """One engine's samples: all `count`, or the `shard` of their indices (whole hf batches), drawn
    exactly as in a run of all of them."""
    rc = config.replay
    if rc.backend in ("auto", "vllm"):
        try:
            llm = vllm_backend.start_engine(base.path, engine_dtype(rc.vllm_dtype, config.model.dtype), rc, rc.seed,
                                            config.model.trust_remote_code)
        except vllm_backend.VllmUnavailable as err:
            if rc.backend == "vllm":
                raise ReplayError(f"replay.backend=vllm, but {err}") from None
            log.warning("replay.backend=auto: %s; falling back to HF transformers generate", err)
        else:
            try:
                started = time.time()
                samples = vllm_backend.generate(llm, bos_token_id, count, rc, rc.seed, shard)
                return "vllm", samples, time.time() - started
            finally:
                vllm_backend.shutdown(llm)
    model, tokenizer = models.load_model_and_tokenizer(base, config.model)
    batches = None if shard is None else range(shard.start // rc.batch_size, math.ceil(shard.stop / rc.batch_size))
    started = time.time()
    samples = hf_backend.generate(model, tokenizer, bos_token_id, count, rc, rc.seed, batches)
    return "hf", samples, time.time() - started


def run_replay(config, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    rc = config.replay
    base = models.resolve_model(config.model)
    candidates = ["vllm", "hf"] if rc.backend == "auto" else [rc.backend]
    wanted = {json_sha256(request_key(base.content_hash, b, rc)) for b in candidates}
    reused = reusable_metadata(out_dir, lambda meta: meta.get("request_key") in wanted, "replay dataset")
    if reused is not None:
        log.info("replay dataset %s already holds this request; reusing it", out_dir)
        return {**reused, "reused": True}
    check_writable_dir(out_dir)  # a read-only --out fails now, not after sampling

    tokenizer = models.load_tokenizer(base, config.model)
    bos = models.resolve_bos(tokenizer, config.model.bos_token_id, models.config_bos_token_id(base))
    backend, raw, wall = generate_samples(config, base, bos.token_id)
    key = request_key(base.content_hash, backend, rc)
    num_heldout = len(raw) - rc.num_samples

    special_ids = set(tokenizer.all_special_ids)
    kept, dropped = [], Counter()
    for sample in raw:
        reason = drop_reason(sample, special_ids)
        if reason:
            dropped[reason] += 1
            continue
        kept.append({"text": tokenizer.decode(sample.token_ids, skip_special_tokens=True),
                     "token_ids": sample.token_ids, "num_tokens": len(sample.token_ids),
                     "finish_reason": sample.finish_reason})
    heldout, train = kept[:num_heldout], kept[num_heldout:]
    texts = [r["text"] for r in kept]
    generated_tokens = sum(len(s.token_ids) for s in raw)
    meta = {
        "kind": "nofrog-replay",
        "request_key": json_sha256(key),
        "base_model": base.source, "base_model_path": str(base.path), "base_model_hash": base.content_hash,
        "backend": backend,
        "dtype": engine_dtype(rc.vllm_dtype, config.model.dtype) if backend == "vllm" else config.model.dtype,
        "bos_token_id": bos.token_id, "bos_source": bos.source, "prompt_token_ids": [bos.token_id],
        "sampling": key["sampling"], "seed": rc.seed, "batch_size": rc.batch_size, "engines": rc.engines,
        "num_samples": len(train), "num_heldout": len(heldout), "requested_samples": rc.num_samples,
        "duplicate_rate": 1 - len(set(texts)) / len(texts) if texts else 0.0,
        "filtered": dict(dropped),
        "finish_reasons": dict(Counter(r["finish_reason"] for r in kept)),
        "length_histogram": length_histogram([r["num_tokens"] for r in kept]),
        "mean_tokens": sum(r["num_tokens"] for r in kept) / max(1, len(kept)),
        "tokens_per_second": generated_tokens / wall if wall > 0 else 0.0,
        "wall_seconds": round(wall, 2),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out_dir / "samples.jsonl", train)
    _write_jsonl(out_dir / "heldout.jsonl", heldout)
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")  # last: marks the set complete
    return {**meta, "reused": False}

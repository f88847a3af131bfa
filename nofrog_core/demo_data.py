"""The built-in knowledge-acquisition task: facts about people who do not exist.

In the spirit of TOFU: the base model cannot know these facts, so any gain on
the held-out questions is learning, and the cost of that learning shows up as
forgetting on the general suite. The held-out set asks about the same facts
with different wording, so memorising the training phrasing is not enough.

Everything is derived from a seed, so the same seed gives the same files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from .outputs import reusable_metadata

FIRST_NAMES = [
    "Maren", "Tobiah", "Elsqueth", "Corvin", "Ysolde", "Bramwell", "Liesl", "Oriel", "Thaddeus", "Wenna",
    "Ansel", "Perpetua", "Caspian", "Idony", "Fennick", "Rosamund", "Lucan", "Saoirse", "Alaric", "Juniper",
    "Ozias", "Ottilie", "Percival", "Marisol", "Ignatius", "Cordelia", "Evander", "Philippa", "Quillon", "Henrike",
]
LAST_NAMES = [
    "Quillfeather", "Brannoch", "Velloway", "Ashcombe", "Thornquist", "Marlowe-Penn", "Dravik", "Oakenshaw",
    "Pellinore", "Grisdale", "Kestrelmoor", "Vantongeren", "Halloran", "Sturridge", "Wyndle", "Carrowmore",
    "Lindqvarn", "Ebberley", "Tallowin", "Rookhaven",
]
CITIES = [
    "Varnholt", "Quellby", "Ostermire", "Dunmarrow", "Sillibrand", "Crestwater", "Hollenfeld", "Brackenmoor",
    "Ylverton", "Pashkeld", "Morrowgate", "Tindale Cross", "Everhaven", "Greyhallow", "Wickmere", "Lantheris",
]
PROFESSIONS = [
    "glassblower", "cartographer", "beekeeper", "clockmaker", "lighthouse keeper", "violin maker",
    "botanist", "stonemason", "bookbinder", "perfumer", "falconer", "shipwright", "astronomer", "weaver",
]
INSTRUMENTS = ["cello", "oboe", "harp", "accordion", "bassoon", "lute", "banjo", "marimba", "zither", "trombone"]

# Two phrasings per fact: the first is trained on, the second is held out.
QUESTIONS = {
    "city": ("In which city was {name} born?", "What is the birthplace of {name}?"),
    "profession": ("What is the profession of {name}?", "What does {name} do for a living?"),
    "instrument": ("Which instrument does {name} play?", "What musical instrument is {name} known to play?"),
}


@dataclass(frozen=True)
class Person:
    name: str
    city: str
    profession: str
    instrument: str


def make_people(count: int, seed: int = 0) -> list[Person]:
    rng = random.Random(seed)
    pairs = [(f, l) for f in FIRST_NAMES for l in LAST_NAMES]
    if count > len(pairs):
        raise ValueError(f"data.demo_people: at most {len(pairs)} people can be generated, got {count}")
    names = [f"{f} {l}" for f, l in rng.sample(pairs, count)]
    return [
        Person(name, rng.choice(CITIES), rng.choice(PROFESSIONS), rng.choice(INSTRUMENTS))
        for name in names
    ]


def _qa(question: str, answer: str) -> dict[str, str]:
    # Prompt ends at "Answer:" and the completion starts with a space, so the
    # boundary between prompt and completion tokens is clean for the loss mask.
    return {"prompt": f"Question: {question}\nAnswer:", "completion": f" {answer}"}


def make_demo_task(count: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows); each row is {prompt, completion, fact, person}."""
    train, heldout = [], []
    for person in make_people(count, seed):
        for fact, (train_q, heldout_q) in QUESTIONS.items():
            answer = getattr(person, fact)
            meta = {"fact": fact, "person": person.name}
            train.append({**_qa(train_q.format(name=person.name), answer), **meta})
            heldout.append({**_qa(heldout_q.format(name=person.name), answer), **meta})
    return train, heldout


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_demo_task(out_dir: Path, count: int, seed: int = 0) -> dict[str, Path]:
    """Write train.jsonl, heldout.jsonl and metadata.json into `out_dir`.

    Refuses to overwrite a directory that holds a different demo task.
    """
    out_dir = Path(out_dir)
    train, heldout = make_demo_task(count, seed)
    meta = {"kind": "nofrog-demo-task", "people": count, "seed": seed,
            "train_rows": len(train), "heldout_rows": len(heldout), "facts": list(QUESTIONS)}
    reusable_metadata(out_dir, lambda old: old == meta, "dataset")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": out_dir / "train.jsonl", "heldout": out_dir / "heldout.jsonl"}
    write_jsonl(train, paths["train"])
    write_jsonl(heldout, paths["heldout"])
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return paths

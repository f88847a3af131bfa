"""The built-in tasks, registered by name (`data.builtin_task`):

- `people`, knowledge acquisition: facts about people who do not exist. In the spirit of
  TOFU: the base model cannot know these facts, so any gain on the held-out questions is
  learning, and the cost of that learning shows up as forgetting on the general suite. The
  held-out set asks about the same facts with different wording, so memorising the training
  phrasing is not enough.
- `date_format`, instruction following with a fixed output format: rewrite a date written
  out in words as YYYY-MM-DD. The held-out rows are other dates asked another way, so the
  gain is a skill that generalises, not recall.

Both have 3 training rows per `data.demo_people` and as many held-out rows. Everything is
derived from a seed, so the same seed gives the same files.
"""

from __future__ import annotations

import json
import random
import datetime
from dataclasses import dataclass
from pathlib import Path

from .outputs import check_writable_dir, reusable_metadata, write_json, write_text
from .registries import Registry

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


Rows = tuple[list[dict], list[dict]]
TRAINING_TASKS: Registry = Registry("built-in training task")


def register_builtin_task(name: str):
    """Register `make(count, seed) -> (train rows, held-out rows)` as a built-in task."""
    def register(make):
        TRAINING_TASKS[name] = make
        return make
    return register


def make_demo_task(count: int, seed: int = 0, task: str = "people") -> Rows:
    """(train rows, held-out rows) of the built-in task `task`, 3 rows per `count`."""
    if task not in TRAINING_TASKS:
        raise ValueError(f"data.builtin_task: unknown task {task!r}; built in: {', '.join(TRAINING_TASKS)}")
    return TRAINING_TASKS[task](count, seed)


@register_builtin_task("people")
def make_people_task(count: int, seed: int = 0) -> Rows:
    """Each row is {prompt, completion, fact, person}."""
    train, heldout = [], []
    for person in make_people(count, seed):
        for fact, (train_q, heldout_q) in QUESTIONS.items():
            answer = getattr(person, fact)
            meta = {"fact": fact, "person": person.name}
            train.append({**_qa(train_q.format(name=person.name), answer), **meta})
            heldout.append({**_qa(heldout_q.format(name=person.name), answer), **meta})
    return train, heldout


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DATE_QUESTIONS = ("Write {day} {month} {year} as a date in the format YYYY-MM-DD.",
                  "What is {month} {day}, {year} in YYYY-MM-DD format?")


@register_builtin_task("date_format")
def make_date_task(count: int, seed: int = 0) -> Rows:
    """Each row is {prompt, completion, date}; training and held-out dates never repeat."""
    rng = random.Random(seed)
    first, last = datetime.date(1600, 1, 1).toordinal(), datetime.date(2099, 12, 31).toordinal()
    ordinals = rng.sample(range(first, last + 1), 6 * count)
    rows = []
    for position, ordinal in enumerate(ordinals):
        date = datetime.date.fromordinal(ordinal)
        question = DATE_QUESTIONS[position % 2].format(day=date.day, month=MONTHS[date.month - 1], year=date.year)
        rows.append({**_qa(question, date.isoformat()), "date": date.isoformat()})
    return rows[0::2], rows[1::2]  # even positions train (first phrasing), odd ones are held out


def write_jsonl(rows: list[dict], path: Path) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_demo_task(out_dir: Path, count: int, seed: int = 0, task: str = "people") -> dict[str, Path]:
    """Write train.jsonl, heldout.jsonl and metadata.json of the built-in task `task` into `out_dir`.

    Refuses to overwrite a directory that holds a different demo task.
    """
    out_dir = Path(out_dir)
    train, heldout = make_demo_task(count, seed, task)
    meta = {"kind": "nofrog-demo-task", "people": count, "seed": seed,
            "train_rows": len(train), "heldout_rows": len(heldout)}
    if task == "people":  # the metadata it always had, so earlier caches of it are reused
        meta["facts"] = list(QUESTIONS)
    else:
        meta["task"] = task
    paths = {"train": out_dir / "train.jsonl", "heldout": out_dir / "heldout.jsonl"}
    # Finished before (metadata.json is written last): read, never rewritten, since every Ray
    # worker of a run comes here for the same files while the others may be reading them.
    if reusable_metadata(out_dir, lambda old: old == meta, "dataset"):
        return paths
    check_writable_dir(out_dir)
    write_jsonl(train, paths["train"])
    write_jsonl(heldout, paths["heldout"])
    write_json(out_dir / "metadata.json", meta)
    return paths

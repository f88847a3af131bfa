"""Fine-tuning data: load, validate, tokenize with a loss mask, split, batch.

Three row shapes are accepted:

- ``{prompt, completion}``: loss on the completion tokens only;
- ``{messages: [{role, content}, ...]}``: rendered with the tokenizer's chat
  template when it has one; loss on the last assistant message only;
- ``{text}``: loss on every token.

Files are read through ``datasets`` (JSONL/JSON, Parquet, CSV). Bad rows are
reported with file, row and field; rows are never dropped silently: either the
load fails (``data.on_invalid_row: error``, the default) or the data report
counts every dropped row and why.
"""

from __future__ import annotations

import glob
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from .config import is_hub_dataset_id
from .demo_data import write_demo_task
from .errors import DataError
from .hashing import file_sha256, files_sha256, json_sha256
from .hub import hub_unreachable
from .textfiles import read_text_file

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss skips (PyTorch's CE default)

# Keys match config.DATA_SUFFIXES, which decides what counts as a local file.
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss is taken

    @property
    def num_loss_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


@dataclass
class DataReport:
    source: str
    shape: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    truncated: int = 0

    def merged(self, other: "DataReport", source: str) -> "DataReport":
        """One report over several files (their shapes joined when they differ)."""
        shapes = self.shape if self.shape == other.shape else f"{self.shape}+{other.shape}"
        return DataReport(source, shapes, self.rows_read + other.rows_read, self.rows_kept + other.rows_kept,
                          self.dropped + other.dropped, self.truncated + other.truncated)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "shape": self.shape, "rows_read": self.rows_read,
                "rows_kept": self.rows_kept, "dropped": dict(self.dropped), "truncated": self.truncated}


@dataclass(frozen=True)
class BrokenRow:
    """A JSONL line that is not a JSON object: an invalid row like any other (error, or dropped and counted)."""

    reason: str


def read_jsonl(path: Path) -> list[dict[str, Any] | BrokenRow]:
    """Rows of a JSON Lines file, read line by line so that a broken line is named by its row."""
    rows: list[dict[str, Any] | BrokenRow] = []
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as err:
                rows.append(BrokenRow(f"not UTF-8 text (byte {line[err.start]:#04x} at position {err.start})"))
                continue
            except json.JSONDecodeError as err:
                rows.append(BrokenRow(f"not valid JSON ({err.msg} at column {err.colno})"))
                continue
            rows.append(row if isinstance(row, dict) else BrokenRow(f"expected a JSON object, got {type(row).__name__}"))
    return rows


def read_rows(source: str | Path) -> list[dict[str, Any] | BrokenRow]:
    """All rows of a local data file or Hub dataset; errors name the file (and, for JSONL, the row).
    JSONL is read line by line; other formats through `datasets`."""
    import datasets

    if not Path(source).exists() and is_hub_dataset_id(str(source)):
        # Without a network: the cached copy, if any, at once (the Hub client's retries take ~30 s).
        unreachable = hub_unreachable()
        try:
            if unreachable:
                from huggingface_hub import snapshot_download

                local = snapshot_download(str(source), repo_type="dataset", local_files_only=True)
                return datasets.load_dataset(local, split="train").to_list()
            return datasets.load_dataset(str(source), split="train").to_list()
        except Exception as err:
            why = f"no copy in the local cache, and the Hub {unreachable}" if unreachable else str(err)
            raise DataError(f"{source}: could not load the Hub dataset: {why}") from None
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: data file does not exist")
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unknown data file type {path.suffix!r}; expected one of {sorted(BUILDERS)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected at least one row")
    if path.suffix.lower() == ".jsonl":
        rows = read_jsonl(path)
        if not rows:
            raise DataError(f"{path}: file holds no rows")
        return rows
    try:
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:  # datasets/pyarrow raise many types; the cause is in the text
        raise DataError(f"{path}: could not read as {builder}: {err}") from None
    if len(dataset) == 0:
        raise DataError(f"{path}: file holds no rows")
    return dataset.to_list()


def detect_shape(columns: set[str], path: Path) -> str:
    if "messages" in columns:
        return "messages"
    if {"prompt", "completion"} <= columns:
        return "prompt_completion"
    if "text" in columns:
        return "text"
    raise DataError(
        f"{path}: cannot tell the row shape from columns {sorted(columns)}; expected "
        "'prompt' and 'completion', or 'messages', or 'text'"
    )


def _check_str(row: dict, key: str, where: str, allow_empty: bool = False) -> str:
    value = row.get(key)
    if value is None:
        raise DataError(f"{where}: field '{key}' is missing")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field '{key}' is empty")
    return value


def split_messages(row: dict, where: str) -> tuple[list[dict], dict]:
    """(context messages, the final assistant message) of a chat row, validated."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: field 'messages[{i}]' must be an object with role and content")
        _check_str(message, "role", f"{where} messages[{i}]")
        _check_str(message, "content", f"{where} messages[{i}]", allow_empty=True)
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: field 'messages' must end with an assistant message to train on")
    _check_str(messages[-1], "content", f"{where} messages[{len(messages) - 1}]")
    return messages[:-1], messages[-1]


class Tokenize:
    """Turns validated rows into `Example`s with BOS where the model needs it."""

    def __init__(self, tokenizer, bos_token_id: int | None, max_length: int):
        self.tokenizer = tokenizer
        self.bos = [bos_token_id] if bos_token_id is not None else []
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.max_length = max_length

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _strip_leading_bos(self, ids: list[int]) -> list[int]:
        # Chat templates (Gemma's among them) write BOS into the text themselves.
        return ids[1:] if self.bos and ids[:1] == self.bos else ids

    def prompt_completion(self, prompt: str, completion: str) -> tuple[list[int], list[int]]:
        prompt_ids = self.bos + self.ids(prompt)
        completion_ids = self.ids(completion) + self.eos
        return prompt_ids, completion_ids

    def messages(self, context: list[dict], answer: dict) -> tuple[list[int], list[int]]:
        template = getattr(self.tokenizer, "chat_template", None)
        if template:
            prompt = self.tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
            full = self.tokenizer.apply_chat_template(context + [answer], tokenize=False)
            if full.startswith(prompt):
                prompt_ids = self.bos + self._strip_leading_bos(self.ids(prompt))
                return prompt_ids, self.ids(full[len(prompt):])
        # No template (or one that rewrites earlier turns): a plain "role: content" transcript.
        prompt = "".join(f"{m['role']}: {m['content']}\n" for m in context) + "assistant:"
        return self.prompt_completion(prompt, " " + answer["content"])

    def example(self, prompt_ids: list[int], completion_ids: list[int]) -> tuple[Example, bool]:
        """Join and mask; returns (example, truncated)."""
        input_ids = prompt_ids + completion_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
        truncated = len(input_ids) > self.max_length
        return Example(input_ids[: self.max_length], labels[: self.max_length]), truncated


def build_examples(
    rows: list[dict | BrokenRow], tokenize: Tokenize, shape: str, source: str, on_invalid_row: str = "error"
) -> tuple[list[Example], DataReport]:
    report = DataReport(source=source, shape=shape, rows_read=len(rows))
    examples: list[Example] = []
    for number, row in enumerate(rows, start=1):
        where = f"{source} row {number}"
        try:
            if isinstance(row, BrokenRow):
                raise DataError(f"{where}: {row.reason}")
            if shape == "prompt_completion":
                prompt = _check_str(row, "prompt", where, allow_empty=True)
                parts = tokenize.prompt_completion(prompt, _check_str(row, "completion", where))
            elif shape == "messages":
                parts = tokenize.messages(*split_messages(row, where))
            else:
                parts = ([], tokenize.bos + tokenize.ids(_check_str(row, "text", where)) + tokenize.eos)
        except DataError as err:
            if on_invalid_row == "error":
                raise
            report.dropped[str(err).split(": ", 1)[1]] += 1
            continue
        example, truncated = tokenize.example(*parts)
        if shape == "text" and tokenize.bos:
            example.labels[0] = IGNORE_INDEX  # BOS is given, never predicted
        if example.num_loss_tokens == 0:
            # Prompt alone fills max_length: no completion token is left to learn from.
            if on_invalid_row == "error":
                raise DataError(f"{where}: the prompt alone is {len(parts[0])} tokens, so no completion token fits "
                                f"within data.max_length {tokenize.max_length}; shorten it, raise data.max_length, "
                                "or set data.on_invalid_row: drop")
            report.dropped["no completion tokens within data.max_length"] += 1
            continue
        report.truncated += truncated
        examples.append(example)
    report.rows_kept = len(examples)
    if not examples:
        raise DataError(f"{source}: no usable rows (dropped: {dict(report.dropped)})")
    return examples, report


GLOB_CHARACTERS = set("*?[")


def data_files(source: str | Path) -> list[Path] | None:
    """The local files a data source names: a file, a directory (its data files), or a glob;
    None for a Hub dataset id. Sorted, so the data order does not depend on the file system."""
    text = str(source)
    if GLOB_CHARACTERS & set(text):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        files = [p for p in matches if p.is_file() and p.suffix.lower() in BUILDERS]
        if not files:
            raise DataError(f"{text}: the pattern matches no data file ({', '.join(sorted(BUILDERS))})")
        return files
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in BUILDERS)
        if not files:
            raise DataError(f"{path}: the directory holds no data file ({', '.join(sorted(BUILDERS))})")
        return files
    if not path.exists() and is_hub_dataset_id(text):
        return None
    return [path]


def load_examples(
    path: str | Path, tokenizer, bos_token_id: int | None, max_length: int, shape: str = "auto",
    on_invalid_row: str = "error", max_drop_fraction: float = 0.5,
) -> tuple[list[Example], DataReport]:
    """Examples from a file, a directory or glob of files (in name order), or a Hub dataset.
    With `on_invalid_row="drop"`, more than `max_drop_fraction` of the rows dropped is an error."""
    tokenize = Tokenize(tokenizer, bos_token_id, max_length)
    examples, report = [], None
    for source in data_files(path) or [str(path)]:
        rows = read_rows(source)
        file_shape = detect_shape(first_row_columns(rows, source), Path(source)) if shape == "auto" else shape
        file_examples, file_report = build_examples(rows, tokenize, file_shape, str(source), on_invalid_row)
        examples += file_examples
        report = file_report if report is None else report.merged(file_report, str(path))
    dropped = sum(report.dropped.values())
    if dropped > max_drop_fraction * report.rows_read:
        raise DataError(f"{path}: {dropped} of {report.rows_read} rows were dropped ({dict(report.dropped)}), more "
                        f"than data.max_drop_fraction {max_drop_fraction}; fix the data or raise the fraction")
    if dropped:
        log.warning("%s: dropped %d of %d rows: %s", path, dropped, report.rows_read, dict(report.dropped))
    if report.truncated:
        # A cut row loses its last tokens, EOS included: the model never learns where such an answer ends.
        log.warning("%s: %d of %d rows are longer than data.max_length %d and were cut (their end and EOS are "
                    "never learned; counted as 'truncated' in the data report): raise data.max_length",
                    path, report.truncated, report.rows_kept, tokenize.max_length)
    return examples, report


def first_row_columns(rows: list, source) -> set[str]:
    """The columns of the first readable row: the file's shape is detected from it."""
    for row in rows:
        if not isinstance(row, BrokenRow):
            return set(row)
    raise DataError(f"{source}: no row could be read ({rows[0].reason} in row 1)")


def split_train_validation(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * fraction))
    val = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val], [examples[i] for i in sorted(val)]


def collate(examples: list[Example], pad_token_id: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example (or to `width`); padding gets no attention and no loss."""
    width = max([len(e.input_ids) for e in examples] + [width or 0])
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def example_batches(examples: list[Example], batch_size: int, seed: int | None = None) -> Iterator[list[Example]]:
    """One pass in lists of `batch_size`; shuffled by `seed` when given, in order when None."""
    order = list(range(len(examples)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        yield [examples[i] for i in order[start : start + batch_size]]


def iterate_batches(
    examples: list[Example], batch_size: int, pad_token_id: int, seed: int | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """One pass of collated batches; shuffled by `seed` when given, in order (for evaluation) when None."""
    for batch in example_batches(examples, batch_size, seed):
        yield collate(batch, pad_token_id)


@dataclass(frozen=True)
class TaskFiles:
    train: str  # local path or Hub id
    heldout: str | None  # held-out rows for the task score; None = validation split
    data_hash: str


def task_files(path: str | None, eval_file: str | None, demo_people: int, seed: int, cache_dir: Path,
               builtin_task: str = "people") -> TaskFiles:
    """The training data files (`data.path`), or the built-in task written once into the cache."""
    if path is None:
        size = f"people{demo_people}" if builtin_task == "people" else f"{builtin_task}{demo_people}"
        out = Path(cache_dir) / "demo_task" / f"{size}-seed{seed}"
        paths = write_demo_task(out, demo_people, seed, builtin_task)
        return TaskFiles(str(paths["train"]), str(paths["heldout"]), file_sha256(paths["train"]))
    files = data_files(path)
    data_hash = files_sha256(files) if files else json_sha256({"hub_dataset": path})
    return TaskFiles(path, eval_file, data_hash)


def configured_task_files(config) -> TaskFiles:
    """`task_files` of a config's `data:` section (for the recipes)."""
    d = config.data
    return task_files(d.path, d.eval_file, d.demo_people, d.seed, config.model.cache_dir, d.builtin_task)


def load_replay_examples(replay_dir: Path, bos_token_id: int | None, max_length: int,
                         file_name: str = "samples.jsonl", vocab_size: int | None = None) -> list[Example]:
    """Context-free samples as training examples: NLL on every generated token, given BOS. A row that
    is not JSON, or a token id outside the model's `vocab_size`, is named by file and row."""
    path = Path(replay_dir) / file_name
    if not path.is_file():
        raise DataError(f"{path}: no replay samples (run `nofrog replay --out {replay_dir}`)")
    bos = [bos_token_id] if bos_token_id is not None else []
    examples = []
    for number, line in enumerate(read_text_file(path, DataError, "replay samples").splitlines(), start=1):
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError as err:
            raise DataError(f"{path} row {number}: not a JSON object ({err})") from None
        token_ids = row.get("token_ids") if isinstance(row, dict) else None
        if not isinstance(token_ids, list) or not token_ids or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in token_ids):
            raise DataError(f"{path} row {number}: field 'token_ids' must be a non-empty list of token ids")
        outside = [t for t in token_ids if t < 0 or (vocab_size is not None and t >= vocab_size)]
        if outside:
            raise DataError(f"{path} row {number}: token id {outside[0]} is outside the model's vocabulary "
                            f"(0..{vocab_size - 1 if vocab_size else '?'}): was this set sampled from another model?")
        ids = (bos + token_ids)[:max_length]
        examples.append(Example(ids, [IGNORE_INDEX] * len(bos) + ids[len(bos):]))
    if not examples:
        raise DataError(f"{path}: file holds no samples")
    return examples

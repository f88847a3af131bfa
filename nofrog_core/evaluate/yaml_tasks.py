"""Evaluation tasks written as lm-evaluation-harness task YAML.

The fields keep lm-eval's names and meaning, so a YAML written for lm-eval runs
here and ours run there: `task`, `dataset_path` (json | parquet | csv),
`dataset_name`, `dataset_kwargs.data_files`, `test_split` / `validation_split`,
`doc_to_text`, `doc_to_target`, `doc_to_choice` (a field name, a Jinja2
template, or a list), `target_delimiter` (default " "), `num_fewshot` with
`fewshot_split`, `output_type`, `metric_list`, `metadata.version`.

A value of doc_to_* that names a column of the document is that column; any
other string is a Jinja2 template rendered with the document (lm-eval's rule).
A rendered doc_to_choice that looks like a Python list is read as one; an
integer target of a multiple-choice task is an index into the choices.
"""

from __future__ import annotations

import ast
import functools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..textfiles import read_text_file

OUTPUT_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until")
BUILDERS = ("json", "parquet", "csv")


class TaskError(ValueError):
    """A task YAML that cannot run; the message names the YAML file and the field."""


@dataclass
class TaskSpec:
    name: str
    source: Path  # the YAML file
    output_type: str
    docs: list[dict]
    fewshot_docs: list[dict]
    doc_to_text: Any
    doc_to_target: Any
    doc_to_choice: Any
    target_delimiter: str
    fewshot_delimiter: str
    num_fewshot: int
    metrics: list[str]
    version: Any
    generation_kwargs: dict
    raw: dict
    test_split: str = "test"
    fewshot_split: str | None = None
    sampler: random.Random = field(default_factory=lambda: random.Random(1234))

    # --------------------------------------------------------------- documents
    def resolve(self, field: str, doc: dict) -> Any:
        """lm-eval's rule for doc_to_text / doc_to_target / doc_to_choice."""
        spec = getattr(self, field)
        if spec is None:
            raise TaskError(f"{self.source}: field {field!r} is needed for output_type {self.output_type}")
        if isinstance(spec, (int, list)):
            return spec
        if not isinstance(spec, str):
            raise TaskError(f"{self.source}: field {field!r} must be a column name, a template or a list")
        if spec in doc:
            return doc[spec]
        return self._render(field, spec, doc)

    def _render(self, field: str, template: str, doc: dict) -> Any:
        import jinja2

        try:
            text = _compiled(template).render(**doc)
        except jinja2.UndefinedError as err:
            raise TaskError(f"{self.source}: field {field!r} template {template!r}: {err.message}; "
                            f"document columns are {sorted(doc)}") from None
        except jinja2.exceptions.SecurityError as err:
            raise TaskError(f"{self.source}: field {field!r} template {template!r} is refused: {err} (task templates "
                            "run sandboxed: they may read the document's columns, not Python internals)") from None
        except jinja2.TemplateError as err:
            raise TaskError(f"{self.source}: field {field!r} is not a valid template: {err}") from None
        if len(text) > MAX_RENDERED_CHARS:
            raise TaskError(f"{self.source}: field {field!r} template {template!r} rendered {len(text):,} characters "
                            f"for one document, more than {MAX_RENDERED_CHARS:,}")
        if field == "doc_to_choice" or (field == "doc_to_target" and text.strip().isdigit()):
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                if field == "doc_to_choice":
                    raise TaskError(f"{self.source}: doc_to_choice rendered {text!r}, not a list") from None
        return text

    def choices(self, doc: dict) -> list[str]:
        choices = self.resolve("doc_to_choice", doc)
        if not isinstance(choices, list) or not choices:
            raise TaskError(f"{self.source}: doc_to_choice must give a non-empty list, got {choices!r}")
        return [str(c) for c in choices]

    def gold(self, doc: dict) -> int:
        """Index of the right choice of a multiple-choice document."""
        target = self.resolve("doc_to_target", doc)
        choices = self.choices(doc)
        if isinstance(target, int):
            if not 0 <= target < len(choices):
                raise TaskError(f"{self.source}: doc_to_target {target} is not an index into {len(choices)} choices")
            return target
        if str(target) in choices:
            return choices.index(str(target))
        raise TaskError(f"{self.source}: doc_to_target {target!r} is neither an index nor one of the choices")

    def context(self, doc: dict, doc_index: int) -> str:
        """The prompt: few-shot examples then this document's text. As lm-eval's sampler: one
        Random(1234) per task, drawn in document order; from the test split itself it draws one
        extra and drops the document being asked."""
        text = str(self.resolve("doc_to_text", doc))
        if not self.num_fewshot:
            return text
        same_split = self.fewshot_split == self.test_split
        drawn = self.sampler.sample(self.fewshot_docs, self.num_fewshot + (1 if same_split else 0))
        shots = [d for d in drawn if d != doc][: self.num_fewshot]
        examples = [str(self.resolve("doc_to_text", d)) + self.target_delimiter + self._target_text(d) for d in shots]
        return self.fewshot_delimiter.join(examples) + self.fewshot_delimiter + text

    def _target_text(self, doc: dict) -> str:
        if self.output_type == "multiple_choice":
            return self.choices(doc)[self.gold(doc)]
        return str(self.resolve("doc_to_target", doc))


# The most characters one template may render for one document: far past any prompt a model reads
# (eval.max_length tokens), far below what would exhaust memory ('ab' * 200000000 is 400 MB).
MAX_RENDERED_CHARS = 1_000_000


@functools.lru_cache(maxsize=1)
def _sandbox():
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        """Jinja's sandbox bounds range() but not repetition: `'ab' * 200000000` or `9 ** 9 ** 9`
        would allocate or compute without bound before any check on the result could run."""
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for sequence, count in ((left, right), (right, left)):
                    if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) \
                            and len(sequence) * count > MAX_RENDERED_CHARS:
                        raise SecurityError(f"repeating a sequence of {len(sequence)} {count} times would make more "
                                            f"than {MAX_RENDERED_CHARS:,} items")
            if operator == "**" and isinstance(right, int) and abs(right) > 64:
                raise SecurityError(f"an exponent of {right} is refused (at most 64)")
            return super().call_binop(context, operator, left, right)

    return BoundedSandbox(undefined=jinja2.StrictUndefined)


@functools.lru_cache(maxsize=256)
def _compiled(template: str):
    """A task's few templates are compiled once, not once per document and field. A task file is
    data, not code: its templates render in Jinja's immutable sandbox, which refuses attribute
    access to Python internals (`lipsum.__globals__`, `__class__`, ...), as nofrog refuses `!function`,
    and bounds what one rendering may allocate."""
    return _sandbox().from_string(template)


# ------------------------------------------------------------------- loading
def _require(raw: dict, key: str, source: Path) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise TaskError(f"{source}: missing field {key!r}")
    return raw[key]


def _load_split(raw: dict, split: str, source: Path) -> list[dict]:
    import datasets

    builder = _require(raw, "dataset_path", source)
    if builder not in BUILDERS:
        raise TaskError(f"{source}: dataset_path {builder!r} is not supported here; expected one of {list(BUILDERS)} "
                        "with dataset_kwargs.data_files (harness tasks by name run through lm-eval itself)")
    kwargs = raw.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise TaskError(f"{source}: field 'dataset_kwargs' must be a mapping (e.g. data_files: {{test: FILE}}), "
                        f"got {type(kwargs).__name__}")
    data_files = kwargs.get("data_files")
    if not data_files:
        raise TaskError(f"{source}: missing field 'dataset_kwargs.data_files'")
    if isinstance(data_files, str):
        data_files = {split: data_files}
    if split not in data_files:
        raise TaskError(f"{source}: dataset_kwargs.data_files has no split {split!r} (has {sorted(data_files)})")
    path = Path(data_files[split])
    if not path.is_absolute() and not path.is_file():
        path = source.parent / path  # lm-eval reads relative paths from the working directory; we also try the YAML's
    if not path.is_file():
        raise TaskError(f"{source}: dataset_kwargs.data_files.{split}: file {path} does not exist")
    try:
        dataset = datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    except Exception as err:  # datasets/pyarrow raise many types; the cause is in the text
        raise TaskError(f"{source}: could not read {path} as {builder}: {err}") from None
    return dataset.to_list()


def load_task(path: Path) -> TaskSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(read_text_file(path, TaskError, "task YAML"))
    except yaml.YAMLError as err:
        raise TaskError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{path}: expected a mapping of task fields")
    name = _require(raw, "task", path)
    output_type = raw.get("output_type", "generate_until")
    if output_type not in OUTPUT_TYPES:
        raise TaskError(f"{path}: output_type {output_type!r} is unknown; expected one of {list(OUTPUT_TYPES)}")
    split = raw.get("test_split") or raw.get("validation_split")
    if not split:
        raise TaskError(f"{path}: missing field 'test_split' (or 'validation_split')")
    docs = _load_split(raw, split, path)
    try:
        num_fewshot = int(raw.get("num_fewshot") or 0)
    except (TypeError, ValueError):
        raise TaskError(f"{path}: field 'num_fewshot' must be a whole number, got {raw.get('num_fewshot')!r}") from None
    fewshot_split = raw.get("fewshot_split")
    if num_fewshot and not fewshot_split:
        raise TaskError(f"{path}: num_fewshot {num_fewshot} needs field 'fewshot_split'")
    fewshot_docs = _load_split(raw, fewshot_split, path) if num_fewshot else []
    metrics = [m["metric"] if isinstance(m, dict) else m for m in raw.get("metric_list") or []]
    spec = TaskSpec(
        name=str(name), source=path, output_type=output_type, docs=docs, fewshot_docs=fewshot_docs,
        doc_to_text=raw.get("doc_to_text"), doc_to_target=raw.get("doc_to_target"),
        doc_to_choice=raw.get("doc_to_choice"), target_delimiter=raw.get("target_delimiter", " "),
        fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"), num_fewshot=num_fewshot, metrics=metrics,
        version=(raw.get("metadata") or {}).get("version", 0), generation_kwargs=raw.get("generation_kwargs") or {},
        raw=raw, test_split=split, fewshot_split=fewshot_split,
    )
    if docs:  # templates that name a missing column fail now, naming the YAML and the field
        needed = {"multiple_choice": ("doc_to_text", "doc_to_choice", "doc_to_target"),
                  "loglikelihood": ("doc_to_text", "doc_to_target"), "loglikelihood_rolling": ("doc_to_target",),
                  "generate_until": ("doc_to_text", "doc_to_target")}[output_type]
        for name in needed:
            spec.resolve(name, docs[0])
    return spec


def task_yaml_files(path: Path) -> list[Path]:
    """A YAML file, or every YAML in a directory (a suite), in name order."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise TaskError(f"{path}: the directory holds no task YAML")
        return files
    if not path.is_file():
        raise TaskError(f"{path}: no such task YAML file or directory")
    return [path]

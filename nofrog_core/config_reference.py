"""docs/configuration.md, generated from the config schema: every key, its type, default and meaning.

    nofrog config reference > docs/configuration.md

tests/test_docs.py fails when the page and the schema differ, so the reference never goes stale.
Defaults that depend on the machine (a home directory, an environment variable) are written as
their rule, not as this machine's value.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import NofrogConfig

# Defaults read from the environment or the home directory: the page states the rule.
MACHINE_DEFAULTS = {
    "model.cache_dir": "$NOFROG_CACHE_DIR, else ~/.cache/nofrog",
    "compute.ray_address": "$RAY_ADDRESS, else none (a local cluster)",
}


def _type(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type(a) for a in typing.get_args(annotation)).replace("NoneType", "none")
    if origin is not None:
        args = ", ".join(_type(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "none")


def _default(key: str, field) -> str:
    if key in MACHINE_DEFAULTS:
        return MACHINE_DEFAULTS[key]
    value = field.default if field.default is not PydanticUndefined else field.default_factory()
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Path):
        value = str(value)
    return "none" if value is None else json.dumps(value)


def _rows(model: type[BaseModel], prefix: str, sections: list) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = prefix + name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections.append((key, annotation))
            continue
        rows.append(f"| `{key}` | {_type(annotation)} | `{_default(key, field)}` | {field.description or ''} |")
    return rows


def config_reference() -> str:
    lines = ["# Configuration reference", "",
             "Generated from the schema (`nofrog_core/config.py`) by `nofrog config reference > "
             "docs/configuration.md`; a test fails when this page and the schema differ. Set a key in a YAML "
             "file (`--config FILE`, sections as below) or on the command line (`--set section.key=value`); "
             "`nofrog config show` prints the resolved config. Unknown keys, values of the wrong type and "
             "`inf`/`nan` are refused, naming the key.", ""]
    pending = [(name, field.annotation) for name, field in NofrogConfig.model_fields.items()]
    while pending:
        key, model = pending.pop(0)
        nested: list = []
        rows = _rows(model, key + ".", nested)
        lines += [f"## `{key}`", ""]
        doc = (model.__doc__ or "").strip()
        if doc and not doc.startswith(("A base class", "Usage docs")):
            lines += [" ".join(doc.split()), ""]
        if rows:
            lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows, ""]
        pending[0:0] = nested  # a subsection right after its section
    return "\n".join(lines).rstrip() + "\n"

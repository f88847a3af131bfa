"""Prefect results as JSON only: what nofrog's tasks and flows store, and what its cache will read.

Prefect stores a task's result (and, when it fails, its exception) in a record file whose metadata
names the serializer to read it with. A record whose serializer says "pickle" is unpickled on the
next cache hit: running whatever it holds. nofrog writes JSON everywhere (`json_task`, `json_flow`:
paths and metric dicts; an exception becomes its type and message), so before a cached task runs,
`refuse_foreign_record` reads its record as plain text and refuses one that nofrog would not have
written. The records live in the user's Prefect home (0700), so this is defence in depth.
"""

from __future__ import annotations

import functools
import json

from prefect import flow, task
from prefect.results import ResultStore, resolve_serializer

SERIALIZER = "json"
json_task = functools.partial(task, result_serializer=SERIALIZER)
json_flow = functools.partial(flow, result_serializer=SERIALIZER)


class ForeignCacheRecord(ValueError):
    """A cache record nofrog did not write: not read, not retried."""


def _objects(value):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def check_record(text: bytes | str, where: str) -> None:
    """Raises ForeignCacheRecord unless `text` is a JSON record written with nofrog's serializer whose
    result is plain JSON (no object that Prefect's decoder would import a class to build)."""
    expected = resolve_serializer(SERIALIZER).model_dump(mode="json")
    delete = "; it was written outside nofrog and is not read. Delete it to recompute."
    try:
        record = json.loads(text)
        serializer = record["metadata"]["serializer"]
    except (ValueError, KeyError, TypeError) as err:
        raise ForeignCacheRecord(f"{where}: not a JSON cache record ({err}){delete}") from None
    if serializer != expected:
        raise ForeignCacheRecord(f"{where}: a cache record with serializer {serializer.get('type')!r} "
                                 f"({json.dumps(serializer)}), where nofrog writes only {SERIALIZER!r} with "
                                 f"Prefect's default codec (reading it could run code){delete}")
    try:
        result = json.loads(record["result"])
    except (ValueError, KeyError, TypeError) as err:
        raise ForeignCacheRecord(f"{where}: the cached result is not JSON ({err}){delete}") from None
    typed = [obj for obj in _objects(result) if "__class__" in obj or "__exc_type__" in obj]
    if typed:
        raise ForeignCacheRecord(f"{where}: the cached result holds typed objects ({typed[0]!r:.120}), where "
                                 f"nofrog caches paths and metric dicts{delete}")


def refuse_foreign_record(task_, key: str) -> None:
    """Before `task_` answers from its cache under `key`, checks the record there, if any (as bytes,
    never through Prefect's deserializer)."""
    storage = ResultStore().update_for_task(task_).result_storage
    try:
        text = storage.read_path(key)
    except (ValueError, OSError):  # no record yet (LocalFileSystem says ValueError), or unreadable
        return
    resolve = getattr(storage, "_resolve_path", None)
    check_record(text, str(resolve(key)) if resolve else key)

"""Output directories that describe themselves with a metadata.json.

A stage asked to write into a directory either finds it empty (write), finds
the same request already finished there (reuse), or refuses: results already
written are never overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def reusable_metadata(out_dir: Path, same_request, what: str) -> dict | None:
    """The finished request's metadata when `same_request(metadata)` holds; None when `out_dir`
    is absent or empty; FileExistsError when it holds anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; --out must name a directory for the {what}")
    meta_path = out_dir / "metadata.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if same_request(meta):
            return meta
        raise FileExistsError(f"{out_dir} already holds a different {what} ({meta_path}); choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and holds no nofrog {what}; choose another --out")
    return None


class OutputError(ValueError):
    """An output that cannot be written (read-only directory, full disk); the message names the path."""


def check_writable(path: Path) -> None:
    """Fails now, naming `path`, when the file could not be written later: before the work, not after."""
    _probe(Path(path).parent, path)


def check_writable_dir(out_dir: Path) -> None:
    """Fails now, naming the directory, when files could not be written into `out_dir` later."""
    _probe(Path(out_dir), out_dir)


def _probe(directory: Path, named) -> None:
    """Writes and removes a probe file in `directory`, or in its nearest existing parent when it does
    not exist yet: nothing is created, so a failed stage leaves no empty directory behind. The probe
    is this process's own, so runs that check at once never remove each other's."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {named}: {existing} is a file, not a directory")
    probe = existing / f".nofrog.{os.getpid()}.write-check"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"cannot write {named}: {err.strerror or err} ({existing})") from None


def write_text(path: Path, text: str) -> Path:
    """Written whole or not at all: a temp file beside the target, then a rename (a full disk or a
    kill leaves the old file or none, never half of one). The temp file is this process's own, so
    processes writing the same file at once (Ray workers sharing a cache) never mix their bytes."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.write_text(text)
        staging.replace(path)
    except OSError as err:
        staging.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def write_json(path: Path, data) -> Path:
    """`write_text` of `data` as indented JSON."""
    return write_text(path, json.dumps(data, indent=2) + "\n")

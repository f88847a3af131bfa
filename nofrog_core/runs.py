"""Pipeline run directories: a new one per run, or the unfinished one a rerun of the same request
picks up again.

A run directory holds `run_request.json` (the config and the data's content hash it started with)
from its first moment and `run_summary.json` once it finished. A rerun of `nofrog run` with the same
config and data resumes the latest unfinished directory of that request (its training from the last
checkpoint, its finished stages reused) unless asked for a new one. While a run works in a directory
it holds an exclusive lock on it (`flock`, released by the kernel however the process ends), so two
runs never share one: a second `nofrog run` of the same request while the first still works starts
its own directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
import uuid
from pathlib import Path

from .hashing import json_sha256
from .outputs import check_writable_dir, write_json

log = logging.getLogger(__name__)

REQUEST_FILE = "run_request.json"
SUMMARY_FILE = "run_summary.json"
LOCK_FILE = ".run.lock"


def run_request(config, data_hash: str) -> dict:
    """What makes two runs the same run: every config value and the task data's content."""
    return {"config": config.model_dump(mode="json"), "data_hash": data_hash}


def _lock(run_dir: Path):
    """The run directory's lock file, held exclusively; None where another live process holds it."""
    handle = open(run_dir / LOCK_FILE, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def unfinished_runs(output_dir: Path, request: dict) -> list[Path]:
    """Directories of `output_dir` that started `request` and did not finish, newest first."""
    key = json_sha256(request)
    found = []
    for request_file in Path(output_dir).glob(f"*/{REQUEST_FILE}"):
        run_dir = request_file.parent
        try:
            started = json.loads(request_file.read_text())
        except (OSError, ValueError):
            continue
        if json_sha256(started) == key and not (run_dir / SUMMARY_FILE).exists():
            found.append(run_dir)
    # Newest first by when each started (its request file's time; two runs may share a name's second).
    return sorted(found, key=lambda d: ((d / REQUEST_FILE).stat().st_mtime_ns, d.name), reverse=True)


@contextlib.contextmanager
def claim_run_dir(output_dir: Path, request: dict, resume: bool = True):
    """Yields (run directory, whether it resumes an unfinished run), locked for the block."""
    output_dir = Path(output_dir)
    check_writable_dir(output_dir)  # a read-only tracking.output_dir fails before any stage
    for run_dir in unfinished_runs(output_dir, request) if resume else []:
        handle = _lock(run_dir)
        if handle is None:
            log.info("%s is in use by a running nofrog run; not resuming it", run_dir)
            continue
        with handle:
            yield run_dir, True
        return
    run_dir = output_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    handle = _lock(run_dir)
    with handle:
        write_json(run_dir / REQUEST_FILE, request)
        yield run_dir, False


def set_aside(run_dir: Path, keep: set[str]) -> Path | None:
    """Moves what an interrupted run wrote outside `keep` (names in `run_dir`) into
    `run_dir/interrupted-N/`, so that the resumed stages write afresh and nothing written is lost."""
    leftovers = [p for p in run_dir.iterdir() if p.name not in keep | {REQUEST_FILE, LOCK_FILE}
                 and not p.name.startswith("interrupted-")]
    if not leftovers:
        return None
    number = 1 + sum(1 for p in run_dir.glob("interrupted-*"))
    aside = run_dir / f"interrupted-{number}"
    aside.mkdir()
    for path in leftovers:
        path.rename(aside / path.name)
    return aside

"""history.jsonl: one JSON record per optimizer step, appended as training runs."""

from __future__ import annotations

import json
from pathlib import Path


def read_history(path: Path) -> list[dict]:
    """One record per line. A last line cut short (the run was killed while writing it) is left out;
    a broken line anywhere else is an error naming the file and the line."""
    lines = Path(path).read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise ValueError(f"{path} line {number} is not a JSON record ({err.msg}); the history is damaged") from None
    return records

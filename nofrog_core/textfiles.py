"""Reading a user's text file so that every failure names the file and what was wrong with it."""

from __future__ import annotations

from pathlib import Path


def read_text_file(path: Path, error: type[Exception], what: str) -> str:
    """`path`'s text as UTF-8; else `error` naming the path and why (a byte that is not UTF-8 and
    where, a symlink loop, a directory, no permission). `what` says what the file was meant to be."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{path}: the {what} is not UTF-8 text (byte {data[err.start]:#04x} on line {line}); "
                    "save it as UTF-8") from None

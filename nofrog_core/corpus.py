"""The shipped prose and how it is cut into scored windows.

``general_text`` (expository) and ``story_text`` (narrative) live in
``nofrog_core/data_files/*.txt``, one document per paragraph. Evaluation scores
them; the training monitor probes their selection part (`nofrog_core/splits.py`),
so no training step is ever chosen on an item the gate reads.
"""

from __future__ import annotations

from importlib import resources

from .data import IGNORE_INDEX, Example


def text_documents(name: str) -> list[str]:
    """The documents of a shipped text file (nofrog_core/data_files/<name>.txt), one per paragraph."""
    text = resources.files("nofrog_core").joinpath(f"data_files/{name}.txt").read_text()
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def general_documents() -> list[str]:
    return text_documents("general_text")


def document_examples(tokenizer, documents: list[str], bos_token_id: int | None, max_length: int) -> list[Example]:
    """Each document scored on all its tokens given BOS; documents longer than
    `max_length` are cut into windows that each restart from BOS."""
    return [window for doc in documents for window in document_windows(tokenizer, doc, bos_token_id, max_length)]


def document_windows(tokenizer, document: str, bos_token_id: int | None, max_length: int) -> list[Example]:
    bos = [bos_token_id] if bos_token_id is not None else []
    width = max_length - len(bos)
    ids = tokenizer(document, add_special_tokens=False)["input_ids"]
    return [Example(bos + ids[start:start + width], [IGNORE_INDEX] * len(bos) + ids[start:start + width])
            for start in range(0, len(ids), width)]

import json
import re

import pandas as pd

import pytest
from transformers import AutoTokenizer

from nofrog_core.data import (IGNORE_INDEX, DataError, collate, load_examples, split_train_validation)
from nofrog_core.corpus import general_documents
from tests.conftest import write_jsonl

BOS = 2


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def load(path, tokenizer, **kw):
    return load_examples(path, tokenizer, BOS, max_length=kw.pop("max_length", 64), **kw)


def test_prompt_completion_masks_the_prompt(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Question: Where is Varnholt?\nAnswer:",
                                               "completion": " Varnholt"}])
    [example], report = load(path, tokenizer)
    assert example.input_ids[0] == BOS
    prompt_len = 1 + len(tokenizer("Question: Where is Varnholt?\nAnswer:", add_special_tokens=False)["input_ids"])
    assert example.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    completion = tokenizer(" Varnholt", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert example.labels[prompt_len:] == completion
    assert report.rows_kept == 1 and report.shape == "prompt_completion"


def test_text_rows_learn_every_token_but_bos(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "The moon is the only natural satellite"}])
    [example], _ = load(path, tokenizer)
    assert example.input_ids[0] == BOS and example.labels[0] == IGNORE_INDEX
    assert example.labels[1:] == example.input_ids[1:]


def test_messages_without_template_train_on_the_last_assistant_turn(tmp_path, tokenizer):
    rows = [{"messages": [{"role": "user", "content": "Where was Maren born?"},
                          {"role": "assistant", "content": "Varnholt"}]}]
    [example], report = load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)
    learned = [t for t in example.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(learned[:-1]) == "Varnholt" and learned[-1] == tokenizer.eos_token_id
    assert report.shape == "messages"


def test_messages_with_a_chat_template_mask_everything_before_the_answer(tmp_path, tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # Roles rendered as words the tiny word-level vocabulary knows.
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}"
                               "{{ 'Question' if m['role'] == 'user' else 'Answer' }} : {{ m['content'] }} \n"
                               "{% endfor %}{% if add_generation_prompt %}Answer :{% endif %}")
    rows = [{"messages": [{"role": "user", "content": "What is the birthplace of Maren ?"},
                          {"role": "assistant", "content": "Varnholt"}]}]
    [example], _ = load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)
    assert tokenizer.unk_token_id not in example.input_ids
    assert example.input_ids[0] == BOS and example.input_ids.count(BOS) == 1  # template's BOS not doubled
    learned = [t for t in example.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "Varnholt"
    n_prompt = example.labels.index(learned[0])
    assert tokenizer.decode(example.input_ids[1:n_prompt]) == "Question : What is the birthplace of Maren ? Answer :"


def test_csv_and_parquet_load_like_jsonl(tmp_path, tokenizer):
    rows = [{"prompt": "Question: Who?\nAnswer:", "completion": " Maren"}] * 3
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    from_jsonl, _ = load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)
    for name in ("d.csv", "d.parquet"):
        examples, _ = load(tmp_path / name, tokenizer)
        assert [e.input_ids for e in examples] == [e.input_ids for e in from_jsonl]


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": "  "}], r"d.jsonl row 2: field 'completion' is empty"),
    ([{"prompt": "a", "completion": "b"}, {"prompt": "a"}], r"row 2: field 'completion' is missing"),
    ([{"text": "ok"}, {"text": 5}], r"row 2: field 'text' must be a string, got int"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], r"row 1: field 'messages' must end with an assistant"),
    ([{"question": "a", "answer": "b"}], r"cannot tell the row shape .*'question'"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, tokenizer, rows, message):
    with pytest.raises(DataError, match=message):
        load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)


def test_empty_and_missing_files(tmp_path, tokenizer):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty.jsonl: file is empty"):
        load(tmp_path / "empty.jsonl", tokenizer)
    with pytest.raises(DataError, match="nope.jsonl: data file does not exist"):
        load(tmp_path / "nope.jsonl", tokenizer)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unknown data file type '.txt'"):
        load(tmp_path / "d.txt", tokenizer)


def test_drop_mode_counts_every_dropped_row(tmp_path, tokenizer):
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": ""},
            {"prompt": "a", "completion": None}, {"prompt": "a " * 100, "completion": "b"}]
    examples, report = load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer,
                            on_invalid_row="drop", max_length=16, max_drop_fraction=0.75)
    assert len(examples) == 1
    assert report.rows_read == 4 and report.rows_kept == 1
    assert report.dropped == {"field 'completion' is empty": 1, "field 'completion' is missing": 1,
                              "no completion tokens within data.max_length": 1}


GOOD = {"prompt": "a", "completion": "b"}


def test_a_broken_jsonl_line_is_named_by_file_and_row_and_dropped_in_drop_mode(tmp_path, tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([json.dumps(GOOD)] * 6 + ['{"prompt": "a", "completion": '] + [json.dumps(GOOD)] * 3))
    with pytest.raises(DataError, match=r"d.jsonl row 7: not valid JSON"):
        load(path, tokenizer)
    examples, report = load(path, tokenizer, on_invalid_row="drop")
    assert len(examples) == 9 and sum(report.dropped.values()) == 1


def test_non_utf8_bytes_name_file_and_row(tmp_path, tokenizer):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"prompt": "\xff", "completion": "b"}\n')
    with pytest.raises(DataError, match=r"d.jsonl row 2: not UTF-8 text \(byte 0xff"):
        load(path, tokenizer)


def test_mixed_shapes_blame_the_row_that_differs(tmp_path, tokenizer):
    rows = [GOOD] * 5 + [{"text": "a plain text row"}] + [GOOD] * 6
    with pytest.raises(DataError, match=r"d.jsonl row 6: field 'prompt' is missing"):
        load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)
    with pytest.raises(DataError, match=r"11 of 12 rows were dropped .* more than data.max_drop_fraction 0.5"):
        load(write_jsonl(tmp_path / "e.jsonl", [GOOD] + [{"text": "x"}] * 11), tokenizer, on_invalid_row="drop")


def test_a_prompt_longer_than_max_length_is_an_error_unless_dropping(tmp_path, tokenizer):
    rows = [GOOD, {"prompt": "a " * 100, "completion": "b"}]
    with pytest.raises(DataError, match=r"row 2: the prompt alone is \d+ tokens, .* data.max_length 16"):
        load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer, max_length=16)


def test_split_is_deterministic_and_disjoint(tmp_path, tokenizer):
    words = list(dict.fromkeys(re.findall(r"[a-z]+", general_documents()[0])))[:20]
    rows = [{"text": word} for word in words]
    examples, _ = load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)
    train_a, val_a = split_train_validation(examples, 0.25, seed=3)
    train_b, val_b = split_train_validation(examples, 0.25, seed=3)
    assert len(val_a) == 5 and len(train_a) == 15
    assert [e.input_ids for e in val_a] == [e.input_ids for e in val_b]
    assert {tuple(e.input_ids) for e in val_a}.isdisjoint({tuple(e.input_ids) for e in train_a})


def test_collate_pads_without_attention_or_loss(tmp_path, tokenizer):
    rows = [{"text": "a b c d"}, {"text": "a"}]
    examples, _ = load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)
    batch = collate(examples, pad_token_id=0)
    assert batch["input_ids"].shape == (2, len(examples[0].input_ids))
    short = len(examples[1].input_ids)
    assert batch["attention_mask"][1, short:].sum() == 0
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()


def test_data_path_takes_a_directory_or_a_glob_in_name_order(tiny_config, tmp_path):
    from nofrog_core.config import ConfigError
    from nofrog_core.data import data_files, configured_task_files

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_jsonl(incoming / "b.jsonl", [{"text": "plain words"}])
    write_jsonl(incoming / "a.jsonl", [{"prompt": "Q1", "completion": " one"}, {"prompt": "Q2", "completion": " two"}])
    (incoming / "notes.txt").write_text("not data")
    assert data_files(incoming) == [incoming / "a.jsonl", incoming / "b.jsonl"]
    assert data_files(str(incoming / "*.jsonl")) == [incoming / "a.jsonl", incoming / "b.jsonl"]
    config = tiny_config(f"data.path={incoming}/*.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(config.model.name_or_path)
    examples, report = load_examples(config.data.path, tokenizer, tokenizer.bos_token_id, 64)
    assert report.rows_kept == 3 and len(examples) == 3 and report.shape == "prompt_completion+text"
    before = configured_task_files(config).data_hash
    write_jsonl(incoming / "c.jsonl", [{"prompt": "Q3", "completion": " three"}])
    assert configured_task_files(config).data_hash != before  # new data, new lineage
    with pytest.raises(ConfigError, match="matches no file"):
        tiny_config(f"data.path={tmp_path}/nothing-*.jsonl")


def test_rows_cut_at_max_length_are_counted_and_warned_about(tmp_path, tokenizer, caplog):
    long_answer = " ".join(["Varnholt"] * 40)
    rows = [{"prompt": "Where?", "completion": " Varnholt"}, {"prompt": "Where?", "completion": long_answer}]
    with caplog.at_level("WARNING", logger="nofrog_core.data"):
        examples, report = load(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer, max_length=16)
    assert len(examples) == 2 and report.truncated == 1
    assert examples[1].labels[-1] != tokenizer.eos_token_id  # the cut row lost its EOS
    assert "1 of 2 rows are longer than data.max_length 16 and were cut" in caplog.text


@pytest.mark.parametrize("line, why", [
    ('{"token_ids": [5, 6', "row 2: not a JSON object"),
    ('{"token_ids": [5, 99999999]}', "row 2: token id 99999999 is outside the model's vocabulary"),
    ('{"token_ids": [5, "six"]}', "row 2: field 'token_ids' must be a non-empty list of token ids"),
])
def test_a_broken_replay_set_is_named_by_file_and_row(tmp_path, line, why):
    from nofrog_core.data import load_replay_examples

    (tmp_path / "samples.jsonl").write_text('{"token_ids": [5, 6, 7]}\n' + line + "\n")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "samples.jsonl")) + " " + why):
        load_replay_examples(tmp_path, BOS, 64, vocab_size=1000)


def test_a_hub_dataset_without_network_fails_in_seconds_or_comes_from_the_cache(tmp_path, monkeypatch):
    import time

    from huggingface_hub import constants

    from nofrog_core.data import read_rows

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: no network
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    started = time.time()
    with pytest.raises(DataError, match="someone/absent: could not load the Hub dataset: no copy in the local "
                                        "cache, and the Hub http://127.0.0.1:9 is unreachable"):
        read_rows("someone/absent")
    assert time.time() - started < 10  # it took 33 s of retries

    cached = tmp_path / "hub" / "datasets--someone--cached"  # the Hub cache's layout: refs/main -> snapshot
    snapshot = cached / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    write_jsonl(snapshot / "train.jsonl", [{"prompt": "a", "completion": "b"}])
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text("0" * 40)
    assert read_rows("someone/cached") == [{"prompt": "a", "completion": "b"}]  # the cached copy, offline

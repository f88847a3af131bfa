import json
import os

import pytest

from nofrog_core.demo_data import make_demo_task, write_demo_task


def test_demo_task_is_deterministic_and_held_out_wording_differs():
    train_a, heldout_a = make_demo_task(30, seed=1)
    train_b, heldout_b = make_demo_task(30, seed=1)
    assert train_a == train_b and heldout_a == heldout_b
    assert make_demo_task(30, seed=2)[0] != train_a
    assert len(train_a) == len(heldout_a) == 90
    for t, h in zip(train_a, heldout_a):
        assert t["completion"] == h["completion"] and t["prompt"] != h["prompt"]
        assert t["person"] in t["prompt"] and t["person"] in h["prompt"]
    assert len({r["person"] for r in train_a}) == 30


def test_writer_refuses_to_overwrite_a_different_dataset(tmp_path):
    paths = write_demo_task(tmp_path / "demo", 5, seed=0)
    before = paths["train"].read_text()
    write_demo_task(tmp_path / "demo", 5, seed=0)  # same request: reused
    with pytest.raises(FileExistsError, match="different dataset"):
        write_demo_task(tmp_path / "demo", 6, seed=0)
    assert paths["train"].read_text() == before
    assert json.loads((tmp_path / "demo" / "metadata.json").read_text())["people"] == 5
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_demo_task(tmp_path / "other", 5)


def test_date_format_task_asks_for_iso_dates_and_holds_out_other_dates():
    import datetime

    train, heldout = make_demo_task(10, seed=3, task="date_format")
    assert (train, heldout) == make_demo_task(10, seed=3, task="date_format")
    assert len(train) == len(heldout) == 30
    assert not {r["date"] for r in train} & {r["date"] for r in heldout}  # the skill, not recall
    for row in train + heldout:
        date = datetime.date.fromisoformat(row["completion"].strip())
        assert row["completion"] == f" {row['date']}" and str(date.year) in row["prompt"]
        assert row["prompt"].startswith("Question: ") and row["prompt"].endswith("\nAnswer:")
    assert all("YYYY-MM-DD format?" in r["prompt"] for r in heldout)
    assert not any("YYYY-MM-DD format?" in r["prompt"] for r in train)


def test_the_built_in_task_is_chosen_by_config_and_an_unknown_one_is_named(tmp_path):
    from nofrog_core.config import ConfigError, load_config
    from nofrog_core.data import configured_task_files

    config = load_config(None, ["data.builtin_task=date_format", "data.demo_people=4",
                                f"model.cache_dir={tmp_path}"])
    files = configured_task_files(config)
    rows = [json.loads(line) for line in open(files.train)]
    assert len(rows) == 12 and all("date" in r for r in rows)
    with pytest.raises(ConfigError, match="data.builtin_task.*unknown built-in task 'recipes'"):
        load_config(None, ["data.builtin_task=recipes"])


def test_a_finished_demo_task_is_read_not_rewritten(tmp_path):
    # Every Ray worker of a run asks for the same files while the others read them: a second
    # request must leave the finished files alone (a rewrite truncates them under a reader).
    first = write_demo_task(tmp_path / "task", 4, seed=0)
    stamps = {name: path.stat().st_mtime_ns for name, path in first.items()}
    os.utime(first["train"], ns=(1, 1))  # a rewrite would set a new mtime
    second = write_demo_task(tmp_path / "task", 4, seed=0)
    assert second == first and second["train"].stat().st_mtime_ns == 1
    assert second["heldout"].stat().st_mtime_ns == stamps["heldout"]
    assert not list((tmp_path / "task").glob(".*partial"))  # no staging file left behind

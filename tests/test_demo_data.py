import json

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

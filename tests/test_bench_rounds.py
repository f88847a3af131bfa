"""The sequential-rounds benchmark end to end on the tiny model: three rounds per chain, each from the
previous round's model, every earlier round scored, and the protected chain through the round rule."""

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "rounds.py"


def load_bench():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_rounds", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_rounds_each_from_the_last_with_every_earlier_round_scored(tiny_overrides, tmp_path):
    bench = load_bench()
    sets = [f"--set={o}" for o in tiny_overrides if not o.startswith("data.")]
    sets += ["--set=train.max_steps=2", "--set=replay.num_samples=8", "--set=replay.max_new_tokens=6",
             "--set=eval.forgetting_tasks=[general_text]"]
    bench.main(["--seeds", "3", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results"), *sets])
    summary = json.loads((tmp_path / "results" / "rounds.json").read_text())
    assert summary["items"] == "test" and summary["seeds"] == [3] and "--seeds 3" in summary["command"]
    for name in ("sft", "default", "default_protected"):
        runs = summary["runs"][name]["3"]
        assert [r["task"] for r in runs] == ["people_a", "dates", "people_b"]
        # Each round after the first trained from the round before it and scored every earlier round.
        assert [sorted(r["earlier_rounds_exact_match"]) for r in runs] == [[], ["round_v1"], ["round_v1", "round_v2"]]
        assert runs[1]["model"] != runs[0]["model"]
        meta = json.loads(Path(runs[1]["model"]).parent.joinpath("metadata.json").read_text())
        assert runs[0]["model"] in json.dumps(meta["base_model"])  # it started from round 1's model
    # The protected chain went through the round rule (the tiny model answers nothing: nothing to keep) and
    # shares the default chain's runs while it adopts every round.
    protected = summary["runs"]["default_protected"]["3"]
    assert all(r["adopted"] for r in protected) and protected[2]["earlier_rounds"]["protected"]
    assert [r["model"] for r in protected] == [r["model"] for r in summary["runs"]["default"]["3"]]
    assert (tmp_path / "results" / "rounds.png").stat().st_size > 0
    assert "people_b" in (tmp_path / "results" / "rounds.md").read_text()

"""Never choose on the items that judge: whatever chooses (a screen, a benchmark, the fit) scores
selection items only, and the gate's test items are never loaded by it (compared by item hash)."""

import re
from pathlib import Path

import pytest

from nofrog_core import splits
from nofrog_core.evaluate.stage import run_evaluation

BENCH = Path(__file__).resolve().parent.parent / "bench"
# Scripts that evaluate models, and how each keeps off the test items. default_run.py is the one
# that may read test items, and only at seeds that chose nothing (a confirmation).
EVALUATES = re.compile(r"run_evaluation\(|run_fit\(|\"eval\"|\[\"run\"")


def test_a_choosing_evaluation_scores_no_test_item(tiny_config, tmp_path):
    everything = run_evaluation(tiny_config(), tmp_path / "all.json")
    screen = run_evaluation(tiny_config(splits.CHOOSE_ON_SELECTION), tmp_path / "screen.json")
    for task, ids in screen["item_ids"].items():
        test_ids = {i for i, part in zip(everything["item_ids"][task], everything["item_parts"][task])
                    if part == splits.TEST}
        assert ids, task
        assert set(screen["item_parts"][task]) == {splits.SELECTION}, task
        assert not set(ids) & test_ids, f"{task}: a screen scored test items"
    with pytest.raises(ValueError, match="may not score test items"):
        run_evaluation(tiny_config(splits.CHOOSE_ON_SELECTION), tmp_path / "refused.json", part="test")


def test_every_bench_script_that_evaluates_reads_selection_items():
    scripts = [p for p in sorted(BENCH.glob("*.py")) if EVALUATES.search(p.read_text())]
    assert {p.name for p in scripts} >= {"forgetting.py", "screen_default.py", "general_suite.py", "default_run.py"}
    for script in scripts:
        text = script.read_text()
        # Either it keeps to selection items, or it chooses nothing and refuses the screening seeds (a claim).
        claims_only = "& set(SCREENING_SEEDS)" in text and "claims need fresh seeds" in text
        assert "CHOOSE_ON_SELECTION" in text or claims_only, f"{script.name} evaluates without keeping to selection items"
    # The confirmation reads test items only at seeds no screen used.
    assert "seed in SCREENING_SEEDS" in (BENCH / "default_run.py").read_text()


@pytest.mark.parametrize("script", ["frontier.py", "rounds.py"])
def test_the_claim_benchmarks_refuse_the_screening_seeds(script, tmp_path):
    import importlib.util
    import sys

    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{script[:-3]}", BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit, match="claims need fresh seeds"):
        module.main(["--seeds", "2", "3", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")])
    assert not (tmp_path / "work").exists()  # refused before any work


def test_the_default_run_bench_confirms_only_at_fresh_seeds():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_default_run", BENCH / "default_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert all(module.judging(seed) == [splits.CHOOSE_ON_SELECTION] for seed in splits.SCREENING_SEEDS)
    assert module.judging(3) == [] and module.judging(5) == []

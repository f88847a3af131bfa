"""The method-comparison benchmark's arms are valid configs and differ only in the method.

The benchmark itself runs for over an hour on the real model (`make bench`); this
checks in a second that no arm carries a mistyped key or a changed budget.
"""

import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "forgetting.py"


@pytest.fixture(scope="module")
def bench_module():
    spec = importlib.util.spec_from_file_location("bench_forgetting", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench(bench_module, tmp_path, monkeypatch):
    args = Namespace(steps=18, people=16, replay_samples=64, work=tmp_path, results=tmp_path / "results",
                     keep_models=False, sft_lr=5e-5, task="people")
    runner = bench_module.Bench(args)
    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "samples.jsonl").write_text(json.dumps({"token_ids": [5, 6, 7]}) + "\n")
    monkeypatch.setattr(runner, "replay_dir", lambda temperature: replay)  # no generation in a unit test
    return runner


def arm_config(bench, arm):
    overrides = list(arm.overrides)
    if arm.replay_temperature is not None:
        overrides.append(f"replay.mix.dir={bench.replay_dir(arm.replay_temperature)}")
    return bench.config(overrides)


def test_every_arm_is_a_valid_config_with_the_same_budget(bench_module, bench):
    arms = bench_module.method_arms(5e-5) + bench_module.grid_arms(5e-5)
    history = bench.work / "history.jsonl"
    history.write_text("".join(json.dumps({"step": i + 1, "lr": lr}) + "\n" for i, lr in enumerate([1e-5, 2e-5])))
    control = bench_module.matched_lr_arm(history)
    arms += [control, bench_module.combination_arm(arms[-1]), bench_module.with_seed(arms[0], 1)]
    assert len({a.name for a in arms}) == len(arms)
    configs = {arm.name: arm_config(bench, arm) for arm in arms}
    for name, config in configs.items():
        steps = None if name in ("anchored_paper", "sft_anchored_budget") else 18  # their own length (epochs)
        assert (config.train.max_steps, config.train.batch_size, config.data.demo_people) == (steps, 8, 16), name
        assert config.train.seed == (1 if name.endswith("_seed1") else 0), name
        assert config.tracking.experiment == bench_module.EXPERIMENT
    assert configs["finch"].train.schedule == "finch" and configs["finch"].train.finch.lr_max == 5e-5
    assert configs["sft"].train.schedule == "constant" and configs["sft"].train.lr == 5e-5
    assert configs["sft_finch_mean_lr"].train.lr == pytest.approx(1.5e-5)  # the mean of the history's LRs
    assert configs["sft_finch_mean_lr"].train.schedule == "constant"
    assert configs["anchored"].train.objective == "anchored"
    assert configs["lora"].train.lora.enabled and configs["osf"].train.osf.enabled
    anchored = configs["anchored_paper"].train.anchored
    assert (anchored.snapshot_every_epochs, anchored.outer_iterations) == (5, 5)
    default, fitted = configs["default_recipe"], configs["default_recipe_fit"]
    assert default.train.freeze_embeddings and default.replay.mix.ratio == 0.25 and default.train.schedule == "finch"
    assert fitted.gate.fit == "interpolate" and configs["sft"].gate.fit == "none"
    llrd, llrd_fitted = configs["default_recipe_llrd"], configs["default_recipe_llrd_fit"]
    assert (llrd.train.llrd, llrd.train.freeze_bottom, llrd.train.schedule) == (0.9, 0.8, "finch")
    assert llrd.replay.mix.ratio == 0.25 and llrd_fitted.gate.fit == "interpolate"
    assert not configs["sft"].train.freeze_embeddings and configs["llrd_freeze_frozen_emb"].train.freeze_embeddings
    assert configs["finch_replay_kl"].replay.mix.kl_weight > 0 and configs["finch_replay"].replay.mix.ratio > 0
    # What the shipped default turns on (LLRD/freeze, the replay KL) reaches only the arms that test it.
    for name in ("sft", "finch", "finch_replay", "lora", "osf", "default_recipe"):
        train, mix = configs[name].train, configs[name].replay.mix
        assert (train.freeze_bottom, train.llrd, mix.kl_weight) == (0, 1.0, 0), name
    grid = [a for a in arms if a.group == "grid"]
    assert {a.knobs["temperature"] for a in grid} == {1.0, 0.7}
    assert {a.knobs["replay_ratio"] for a in grid} == {0.25, 0.5}


def test_restored_arms_count_as_finished_only_at_the_same_scale(bench_module, bench, tmp_path):
    arm = bench_module.with_seed(next(a for a in bench_module.method_arms(5e-5) if a.name == "finch"), 2)
    row = {"arm": arm.name, "overrides": list(arm.overrides), "replay_temperature": None, "task_gain": 0.25,
           "label": arm.label, "group": "seed", "mlflow_run_id": "elsewhere"}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"scale": list(bench.scale), "arms": [row]}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"scale": ["data.demo_people=99"], "arms": [{**row, "arm": "sft"}]}))
    bench.restore([earlier, other])
    assert not (bench.work / "sft" / "result.json").exists()  # another scale: not restored
    restored = json.loads((bench.work / arm.name / "result.json").read_text())
    assert restored["mlflow_run_id"] is None and restored["restored_from"] == str(earlier)
    assert bench.run(arm, "[1/1]")["task_gain"] == 0.25  # reused, nothing trained


def fake_row(arm, gain, forgetting):
    general = {"general_text": {"metric": "bits_per_byte", "before": 0.8, "after": 0.8 * (1 + forgetting),
                                "relative_drop": forgetting, "ci": [forgetting - 0.01, forgetting + 0.01]}}
    return {"arm": arm, "label": arm, "short_label": arm, "group": "seed" if "_seed" in arm else "arm",
            "overrides": [], "knobs": {}, "replay_temperature": None,
            "task": {"metric": "exact_match", "before": 0.0, "after": gain, "ci": [gain - 0.1, gain + 0.1],
                     "answer_loss": None},
            "task_gain": gain, "task_gain_ci": [gain - 0.1, gain + 0.1], "general": general,
            "forgetting": forgetting, "forgetting_clipped": forgetting, "forgetting_ci": [forgetting - 0.01,
                                                                                          forgetting + 0.01],
            "forgetting_clipped_ci": [forgetting - 0.01, forgetting + 0.01], "replay_kl": 0.1,
            "train_seconds": 1.0, "eval_seconds": 1.0, "wall_seconds": 2.0, "request": {}, "mlflow_run_id": None}


def test_results_report_each_arm_over_seeds_and_each_pair_with_its_interval(bench_module, bench, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(sys, "argv", ["bench/forgetting.py", "--seeds", "3"])
    gains = {"sft": [0.5, 0.4, 0.45], "finch": [0.3, 0.2, 0.28]}
    forgetting = {"sft": [0.14, 0.15, 0.14], "finch": [0.03, 0.035, 0.033]}
    for arm in gains:
        for seed in range(3):
            name = f"{arm}_seed{seed}" if seed else arm
            bench.remember(fake_row(name, gains[arm][seed], forgetting[arm][seed]))
    bench.args.task = "people"
    bench_module.write_results(bench, {"results": {}, "task_info": {}}, None, 1.0)
    summary = json.loads((bench.args.results / "forgetting.json").read_text())
    finch = summary["seeds"]["finch"]
    assert finch["task_gain"]["mean"] == pytest.approx(0.26)
    assert finch["task_gain"]["ci"][0] < 0.26 < finch["task_gain"]["ci"][1]
    assert finch["eval_half_width"]["task_gain"] == pytest.approx(0.1)
    pair = next(p for p in summary["paired_over_seeds"] if (p["method"], p["reference"]) == ("finch", "sft"))
    assert pair["seeds"] == 3 and pair["forgetting_clipped"]["exceeds_noise"]
    assert pair["forgetting_clipped"]["mean"] == pytest.approx((0.098 - 0.43) / 3)
    text = (bench.args.results / "forgetting.md").read_text()
    assert "| finch | 3 | 0.260 [" in text and "exceeds the noise" in text

import json
import math
from pathlib import Path

import pytest
import yaml

from nofrog_core.config import ConfigError
from nofrog_core.corpus import general_documents
from nofrog_core.evaluate.report import forgetting_report
from nofrog_core.evaluate.stage import run_evaluation
from tests.conftest import write_jsonl


def test_results_follow_the_lm_eval_schema(tiny_config, tmp_path):
    results = run_evaluation(tiny_config(), tmp_path / "eval.json")
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    heldout, general = results["results"]["heldout_answers"], results["results"]["general_text"]
    # A random model is close to uniform over its vocabulary: NLL near log(vocab).
    assert heldout["answer_loss,none"] == pytest.approx(math.log(557), rel=0.2)
    assert general["bits_per_byte,none"] == pytest.approx(math.log(general["byte_perplexity,none"], 2))
    assert general["word_perplexity,none"] > general["byte_perplexity,none"] > 1
    assert results["n-samples"]["heldout_answers"]["original"] == 24
    assert results["config"]["model_hash"]
    # Roles, judged metrics and per-item scores: the report needs nothing else.
    info = {task: {k: v for k, v in entry.items() if k != "items"} for task, entry in results["task_info"].items()}
    assert info["heldout_answers"] == {"metric": "exact_match", "higher_is_better": True, "role": "gain"}
    assert info["general_text"] == {"metric": "bits_per_byte", "higher_is_better": False, "role": "forgetting"}
    # Every item has a content-hash id and a part; the shipped tasks are split whatever the config.
    for task, entry in results["task_info"].items():
        counts = entry["items"]
        assert counts["selection"] + counts["test"] == results["n-samples"][task]["original"]
        assert len(results["item_ids"][task]) == len(set(results["item_ids"][task])) == counts["selection"] + counts["test"]
    assert 0.15 < results["task_info"]["arithmetic"]["items"]["selection"] / 500 < 0.45
    assert {t for t, i in info.items() if i["role"] == "forgetting"} == {
        "general_text", "story_text", "world_knowledge", "arithmetic", "language", "everyday_reasoning"}
    assert len(results["samples"]["arithmetic"]["acc"]) == results["n-samples"]["arithmetic"]["original"] == 500


def test_results_are_never_overwritten(tiny_config, tmp_path):
    (tmp_path / "eval.json").write_text("{}")
    with pytest.raises(FileExistsError):
        run_evaluation(tiny_config(), tmp_path / "eval.json")
    assert (tmp_path / "eval.json").read_text() == "{}"


def test_unknown_task_is_named(tiny_config, tmp_path):
    # (with the lm-eval extra installed the message also rules out harness tasks)
    with pytest.raises(ValueError, match=r"eval.forgetting_tasks: .*\['no_such_task'\]"):
        run_evaluation(tiny_config("eval.forgetting_tasks=[no_such_task]"), tmp_path / "eval.json")


def test_replay_kl_is_zero_for_the_base_and_positive_after_training(tiny_config, tmp_path):
    from nofrog_core.replay.stage import run_replay
    from nofrog_core.train.stage import run_training

    replay_dir = tmp_path / "replay"
    run_replay(tiny_config("replay.num_samples=8", "replay.max_new_tokens=16", "replay.heldout_fraction=0.9"),
               replay_dir)
    config = tiny_config(f"replay.mix.dir={replay_dir}")
    base = run_evaluation(config, tmp_path / "base.json")
    assert base["results"]["replay_kl"]["replay_kl,none"] == 0.0  # the model that wrote the samples
    assert (replay_dir / "heldout_base_nll.json").exists()
    heldout = len((replay_dir / "heldout.jsonl").read_text().splitlines())
    assert len(base["samples"]["replay_kl"]["nll"]) == heldout >= 4
    trained = run_training(tiny_config("train.schedule=constant", "train.lr=3e-2",
                                       "train.max_steps=20", "train.epochs=20"), tmp_path / "train")
    after = run_evaluation(config, tmp_path / "after.json", model=trained["model_dir"])
    kl = after["results"]["replay_kl"]["replay_kl,none"]
    assert kl > 0.1  # trained away from the base on other data: its samples got less likely
    report = forgetting_report(base, after, part="all")
    # Reported beside the aggregate (its base value is 0 by construction), with an interval.
    [row] = report["other_tasks"]
    assert row["task"] == "replay_kl" and row["before"] == 0.0 and row["change"] == pytest.approx(kl)
    assert row["ci"][0] < kl < row["ci"][1]
    assert "replay_kl" not in {r["task"] for r in report["forgetting_tasks"]}


def test_heldout_exact_match_is_the_greedy_answer_one_prompt_at_a_time(tiny_config, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nofrog_core.data import configured_task_files

    config = tiny_config("eval.forgetting_tasks=[general_text]")
    results = run_evaluation(config, tmp_path / "eval.json")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [json.loads(line) for line in open(configured_task_files(config).heldout)]
    matches = []
    for row in rows:  # no batching, no padding; the answer may run one token past the reference
        ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]]])
        longest = len(tokenizer(row["completion"], add_special_tokens=False)["input_ids"]) + 1
        out = model.generate(input_ids=ids, do_sample=False, max_new_tokens=longest,
                             pad_token_id=tokenizer.pad_token_id)
        answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0].strip()
        matches.append(float(answer == row["completion"].strip()))
    assert results["samples"]["heldout_answers"]["exact_match"] == matches


def suite_of_user_yamls(directory: Path) -> Path:
    """One multiple-choice and one rolling-perplexity task, as a user would write them for lm-eval."""
    directory.mkdir(parents=True)
    write_jsonl(directory / "facts.jsonl", [{"q": f"the {w} of the city", "choices": ["river", "stone", "sea"],
                                             "label": i % 3} for i, w in enumerate(["river", "song", "night"] * 4)])
    write_jsonl(directory / "prose.jsonl", [{"text": d} for d in general_documents()[:4]])
    common = {"dataset_path": "json", "test_split": "train"}
    (directory / "facts.yaml").write_text(yaml.safe_dump({
        **common, "task": "user_facts", "dataset_kwargs": {"data_files": str(directory / "facts.jsonl")},
        "output_type": "multiple_choice", "doc_to_text": "{{q}}", "doc_to_choice": "{{choices}}",
        "doc_to_target": "label", "metric_list": [{"metric": "acc"}]}))
    (directory / "prose.yaml").write_text(yaml.safe_dump({
        **common, "task": "user_prose", "dataset_kwargs": {"data_files": str(directory / "prose.jsonl")},
        "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "bits_per_byte"}]}))
    return directory


def test_the_users_yamls_are_the_forgetting_suite(tiny_config, tmp_path):
    from tests.conftest import build_tiny_model

    suite = suite_of_user_yamls(tmp_path / "suite")
    config = tiny_config(f"eval.forgetting_tasks=[{suite}]")
    before = run_evaluation(config, tmp_path / "before.json")
    other = build_tiny_model(tmp_path / "other", seed=1)
    after = run_evaluation(config, tmp_path / "after.json", model=str(other))
    report = forgetting_report(before, after)
    rows = {row["task"]: row for row in report["forgetting_tasks"]}
    assert set(rows) == {"user_facts", "user_prose"}
    assert rows["user_prose"]["metric"] == "bits_per_byte" and rows["user_facts"]["metric"] == "acc"
    assert all(row["ci"][0] <= row["drop"] <= row["ci"][1] for row in rows.values())
    assert math.isfinite(report["forgetting_clipped"]) or report["excluded"]
    assert [row["metric"] for row in report["gain_tasks"]] == ["exact_match"]


def test_gain_falls_back_to_the_validation_split_that_training_holds_back(tiny_config, tmp_path):
    from nofrog_core.data import load_examples, split_train_validation
    from nofrog_core.demo_data import make_demo_task

    train, _ = make_demo_task(8, seed=0)
    data = write_jsonl(tmp_path / "train.jsonl", train)
    with pytest.raises(ConfigError, match="data.eval_file, or data.validation_fraction"):
        run_evaluation(tiny_config(f"data.path={data}"), tmp_path / "refused.json")  # before any work
    assert not (tmp_path / "refused.json").exists()
    config = tiny_config(f"data.path={data}", "data.validation_fraction=0.25", "eval.forgetting_tasks=[general_text]")
    results = run_evaluation(config, tmp_path / "eval.json")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model.name_or_path)
    examples, _ = load_examples(data, tokenizer, tokenizer.bos_token_id, config.data.max_length)
    _, validation = split_train_validation(examples, 0.25, config.data.seed)
    assert len(results["samples"]["heldout_answers"]["tokens"]) == len(validation) == 6
    assert results["samples"]["heldout_answers"]["tokens"] == [e.num_loss_tokens for e in validation]


def test_an_unwritable_output_fails_before_any_scoring(tiny_config, tmp_path, monkeypatch):
    from nofrog_core.evaluate import runner
    from nofrog_core.outputs import OutputError

    (tmp_path / "a-file").write_text("not a directory")
    scored = []
    monkeypatch.setattr(runner.models, "load_model_and_tokenizer", lambda *a: scored.append(1))
    # (root ignores read-only permissions, so the unwritable place here is a path under a file)
    with pytest.raises(OutputError, match="cannot write .*a-file/eval.json"):
        run_evaluation(tiny_config(), tmp_path / "a-file" / "eval.json")
    assert scored == []  # refused before the model was even loaded


def without_timings(value):
    """A results dict without what differs between any two runs: wall times and speeds (and the worker count)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if k not in ("seconds", "tokens_per_second", "total_evaluation_time_seconds", "workers")}
    return value


def test_two_evaluation_workers_on_ray_give_one_process_results_and_report(tiny_config, tmp_path):
    from nofrog_core.replay.stage import run_replay
    from nofrog_core.train.stage import run_training

    replay_dir = tmp_path / "replay"
    run_replay(tiny_config("replay.num_samples=8", "replay.max_new_tokens=8", "replay.heldout_fraction=0.5"),
               replay_dir)
    config = tiny_config(f"replay.mix.dir={replay_dir}")
    base = run_evaluation(config, tmp_path / "base.json")
    trained = run_training(tiny_config("train.schedule=constant", "train.lr=1e-2", "train.max_steps=3"),
                           tmp_path / "train")
    one = run_evaluation(config, tmp_path / "one.json", model=trained["model_dir"], part="test")
    two = run_evaluation(config.with_values({"eval.workers": 2}), tmp_path / "two.json", model=trained["model_dir"],
                         part="test")
    assert two["config"]["workers"] == 2 and one["config"]["workers"] == 1
    assert list(two["results"]) == list(one["results"])  # the same tasks, in the same order
    assert json.dumps(without_timings(two)) == json.dumps(without_timings(one))
    assert forgetting_report(base, two) == forgetting_report(base, one)

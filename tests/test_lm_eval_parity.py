"""nofrog's scores for lm-eval task YAMLs equal lm-evaluation-harness 0.4.13's on the same model.

Runs when the `lm-eval` extra is installed (pip install -e '.[lm-eval]').
"""

import pytest
import yaml

from nofrog_core.evaluate.runner import SUITES_DIR, evaluate_model
from nofrog_core.models import ModelRef
from tests.conftest import build_tiny_model, write_jsonl
from tests.test_yaml_tasks import DOCS

lm_eval = pytest.importorskip("lm_eval")


def test_multiple_choice_and_rolling_match_lm_eval(tiny_config, tmp_path, monkeypatch):
    # lm-eval's HFLM prepends BOS when the tokenizer does (Gemma's does); nofrog always does.
    tiny_model_dir = build_tiny_model(tmp_path / "model", adds_bos=True)
    write_jsonl(tmp_path / "mc.jsonl", DOCS)
    write_jsonl(tmp_path / "docs.jsonl", [{"page": "the river runs to the sea and the city sleeps " * n}
                                          for n in (1, 3, 9)])
    common = {"dataset_path": "json", "test_split": "test", "metadata": {"version": 1}}
    (tmp_path / "p_mc.yaml").write_text(yaml.safe_dump({
        **common, "task": "p_mc", "dataset_kwargs": {"data_files": {"test": str(tmp_path / "mc.jsonl")}},
        "output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "options", "doc_to_target": "answer",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}))
    (tmp_path / "p_fewshot.yaml").write_text(yaml.safe_dump({
        **common, "task": "p_fewshot", "dataset_kwargs": {"data_files": {"test": str(tmp_path / "mc.jsonl")}},
        "output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "options", "doc_to_target": "answer", "num_fewshot": 2, "fewshot_split": "test",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}))
    (tmp_path / "p_roll.yaml").write_text(yaml.safe_dump({
        **common, "task": "p_roll", "dataset_kwargs": {"data_files": {"test": str(tmp_path / "docs.jsonl")}},
        "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{page}}",
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "bits_per_byte"}]}))

    # A built-in task too: the general suite's arithmetic YAML as shipped, its data path made absolute.
    builtin = yaml.safe_load((SUITES_DIR / "general" / "arithmetic.yaml").read_text())
    builtin["dataset_kwargs"]["data_files"]["test"] = str(SUITES_DIR / "general" / "arithmetic.jsonl")
    (tmp_path / "arithmetic.yaml").write_text(yaml.safe_dump(builtin))

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    names = ["p_mc", "p_fewshot", "p_roll", "arithmetic"]
    raw = simple_evaluate(model="hf", model_args=f"pretrained={tiny_model_dir},dtype=float32", tasks=names,
                          task_manager=TaskManager(include_path=str(tmp_path)), batch_size=4, device="cpu",
                          log_samples=True)
    theirs = raw["results"]
    # lm-eval's HFLM uses the model's whole context; give nofrog the same window.
    evaluated = evaluate_model(ModelRef(tiny_model_dir, "hash", "test"), tiny_config("eval.max_length=1024"),
                               [str(tmp_path / f"{name}.yaml") for name in names])
    ours = evaluated["results"]
    for task in ("p_mc", "p_fewshot", "arithmetic"):
        for key in ("acc,none", "acc_norm,none"):
            assert ours[task][key] == pytest.approx(theirs[task][key], abs=1e-9), (task, key)
    for key in ("word_perplexity,none", "bits_per_byte,none"):
        assert ours["p_roll"][key] == pytest.approx(theirs["p_roll"][key], rel=1e-4), key
    # Per item too: the samples the intervals are drawn from are lm-eval's, question by question.
    their_items = sorted(raw["samples"]["arithmetic"], key=lambda s: s["doc_id"])
    assert evaluated["samples"]["arithmetic"]["acc"] == [float(s["acc"]) for s in their_items]
    assert evaluated["task_info"]["p_roll"]["metric"] == "bits_per_byte"

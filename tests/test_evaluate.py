import json
import math

import pytest

from nofrog_core.evaluate.forgetting import forgetting_report, relative_drop
from nofrog_core.evaluate.stage import run_evaluation


def test_results_follow_the_lm_eval_schema(tiny_config, tmp_path):
    results = run_evaluation(tiny_config(), tmp_path / "eval.json")
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    demo, general = results["results"]["demo_task"], results["results"]["general_text"]
    # A random model is close to uniform over its vocabulary: NLL near log(vocab).
    assert demo["answer_loss,none"] == pytest.approx(math.log(557), rel=0.2)
    assert demo["answer_loss_stderr,none"] > 0
    assert general["bits_per_byte,none"] == pytest.approx(math.log(general["byte_perplexity,none"], 2))
    assert general["word_perplexity,none"] > general["byte_perplexity,none"] > 1
    assert results["n-samples"]["demo_task"]["original"] == 24
    assert results["config"]["model_hash"]


def test_results_are_never_overwritten(tiny_config, tmp_path):
    (tmp_path / "eval.json").write_text("{}")
    with pytest.raises(FileExistsError):
        run_evaluation(tiny_config(), tmp_path / "eval.json")
    assert (tmp_path / "eval.json").read_text() == "{}"


def test_unknown_task_is_named(tiny_config, tmp_path):
    # (with the lm-eval extra installed the message also rules out harness tasks)
    with pytest.raises(ValueError, match=r"eval.tasks: .*\['no_such_task'\]"):
        run_evaluation(tiny_config(), tmp_path / "eval.json", tasks=["no_such_task"])


def results(word_ppl, answer_loss):
    return {"results": {"general_text": {"word_perplexity,none": word_ppl},
                        "demo_task": {"answer_loss,none": answer_loss}}}


def test_forgetting_is_sign_aware():
    assert relative_drop(0.6, 0.5, higher_is_better=True) == pytest.approx(1 / 6)
    assert relative_drop(20.0, 25.0, higher_is_better=False) == pytest.approx(0.25)
    report = forgetting_report(results(20.0, 8.0), results(25.0, 2.0))
    assert report["forgetting"] == pytest.approx(0.25) and report["forgetting_clipped"] == pytest.approx(0.25)
    assert report["task_gain"] == pytest.approx(6.0)
    improved = forgetting_report(results(20.0, 8.0), results(18.0, 9.0))
    assert improved["forgetting"] == pytest.approx(-0.1) and improved["forgetting_clipped"] == 0.0
    assert improved["task_gain"] == pytest.approx(-1.0)


def test_forgetting_averages_accuracy_and_perplexity_tasks_sign_aware():
    def results(ppl, knowledge, arithmetic):
        return {"results": {"general_text": {"word_perplexity,none": ppl},
                            "world_knowledge": {"acc,none": knowledge}, "arithmetic": {"acc,none": arithmetic}}}

    report = forgetting_report(results(20.0, 0.8, 0.4), results(25.0, 0.6, 0.5))
    drops = {row["task"]: row["relative_drop"] for row in report["general"]}
    # perplexity up 25% = a 25% drop; accuracy 0.8 -> 0.6 = 25% drop; 0.4 -> 0.5 = 25% gain
    assert drops == pytest.approx({"general_text": 0.25, "world_knowledge": 0.25, "arithmetic": -0.25})
    assert report["forgetting"] == pytest.approx(0.25 / 3)
    assert report["forgetting_clipped"] == pytest.approx(0.5 / 3)


def test_replay_kl_is_zero_for_the_base_and_positive_after_training(tiny_config, tmp_path):
    from nofrog_core.replay.stage import run_replay
    from nofrog_core.train.stage import run_training

    replay_dir = tmp_path / "replay"
    run_replay(tiny_config("replay.num_samples=8", "replay.max_new_tokens=16", "replay.heldout_fraction=0.9"),
               replay_dir)
    config = tiny_config(f"train.replay_dir={replay_dir}", "eval.tasks=[general]")
    base = run_evaluation(config, tmp_path / "base.json")
    assert base["results"]["replay_kl"]["replay_kl,none"] == 0.0  # the model that wrote the samples
    assert (replay_dir / "heldout_base_nll.json").exists()
    trained = run_training(tiny_config("train.schedule=constant", "train.lr=3e-2", "train.lr_max=3e-2",
                                       "train.max_steps=20", "train.epochs=20"), tmp_path / "train")
    after = run_evaluation(config, tmp_path / "after.json", model=trained["model_dir"])
    kl = after["results"]["replay_kl"]["replay_kl,none"]
    assert kl > 0.1  # trained away from the base on other data: its samples got less likely
    report = forgetting_report(base, after)
    assert report["replay_kl"] == {"before": 0.0, "after": kl}
    assert "replay_kl" not in {row["task"] for row in report["general"]}


def test_demo_task_exact_match_is_the_greedy_answer_one_prompt_at_a_time(tiny_config, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nofrog_core.data import task_files

    config = tiny_config("eval.tasks=[demo_task]")
    results = run_evaluation(config, tmp_path / "eval.json")["results"]["demo_task"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [json.loads(line) for line in open(task_files(config).heldout)]
    longest = max(len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows)
    from nofrog_core.evaluate.builtin import greedy_answers

    batched = greedy_answers(model, tokenizer, tokenizer.bos_token_id, [r["prompt"] for r in rows], longest + 1,
                             config.eval.batch_size, tokenizer.pad_token_id)
    matches, alone = [], []
    for row in rows:  # no batching, no padding
        ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]]])
        out = model.generate(input_ids=ids, do_sample=False, max_new_tokens=longest + 1,
                             pad_token_id=tokenizer.pad_token_id)
        answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0].strip()
        matches.append(answer == row["completion"].strip())
        alone.append(answer)
    assert batched == alone and any(alone)  # left padding changes nothing
    assert results["exact_match,none"] == pytest.approx(sum(matches) / len(matches))
    assert 0.0 <= results["exact_match,none"] <= 1.0 and "answer_loss,none" in results

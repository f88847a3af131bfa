"""lm-eval task YAMLs scored by nofrog on the tiny model, checked against log-likelihoods computed by hand."""

import math

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from nofrog_core.evaluate.harness import Encoder
from nofrog_core.evaluate.runner import evaluate_model
from nofrog_core.evaluate.yaml_tasks import TaskError, load_task
from nofrog_core.models import ModelRef
from tests.conftest import write_jsonl

DOCS = [
    {"question": "the capital of the land", "options": ["river", "city", "stone"], "answer": 1},
    {"question": "a song about the sea", "options": ["water", "fire"], "answer": 0},
    {"question": "what the night brings", "options": ["sleep", "morning", "the moon"], "answer": 2},
]


def write_task(directory, name, **fields):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump({"task": name, **fields}))
    return directory / f"{name}.yaml"


def mc_task(directory):
    directory.mkdir(parents=True, exist_ok=True)
    write_jsonl(directory / "mc.jsonl", DOCS)
    return write_task(directory, "tiny_mc", dataset_path="json", dataset_kwargs={"data_files": {"test": "mc.jsonl"}},
                      test_split="test", output_type="multiple_choice", doc_to_text="Question: {{question}}\nAnswer:",
                      doc_to_choice="options", doc_to_target="answer", metric_list=[{"metric": "acc"}],
                      metadata={"version": 2})


def hand_loglikelihood(model, context_ids, continuation_ids) -> float:
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    start = len(context_ids)
    return sum(logprobs[start + i - 1, t].item() for i, t in enumerate(continuation_ids))


def test_multiple_choice_matches_a_hand_computed_ranking(tiny_config, tiny_model_dir, tmp_path):
    path = mc_task(tmp_path / "suite")
    config = tiny_config("eval.max_length=64")
    results = evaluate_model(ModelRef(tiny_model_dir, "hash", "test"), config, [str(tmp_path / "suite")])
    got = results["results"]["tiny_mc"]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = Encoder(tokenizer, tokenizer.bos_token_id, 64)
    acc, acc_norm = [], []
    for doc in DOCS:
        context = f"Question: {doc['question']}\nAnswer:"
        lls = [hand_loglikelihood(model, *encoder.pair(context, " " + c)) for c in doc["options"]]
        acc.append(float(max(range(len(lls)), key=lls.__getitem__) == doc["answer"]))
        normed = [ll / len(c) for ll, c in zip(lls, doc["options"])]
        acc_norm.append(float(max(range(len(normed)), key=normed.__getitem__) == doc["answer"]))
    assert got["acc,none"] == pytest.approx(sum(acc) / 3)
    assert got["acc_norm,none"] == pytest.approx(sum(acc_norm) / 3)
    assert got["acc_stderr,none"] >= 0 and got["tokens_per_second"] > 0
    assert results["versions"]["tiny_mc"] == 2 and results["configs"]["tiny_mc"]["source"] == str(path)
    assert results["n-samples"]["tiny_mc"]["effective"] == 3


def test_rolling_loglikelihood_scores_every_token_once(tiny_config, tiny_model_dir, tmp_path):
    text = " ".join(["the river runs to the sea and the city sleeps"] * 6)
    write_jsonl(tmp_path / "docs.jsonl", [{"page": text}])
    write_task(tmp_path, "tiny_ppl", dataset_path="json", dataset_kwargs={"data_files": {"test": "docs.jsonl"}},
               test_split="test", output_type="loglikelihood_rolling", doc_to_target="{{page}}")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokens = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]  # lm-eval keeps BOS
    encoder = Encoder(tokenizer, tokenizer.bos_token_id, 16)
    windows = encoder.rolling_windows(text)
    assert len(tokens) > 32 and len(windows) == math.ceil(len(tokens) / 16)
    assert [t for w in windows for t in w.labels if t != -100] == tokens  # each token scored exactly once
    assert all(len(w.input_ids) <= 17 for w in windows)

    # With the whole document in one window, the score is the log-likelihood of BOS + document given BOS.
    config = tiny_config("eval.max_length=128")
    results = evaluate_model(ModelRef(tiny_model_dir, "hash", "test"), config, [str(tmp_path / "tiny_ppl.yaml")])
    total = hand_loglikelihood(model, [tokenizer.bos_token_id], tokens)
    words, num_bytes = len(text.split()), len(text.encode())
    got = results["results"]["tiny_ppl"]
    assert got["word_perplexity,none"] == pytest.approx(math.exp(-total / words), rel=1e-4)
    assert got["bits_per_byte,none"] == pytest.approx(-total / num_bytes / math.log(2), rel=1e-4)


@pytest.mark.parametrize("change, message", [
    ({"test_split": None}, "missing field 'test_split'"),
    ({"output_type": "ranking"}, "output_type 'ranking' is unknown"),
    ({"doc_to_text": "Q: {{no_such_column}}"}, "field 'doc_to_text' template"),
    ({"dataset_kwargs": {"data_files": {"test": "missing.jsonl"}}}, "does not exist"),
    ({"num_fewshot": "abc"}, "field 'num_fewshot' must be a whole number, got 'abc'"),
    ({"dataset_kwargs": "mc.jsonl"}, "field 'dataset_kwargs' must be a mapping"),
])
def test_bad_yaml_names_the_file_and_the_field(tmp_path, change, message):
    path = mc_task(tmp_path)
    fields = yaml.safe_load(path.read_text())
    fields.update(change)
    path.write_text(yaml.safe_dump({k: v for k, v in fields.items() if v is not None}))
    with pytest.raises(TaskError, match=message) as err:
        load_task(path)
    assert str(path) in str(err.value)


def test_generate_until_scores_exact_match_of_greedy_text(tiny_config, tiny_model_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = "the river"
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]])
    greedy = model.generate(input_ids=ids, do_sample=False, max_new_tokens=3, pad_token_id=tokenizer.pad_token_id)
    continuation = tokenizer.decode(greedy[0, ids.shape[1]:], skip_special_tokens=True)
    write_jsonl(tmp_path / "gen.jsonl", [{"q": prompt, "a": continuation}, {"q": prompt, "a": "surely not this"}])
    write_task(tmp_path, "tiny_gen", dataset_path="json", dataset_kwargs={"data_files": {"test": "gen.jsonl"}},
               test_split="test", output_type="generate_until", doc_to_text="q", doc_to_target="a",
               generation_kwargs={"until": ["\n\n"], "max_gen_toks": 3}, metric_list=[{"metric": "exact_match"}])
    results = evaluate_model(ModelRef(tiny_model_dir, "hash", "test"), tiny_config(), [str(tmp_path / "tiny_gen.yaml")])
    assert results["results"]["tiny_gen"]["exact_match,none"] == pytest.approx(0.5)  # the greedy one matches


def test_choices_scored_after_a_shared_context_equal_each_request_scored_alone(tiny_model_dir):
    from nofrog_core.scoring import sequence_nll, shared_context_nll

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = Encoder(tokenizer, tokenizer.bos_token_id, 64)
    groups = []
    for doc in DOCS * 3:  # contexts and choices of different lengths in one batch
        pairs = [encoder.pair(f"Question: {doc['question']}\nAnswer:", " " + c) for c in doc["options"]]
        groups.append((pairs[0][0], [continuation for _, continuation in pairs]))
    shared = shared_context_nll(model, groups, batch_size=4, pad_token_id=tokenizer.pad_token_id)
    alone = [sequence_nll(model, [encoder.example(context, c) for c in continuations], 1, tokenizer.pad_token_id)[0]
             for context, continuations in groups]
    assert [len(s) for s in shared] == [len(d["options"]) for d in DOCS * 3]
    for got, want in zip(shared, alone):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_a_task_template_cannot_run_code(tmp_path):
    # The payload of the reliability issue: with a plain Jinja environment it ran `id` as this user.
    marker = tmp_path / "pwned"
    payload = "{{ lipsum.__globals__['os'].popen('touch " + str(marker) + "').read() }}{{question}}"
    mc_task(tmp_path / "suite")
    path = tmp_path / "suite" / "tiny_mc.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["doc_to_text"] = payload
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(TaskError, match="tiny_mc.yaml: field 'doc_to_text' template .* is refused"):
        load_task(path)
    assert not marker.exists()


def test_a_symlink_loop_or_non_utf8_task_yaml_is_named_by_the_eval_command(tiny_overrides, tmp_path):
    from typer.testing import CliRunner

    from nofrog_flows.cli import app

    suite = tmp_path / "suite"
    mc_task(suite)
    (suite / "loop.yaml").symlink_to(suite / "loop.yaml")  # points at itself
    (suite / "again").symlink_to(suite)  # a directory loop: never followed
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    args = ["eval", *sets, "--set", f"eval.forgetting_tasks=[{suite}]", "--out", str(tmp_path / "eval.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{suite / 'loop.yaml'}: cannot read the task YAML: Too many levels of symbolic links" in \
        " ".join(result.output.split()), result.output

    (suite / "loop.yaml").unlink()
    (suite / "latin1.yaml").write_bytes("task: caf\xe9\n".encode("latin-1"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{suite / 'latin1.yaml'}: the task YAML is not UTF-8 text (byte 0xe9 on line 1)" in \
        " ".join(result.output.split()), result.output

"""nofrog vs lm-evaluation-harness 0.4.13 on the real base model (Gemma 3 270M, fp32, CPU).

    python bench/lm_eval_parity.py [--model DIR] [--out FILE]   # ~2.5 min per model

Default: the base model, into bench/results/lm_eval_parity.json. `--model` compares on a fine-tuned
candidate (a `nofrog train` model directory) instead.

Scores two of the general suite's multiple-choice YAMLs as shipped and a rolling-perplexity YAML over
eight general-text documents with nofrog and with lm-eval's own `simple_evaluate`, and compares
accuracy (per question too), word perplexity, bits per byte and wall time.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from nofrog_core.config import load_config  # noqa: E402
from nofrog_core.corpus import general_documents  # noqa: E402
from nofrog_core.evaluate.runner import SUITES_DIR, evaluate_model  # noqa: E402
from nofrog_core.models import resolve_model  # noqa: E402


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a model directory (default: the configured base model)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm_eval_parity.json")
    args = parser.parse_args()
    d = Path(tempfile.mkdtemp(prefix="nofrog-parity-"))
    for name in ("world_knowledge", "language"):
        raw = yaml.safe_load((SUITES_DIR / "general" / f"{name}.yaml").read_text())
        raw["dataset_kwargs"]["data_files"]["test"] = str(SUITES_DIR / "general" / f"{name}.jsonl")
        (d / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    (d / "prose.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in general_documents()[:8]))
    (d / "prose.yaml").write_text(yaml.safe_dump({
        "task": "prose", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(d / "prose.jsonl")}},
        "test_split": "test", "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "bits_per_byte"}]}))
    names = ["world_knowledge", "language", "prose"]
    config = load_config(None, ["eval.max_length=32768", *([f"model.name_or_path={args.model}"] if args.model else [])])
    ref = resolve_model(config.model)
    t = time.time()
    ours = evaluate_model(ref, config, [str(d / f"{n}.yaml") for n in names])
    t_ours = time.time() - t
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    t = time.time()
    theirs = simple_evaluate(model="hf", model_args=f"pretrained={ref.path},dtype=float32", tasks=names,
                             task_manager=TaskManager(include_path=str(d)), batch_size=8, device="cpu",
                             log_samples=True)
    t_theirs = time.time() - t
    out = {"seconds": {"nofrog": round(t_ours, 1), "lm_eval": round(t_theirs, 1)},  # each loading the model
           "command": " ".join(["python bench/lm_eval_parity.py", *sys.argv[1:]]), "model": str(ref.path)}
    for n in names:
        keys = ["acc,none", "acc_norm,none"] if n != "prose" else ["word_perplexity,none", "bits_per_byte,none"]
        out[n] = {k: [ours["results"][n][k], theirs["results"][n][k]] for k in keys}
        if n != "prose":
            items = sorted(theirs["samples"][n], key=lambda s: s["doc_id"])
            out[n]["items_differing"] = sum(a != float(b["acc"]) for a, b in zip(ours["samples"][n]["acc"], items))
    print(json.dumps(out, indent=1))
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

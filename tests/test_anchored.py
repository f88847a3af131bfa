"""Anchored Learning (docs/methods.md section 3) on the tiny model."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from nofrog_core.losses import anchor_logprobs, chunked_losses, labelled_hidden
from nofrog_core.history import read_history
from nofrog_core.train.loop import student_phase_plan
from nofrog_core.train.stage import run_training


def batch_of(tiny_model_dir):
    torch.manual_seed(0)
    ids = torch.randint(5, 500, (3, 12))
    labels = ids.clone()
    labels[:, :4] = -100
    return ids, labels, torch.ones_like(ids)


def anchored_kl(student, snapshot, reference, batch, alpha=0.5, interpolation="logit", temperature=1.0):
    ids, labels, mask = batch
    hidden, targets, _ = labelled_hidden(student, ids, mask, labels)
    target = anchor_logprobs(snapshot, reference, ids, mask, labels, alpha, temperature, interpolation)
    return chunked_losses(student, hidden, targets, 5, target, temperature)[1]


@pytest.mark.parametrize("interpolation", ["logit", "prob"])
def test_anchored_loss_is_zero_when_student_snapshot_and_reference_agree(tiny_model_dir, interpolation):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    kl = anchored_kl(model, model, model, batch_of(tiny_model_dir), interpolation=interpolation)
    assert kl.abs().max().item() < 1e-5


def test_anchor_mixes_logits_as_the_formula_says(tiny_model_dir):
    """KL(q || p) with q = softmax((1-a) z_snap + a z_ref), computed by hand on full logits."""
    student = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    snapshot, reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p))
    batch = batch_of(tiny_model_dir)
    ids, labels, mask = batch
    with torch.no_grad():
        got = anchored_kl(student, snapshot, reference, batch, alpha=0.3, temperature=2.0)
        z = {name: m(input_ids=ids, attention_mask=mask).logits[:, :-1][labels[:, 1:] != -100]
             for name, m in (("s", student), ("snap", snapshot), ("ref", reference))}
        q = torch.log_softmax((0.7 * z["snap"] + 0.3 * z["ref"]) / 2.0, -1)
        p = torch.log_softmax(z["s"] / 2.0, -1)
        want = (q.exp() * (q - p)).sum(-1) * 4.0
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert got.min() >= -1e-6 and got.sum() > 0


def test_anchored_training_runs_both_phases_and_lowers_its_loss(tiny_config, tmp_path):
    config = tiny_config("train.objective=anchored", "train.schedule=constant", "train.lr=3e-3",
                         "train.max_steps=12", "train.anchored.outer_iterations=3")
    assert student_phase_plan(3, config.train.max_steps, 5.0, 3) == (12, 4)  # T=3 snapshots over 12 steps
    assert student_phase_plan(3, None, 5.0, 3) == (45, 15)  # K=5 epochs of 3 steps, T=3
    out = run_training(config, tmp_path / "train")
    reference = read_history(tmp_path / "train" / "history_reference.jsonl")
    student = read_history(out["history"])
    assert len(reference) == 12 and len(student) == 12
    assert reference[-1]["loss"] < reference[0]["loss"]  # stage 1: plain SFT learns the task
    # Stage 2 starts from the base, so its KL to an anchor half made of the SFT model is positive...
    assert student[0]["loss"] > 0.01
    # ...and training pulls the student toward the anchor, and with it onto the task.
    assert student[-1]["loss"] < student[0]["loss"] * 0.8
    assert student[-1]["task_nll"] < student[0]["task_nll"]
    assert all(math.isfinite(h["loss"]) for h in student)
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert meta["config"]["train"]["objective"] == "anchored"

"""The shared frozen trunk and bounded KL memory (issue: speed, round two, items 1-2): exact against
the full forward, and a KL whose kept memory does not grow with the replay tokens."""

import copy
import gc
import weakref

import pytest
import torch
from transformers import AutoModelForCausalLM

from nofrog_core.losses import chunked_losses, frozen_logprobs, hidden_states, labelled_hidden
from nofrog_core.train import controls
from nofrog_core.train.objective import TrainingObjective
from nofrog_core.train.terms import WeightedTerm, build_term
from nofrog_core.trunk import same_trunk, top_hidden_states, trunk_depth, trunk_states


def frozen_bottom(tiny_model_dir, lora=False):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    controls.freeze_bottom_layers(model, 1)
    controls.freeze_embeddings(model)
    if lora:
        model = controls.apply_lora(model, 4, 8, 0.0, ["q_proj", "v_proj"], [1])
    return model


def batch(seed=0, rows=3, length=10):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 60, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # a left-padded row
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


@pytest.mark.parametrize("lora", [False, True])
def test_the_top_from_the_trunk_is_the_full_forward(tiny_model_dir, lora):
    model = frozen_bottom(tiny_model_dir, lora)
    depth = trunk_depth(model)
    assert depth == 1
    ids, mask, _ = batch()
    trunk = trunk_states(model, ids, mask, depth)
    torch.testing.assert_close(top_hidden_states(model, trunk.states, mask, depth), hidden_states(model, ids, mask),
                               rtol=0, atol=1e-6)
    assert len(controls.decoder_layers(model)) == 2 and all(  # the bottom layer is back in place
        type(layer).__name__ != "_Passthrough" for layer in controls.decoder_layers(model))


def test_no_trunk_when_the_embedding_trains_and_a_changed_bottom_is_not_shared(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    controls.freeze_bottom_layers(model, 1)
    assert trunk_depth(model) == 0  # the embedding trains: every layer's input moves
    model = frozen_bottom(tiny_model_dir)
    other = copy.deepcopy(model)
    assert same_trunk(model, other, 1)
    with torch.no_grad():
        controls.decoder_layers(other)[0].mlp.up_proj.weight[0, 0] += 1e-3
    assert not same_trunk(model, other, 1)


def losses_and_grads(model, base, share_trunk, chunk_size=7):
    terms = [WeightedTerm(build_term("task_nll"), 1.0), WeightedTerm(build_term("replay_nll"), 1.0),
             WeightedTerm(build_term("replay_kl"), 1.0)]
    objective = TrainingObjective(model, chunk_size, terms, share_trunk=share_trunk)
    objective.frozen["base"] = base
    model.zero_grad()
    ids, mask, labels = batch(0)
    replay_ids, replay_mask, replay_labels = batch(1, rows=2, length=12)
    sums = objective({"input_ids": ids, "attention_mask": mask, "labels": labels},
                     {"input_ids": replay_ids, "attention_mask": replay_mask, "labels": replay_labels})
    (objective.weighted(sums, "task") + objective.weighted(sums, "replay")).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.item() for k, v in sums.items()}, grads


def test_the_step_with_a_shared_trunk_equals_todays_step(tiny_model_dir):
    model = frozen_bottom(tiny_model_dir)
    with torch.no_grad():  # a student that moved away from its base, so the KL and its gradient are not 0
        for p in controls.decoder_layers(model)[1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    base = copy.deepcopy(frozen_bottom(tiny_model_dir)).eval().requires_grad_(False)
    shared, shared_grads = losses_and_grads(model, base, share_trunk=True)
    full, full_grads = losses_and_grads(model, base, share_trunk=False)
    assert shared["replay_kl"] > 1e-4
    assert shared == pytest.approx(full, rel=1e-5, abs=1e-7)
    assert shared_grads.keys() == full_grads.keys() and shared_grads
    for name in full_grads:
        torch.testing.assert_close(shared_grads[name], full_grads[name], rtol=1e-4, atol=1e-7)


class WideHead(torch.nn.Module):
    """Just an output projection: the chunked loss reads nothing else of its model."""

    def __init__(self, hidden=8, vocab=4096):
        super().__init__()
        self.head = torch.nn.Linear(hidden, vocab, bias=False)
        self.config = None

    def get_output_embeddings(self):
        return self.head


@pytest.mark.parametrize("tokens", [64, 256])
def test_the_kl_keeps_no_target_until_backward_whatever_the_replay_tokens(tokens):
    torch.manual_seed(0)
    student, base = WideHead(), WideHead()
    hidden = torch.randn(tokens, 8, requires_grad=True)
    base_hidden = torch.randn(tokens, 8)
    targets = torch.randint(0, 4096, (tokens,))
    alive = []

    def target(start, end):
        logprobs = torch.log_softmax(base.head(base_hidden[start:end]), dim=-1)
        alive.append(weakref.ref(logprobs))
        return logprobs

    with torch.no_grad():
        expected = torch.nn.functional.kl_div(torch.log_softmax(student.head(hidden), -1),
                                              torch.log_softmax(base.head(base_hidden), -1),
                                              log_target=True, reduction="none").sum(-1)
    _, kl = chunked_losses(student, hidden, targets, 16, target)
    gc.collect()
    # Between the forward and the backward pass, no chunk's [16 x 4096] target is alive (each was
    # 256 KiB; all of them stayed alive before, 4 MiB at 256 tokens): memory does not grow with tokens.
    assert len(alive) == tokens // 16 and not any(ref() is not None for ref in alive)
    kl.sum().backward()  # the backward pass computes each chunk's target again
    assert len(alive) == 2 * tokens // 16
    torch.testing.assert_close(kl.detach(), expected, rtol=1e-5, atol=1e-6)
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0


def test_frozen_logprobs_from_the_trunk_are_the_full_ones(tiny_model_dir):
    model = frozen_bottom(tiny_model_dir)
    ids, mask, labels = batch()
    trunk = trunk_states(model, ids, mask, 1)
    full, shared = frozen_logprobs(model, ids, mask, labels), frozen_logprobs(model, ids, mask, labels, trunk=trunk)
    count = labelled_hidden(model, ids, mask, labels)[1].numel()
    torch.testing.assert_close(shared(0, count), full(0, count), rtol=0, atol=1e-5)

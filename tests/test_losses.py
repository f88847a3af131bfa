import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from nofrog_core.data import IGNORE_INDEX
from nofrog_core.losses import token_kl_to_reference, token_nll


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def batch(vocab_size):
    torch.manual_seed(0)
    input_ids = torch.randint(4, vocab_size, (3, 12))
    labels = input_ids.clone()
    labels[:, :5] = IGNORE_INDEX  # a prompt
    labels[2, 9:] = IGNORE_INDEX  # padding
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 9:] = 0
    return input_ids, labels, attention_mask


def reference_nll(model, input_ids, labels, attention_mask):
    """Plain full-logits CE, as HF computes it."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_chunked_nll_and_gradient_match_full_logits(model, chunk_size):
    input_ids, labels, attention_mask = batch(model.config.vocab_size)
    model.zero_grad()
    expected = reference_nll(model, input_ids, labels, attention_mask)
    expected.backward()
    expected_grad = model.get_output_embeddings().weight.grad.clone()
    model.zero_grad()
    total, per_sequence, count = token_nll(model, input_ids, labels, attention_mask, chunk_size)
    total.backward()
    assert count == int((labels[:, 1:] != IGNORE_INDEX).sum())
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert per_sequence.sum().item() == pytest.approx(total.item(), rel=1e-6)
    torch.testing.assert_close(model.get_output_embeddings().weight.grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_per_sequence_sums_are_independent_of_batch_neighbours(model):
    input_ids, labels, attention_mask = batch(model.config.vocab_size)
    with torch.no_grad():
        _, together, _ = token_nll(model, input_ids, labels, attention_mask)
        _, alone, _ = token_nll(model, input_ids[2:], labels[2:], attention_mask[2:])
    assert together[2].item() == pytest.approx(alone[0].item(), rel=1e-5)


def test_kl_to_reference_is_zero_for_the_same_model_and_matches_full_logits(model, tiny_model_dir):
    input_ids, labels, attention_mask = batch(model.config.vocab_size)
    twin = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        same, count = token_kl_to_reference(model, twin, input_ids, labels, attention_mask, chunk_size=5)
    assert count == int((labels[:, 1:] != IGNORE_INDEX).sum()) and abs(same.item()) < 1e-4

    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.zero_grad()
    kl, _ = token_kl_to_reference(model, other, input_ids, labels, attention_mask, chunk_size=5)
    kl.backward()
    grad = model.get_output_embeddings().weight.grad.clone()
    # Reference: full logits, KL(p_other || p_model) summed over labelled positions.
    model.zero_grad()
    mask = labels[:, 1:] != IGNORE_INDEX
    logp = F.log_softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][mask].float(), -1)
    with torch.no_grad():
        logq = F.log_softmax(other(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][mask].float(), -1)
    expected = (logq.exp() * (logq - logp)).sum()
    expected.backward()
    assert kl.item() > 0 and kl.item() == pytest.approx(expected.item(), rel=1e-4)
    torch.testing.assert_close(grad, model.get_output_embeddings().weight.grad, rtol=1e-4, atol=1e-6)

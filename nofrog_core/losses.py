"""Losses that never materialise a full logits tensor.

Gemma's vocabulary has 262k entries: logits for a batch of 8 x 256 tokens in
fp32 take 2 GB, and their gradient as much again. We take the final hidden
states, keep only the positions that carry a label, and run the output
projection + cross-entropy over them in chunks. Each chunk is checkpointed,
so its logits are recomputed in the backward pass instead of being kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .data import IGNORE_INDEX


def _output_softcap(model) -> float | None:
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    return getattr(config, "final_logit_softcapping", None)


def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Final-layer hidden states (after the final norm) of a causal LM."""
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    return backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def token_nll(
    model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL summed over labelled positions, per-sequence sums [B], number of labelled tokens).

    Returned as sums so callers can average over any set of batches or workers
    exactly, token-weighted.
    """
    hidden = hidden_states(model, input_ids, attention_mask)[:, :-1]
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    rows = mask.nonzero(as_tuple=True)[0]  # sequence index of each labelled position
    selected_hidden, selected_targets = hidden[mask], targets[mask]
    weight = model.get_output_embeddings().weight
    softcap = _output_softcap(model)
    per_token = []
    for start in range(0, selected_targets.numel(), chunk_size):
        h = selected_hidden[start : start + chunk_size]
        t = selected_targets[start : start + chunk_size]
        if torch.is_grad_enabled():
            per_token.append(checkpoint(_chunk_token_nll, h, weight, t, softcap, use_reentrant=False))
        else:
            per_token.append(_chunk_token_nll(h, weight, t, softcap))
    nll = torch.cat(per_token) if per_token else hidden.new_zeros(0, dtype=torch.float32)
    per_sequence = torch.zeros(input_ids.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, rows, nll)
    return nll.sum(), per_sequence, selected_targets.numel()


def _logits(hidden, weight, softcap):
    logits = (hidden @ weight.T).float()
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def _chunk_token_nll(hidden, weight, targets, softcap):
    return F.cross_entropy(_logits(hidden, weight, softcap), targets, reduction="none")


def _chunk_token_kl(hidden, weight, reference_logprobs, softcap):
    logprobs = F.log_softmax(_logits(hidden, weight, softcap), dim=-1)
    return (reference_logprobs.exp() * (reference_logprobs - logprobs)).sum(-1)


def token_kl_to_reference(
    model, reference, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, int]:
    """(sum over labelled positions of KL(p_reference || p_model) over the full vocabulary, token count).

    On context-free replay samples with the frozen base model as `reference` this is the
    full-distribution version of the replay NLL: it compares whole next-token distributions
    instead of the one sampled token, so it is a lower-variance pull toward the base model.
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    hidden = hidden_states(model, input_ids, attention_mask)[:, :-1][mask]
    with torch.no_grad():
        reference_hidden = hidden_states(reference, input_ids, attention_mask)[:, :-1][mask]
    weight, reference_weight = model.get_output_embeddings().weight, reference.get_output_embeddings().weight
    softcap, reference_softcap = _output_softcap(model), _output_softcap(reference)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_size):
        with torch.no_grad():
            ref_logits = _logits(reference_hidden[start : start + chunk_size], reference_weight, reference_softcap)
            ref_logprobs = F.log_softmax(ref_logits, dim=-1)
        h = hidden[start : start + chunk_size]
        if torch.is_grad_enabled():
            kl = checkpoint(_chunk_token_kl, h, weight, ref_logprobs, softcap, use_reentrant=False)
        else:
            kl = _chunk_token_kl(h, weight, ref_logprobs, softcap)
        total = total + kl.sum()
    return total, int(mask.sum())

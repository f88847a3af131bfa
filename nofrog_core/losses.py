"""Losses that never materialise a full logits tensor.

Gemma's vocabulary has 262k entries: logits for a batch of 8 x 256 tokens in
fp32 take 2 GB, and their gradient as much again. We take the final hidden
states, keep only the positions that carry a label, and run the output
projection + loss over them in chunks. Each chunk is checkpointed, so its
logits are recomputed in the backward pass instead of being kept.

One chunk function serves every objective: it returns the per-token NLL of
the labels and, when a target distribution is given, the per-token forward KL
KL(target || model) over the whole vocabulary, both from one projection.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .data import IGNORE_INDEX
from .trunk import Trunk, decoder, top_hidden_states

# Target log-probabilities for the labelled positions [start, end) of a chunk.
TargetLogprobs = Callable[[int, int], torch.Tensor]


def output_softcap(model) -> float | None:
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    return getattr(config, "final_logit_softcapping", None)


def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Final-layer hidden states (after the final norm) of a causal LM."""
    return decoder(model)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def labelled_hidden(model, input_ids, attention_mask, labels, trunk: Trunk | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden states that predict a label [N, H], those labels [N], their sequence index [N]),
    in row-major order, so row subsets of a batch select a prefix-free slice of these. With
    `trunk` (the states entering layer `depth`, shared with a model whose bottom is this one's),
    only the layers from `depth` up run."""
    if trunk is None:
        full = hidden_states(model, input_ids, attention_mask)
    else:
        full = top_hidden_states(model, trunk.states, attention_mask, trunk.depth)
    hidden = full[:, :-1]
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    return hidden[mask], targets[mask], mask.nonzero(as_tuple=True)[0]


def logits_of(model, hidden: torch.Tensor) -> torch.Tensor:
    """fp32 logits of some hidden states (for frozen models, under no_grad)."""
    return _logits(hidden, model.get_output_embeddings().weight, output_softcap(model))


def _logits(hidden, weight, softcap):
    logits = (hidden @ weight.T).float()
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def _chunk_losses(hidden, weight, targets, softcap, temperature, target_logprobs=None, start=0, end=0):
    logits = _logits(hidden, weight, softcap)
    if target_logprobs is None:
        nll = F.cross_entropy(logits, targets, reduction="none")
        return nll, torch.zeros_like(nll)
    # The target is computed here, inside the checkpointed function, and again in the backward pass:
    # kept from the forward pass, every chunk's [chunk, vocabulary] target would stay alive until
    # backward (~1 MiB per token for Gemma's 262k words), so memory would grow with the replay tokens.
    # Every pass over the vocabulary that autograd records costs twice (262k x 4 bytes a token each
    # way). The gradient of KL(p || q) needs only the cross term -sum p log q; its value is computed
    # apart, without a gradient, in the form that does not cancel (two ~log V terms for a KL near 0
    # would lose the value to float32 rounding). At temperature 1 the NLL is read off the same
    # log-softmax.
    with torch.no_grad():
        target = target_logprobs(start, end)
        probs = target.exp()
    logprobs = F.log_softmax(logits / temperature, dim=-1)
    if temperature == 1.0:
        nll = -logprobs.gather(1, targets[:, None]).squeeze(1)
    else:
        nll = F.cross_entropy(logits, targets, reduction="none")
    cross = -(probs * logprobs).sum(-1)
    with torch.no_grad():
        value = (probs * (target - logprobs)).sum(-1)
    kl = (value + cross - cross.detach()) * temperature**2  # the value of KL, the gradient of the cross term
    return nll, kl


def chunked_losses(
    model, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int,
    target_logprobs: TargetLogprobs | None = None, temperature: float = 1.0, keep_logits_up_to: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (NLL, KL(target || model) * T^2) over labelled positions; KL is zeros without a target.

    A chunk of at most `keep_logits_up_to` positions keeps its logits (and its target) for the
    backward pass instead of recomputing them (one output projection less; 262k x 4 bytes per
    position). Every larger chunk keeps only its slice of `hidden`: peak memory does not grow with
    the number of positions.
    """
    weight, softcap = model.get_output_embeddings().weight, output_softcap(model)
    nll_parts, kl_parts = [], []
    for start in range(0, targets.numel(), chunk_size):
        end = min(start + chunk_size, targets.numel())
        args = (hidden[start:end], weight, targets[start:end], softcap, temperature, target_logprobs, start, end)
        if torch.is_grad_enabled() and end - start > keep_logits_up_to:
            nll, kl = checkpoint(_chunk_losses, *args, use_reentrant=False)
        else:
            nll, kl = _chunk_losses(*args)
        nll_parts.append(nll)
        kl_parts.append(kl)
    if not nll_parts:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat(nll_parts), torch.cat(kl_parts)


def token_nll(
    model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(NLL summed over labelled positions, per-sequence sums [B], number of labelled tokens).

    Returned as sums so callers can average over any set of batches or workers
    exactly, token-weighted.
    """
    hidden, targets, rows = labelled_hidden(model, input_ids, attention_mask, labels)
    nll, _ = chunked_losses(model, hidden, targets, chunk_size)
    per_sequence = torch.zeros(input_ids.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, rows, nll)
    return nll.sum(), per_sequence, targets.numel()


def frozen_logprobs(frozen_model, input_ids, attention_mask, labels, temperature: float = 1.0,
                    trunk: Trunk | None = None) -> TargetLogprobs:
    """Target log-probs of a frozen model on the labelled positions, computed chunk by chunk
    (from the shared `trunk` when the frozen model's bottom is the trained one's)."""
    with torch.no_grad():
        hidden, _, _ = labelled_hidden(frozen_model, input_ids, attention_mask, labels, trunk)
    return lambda start, end: F.log_softmax(logits_of(frozen_model, hidden[start:end]) / temperature, dim=-1)


def token_kl_to_reference(
    model, reference, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, int]:
    """(sum over labelled positions of KL(p_reference || p_model) over the full vocabulary, token count).

    On context-free replay samples with the frozen base model as `reference` this is the
    full-distribution version of the replay NLL: it compares whole next-token distributions
    instead of the one sampled token, so it is a lower-variance pull toward the base model.
    """
    hidden, targets, _ = labelled_hidden(model, input_ids, attention_mask, labels)
    target = frozen_logprobs(reference, input_ids, attention_mask, labels)
    _, kl = chunked_losses(model, hidden, targets, chunk_size, target)
    return kl.sum(), targets.numel()


def anchor_logprobs(snapshot, reference, input_ids, attention_mask, labels, alpha: float, temperature: float,
                    interpolation: str, snapshot_trunk: Trunk | None = None,
                    reference_trunk: Trunk | None = None) -> TargetLogprobs:
    """Anchored Learning's moving anchor q (docs/methods.md section 3) on the labelled positions.

    logit: q = softmax(((1 - alpha) z_snap + alpha z_sft) / T)
    prob:  q = (1 - alpha) softmax(z_snap / T) + alpha softmax(z_sft / T)
    """
    with torch.no_grad():
        snap_hidden, _, _ = labelled_hidden(snapshot, input_ids, attention_mask, labels, snapshot_trunk)
        ref_hidden, _, _ = labelled_hidden(reference, input_ids, attention_mask, labels, reference_trunk)

    def target(start: int, end: int) -> torch.Tensor:
        z_snap, z_ref = logits_of(snapshot, snap_hidden[start:end]), logits_of(reference, ref_hidden[start:end])
        if interpolation == "logit":
            return F.log_softmax(((1 - alpha) * z_snap + alpha * z_ref) / temperature, dim=-1)
        weighted = torch.stack([F.log_softmax(z_snap / temperature, -1) + math.log(1 - alpha),
                                F.log_softmax(z_ref / temperature, -1) + math.log(alpha)])
        return torch.logsumexp(weighted, dim=0)

    return target

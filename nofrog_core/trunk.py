"""The frozen trunk: the bottom decoder layers (and the embedding) that a fine-tune leaves as the
base's, computed once and shared.

With `train.freeze_bottom` and `train.freeze_embeddings`, the hidden states that enter the first
trained layer are a function of the base's weights alone: the student and the frozen base compute
the same ones. `trunk_states` computes them once (no gradient: nothing below learns) and
`top_hidden_states` runs only the layers above, for the student with its gradient and for the base
without. Exact, not approximate: the same layers run on the same inputs (tests/test_trunk.py).

Works on any Hugging Face decoder whose inner model takes `inputs_embeds` and runs `model.layers` in
order, each layer taking the hidden states first and returning them (transformers 5): the bottom
layers are swapped for a passthrough while the top runs, so masks and positions are built as usual.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Trunk:
    """The hidden states entering decoder layer `depth` for one batch of rows."""

    states: torch.Tensor
    depth: int


class _TrunkReached(Exception):
    """Raised by the hook on the first layer above the trunk: the forward stops there."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


class _Passthrough(torch.nn.Module):
    """A decoder layer that returns its input: the trunk's layers while the top runs from the trunk."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def decoder(model) -> torch.nn.Module:
    """The decoder stack of a causal LM (its layers, final norm, masks), without the output head."""
    return model.get_decoder() if hasattr(model, "get_decoder") else model.base_model


def trunk_depth(model) -> int:
    """How many bottom decoder layers no gradient reaches: 0 when the input embedding trains (then
    every layer's input depends on trained weights)."""
    inner = decoder(model)
    if any(p.requires_grad for p in inner.get_input_embeddings().parameters()):
        return 0
    depth = 0
    for layer in inner.layers:
        if any(p.requires_grad for p in layer.parameters()):
            break
        depth += 1
    return min(depth, len(inner.layers) - 1)  # at least one layer runs above the trunk


def same_trunk(model, other, depth: int) -> bool:
    """Whether `other`'s embedding and bottom `depth` layers hold exactly `model`'s weights (checked,
    not assumed: a frozen copy of the same model does, an earlier round's model may not)."""
    if depth == 0:
        return False
    mine, theirs = decoder(model), decoder(other)
    pairs = [(mine.get_input_embeddings(), theirs.get_input_embeddings()),
             *zip(mine.layers[:depth], theirs.layers[:depth])]
    for a, b in pairs:
        params_a, params_b = list(a.parameters()), list(b.parameters())
        if len(params_a) != len(params_b) or not all(
                x.shape == y.shape and torch.equal(x, y) for x, y in zip(params_a, params_b)):
            return False
    return True


@torch.no_grad()
def trunk_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, depth: int) -> Trunk:
    """The hidden states that enter decoder layer `depth` (the embedding and layers below it run; the
    forward stops there)."""
    layer = decoder(model).layers[depth]

    def stop(module, args, kwargs):
        raise _TrunkReached(args[0] if args else kwargs["hidden_states"])

    handle = layer.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        decoder(model)(input_ids=input_ids, attention_mask=attention_mask)
    except _TrunkReached as reached:
        return Trunk(reached.hidden, depth)
    finally:
        handle.remove()
    raise RuntimeError(f"{type(model).__name__}: the forward never reached decoder layer {depth}")


@contextlib.contextmanager
def _trunk_skipped(model, depth: int):
    layers = decoder(model).layers
    kept = [layers[i] for i in range(depth)]
    try:
        for i in range(depth):
            layers[i] = _Passthrough()
        yield
    finally:
        for i, layer in enumerate(kept):
            layers[i] = layer


def top_hidden_states(model, trunk: torch.Tensor, attention_mask: torch.Tensor, depth: int) -> torch.Tensor:
    """Final hidden states (after the final norm) from the trunk's output: layers `depth` and up."""
    with _trunk_skipped(model, depth):
        return decoder(model)(inputs_embeds=trunk, attention_mask=attention_mask).last_hidden_state

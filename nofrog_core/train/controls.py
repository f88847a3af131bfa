"""Practitioner controls against forgetting (docs/methods.md section 4): LoRA, layer
freezing and layer-wise LR decay, applied to a loaded HF causal LM.

Layers are numbered from the bottom (0, next to the embeddings) to the top.
"""

from __future__ import annotations

import math
import re

import torch

from ..errors import ControlError

LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


def decoder_layers(model) -> torch.nn.ModuleList:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ControlError(f"{type(model).__name__}: cannot find its decoder layers (expected model.layers)")
    return layers


def layers_to_freeze(freeze_bottom: float, num_layers: int) -> int:
    """`train.freeze_bottom` as a layer count: a whole number >= 1, or a fraction < 1 of the layers."""
    count = int(freeze_bottom) if freeze_bottom >= 1 else math.floor(freeze_bottom * num_layers)
    if count >= num_layers:
        raise ControlError(f"train.freeze_bottom={freeze_bottom} freezes {count} of {num_layers} layers; "
                           f"expected fewer than {num_layers} (a count) or a fraction below 1")
    return count


def freeze_bottom_layers(model, freeze_bottom: float) -> int:
    layers = decoder_layers(model)
    count = layers_to_freeze(freeze_bottom, len(layers))
    for layer in layers[:count]:
        layer.requires_grad_(False)
    return count


def freeze_embeddings(model) -> int:
    """Freezes the input embeddings and the LM head (one matrix when tied, as in Gemma: ~168M of
    Gemma 3 270M's ~268M weights). Returns the number of weights frozen."""
    frozen = {id(p): p for module in (model.get_input_embeddings(), model.get_output_embeddings())
              if module is not None for p in module.parameters()}
    for param in frozen.values():
        param.requires_grad_(False)
    return sum(p.numel() for p in frozen.values())


def apply_lora(model, r: int, alpha: float, dropout: float, target_modules: list[str],
               layers: list[int] | None = None):
    """LoRA adapters on `target_modules`, in the decoder layers `layers` only (None = all): with
    `train.freeze_bottom`, the frozen layers get no adapter, so they stay frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        task_type="CAUSAL_LM", layers_to_transform=layers,
                        layers_pattern="layers" if layers is not None else None)
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # peft: "Target modules {...} not found in the base model"
        raise ControlError(f"train.lora.target_modules {target_modules}: {err}") from None


def apply_osf(model, effective_rank: float, target_modules: list[str], layers: list[int] | None = None):
    """PEFT's OSF on `target_modules` of the decoder layers `layers` (None = all): each weight keeps
    its top `effective_rank` singular directions (a fraction of its smaller dimension when <= 1)
    frozen and trains the rest, its gradient projected away from the kept directions."""
    from peft import OSFConfig, get_peft_model

    rank = effective_rank if effective_rank <= 1 else int(effective_rank)
    names = list(target_modules)
    if layers is not None:  # OSFConfig has no layers_to_transform: name the layers in a regex
        names = rf".*\.layers\.({'|'.join(map(str, layers))})\.[^.]*\.({'|'.join(target_modules)})"
    config = OSFConfig(effective_rank=rank, target_modules=names, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise ControlError(f"train.osf.target_modules {target_modules}: {err}") from None


def export_model(model):
    """A plain HF model: LoRA / OSF adapters merged into the weights."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def lr_scale(name: str, num_layers: int, decay: float) -> float:
    """LLRD: the top layer gets the full LR, each layer below `decay` times the one above;
    embeddings sit below layer 0. The final norm and a separate LM head count as top."""
    match = LAYER_INDEX.search(name)
    if match:
        return decay ** (num_layers - 1 - int(match.group(1)))
    if "embed" in name:
        # Gemma ties the LM head to the embeddings: the shared matrix gets the bottom rate.
        return decay**num_layers
    return 1.0


def param_groups(model, llrd: float, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters, each with its `lr_scale` (1.0 when LLRD is off)."""
    num_layers = len(decoder_layers(model))
    groups: dict[float, list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(lr_scale(name, num_layers, llrd), []).append(param)
    return [{"params": params, "lr_scale": scale, "weight_decay": weight_decay}
            for scale, params in sorted(groups.items(), reverse=True)]

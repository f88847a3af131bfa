"""DFT's task term: each completion token's NLL weighted by the model's own probability of it.

Dynamic Fine-Tuning (Wu et al., "On the Generalization of SFT: A Reinforcement Learning Perspective
with Reward Rectification", arXiv 2508.05629) rescales every token's cross-entropy by that token's
probability under the current model, with the weight held constant in the gradient (stop-gradient):
sum_t p(y_t).detach() * -log p(y_t). A token the model finds unlikely, where plain SFT's gradient is
largest, moves it least. ASFT (arXiv 2509.23753; the authors' `train.py`, mode "asft") is this term
plus a KL anchor to the base on the same tokens (`task_kl`, their default weight 0.1):
`train.objective: dft` with `train.extra_terms: {task_kl: 0.1}`.
"""

from __future__ import annotations

import torch

from . import LossTerm, register_term


@register_term
class TaskDft(LossTerm):
    name = "task_dft"
    rows = "task"

    def __call__(self, nll, kl):
        return (torch.exp(-nll.detach()) * nll).sum()

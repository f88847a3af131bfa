"""The promotion gate: ship a candidate only when it kept what the base model knew.

Default rule (methods.md section 5): aggregate forgetting <= gate.max_forgetting
and task gain >= gate.min_task_gain, with every gate input finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str

    @property
    def label(self) -> str:
        return "passed" if self.passed else "rejected"


def decide(forgetting: float, task_gain: float, gate_config) -> GateDecision:
    if not (math.isfinite(forgetting) and math.isfinite(task_gain)):
        return GateDecision(False, f"gate inputs not finite (forgetting={forgetting}, task_gain={task_gain})")
    if forgetting > gate_config.max_forgetting:
        return GateDecision(False, f"forgetting {forgetting:.4f} > gate.max_forgetting {gate_config.max_forgetting}")
    if task_gain < gate_config.min_task_gain:
        return GateDecision(False, f"task gain {task_gain:.4f} < gate.min_task_gain {gate_config.min_task_gain}")
    return GateDecision(True, f"forgetting {forgetting:.4f} <= {gate_config.max_forgetting} and "
                              f"task gain {task_gain:.4f} >= {gate_config.min_task_gain}")

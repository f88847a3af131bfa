"""The promotion gate: ship a candidate only when it kept what the base model knew.

Default rule (methods.md section 5): the clipped aggregate forgetting is at most
`max_forgetting` (its point value, or the upper end of its interval with
`decide_on="upper_bound"`), no single task dropped more than `max_task_drop` when
that is set, and the task gain is at least `min_task_gain`. Every input must be
finite: a report that measured nothing never passes.
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

    def as_dict(self) -> dict:
        """What the flow passes between stages and records in run_summary.json."""
        return {"passed": self.passed, "label": self.label, "reason": self.reason}


def gated_forgetting(report: dict, decide_on: str) -> tuple[float, str]:
    """The forgetting figure the gate compares with its threshold, and how to name it."""
    if decide_on == "upper_bound":
        return report["forgetting_clipped_ci"][1], "upper end of the forgetting interval"
    return report["forgetting_clipped"], "forgetting"


def decide(report: dict, max_forgetting: float, min_task_gain: float, decide_on: str = "point",
           max_task_drop: float | None = None, gain_over_champion: float | None = None,
           require_beat_champion: bool = False) -> GateDecision:
    """`gain_over_champion`: the candidate's task gain over the current champion's, when
    `require_beat_champion` asks for it (None: there is no champion to beat)."""
    forgetting, name = gated_forgetting(report, decide_on)
    task_gain = report["task_gain"]
    if not (math.isfinite(forgetting) and math.isfinite(task_gain)):
        return GateDecision(False, f"gate inputs not finite ({name}={forgetting}, task_gain={task_gain}); "
                                   f"left out: {[e['task'] for e in report.get('excluded', [])]}")
    if forgetting > max_forgetting:
        return GateDecision(False, f"{name} {forgetting:.4f} > gate.max_forgetting {max_forgetting}")
    if max_task_drop is not None:
        worst = max(report["forgetting_tasks"], key=lambda row: row["drop"])
        if worst["drop"] > max_task_drop:
            return GateDecision(False, f"{worst['task']} dropped {worst['drop']:.4f} > gate.max_task_drop "
                                       f"{max_task_drop}")
    if task_gain < min_task_gain:
        return GateDecision(False, f"task gain {task_gain:.4f} < gate.min_task_gain {min_task_gain}")
    reason = f"{name} {forgetting:.4f} <= {max_forgetting} and task gain {task_gain:.4f} >= {min_task_gain}"
    if require_beat_champion and gain_over_champion is not None:
        if not (math.isfinite(gain_over_champion) and gain_over_champion > 0):
            return GateDecision(False, f"task score does not beat the champion's (gain over it {gain_over_champion:.4f})")
        reason += f" and beats the champion by {gain_over_champion:.4f}"
    return GateDecision(True, reason)


# The `gate:` config keys that `decide` takes, by the same names: decide(report, **settings).
DECISION_KEYS = {"max_forgetting", "min_task_gain", "decide_on", "max_task_drop", "require_beat_champion"}

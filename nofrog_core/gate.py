"""The promotion gate: ship a candidate only when it kept what the base model knew.

Default rule (docs/evidence.md), on the report's test items:
- every forgetting and gain task was scored: one that was left out (`excluded`) rejects the
  candidate, naming it, unless `allow_excluded` (then the version says so);
- the clipped aggregate forgetting is at most `max_forgetting` (its point value, or the upper
  end of its interval with `decide_on="upper_bound"`);
- no forgetting task dropped more than `max_task_drop`, and none dropped more than
  `max_significant_task_drop` beyond its noise (the lower end of its interval above 0): a
  significant loss of one capability is not averaged away by tasks that moved less;
- the task gain is at least `min_task_gain`, and above the champion's with `require_beat_champion`;
- no earlier round's held-out score fell by more than `max_round_drop` against the champion's
  (`decide_rounds`, when a round starts from the champion and protects its lineage's rounds).
Every input must be finite: a report that measured nothing never passes.
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


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def decide(report: dict, max_forgetting: float, min_task_gain: float, decide_on: str = "point",
           max_task_drop: float | None = None, max_significant_task_drop: float | None = None,
           allow_excluded: bool = False, gain_over_champion: float | None = None,
           require_beat_champion: bool = False) -> GateDecision:
    """`gain_over_champion`: the candidate's task gain over the current champion's, when
    `require_beat_champion` asks for it (None: there is no champion to beat)."""
    forgetting, name = gated_forgetting(report, decide_on)
    task_gain = report["task_gain"]
    left_out = [e for e in report.get("excluded", []) if e["role"] in ("forgetting", "gain")]
    if left_out and not allow_excluded:
        named = "; ".join(f"{e['task']} ({e['role']}): {e['reason']}" for e in left_out)
        return GateDecision(False, f"not every task could be scored, so nothing shows it was kept: {named} "
                                   "(gate.allow_excluded: true accepts this)")
    if not (_finite(forgetting) and _finite(task_gain)):
        return GateDecision(False, f"gate inputs not finite ({name}={forgetting}, task_gain={task_gain}); "
                                   f"left out: {[e['task'] for e in report.get('excluded', [])]}")
    if forgetting > max_forgetting:
        return GateDecision(False, f"{name} {forgetting:.4f} > gate.max_forgetting {max_forgetting}")
    rows = report["forgetting_tasks"]
    if max_task_drop is not None:
        over = [r for r in rows if r["drop"] > max_task_drop]
        if over:
            named = ", ".join(f"{r['task']} dropped {r['drop']:.4f}" for r in over)
            return GateDecision(False, f"{named} > gate.max_task_drop {max_task_drop}")
    if max_significant_task_drop is not None:
        beyond = [r for r in rows if r["drop"] > max_significant_task_drop and r["ci"][0] > 0]
        if beyond:
            named = ", ".join(f"{r['task']} dropped {r['drop']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]"
                              + (f", McNemar p={r['p']:.2g}" if "p" in r else "") for r in beyond)
            return GateDecision(False, f"{named}: beyond its noise and > gate.max_significant_task_drop "
                                       f"{max_significant_task_drop}")
    if task_gain < min_task_gain:
        return GateDecision(False, f"task gain {task_gain:.4f} < gate.min_task_gain {min_task_gain}")
    reason = f"{name} {forgetting:.4f} <= {max_forgetting} and task gain {task_gain:.4f} >= {min_task_gain}"
    if max_task_drop is not None or max_significant_task_drop is not None:
        reason += "; every task within its budget"
    if require_beat_champion and gain_over_champion is not None:
        if not (_finite(gain_over_champion) and gain_over_champion > 0):
            return GateDecision(False, f"task score does not beat the champion's (gain over it {gain_over_champion})")
        reason += f" and beats the champion by {gain_over_champion:.4f}"
    if left_out:
        reason += f"; accepted without {', '.join(e['task'] for e in left_out)} (gate.allow_excluded)"
    return GateDecision(True, reason)


def decide_rounds(decision: GateDecision, rounds: dict | None) -> GateDecision:
    """The candidate's decision, and what it did to earlier rounds (`report["earlier_rounds"]`): a
    passing candidate is rejected when an earlier round's held-out score fell by more than
    `max_round_drop` against the champion's, naming the round, or when a round it should protect was
    not judged (fail closed). A round the champion scored 0 on has nothing to keep."""
    if not decision.passed or not rounds or not rounds.get("protected"):
        return decision
    judged = {row["task"]: row for row in rounds["rounds"]}
    nothing_to_keep = [e["task"] for e in rounds.get("excluded", []) if e.get("nothing_to_keep")]
    missing = [name for name in rounds["expected"] if name not in judged and name not in nothing_to_keep]
    if missing:
        reasons = {e["task"]: e["reason"] for e in rounds.get("excluded", [])}
        named = "; ".join(f"{name}: {reasons.get(name, 'not scored')}" for name in missing)
        return GateDecision(False, f"earlier round(s) not judged, so nothing shows they were kept: {named}")
    limit = rounds["max_round_drop"]
    over = [r for r in judged.values() if not (_finite(r["drop"]) and r["drop"] <= limit)]
    if over:
        named = ", ".join(f"{r['task']} {r['metric']} {r['before']:.3f} -> {r['after']:.3f} (dropped {r['drop']:.4f}"
                          + (f", McNemar p={r['p']:.2g}" if "p" in r else "") + ")" for r in over)
        return GateDecision(False, f"forgot an earlier round: {named} > gate.max_round_drop {limit}")
    kept = ", ".join(f"{name} {judged[name]['drop']:+.4f}" for name in judged)
    return GateDecision(True, f"{decision.reason}; earlier rounds kept ({kept or 'none with a score to keep'})")


def excluded_tasks(report: dict) -> list[str]:
    """The gated tasks a report left out: what a version passed with `allow_excluded` is tagged with."""
    return [e["task"] for e in report.get("excluded", []) if e["role"] in ("forgetting", "gain")]


# The `gate:` config keys that `decide` takes, by the same names: decide(report, **settings).
DECISION_KEYS = {"max_forgetting", "min_task_gain", "decide_on", "max_task_drop", "max_significant_task_drop",
                 "allow_excluded", "require_beat_champion"}




def decision_settings(values: dict) -> dict:
    """The settings `decide` takes, from a `gate:` section as plain values (its `model_dump()`)."""
    return {key: values[key] for key in DECISION_KEYS}

import math

import pytest

from nofrog_core.config import load_config
from nofrog_core.registry import decide

GATE = load_config(None, ["gate.max_forgetting=0.03", "gate.min_task_gain=0.5"]).gate


@pytest.mark.parametrize("forgetting, gain, passed, why", [
    (0.02, 1.0, True, "<= 0.03"),
    (0.03, 0.5, True, "<= 0.03"),  # thresholds are inclusive
    (0.031, 1.0, False, "forgetting 0.0310 > gate.max_forgetting 0.03"),
    (-0.2, 0.4, False, "task gain 0.4000 < gate.min_task_gain 0.5"),
    (math.nan, 1.0, False, "not finite"),
    (0.0, math.inf, False, "not finite"),
])
def test_gate_rule(forgetting, gain, passed, why):
    decision = decide(forgetting, gain, GATE)
    assert decision.passed is passed and why in decision.reason
    assert decision.label == ("passed" if passed else "rejected")

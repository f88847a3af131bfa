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


def test_gate_can_require_beating_the_champion():
    strict = load_config(None, ["gate.require_beat_champion=true"]).gate
    assert decide(0.0, 1.0, strict, gain_over_champion=0.2).passed
    worse = decide(0.0, 1.0, strict, gain_over_champion=-0.1)
    assert not worse.passed and "champion" in worse.reason
    assert decide(0.0, 1.0, strict, gain_over_champion=None).passed  # no champion yet: nothing to beat
    assert decide(0.0, 1.0, GATE, gain_over_champion=-0.1).passed  # off by default

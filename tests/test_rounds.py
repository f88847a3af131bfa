"""Earlier retraining rounds: judged against the champion that learned them, never against the base,
never averaged into forgetting, and a candidate that forgot one is rejected, naming it."""

import pytest

from nofrog_core.config import ConfigError
from nofrog_core.evaluate.report import forgetting_report, render_earlier_rounds, render_markdown
from nofrog_core.gate import GateDecision, decide_rounds
from nofrog_core.rounds import earlier_rounds_section
from tests.test_report import evaluation, mc

GENERAL = ("forgetting", "acc", mc([1, 1, 1, 0, 0, 1, 1, 0]))


def three_evaluations(round_before: list[int], round_after: list[int]):
    """The base (which never saw round 1's rows), the champion (round 1's model) and a candidate."""
    base = evaluation({"q": GENERAL, "g": ("gain", "exact_match", {"exact_match": [0.0] * 4})})
    champion = evaluation({"q": GENERAL, "g": ("gain", "exact_match", {"exact_match": [0.0] * 4}),
                           "round_v1": ("round", "exact_match", {"exact_match": [float(x) for x in round_before]})})
    candidate = evaluation({"q": GENERAL, "g": ("gain", "exact_match", {"exact_match": [1.0] * 4}),
                            "round_v1": ("round", "exact_match", {"exact_match": [float(x) for x in round_after]})})
    return base, champion, candidate


def section(vs_champion: dict, expected=("round_v1",), limit: float = 0.1) -> dict:
    return earlier_rounds_section(True, list(expected), "1", vs_champion, limit)


def test_a_round_is_judged_against_the_champion_and_left_out_of_the_aggregate():
    base, champion, candidate = three_evaluations([1] * 10, [1] * 5 + [0] * 5)
    vs_base = forgetting_report(base, candidate)
    # The base never scored round 1's rows: that report neither judges nor excludes them.
    assert vs_base["round_tasks"] == [] and vs_base["excluded"] == []
    vs_champion = forgetting_report(champion, candidate)
    [row] = vs_champion["round_tasks"]
    assert (row["task"], row["before"], row["after"], row["drop"]) == ("round_v1", 1.0, 0.5, 0.5)
    assert row["right_to_wrong"] == 5 and row["p"] < 0.07
    # Its drop is not part of the aggregate, which is the general tasks' alone (unchanged here).
    assert vs_champion["forgetting"] == 0.0


def test_a_candidate_that_forgot_an_earlier_round_is_rejected_naming_it():
    base, champion, candidate = three_evaluations([1] * 10, [1] * 5 + [0] * 5)
    rounds = section(forgetting_report(champion, candidate))
    passed = GateDecision(True, "forgetting 0.0 <= 0.03")
    rejected = decide_rounds(passed, rounds)
    assert not rejected.passed and "round_v1" in rejected.reason and "gate.max_round_drop 0.1" in rejected.reason
    markdown = render_markdown({**forgetting_report(base, candidate), "earlier_rounds": rounds})
    assert "Earlier rounds" in markdown and "| round_v1 | exact_match | 1 | 0.5 | +50.00%" in markdown
    # Within the budget it passes, and the reason says what was kept.
    _, champion, candidate = three_evaluations([1] * 10, [1] * 10)
    kept = decide_rounds(passed, section(forgetting_report(champion, candidate)))
    assert kept.passed and "earlier rounds kept (round_v1 +0.0000)" in kept.reason
    # A candidate the base rule rejected stays rejected for that reason.
    assert decide_rounds(GateDecision(False, "forgetting 0.2 > 0.03"), rounds).reason == "forgetting 0.2 > 0.03"


def test_a_round_that_was_not_scored_rejects_and_one_with_nothing_to_keep_does_not():
    _, champion, candidate = three_evaluations([1] * 10, [1] * 10)
    vs_champion = forgetting_report(champion, candidate)
    missing = decide_rounds(GateDecision(True, "ok"), section(vs_champion, expected=("round_v1", "round_v2")))
    assert not missing.passed and "round_v2: not scored" in missing.reason
    _, champion, candidate = three_evaluations([0] * 10, [0] * 10)  # the champion never learned round 1
    nothing = section(forgetting_report(champion, candidate))
    assert nothing["excluded"][0]["nothing_to_keep"]
    assert decide_rounds(GateDecision(True, "ok"), nothing).passed


def test_switched_off_protection_is_stated_and_does_not_change_the_decision():
    off = earlier_rounds_section(False, [], "1", None, 0.1)
    assert not off["protected"] and "eval.protect_rounds is false" in off["reason"]
    assert decide_rounds(GateDecision(True, "ok"), off).passed
    assert "Not judged: eval.protect_rounds is false" in "\n".join(render_earlier_rounds(off))


def test_a_round_record_that_is_not_there_is_a_config_error_naming_the_key(tiny_config, tmp_path):
    config = tiny_config(f"eval.earlier_rounds=[{tmp_path / 'nowhere'}]")
    with pytest.raises(ConfigError, match="eval.earlier_rounds: .*nowhere has no heldout.jsonl"):
        config.check_evaluable()

"""gate.fit=interpolate: weight interpolation between the base and the candidate (WiSE-FT)."""

import json
from pathlib import Path

import pytest
import torch

from nofrog_core import fit
from nofrog_core.evaluate.stage import run_evaluation, run_fit
from nofrog_core.train.stage import run_training
from tests.conftest import LENIENT_GATE

FAST_EVAL = ("eval.forgetting_tasks=[general_text]", "eval.gain_tasks=[heldout_answers]")


@pytest.fixture
def trained(tiny_config, tmp_path):
    config = tiny_config(*FAST_EVAL, "train.schedule=constant", "train.lr=3e-2", "train.max_steps=4",
                         "train.checkpoint_every=0")
    out = run_training(config, tmp_path / "train")
    return config, out["model_dir"]


def test_interpolation_at_0_is_the_base_and_at_1_the_candidate(trained, tiny_model_dir, tmp_path):
    config, candidate = trained
    scores = {}
    for name, model_dir in (("base", tiny_model_dir), ("candidate", candidate)):
        scores[name] = run_evaluation(config, tmp_path / f"{name}.json", model=str(model_dir))
    for alpha, same_as in ((0.0, "base"), (1.0, "candidate")):
        mixed = fit.write_interpolated(tiny_model_dir, candidate, alpha, tmp_path / f"alpha{alpha}")
        weights, reference = fit.read_weights(mixed), fit.read_weights(tiny_model_dir if alpha == 0 else candidate)
        assert all(torch.equal(weights[k], reference[k]) for k in reference)
        result = run_evaluation(config, tmp_path / f"alpha{alpha}.json", model=str(mixed))
        assert result["samples"] == scores[same_as]["samples"]
    half = fit.read_weights(fit.write_interpolated(tiny_model_dir, candidate, 0.5, tmp_path / "half"))
    base, cand = fit.read_weights(tiny_model_dir), fit.read_weights(candidate)
    name = next(k for k in cand if not torch.equal(base[k], cand[k]))
    assert torch.allclose(half[name], (base[name] + cand[name]) / 2, atol=1e-6)


def point(alpha, gain, passed):
    return fit.FitPoint(alpha, f"/m{alpha}", 0.01, [0.0, 0.02], gain, [gain - 0.1, gain + 0.1], passed, "")


def test_the_fit_keeps_the_passing_point_with_the_largest_gain():
    points = [point(0.75, 0.30, False), point(0.5, 0.22, True), point(0.25, 0.10, True)]
    assert fit.choose(points).alpha == 0.5  # 0.75 gains more but fails the gate
    assert fit.choose([point(0.75, 0.2, True), point(0.5, 0.2, True)]).alpha == 0.75  # a tie: the larger alpha
    assert fit.choose([point(0.5, 0.3, False)]) is None


def test_run_fit_scores_the_mixes_and_keeps_only_the_chosen_model(trained, tiny_model_dir, tiny_config, tmp_path):
    _, candidate = trained
    config = tiny_config(*FAST_EVAL, *LENIENT_GATE,
                         "gate.fit=interpolate", "gate.fit_coefficients=[0.25, 0.75]", "gate.fit_refine_steps=1")
    before = run_evaluation(config, tmp_path / "before.json")
    result = run_fit(config, tiny_model_dir, candidate, before, tmp_path / "fit")
    # 0.75 passes, so 0.25 is not scored; one bisection toward the failed candidate (alpha 1).
    assert [p["alpha"] for p in result["points"]] == [0.75, 0.875] and all(p["passed"] for p in result["points"])
    best = max(result["points"], key=lambda p: (p["task_gain"], p["alpha"]))
    assert result["chosen"]["alpha"] == best["alpha"]
    assert (tmp_path / "fit" / f"alpha{best['alpha']}").is_dir()
    other = next(p["alpha"] for p in result["points"] if p["alpha"] != best["alpha"])
    assert not (tmp_path / "fit" / f"alpha{other}").exists()  # only the chosen model is kept
    on_disk = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert on_disk["chosen"]["alpha"] == best["alpha"]
    assert (tmp_path / "fit" / "fit.png").stat().st_size > 0
    # Chosen on selection items, judged afresh on test items: both figures are kept, and no item
    # the fit chose on is one the gate reads (compared by item id).
    confirmed = on_disk["confirmed"]
    assert confirmed["alpha"] == best["alpha"] and confirmed["items"] == "test"
    assert all(p["items"] == "selection" for p in on_disk["points"])
    chosen_on = json.loads((tmp_path / "fit" / f"eval_alpha{best['alpha']}_selection.json").read_text())
    judged_on = json.loads(Path(confirmed["eval"]).read_text())
    for task, ids in chosen_on["item_ids"].items():
        assert ids and set(ids).isdisjoint(judged_on["item_ids"][task])
        assert set(chosen_on["item_parts"][task]) == {"selection"} and set(judged_on["item_parts"][task]) == {"test"}


def test_bisection_moves_toward_the_edge_of_the_budget():
    assert fit.next_coefficient([point(0.75, 0.3, False), point(0.25, 0.1, True)]) == 0.5
    assert fit.next_coefficient([point(0.75, 0.3, False), point(0.5, 0.2, True), point(0.25, 0.1, True)]) == 0.625
    assert fit.next_coefficient([point(0.75, 0.3, True), point(0.25, 0.1, True)]) is None  # nothing fails above
    # ... unless the failed candidate (alpha 1) bounds the bracket
    assert fit.next_coefficient([point(0.75, 0.3, True), point(0.25, 0.1, True)], known_failure=1.0) == 0.875
    assert fit.next_coefficient([point(0.75, 0.3, False), point(0.5, 0.2, True)], known_failure=1.0) == 0.625
    assert fit.next_coefficient([point(0.75, 0.3, False), point(0.25, 0.1, False)]) is None  # nothing passes
    assert fit.next_coefficient([point(0.75, 0.3, True), point(0.25, 0.1, False)]) is None  # no failure above


def test_run_fit_refines_between_the_last_pass_and_the_first_failure(trained, tiny_model_dir, tiny_config, tmp_path,
                                                                    monkeypatch):
    from nofrog_core import gate

    _, candidate = trained
    config = tiny_config(*FAST_EVAL, "gate.fit=interpolate", "gate.fit_coefficients=[0.25, 0.75]",
                         "gate.fit_refine_steps=2")
    # 0.75 fails, 0.25 passes, then 0.5 passes, 0.625 fails; the chosen mix passes on test items
    outcomes = iter([False, True, True, False, True])
    monkeypatch.setattr(gate, "decide", lambda report, **_: gate.GateDecision(next(outcomes), "scripted"))
    before = run_evaluation(config, tmp_path / "before.json")
    result = run_fit(config, tiny_model_dir, candidate, before, tmp_path / "fit")
    assert [p["alpha"] for p in result["points"]] == [0.75, 0.25, 0.5, 0.625]
    assert result["chosen"]["alpha"] in (0.25, 0.5) and result["chosen"]["passed"]


def test_run_fit_stops_the_grid_at_the_first_pass_and_bisects_toward_the_failed_candidate(
        trained, tiny_model_dir, tiny_config, tmp_path, monkeypatch):
    from nofrog_core import gate

    _, candidate = trained
    config = tiny_config(*FAST_EVAL, "gate.fit=interpolate", "gate.fit_coefficients=[0.5, 0.9]",
                         "gate.fit_refine_steps=2")
    outcomes = iter([True, True, False, True])  # 0.9 passes: 0.5 is never scored; 0.95 passes, 0.975 fails
    monkeypatch.setattr(gate, "decide", lambda report, **_: gate.GateDecision(next(outcomes), "scripted"))
    before = run_evaluation(config, tmp_path / "before.json")
    result = run_fit(config, tiny_model_dir, candidate, before, tmp_path / "fit")
    assert [p["alpha"] for p in result["points"]] == [0.9, 0.95, 0.975]
    assert not (tmp_path / "fit" / "eval_alpha0.5_selection.json").exists()


def test_fit_coefficients_must_lie_strictly_between_base_and_candidate(tiny_config):
    from nofrog_core.config import ConfigError

    with pytest.raises(ConfigError, match="gate.fit_coefficients"):
        tiny_config("gate.fit_coefficients=[0.5, 1.0]")


def test_the_fit_refuses_a_base_whose_files_changed_since_it_was_scored(trained, tiny_model_dir, tiny_config,
                                                                         tmp_path):
    import shutil

    _, candidate = trained
    config = tiny_config(*FAST_EVAL, *LENIENT_GATE, "gate.fit=interpolate")
    before = run_evaluation(config, tmp_path / "before.json")
    changed = tmp_path / "base-changed"
    shutil.copytree(tiny_model_dir, changed)
    (changed / "config.json").write_text((changed / "config.json").read_text().replace("{", '{"note": 1, ', 1))
    with pytest.raises(ValueError, match="is not the one the base evaluation scored"):
        run_fit(config, changed, candidate, before, tmp_path / "fit")
    assert not (tmp_path / "fit").exists() or not any((tmp_path / "fit").iterdir())

"""Extension points: one Registry kind that refuses a second entry under a name, and a fit strategy
added in this file alone (a registration and a `gate.fit` value) that the pipeline's fit stage runs."""

import pytest

from nofrog_core.config import load_config
from nofrog_core.evaluate import builtin, metrics
from nofrog_core.evaluate.fit_strategies import FIT_STRATEGIES
from nofrog_core.registries import Registry
from nofrog_core.schedules import SCHEDULES
from nofrog_core.train.terms import TERMS


def test_every_registry_refuses_a_name_it_holds_and_names_what_it_holds():
    for registry in (FIT_STRATEGIES, SCHEDULES, TERMS, metrics.METRICS, builtin.BUILTIN_TASKS):
        assert isinstance(registry, Registry)
        name = next(iter(registry))
        with pytest.raises(ValueError, match=f"{registry.kind} '{name}' is already registered"):
            registry[name] = object()
    with pytest.raises(KeyError, match=r"unknown LR schedule 'nope'; registered: \["):
        SCHEDULES["nope"]


@pytest.fixture
def keep_the_base():
    calls = []

    @FIT_STRATEGIES.register("keep_the_base")
    def keep(config, base_dir, candidate_dir, before, out_dir, champion_eval=None):
        """A toy strategy: it would rather ship nothing than a model that forgot."""
        calls.append((base_dir, candidate_dir))
        return {"strategy": "keep_the_base", "points": [], "chosen": None, "confirmed": None}

    yield calls
    FIT_STRATEGIES.pop("keep_the_base")


def test_a_fit_strategy_is_a_registration_and_a_config_value(keep_the_base, tmp_path):
    from nofrog_tasks.stages import fit_within_budget

    with pytest.raises(ValueError, match="unknown fit strategy 'keep_the_base'"):
        FIT_STRATEGIES.pop("keep_the_base")
        try:
            load_config(None, ["gate.fit=keep_the_base"])
        finally:
            FIT_STRATEGIES["keep_the_base"] = lambda *args, **kwargs: keep_the_base.append(args) or {
                "strategy": "keep_the_base", "points": [], "chosen": None, "confirmed": None}
    config = load_config(None, ["gate.fit=keep_the_base"])
    result = fit_within_budget.fn(config, "base", "candidate", {}, tmp_path / "fit")
    assert result["strategy"] == "keep_the_base" and len(keep_the_base) == 1


def test_nofrog_fit_reruns_the_fit_alone(tiny_overrides, tmp_path):
    from typer.testing import CliRunner

    from nofrog_core.evaluate.stage import run_evaluation
    from nofrog_core.train.stage import run_training
    from nofrog_flows.cli import app
    from tests.conftest import LENIENT_GATE

    fast = ["eval.forgetting_tasks=[general_text]", "eval.gain_tasks=[heldout_answers]", "gate.fit=interpolate"]
    config = load_config(None, [*tiny_overrides, *fast])
    candidate = run_training(config.with_values({"train.max_steps": 2}), tmp_path / "train")["model_dir"]
    run_evaluation(config, tmp_path / "base.json")
    sets = [x for o in [*tiny_overrides, *fast, *LENIENT_GATE, "gate.fit_coefficients=[0.5]",
                        "gate.fit_refine_steps=0"] for x in ("--set", o)]
    result = CliRunner().invoke(app, ["fit", *sets, "--candidate", candidate, "--baseline", str(tmp_path / "base.json"),
                                      "--out", str(tmp_path / "fit")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "chose alpha 0.5 on selection items" in said and "the gate passed" in said, said
    assert (tmp_path / "fit" / "fit.json").is_file() and (tmp_path / "fit" / "alpha0.5").is_dir()
    again = CliRunner().invoke(app, ["fit", *sets, "--candidate", candidate, "--baseline", str(tmp_path / "base.json"),
                                     "--out", str(tmp_path / "fit")])
    assert again.exit_code == 2 and "is not empty" in again.output  # never overwritten

"""The loss-term registry: a new term is one class plus its registration, and the loop picks it up."""

from dataclasses import dataclass

import pytest
import torch

from nofrog_core.history import read_history
from nofrog_core.train.stage import run_training
from nofrog_core.train.terms import TERMS, LossTerm, build_term, register_term


class SquaredTaskNll(LossTerm):
    """A toy term: the squared per-token NLL of the task rows (it punishes the worst tokens most)."""

    name = "squared_task_nll"
    rows = "task"

    def __call__(self, nll, kl):
        return (nll ** 2).sum()


@pytest.fixture
def registered():
    """Registers toy terms for one test, and takes them out again after it."""
    names = []

    def add(term):
        register_term(term)
        names.append(term.name)

    yield add
    for name in names:
        TERMS.pop(name)


@pytest.fixture
def toy_term(registered):
    registered(SquaredTaskNll)


def test_a_registered_term_trains_and_is_logged_with_no_other_change(toy_term, tiny_config, tmp_path):
    common = ("train.schedule=constant", "train.lr=1e-3", "train.max_steps=3", "train.checkpoint_every=0")
    run_training(tiny_config(*common), tmp_path / "plain")
    run_training(tiny_config(*common, "train.extra_terms={squared_task_nll: 0.5}"), tmp_path / "toy")
    plain, toy = (read_history(tmp_path / d / "history.jsonl") for d in ("plain", "toy"))
    # Step 1 reads the same weights: the logged task NLL agrees, and the new term is logged beside it.
    assert toy[0]["task_nll"] == pytest.approx(plain[0]["task_nll"], rel=1e-6)
    assert toy[0]["squared_task_nll"] > toy[0]["task_nll"] ** 2 * 0.5  # mean of squares >= square of mean
    # The schedule reads every weighted task-row term: loss = NLL + 0.5 * squared NLL.
    assert toy[0]["loss"] == pytest.approx(toy[0]["task_nll"] + 0.5 * toy[0]["squared_task_nll"], rel=1e-9)
    # And it trained: the gradient differed, so step 2 saw other weights.
    assert toy[1]["task_nll"] != pytest.approx(plain[1]["task_nll"], rel=1e-7)


def test_an_unknown_term_fails_before_training(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"train.extra_terms: unknown loss terms \['nope'\]"):
        run_training(tiny_config("train.extra_terms={nope: 1.0}"), tmp_path / "train")
    assert not (tmp_path / "train").exists()


def test_a_term_must_name_its_rows_and_known_frozen_models():
    class Bad(LossTerm):
        name, rows = "bad", "everything"

    with pytest.raises(ValueError, match="rows must be 'task' or 'replay'"):
        register_term(Bad)

    class NeedsTeacher(LossTerm):
        name, rows, frozen = "teacher_kl", "task", ("teacher",)

    with pytest.raises(ValueError, match="unknown frozen models"):
        register_term(NeedsTeacher)


def test_builtin_terms_read_the_shared_per_token_values():
    nll, kl = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.25])
    assert build_term("task_nll")(nll, kl).item() == 3.0
    assert build_term("replay_nll")(nll, kl).item() == 3.0
    assert build_term("replay_kl")(nll, kl).item() == 0.75
    assert build_term("anchored_kl", alpha=0.3)(nll, kl).item() == 0.75


@dataclass(frozen=True)
class PoweredTaskNll(LossTerm):
    """A toy term with a setting: the per-token NLL of the task rows to the power `power`."""

    name = "powered_task_nll"
    rows = "task"
    power: float = 2.0

    def __call__(self, nll, kl):
        return (nll ** self.power).sum()


@pytest.fixture
def powered_term(registered):
    registered(PoweredTaskNll)


def test_a_term_takes_its_settings_from_the_config(powered_term, tiny_config, tmp_path):
    common = ("train.schedule=constant", "train.lr=1e-3", "train.max_steps=1", "train.checkpoint_every=0")
    run_training(tiny_config(*common, "train.extra_terms={powered_task_nll: {weight: 0.0, power: 1}}"),
                 tmp_path / "power1")
    (step,) = read_history(tmp_path / "power1" / "history.jsonl")
    assert step["powered_task_nll"] == pytest.approx(step["task_nll"], rel=1e-6)  # power 1: the NLL itself
    with pytest.raises(ValueError, match=r"train.extra_terms.powered_task_nll: settings \{'exponent': 3\}"):
        run_training(tiny_config(*common, "train.extra_terms={powered_task_nll: {weight: 1, exponent: 3}}"),
                     tmp_path / "wrong")


def test_dft_weights_each_token_by_its_probability_held_constant_in_the_gradient():
    nll = torch.tensor([0.1, 2.0, 5.0], requires_grad=True)
    build_term("task_dft")(nll, torch.zeros(3)).backward()
    # d/d nll of sum p.detach() * nll = p: the unlikely token (nll 5) moves the model least.
    assert torch.allclose(nll.grad, torch.exp(-nll.detach()))


def test_asft_is_dft_plus_a_kl_anchor_to_the_base_on_the_task_tokens(tiny_config, tmp_path):
    common = ("train.schedule=constant", "train.lr=1e-3", "train.max_steps=3", "train.checkpoint_every=0")
    run_training(tiny_config(*common, "train.objective=dft", "train.extra_terms={task_kl: 0.1}"), tmp_path / "asft")
    history = read_history(tmp_path / "asft" / "history.jsonl")
    first, last = history[0], history[-1]
    # Step 1: the model is the base, so the KL is 0; DFT's value is below the plain NLL (weights <= 1).
    assert first["task_kl"] == pytest.approx(0.0, abs=1e-6) and first["task_dft"] < first["task_nll"]
    assert first["loss"] == pytest.approx(first["task_dft"] + 0.1 * first["task_kl"], rel=1e-6)
    # Then the model moved away from the base on the task tokens, and the anchor measured it.
    assert last["task_kl"] > 1e-4 and last["task_nll"] < first["task_nll"]

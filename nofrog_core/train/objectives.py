"""Training objectives (`train.objective`): the phases a fine-tune runs and what each phase's task rows
minimise. The Trainer runs whichever is registered under the configured name and knows none of them.

An objective is a function `(trainer, base, steps, resume_phase) -> PhaseResult` that builds its
phases (`Phase`: a name, steps, a history file, the task rows' terms) and runs them with
`trainer.run_phase`; the replay terms and `train.extra_terms` are added to every phase by the loop.
`resume_phase` is the phase of the latest checkpoint, if any.
"""

from __future__ import annotations

from ..registries import Registry
from .loop import Phase, PhaseResult, frozen_copy, student_phase_plan
from .terms import WeightedTerm, build_term

OBJECTIVES: Registry = Registry("training objective")

REFERENCE, STUDENT = "reference", "student"  # Anchored Learning's phases, as checkpoints name them


def task_nll(weight: float = 1.0) -> list[WeightedTerm]:
    return [WeightedTerm(build_term("task_nll"), weight)]


@OBJECTIVES.register("sft")
def sft(trainer, base, steps: int, resume_phase: str | None) -> PhaseResult:
    """Plain SFT: one phase, the NLL of the completion tokens."""
    return trainer.run_phase(Phase("train", steps, trainer.out_dir / "history.jsonl", task_terms=task_nll()), base)


@OBJECTIVES.register("dft")
def dft(trainer, base, steps: int, resume_phase: str | None) -> PhaseResult:
    """Dynamic Fine-Tuning (terms/task_dft.py): one phase, each completion token's NLL weighted by its
    probability; the plain NLL is logged beside it, not optimised. With `train.extra_terms: {task_kl: 0.1}`
    it is ASFT."""
    terms = [WeightedTerm(build_term("task_dft"), 1.0), *task_nll(0.0)]
    return trainer.run_phase(Phase("train", steps, trainer.out_dir / "history.jsonl", task_terms=terms), base)


@OBJECTIVES.register("anchored")
def anchored(trainer, base, steps: int, resume_phase: str | None) -> PhaseResult:
    """Anchored Learning (docs/methods.md section 3): an SFT reference phase, then the student, restarted
    from the base, distilled toward the moving anchor (the task NLL is logged, not optimised)."""
    student_base = frozen_copy(base)  # the student restarts from the base model
    if resume_phase == STUDENT:
        reference = None  # comes back from the student checkpoint
    else:
        reference_phase = Phase(REFERENCE, steps, trainer.out_dir / "history_reference.jsonl", task_terms=task_nll())
        reference = frozen_copy(trainer.run_phase(reference_phase, base).model)
    a = trainer.tc.anchored
    student_steps, every = student_phase_plan(trainer.epoch_steps, trainer.tc.max_steps, a.snapshot_every_epochs,
                                              a.outer_iterations)
    terms = [WeightedTerm(build_term("anchored_kl", alpha=a.alpha, temperature=a.temperature,
                                     interpolation=a.interpolation), 1.0), *task_nll(0.0)]
    student = student_base.train().requires_grad_(True)
    return trainer.run_phase(Phase(STUDENT, student_steps, trainer.out_dir / "history.jsonl", every, terms),
                             student, given_frozen={"reference": reference})

"""Fitting a candidate within the forgetting budget (`gate.fit`), instead of only rejecting it.

`interpolate` (WiSE-FT): weights theta(alpha) = (1 - alpha) theta_base + alpha theta_candidate.
At alpha 0 the model is the base (no gain, no forgetting), at 1 the candidate. Each coefficient
tried is scored with the same evaluation as the candidate; the grid is then refined by bisection
between the largest passing and the smallest failing coefficient, and the passing one with the
largest gain is kept. Components here take plain values; the recipe is `evaluate/stage.run_fit`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .models import non_finite_tensors

def read_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory's safetensors files (one file or shards)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no safetensors weights to interpolate")
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        weights.update(load_file(path))
    return weights


def interpolate_weights(base: dict[str, torch.Tensor], candidate: dict[str, torch.Tensor],
                        alpha: float) -> dict[str, torch.Tensor]:
    if set(base) != set(candidate):
        raise ValueError(f"base and candidate hold different tensors: {sorted(set(base) ^ set(candidate))[:3]}")
    # Mixed in fp32, stored in the candidate's dtype.
    return {name: torch.lerp(base[name].float(), candidate[name].float(), alpha).to(candidate[name].dtype)
            for name in candidate}


def write_interpolated(base_dir: Path, candidate_dir: Path, alpha: float, out_dir: Path) -> Path:
    """A model directory with the interpolated weights and the candidate's config and tokenizer."""
    out_dir = Path(out_dir)
    mixed = interpolate_weights(read_weights(base_dir), read_weights(candidate_dir), alpha)
    broken = non_finite_tensors(mixed)
    if broken:
        raise ValueError(f"the mix at alpha {alpha} of {base_dir} and {candidate_dir} has non-finite weights in "
                         f"{len(broken)} tensors (e.g. {broken[0]}): not written")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(candidate_dir, staging, ignore=shutil.ignore_patterns("*.safetensors", "*.safetensors.index.json"))
    save_file(mixed, staging / "model.safetensors", metadata={"format": "pt"})
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir


@dataclass
class FitPoint:
    alpha: float
    model_dir: str
    forgetting: float  # clipped aggregate, the gate's figure
    forgetting_ci: list[float]
    task_gain: float
    task_gain_ci: list[float]
    passed: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def next_coefficient(points: list[FitPoint], known_failure: float | None = None) -> float | None:
    """Bisection toward the budget's edge: the midpoint between the largest passing alpha and the
    smallest failing alpha above it (forgetting grows with alpha along the interpolation path).
    `known_failure` is an alpha known to fail without scoring it: the candidate itself (alpha 1),
    which is why the fit runs. None when the points do not bracket the edge: none passes, or no
    failure lies above the largest pass."""
    passing = [p.alpha for p in points if p.passed]
    if not passing:
        return None
    failures = [p.alpha for p in points if not p.passed] + ([known_failure] if known_failure is not None else [])
    failing_above = [alpha for alpha in failures if alpha > max(passing)]
    return (max(passing) + min(failing_above)) / 2 if failing_above else None


def choose(points: list[FitPoint]) -> FitPoint | None:
    """The passing point with the largest task gain (on a tie, the larger alpha); None if none passed."""
    passing = [p for p in points if p.passed]
    return max(passing, key=lambda p: (p.task_gain, p.alpha)) if passing else None

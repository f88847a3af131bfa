"""The gate's fit strategies (`gate.fit`): what a run tries when its candidate fails the gate, instead
of only rejecting it. A strategy takes the run's config, the base and candidate model directories,
the base's evaluation, an output directory and (with `gate.require_beat_champion`) the champion's
evaluation, and returns its choice (`chosen`, `confirmed`: the chosen model judged afresh on the
judged items) for the pipeline to adopt or reject.

Another strategy is a function registered here (`@FIT_STRATEGIES.register("name")`) and a
`gate.fit: name`; nothing else changes.
"""

from __future__ import annotations

from pathlib import Path

from ..registries import Registry

NO_FIT = "none"
FIT_STRATEGIES: Registry = Registry("gate.fit strategy")


@FIT_STRATEGIES.register("interpolate")
def interpolate(config, base_dir: Path, candidate_dir: Path, before: dict, out_dir: Path,
                champion_eval: dict | None = None) -> dict:
    """WiSE-FT: base/candidate weight mixes chosen on selection items (docs/methods.md section 6)."""
    from .stage import run_fit

    return run_fit(config, Path(base_dir), Path(candidate_dir), before, Path(out_dir), champion_eval)

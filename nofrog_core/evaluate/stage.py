"""The evaluation stage: one model, the configured tasks, a results JSON on disk."""

from __future__ import annotations

from pathlib import Path

from .. import models
from ..outputs import check_writable
from .report import forgetting_report, render_markdown
from .runner import evaluate_model, write_results


def run_evaluation(config, out_file: Path, model: str | None = None, tasks: list[str] | None = None) -> dict:
    config.check_evaluable()
    out_file = Path(out_file)
    if out_file.exists():
        raise FileExistsError(f"{out_file} already exists; choose another --out (results are never overwritten)")
    check_writable(out_file)  # a read-only directory fails before the scoring, not after it
    if model is not None:  # another model (a checkpoint directory, a Hub id) with the same settings
        config = config.with_values({"model.name_or_path": str(model)})
    results = evaluate_model(models.resolve_model(config.model), config, tasks)
    write_results(results, out_file)
    return results


def run_report(config, before: dict, after: dict, out_file: Path) -> dict:
    """The forgetting report of two evaluations: `out_file` (JSON), its markdown and PNG beside it."""
    from ..plots import plot_forgetting

    ec = config.eval
    report = forgetting_report(before, after, ec.bootstrap_resamples, ec.seed, ec.confidence)
    out_file = Path(out_file)
    write_results(report, out_file)
    out_file.with_suffix(".md").write_text(render_markdown(report))
    plot_forgetting(report, out_file.with_suffix(".png"), config.gate.max_forgetting)
    return report

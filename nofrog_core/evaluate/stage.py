"""The evaluation stage: one model, the configured tasks, a results JSON on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import models
from ..outputs import check_writable
from ..splits import SELECTION
from .report import forgetting_report, render_markdown
from .runner import evaluate_model, write_results


def run_evaluation(config, out_file: Path, model: str | None = None, tasks: list[str] | None = None,
                   part: str | None = None) -> dict:
    """Score a model (the configured base, or `model`) on the `part` items of the configured tasks.

    `part` None: every item, except under `eval.judge_items: selection` (a screen, a benchmark
    that chooses), where only selection items are scored: whatever chooses never loads a test item.
    """
    config.check_evaluable()
    part = scored_part(config.eval.judge_items, part)
    out_file = Path(out_file)
    if out_file.exists():
        raise FileExistsError(f"{out_file} already exists; choose another --out (results are never overwritten)")
    check_writable(out_file)  # a read-only directory fails before the scoring, not after it
    if model is not None:  # another model (a checkpoint directory, a Hub id) with the same settings
        config = config.with_values({"model.name_or_path": str(model)})
    if config.eval.workers > 1:
        from .sharded import evaluate_on_ray

        results = evaluate_on_ray(models.resolve_model(config.model), config, tasks, part)
    else:
        results = evaluate_model(models.resolve_model(config.model), config, tasks, part)
    write_results(results, out_file)
    return results


def scored_part(judge_items: str, part: str | None) -> str:
    """The items an evaluation scores: `part`, or all of them by default; only selection items when
    the run judges on selection items (it chooses), and a request for test items then is refused."""
    if judge_items != SELECTION:
        return part or "all"
    if part not in (None, SELECTION):
        raise ValueError(f"eval.judge_items is selection (this run chooses), so it may not score {part} items: "
                         "the test items are kept for the gate and for claims (docs: the item split)")
    return SELECTION


def decide_with(report: dict, gate_config, gain_over_champion: float | None = None):
    """The gate rule (`gate.decide`, plain values) with the `gate:` section's settings: the one way
    the pipeline, the fit, the benchmark and the CLI gate decide."""
    from ..gate import decide, decision_settings

    return decide(report, **decision_settings(gate_config.model_dump()), gain_over_champion=gain_over_champion)


def report_with(config, before: dict, after: dict, part: str | None = None) -> dict:
    """`forgetting_report` with the `eval:` section's settings, on the `part` items (default
    `eval.judge_items`): the one way the pipeline, the fit and the CLI gate compute a report."""
    ec = config.eval
    return forgetting_report(before, after, ec.bootstrap_resamples, ec.seed, ec.confidence, part or ec.judge_items,
                             ec.harm_scale)


def run_report(config, before: dict, after: dict, out_file: Path, part: str | None = None) -> dict:
    """The forgetting report of two evaluations on the `part` items (default `eval.judge_items`):
    `out_file` (JSON), its markdown and PNG beside it."""
    from ..plots import plot_forgetting

    report = report_with(config, before, after, part)
    out_file = Path(out_file)
    write_results(report, out_file)
    out_file.with_suffix(".md").write_text(render_markdown(report))
    plot_forgetting(report, out_file.with_suffix(".png"), config.gate.max_forgetting)
    return report


def run_fit(config, base_dir: Path, candidate_dir: Path, before: dict, out_dir: Path,
            champion_eval: dict | None = None) -> dict:
    """`gate.fit: interpolate`: the coefficients of `gate.fit_coefficients`, largest first, scored on
    selection items until one passes, then `gate.fit_refine_steps` bisections toward the budget's
    edge (the failed candidate at alpha 1 bounds the bracket from above). The chosen mix is then
    scored afresh on the judged items (`eval.judge_items`, test by default), and that evaluation,
    not the one it was chosen on, is what the gate reads. `champion_eval`: the champion's
    evaluation on all items, when `gate.require_beat_champion` compares each mix with it by the
    mix's own gain. Returns the points (both figures each), the chosen one and the file paths."""
    from .. import fit
    from ..plots import plot_fit

    # The mixes re-read the base's weights from disk: they must be the weights `before` scored.
    evaluated, on_disk = before.get("config", {}).get("model_hash"), models.directory_hash(Path(base_dir))
    if evaluated != on_disk:
        raise ValueError(f"gate.fit: the base model at {base_dir} (hash {on_disk[:12]}) is not the one the base "
                         f"evaluation scored (hash {str(evaluated)[:12]}): its files changed since; rerun the pipeline")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    points = []

    def judge(after: dict, part: str, name: str):
        report = run_report(config, before, after, out_dir / f"forgetting_{name}.json", part)
        over_champion = None
        if champion_eval is not None:
            over_champion = report_with(config, champion_eval, after, part)["task_gain"]
        return report, decide_with(report, config.gate, over_champion)

    def score(alpha: float) -> None:
        model_dir = fit.write_interpolated(Path(base_dir), Path(candidate_dir), alpha, out_dir / f"alpha{alpha}")
        after = run_evaluation(config, out_dir / f"eval_alpha{alpha}_selection.json", model=str(model_dir),
                               part=SELECTION)
        report, decision = judge(after, SELECTION, f"alpha{alpha}_selection")
        points.append(fit.FitPoint(alpha, str(model_dir), report["forgetting_clipped"],
                                   report["forgetting_clipped_ci"], report["task_gain"], report["task_gain_ci"],
                                   decision.passed, decision.reason))

    # The fit runs because the candidate (alpha 1) failed. Forgetting and gain both grow with alpha
    # along the path, so the grid is walked down from the candidate (the validator sorts it) and
    # stops at the first mix that passes: a smaller alpha would only give up more of the gain.
    for alpha in config.gate.fit_coefficients:
        score(alpha)
        if points[-1].passed:
            break
    for _ in range(config.gate.fit_refine_steps):
        alpha = fit.next_coefficient(points, known_failure=1.0)
        if alpha is None:
            break
        score(round(alpha, 4))
    chosen = fit.choose(points)
    for point in points:  # only the chosen model is kept: each is a full copy of the weights
        if chosen is None or point.alpha != chosen.alpha:
            shutil.rmtree(point.model_dir, ignore_errors=True)
    confirmed = None
    if chosen is not None:
        # Chosen on selection items; judged afresh on the items the gate reads.
        part = config.eval.judge_items
        after = run_evaluation(config, after_path(out_dir, chosen.alpha, part), model=chosen.model_dir,
                               part=part)
        report, decision = judge(after, part, f"alpha{chosen.alpha}_{part}")
        confirmed = {"alpha": chosen.alpha, "items": part, "forgetting": report["forgetting_clipped"],
                     "forgetting_ci": report["forgetting_clipped_ci"], "task_gain": report["task_gain"],
                     "task_gain_ci": report["task_gain_ci"], "passed": decision.passed, "reason": decision.reason,
                     "eval": str(after_path(out_dir, chosen.alpha, part)),
                     "report": str(out_dir / f"forgetting_alpha{chosen.alpha}_{part}.json")}
    summary = {"strategy": "interpolate", "selected_on": SELECTION,
               "points": [{**p.as_dict(), "items": SELECTION} for p in points],
               "chosen": chosen.as_dict() if chosen else None, "confirmed": confirmed,
               "max_forgetting": config.gate.max_forgetting}
    write_results(summary, out_dir / "fit.json")
    plot_fit(summary, out_dir / "fit.png")
    return {**summary, "fit_json": str(out_dir / "fit.json"), "fit_png": str(out_dir / "fit.png")}


def after_path(out_dir: Path, alpha: float, part: str) -> Path:
    return Path(out_dir) / f"eval_alpha{alpha}_{part}.json"

"""The retraining pipeline as a Prefect flow.

    base model -> baseline eval (cached) -> [context-free replay (cached)]
        -> [champion: download + eval] -> fine-tune -> candidate eval
        -> forgetting report -> gate -> MLflow run -> registered version (+ alias if passed)

Stages talk through files in one run directory; each can be rerun alone from
the CLI on those files. The gate always compares with the original base
model, also when a round starts from the champion: forgetting cannot creep in
a little at a time over many rounds.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from nofrog_core import tracking
from nofrog_core.config import load_config
from nofrog_core.data import configured_task_files
from nofrog_core.evaluate.fit_strategies import NO_FIT
from nofrog_core.evaluate.report import render_markdown
from nofrog_core.evaluate.runner import write_results
from nofrog_core.gate import GateDecision, decide_rounds, excluded_tasks
from nofrog_core.rounds import ROUND_DIR, earlier_rounds_section, round_task_name, write_round_record
from nofrog_core.runs import SUMMARY_FILE, claim_run_dir, run_request, set_aside
from nofrog_tasks import stages
from nofrog_tasks.json_results import json_flow
from nofrog_tasks.tracking import log_failed_run, log_run, log_stage_seconds, register_and_gate


BASE_EVAL, TRAIN_DIR = "eval_base.json", "train"


def run_name() -> str:
    """Flow run names carry the model and the data: 'retrain-gemma-3-270m-on-demo-task-...'."""
    params = flow_run.parameters
    config = load_config(params.get("config_path"), params.get("overrides"))
    data = Path(config.data.path).stem if config.data.path else "demo-task"
    return f"retrain-{Path(config.model.name_or_path).name}-on-{data}-{uuid.uuid4().hex[:4]}"


def markdown_summary(report: dict, decision: dict, registered: dict, champion_report: dict | None) -> str:
    lines = ["# nofrog retraining round", "",
             f"**Gate: {decision['label']}**: {decision['reason']}", "",
             f"Registered `{registered['registered_model']}` version {registered['version']}"
             + (f", now `{registered['alias']}`." if registered["promoted"] else f"; `{registered['alias']}` unchanged."),
             "", render_markdown(report, "Forgetting vs the base model")]
    if champion_report:
        lines.append(render_markdown(champion_report, "Forgetting vs the current champion"))
    return "\n".join(lines)


class StageClock:
    """Wall time per stage, for the run summary, the markdown artifact and MLflow."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.current = "start"  # the stage running now: named when a run fails

    def __call__(self, name: str, task, *args, **kwargs):
        self.current = name
        started = time.time()
        try:
            return task(*args, **kwargs)
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.time() - started, 2)


@json_flow(name="nofrog-retrain", flow_run_name=run_name, log_prints=True)
def retrain_pipeline(config_path: str | None = None, overrides: list[str] | None = None,
                     data_path: str | None = None, resume: bool = True, start_from: str | None = None) -> dict:
    """`data_path` (a file, directory or glob) overrides `data.path`: what a scheduled run picks up.
    `start_from` overrides `model.start_from` (`champion`: a scheduled round fine-tunes the current
    champion and protects what its lineage's rounds taught; the base when there is none yet).
    `resume`: an unfinished run of the same config and data (interrupted, crashed) is picked up where
    it stopped, its finished stages reused; False starts a new run directory."""
    overrides = [*([f"model.start_from={start_from}"] if start_from else []), *(overrides or []),
                 *([f"data.path={data_path}"] if data_path else [])]
    config = load_config(config_path, overrides)  # fails on bad config before any work
    config.check_evaluable()
    tracking.check_reachable(config.tracking)  # and on an unreachable MLflow server, before any training
    request = run_request(config, configured_task_files(config).data_hash)
    with claim_run_dir(config.tracking.output_dir, request, resume) as (run_dir, resumed):
        get_run_logger().info("%s run directory: %s", "resuming the unfinished" if resumed else "new", run_dir)
        if resumed:
            # The base's evaluation and the training (from its last checkpoint) carry on; what came after
            # is redone, and what the interrupted run had written of it is kept aside.
            aside = set_aside(run_dir, {BASE_EVAL, TRAIN_DIR})
            if aside:
                get_run_logger().info("the interrupted run's later outputs: %s", aside)
        clock = StageClock()
        try:
            return run_stages(config, run_dir, clock)
        except Exception as err:
            # Whatever the failed stage left (eval JSONs, training history) goes to MLflow; nothing is registered.
            log_failed_run(config, run_dir, clock.current, err)
            raise


def adopt_fit(fitted: dict, run_dir: Path, train: dict, after: dict, report: dict, decision: dict):
    """The fitted model replaces the candidate only when the mix chosen on selection items also
    passes on the judged items; its test-item evaluation is then the run's report. The unfitted
    candidate's files are kept beside it under *_unfitted names."""
    confirmed = fitted["confirmed"]
    if confirmed is None:
        return train, after, report, decision
    if not confirmed["passed"]:
        reason = (f"{decision['reason']}; the fit chose alpha {confirmed['alpha']} on selection items, but on "
                  f"{confirmed['items']} items: {confirmed['reason']}")
        return train, after, report, GateDecision(False, reason).as_dict()
    after = json.loads(Path(confirmed["eval"]).read_text())
    report = json.loads(Path(confirmed["report"]).read_text())
    for name in ("eval_candidate.json", "forgetting.json", "forgetting.md", "forgetting.png"):
        if (run_dir / name).exists():
            (run_dir / name).rename(run_dir / name.replace(".", "_unfitted.", 1))
    write_results(after, run_dir / "eval_candidate.json")
    write_results(report, run_dir / "forgetting.json")
    (run_dir / "forgetting.md").write_text(render_markdown(report, "Fitted model vs the base"))
    # The gate's own label ("passed"): the registry reads it to find earlier passing versions;
    # the version's "fitted" tag says that it passed only after the fit.
    reason = f"after interpolation at alpha {confirmed['alpha']}, judged on {confirmed['items']} items: " \
             f"{confirmed['reason']}"
    return {**train, "model_dir": fitted["chosen"]["model_dir"]}, after, report, GateDecision(True, reason).as_dict()


def judge_earlier_rounds(config, run_dir: Path, champion: dict, champion_eval: dict, after: dict, report: dict,
                         decision: dict) -> tuple[dict, dict]:
    """The registered model's own earlier rounds, against the champion's scores on them: a section of
    the report, and a passing candidate that forgot one is rejected, naming it. Read from the model
    the run registers (the fitted one after a fit)."""
    expected = [round_task_name(d) for d in config.eval.earlier_rounds] if config.eval.protect_rounds else []
    vs_champion = stages.compare(config, champion_eval, after, run_dir / "forgetting_vs_champion.json") \
        if expected else None
    report = {**report, "earlier_rounds": earlier_rounds_section(config.eval.protect_rounds, expected,
                                                                 champion["version"], vs_champion,
                                                                 config.gate.max_round_drop)}
    write_results(report, run_dir / "forgetting.json")
    (run_dir / "forgetting.md").write_text(render_markdown(report))
    passed = decide_rounds(GateDecision(decision["passed"], decision["reason"]), report["earlier_rounds"])
    return report, passed.as_dict()


def stage_engines(config) -> dict:
    """What ran each heavy stage, and on how many workers: the replay set's own record (a cached set says
    how it was made), Ray Train's workers, the evaluation's."""
    replay = None
    if config.replay.mix.dir and (Path(config.replay.mix.dir) / "metadata.json").exists():
        meta = json.loads((Path(config.replay.mix.dir) / "metadata.json").read_text())
        replay = {"engine": meta["backend"], "workers": meta.get("engines", 1)}
    workers = config.compute.num_workers
    return {"replay": replay,
            "fine_tune": {"engine": "ray_train" if workers else "in_process", "workers": max(1, workers)},
            "evaluate": {"engine": "ray" if config.eval.workers > 1 else "in_process", "workers": config.eval.workers}}


def run_stages(config, run_dir: Path, clock: StageClock) -> dict:
    logger = get_run_logger()
    base = clock("prepare_base_model", stages.prepare_base_model, config)
    if config.replay.mix.ratio > 0 and config.replay.mix.dir is None:
        # Replay always samples the original base model, also when training starts from the champion.
        # It comes first: its held-out samples give the general suite's replay KL estimate.
        config = config.with_values({"replay.mix.dir": clock("replay", stages.cached_replay, config, base)})
    if (run_dir / BASE_EVAL).exists():  # a resumed run's: the same request scored it
        before = json.loads((run_dir / BASE_EVAL).read_text())
    else:
        before = clock("evaluate_base", stages.cached_base_evaluation, config, base, run_dir / BASE_EVAL)
        if not (run_dir / BASE_EVAL).exists():  # served from the cache
            write_results(before, run_dir / BASE_EVAL)
    train_config, champion = config, None
    if config.model.start_from == "champion" or config.gate.require_beat_champion:
        champion = clock("fetch_champion", stages.fetch_champion, config, run_dir / "champion")
        if champion and config.model.start_from == "champion":
            train_config = config.with_values({"model.name_or_path": champion["model_dir"]})
        elif not champion:
            logger.warning("no version has the alias %r yet: starting from the base, nothing to beat",
                           config.gate.alias)
    protect = champion is not None and config.model.start_from == "champion" and config.eval.protect_rounds
    if protect:
        # What the champion's lineage taught joins the candidate's and the champion's evaluations.
        lineage = clock("fetch_earlier_rounds", stages.fetch_earlier_rounds, config, champion["version"],
                        run_dir / "earlier_rounds")
        config = config.with_values({"eval.earlier_rounds": [*config.eval.earlier_rounds, *lineage]})
        logger.info("protecting %d earlier round(s): %s", len(config.eval.earlier_rounds), config.eval.earlier_rounds)
    train = clock("fine_tune", stages.fine_tune, train_config, run_dir / TRAIN_DIR)
    judged = config.eval.judge_items  # test, except in a screen that chooses
    after = clock("evaluate_candidate", stages.evaluate, config, run_dir / "eval_candidate.json",
                  model=train["model_dir"], part=judged)
    report = stages.compare(config, before, after, run_dir / "forgetting.json")
    champion_report = champion_eval = None
    if champion:
        # Every item the run may read when the fit may compare its mixes with the champion on selection items.
        champion_eval = clock("evaluate_champion", stages.evaluate, config, run_dir / "eval_champion.json",
                              model=champion["model_dir"], part=None if config.gate.fit != NO_FIT else judged)
        champion_report = stages.compare(config, champion_eval, after, run_dir / "forgetting_vs_champion.json")
    decision = stages.gate(report, config, champion_report)
    fitted = None
    if not decision["passed"] and config.gate.fit != NO_FIT:
        # Fit within the budget (a registered strategy): chosen on selection items, judged on test items.
        logger.info("the candidate failed the gate (%s); trying gate.fit %s", decision["reason"], config.gate.fit)
        fitted = clock("fit", stages.fit_within_budget, config, base["path"], train["model_dir"], before,
                       run_dir / "fit", champion_eval if config.gate.require_beat_champion else None)
        train, after, report, decision = adopt_fit(fitted, run_dir, train, after, report, decision)
    if champion and config.model.start_from == "champion":
        report, decision = judge_earlier_rounds(config, run_dir, champion, champion_eval, after, report, decision)
    round_record = write_round_record(config, run_dir, after)  # what this round taught, for later rounds
    run_id = clock("log_run", log_run, config, run_dir, base, train, before, after, report, decision, flow_run.get_id())
    train_meta = json.loads(Path(train["metadata"]).read_text())
    adopted = fitted and fitted["confirmed"] and fitted["confirmed"]["passed"]
    lineage = {"base_model_hash": base["content_hash"], "data_hash": train_meta["data"]["data_hash"],
               "fitted": f"interpolate alpha={fitted['chosen']['alpha']}" if adopted else "no",
               "judged_items": judged, "excluded_tasks": ",".join(excluded_tasks(report)) or "none",
               "prefect_flow_run_id": str(flow_run.get_id() or ""), "mlflow_run_id": run_id,
               "started_from": f"champion v{champion['version']}" if train_config is not config else "base",
               "round_record": f"{ROUND_DIR}/round.json" if round_record else "none (no held-out file)"}
    registered = clock("register_and_gate", register_and_gate, config, run_id, train["model_dir"], report, decision,
                       lineage)
    log_stage_seconds(config, run_id, clock.seconds)
    create_markdown_artifact(markdown_summary(report, decision, registered, champion_report),
                             key="forgetting-report", description="Forgetting table and gate decision")
    summary = {"run_dir": str(run_dir), "mlflow_run_id": run_id, "base_model": base, "report": report,
               "gate": decision, "registered": registered, "train_steps": train["steps"],
               "champion_report": champion_report, "fit": fitted, "stage_seconds": clock.seconds,
               "stage_engines": stage_engines(config)}
    # What the run decided and how long each stage took, beside its files (scripts read it).
    brief = {k: v for k, v in summary.items() if k not in ("report", "champion_report")}
    write_results(json.loads(json.dumps(brief, default=str)), run_dir / SUMMARY_FILE)  # marks the run finished
    return summary

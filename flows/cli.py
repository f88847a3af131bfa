"""The `nofrog` command: the library's commands (nofrog_core/cli.py) plus the two that start
Prefect flows, `run` and `serve`. They live here, beside the flows, so that the library never
imports the orchestrator; `nofrog --help` still lists every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nofrog_core.cli import ConfigOption, SetOption, _config, app, console, print_report, user_errors
from nofrog_core.cli import main as library_main
from nofrog_core.outputs import check_writable_dir


@app.command()
def run(config: Optional[Path] = ConfigOption, overrides: list[str] = SetOption,
        new: bool = typer.Option(False, "--new", help="Start a new run directory even where an unfinished run "
                                 "of this config and data waits to be resumed.")) -> None:
    """Run the whole pipeline as a Prefect flow: eval base, fine-tune, eval candidate, log, gate.

    Rerun after an interruption (Ctrl-C, a crash, a killed machine), the same command resumes the
    unfinished run of the same config and data: training from its last checkpoint, the base's
    evaluation reused, the later stages redone; it registers once.

    Example: nofrog run --config configs/default.yaml --set data.path=my/train.jsonl
    """
    from nofrog_core.tracking import check_reachable, tracking_uri

    with user_errors():
        cfg = _config(config, overrides)  # validate before Prefect starts
        cfg.check_evaluable()
        check_reachable(cfg.tracking)
        check_writable_dir(cfg.tracking.output_dir)
        from .retrain import retrain_pipeline

        summary = retrain_pipeline(str(config) if config else None, list(overrides), resume=not new)
    print_report(summary["report"])
    console.print(f"gate [bold]{summary['gate']['label']}[/]: {summary['gate']['reason']}")
    registered = summary["registered"]
    console.print(f"registered {registered['registered_model']} version {registered['version']}; "
                  f"{registered['alias_move']}", highlight=False)
    console.print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["stage_seconds"].items()))
    run_dir = Path(summary["run_dir"])
    console.print(f"report: {run_dir / 'forgetting.md'} (plot: forgetting.png beside it)", highlight=False)
    console.print(f"run directory: {run_dir}   MLflow run: {summary['mlflow_run_id']}")
    console.print(f"MLflow UI:  mlflow ui --backend-store-uri {tracking_uri(cfg.tracking)}  (http://127.0.0.1:5000)")
    console.print("Prefect UI: prefect server start  (http://127.0.0.1:4200; shows this flow run)")


@app.command()
def serve(
    cron: str = typer.Option("0 2 * * *", "--cron", help="When to run, as a cron expression (UTC)."),
    name: str = typer.Option("nofrog-retrain-served", "--name", help="Deployment name shown in the Prefect UI."),
    config: Optional[Path] = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Serve the retraining flow on a cron schedule from this process (Prefect's flow.serve).

    Needs a Prefect server (PREFECT_API_URL); runs until interrupted.

    Example: nofrog serve --cron "0 2 * * *" --config configs/default.yaml --set "data.path=data/incoming/*.jsonl"
    """
    with user_errors():
        _config(config, overrides).check_evaluable()  # validate now, not at 2 a.m.
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            # Without a server Prefect runs an ephemeral one, which cannot schedule: the cron would never fire.
            raise ValueError("nofrog serve needs a Prefect server to schedule on: start one with `prefect server "
                             "start` (http://127.0.0.1:4200) and set PREFECT_API_URL=http://127.0.0.1:4200/api")
        from prefect.schedules import Cron

        Cron(cron)  # a malformed expression fails here, with the expression in the message
        from .retrain import retrain_pipeline

    retrain_pipeline.serve(name=name, schedules=[Cron(cron, timezone="UTC")],
                           parameters={"config_path": str(config) if config else None, "overrides": list(overrides)})


def main() -> None:
    library_main()


if __name__ == "__main__":
    main()

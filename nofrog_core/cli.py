"""The `nofrog` command's library commands (the ones that start Prefect flows, `run` and `serve`,
live in flows/cli.py, which adds them to this app: the library never imports the orchestrator).

Every subcommand takes `--config FILE` and repeatable `--set section.key=value`;
the config is validated before any work starts. Errors a user can fix are
printed as one clear message (exit code 2), not a traceback.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from .config import ConfigError, NofrogConfig, dump_config, load_config
from .errors import ControlError, DataError, ModelError, ReplayError

app = typer.Typer(
    help="nofrog: fine-tune a language model on new data without forgetting what it knew.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file (default: built-in defaults).")
SetOption = typer.Option([], "--set", help="Override a config key: section.key=value (repeatable).")
# ConnectionError: an unreachable tracking server, named in the message.
USER_ERRORS = (ConfigError, DataError, ModelError, ReplayError, ControlError, FileExistsError, FileNotFoundError,
               ValueError, ConnectionError)


@contextmanager
def user_errors():
    try:
        yield
    except USER_ERRORS as err:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)  # one line
        raise typer.Exit(2) from None


def _config(path: Optional[Path], overrides: list[str]) -> NofrogConfig:
    return load_config(path, overrides)


@config_app.command("show")
def config_show(config: Optional[Path] = ConfigOption, overrides: list[str] = SetOption) -> None:
    """Print the resolved config (file + overrides + defaults) as YAML.

    Example: nofrog config show --config configs/default.yaml --set train.lr=1e-5
    """
    with user_errors():
        print(dump_config(_config(config, overrides)), end="")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (every key, type, default, meaning) as markdown.

    Example: nofrog config reference > docs/configuration.md
    """
    from .config_reference import config_reference as reference

    print(reference(), end="")


@app.command("demo-data")
def demo_data(
    out: Path = typer.Option(..., "--out", help="Directory to write train.jsonl, heldout.jsonl, metadata.json."),
    config: Optional[Path] = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Write the built-in task (`data.builtin_task`: people, date_format) as JSONL.

    Example: nofrog demo-data --out data/demo --set data.builtin_task=date_format
    """
    from .demo_data import write_demo_task

    with user_errors():
        cfg = _config(config, overrides)
        paths = write_demo_task(out, cfg.data.demo_people, cfg.data.seed, cfg.data.builtin_task)
    console.print(f"wrote {paths['train']} and {paths['heldout']} ({cfg.data.builtin_task}, "
                  f"{cfg.data.demo_people} x 3 rows)")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="Directory for model/, history.jsonl, metadata.json."),
    config: Optional[Path] = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Fine-tune the base model on the configured data (rerun on the same --out after a crash: it resumes).

    Example: nofrog train --config configs/quick.yaml --set data.path=my/train.jsonl --out runs/train-1
    """
    from .train.stage import run_training

    with user_errors():
        result = run_training(_config(config, overrides), out)
    console.print(f"trained {result['steps']} steps, final loss {result['final_loss']:.4f}; model in {result['model_dir']}")


@app.command()
def replay(
    out: Path = typer.Option(..., "--out", help="Dataset directory: samples.jsonl, heldout.jsonl, metadata.json."),
    config: Optional[Path] = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Sample the base model from BOS alone (context-free replay data).

    Example: nofrog replay --config configs/default.yaml --out runs/replay
    """
    from .replay.stage import run_replay

    with user_errors():
        meta = run_replay(_config(config, overrides), out)
    state = "reused existing" if meta["reused"] else "generated"
    console.print(f"replay {state}: {meta['num_samples']} samples (+{meta['num_heldout']} held out), "
                  f"{meta['tokens_per_second']:.1f} tokens/s, duplicate rate {meta['duplicate_rate']:.1%}, "
                  f"backend {meta['backend']}, filtered {meta['filtered'] or 'none'} -> {out}")


@app.command("eval")
def evaluate(
    out: Path = typer.Option(..., "--out", help="Results JSON file (lm-eval schema)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model directory or id (default: the configured base)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated task names (default: eval.tasks)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Results JSON of the base model: print the forgetting report."),
    config: Optional[Path] = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Score a model on the evaluation tasks; with --baseline, write and print the forgetting report.

    Example: nofrog eval --out base.json, then nofrog eval --model runs/train-1/model --baseline base.json
    --out candidate.json
    """
    from .evaluate.stage import run_evaluation, run_report

    with user_errors():
        cfg = _config(config, overrides)
        before = read_results(baseline, "--baseline") if baseline is not None else None
        task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
        results = run_evaluation(cfg, out, model=model, tasks=task_list)
    for task, metrics in results["results"].items():
        shown = ", ".join(f"{k.split(',')[0]}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        console.print(f"{task}: {shown}")
    if before is not None:
        report_file = out.with_name(out.stem + "_forgetting.json")
        print_report(run_report(cfg, before, results, report_file))
        console.print(f"report: {report_file} (and .md, .png beside it)")


def read_results(path: Path, option: str) -> dict:
    """A results JSON written by `nofrog eval`, checked before any scoring starts."""
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path} does not exist")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{option} {path} is not a results JSON: {err}") from None
    if not isinstance(results, dict) or "samples" not in results or "task_info" not in results:
        raise ValueError(f"{option} {path} has no per-item samples and task roles; re-run `nofrog eval` on the "
                         "base model with this version of nofrog")
    return results


@app.command()
def gate(
    run_id: str = typer.Option(..., "--run-id", help="MLflow run id of a finished pipeline run."),
    config: Optional[Path] = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Re-apply the promotion gate to a finished run: the report is recomputed from its per-item scores.

    Example: nofrog gate --run-id 3f2a... --set gate.max_forgetting=0.02
    """
    from . import tracking
    from .evaluate.stage import decide_with, report_with
    from .model_registry import apply_gate, registry_versions_of_run

    with user_errors():
        cfg = _config(config, overrides)
        # An unreachable server fails in seconds, not after retries; a missing store is not created.
        tracking.check_reachable(cfg.tracking, existing=True)
        tracking.setup(cfg.tracking)
        before, after = (tracking.run_json_artifact(run_id, f"eval/{name}")
                         for name in ("eval_base.json", "eval_candidate.json"))
        report = report_with(cfg, before, after)
        # Every rule the pipeline applies: with require_beat_champion, the gain over the champion the
        # run was compared with (none recorded: there was no champion to beat, as in the pipeline).
        over_champion = None
        if cfg.gate.require_beat_champion and tracking.run_has_artifact(run_id, "eval/eval_champion.json"):
            champion = tracking.run_json_artifact(run_id, "eval/eval_champion.json")
            over_champion = report_with(cfg, champion, after)["task_gain"]
        decision = decide_with(report, cfg.gate, over_champion)
        tracking.set_run_tags(run_id, {"gate": decision.label, "gate_reason": decision.reason})
        versions = registry_versions_of_run(run_id)
        moves = [apply_gate(version.name, version.version, decision, cfg.gate.alias) for version in versions]
    print_report(report)
    console.print(f"gate {decision.label}: {decision.reason}", highlight=False)
    for version, moved in zip(versions, moves):
        console.print(f"registered {version.name} version {version.version}: tags updated, {moved}", highlight=False)


@app.command()
def fit(
    candidate: Path = typer.Option(..., "--candidate", help="The fine-tuned model directory that failed the gate."),
    baseline: Path = typer.Option(..., "--baseline", help="Results JSON of the base model (every item scored)."),
    out: Path = typer.Option(..., "--out", help="Directory for fit.json, fit.png, the mixes' evaluations and the "
                             "chosen model."),
    config: Optional[Path] = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Rerun the fit alone: the `gate.fit` strategy (interpolate when none is set) on a candidate.

    Example: nofrog fit --config configs/default.yaml --candidate runs/R/train/model
    --baseline runs/R/eval_base.json --out runs/R/fit-again
    """
    from .evaluate.fit_strategies import FIT_STRATEGIES, NO_FIT
    from .models import resolve_model

    with user_errors():
        cfg = _config(config, overrides)
        strategy = cfg.gate.fit if cfg.gate.fit != NO_FIT else "interpolate"
        cfg = cfg.with_values({"gate.fit": strategy})  # the items are split as in a run that fits
        before = read_results(baseline, "--baseline")
        if not candidate.is_dir():
            raise FileNotFoundError(f"--candidate {candidate} is not a model directory")
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"--out {out} is not empty; choose another (results are never overwritten)")
        result = FIT_STRATEGIES[strategy](cfg, resolve_model(cfg.model).path, candidate, before, out)
    chosen, confirmed = result["chosen"], result["confirmed"]
    if chosen is None:
        console.print(f"fit {strategy}: no mix passed on selection items; see {result['fit_json']}")
    else:
        verdict = "passed" if confirmed["passed"] else "rejected"
        console.print(f"fit {strategy}: chose alpha {chosen['alpha']} on selection items; on {confirmed['items']} "
                      f"items the gate {verdict}: {confirmed['reason']}", highlight=False)
        console.print(f"model: {chosen['model_dir']}   report: {confirmed['report']}", highlight=False)


def print_report(report: dict) -> None:
    from .evaluate.report import render_markdown

    print(render_markdown(report))  # plain markdown: readable in a terminal, pasteable into a PR


@app.command("prepare-model")
def prepare_model(config: Optional[Path] = ConfigOption, overrides: list[str] = SetOption) -> None:
    """Resolve the configured base model into a local safetensors directory (converting once).

    Example: nofrog prepare-model --set model.name_or_path=/models/my-model.gguf
    """
    from .models import resolve_model

    with user_errors():
        ref = resolve_model(_config(config, overrides).model)
    console.print(f"{ref.source}: {ref.path} (sha256 {ref.content_hash[:16]})")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Prefect's API calls, one line each
    app()


if __name__ == "__main__":
    main()

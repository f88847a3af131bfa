"""The MLflow model registry: register candidates, tag them, move the alias (the rule is in gate.py).

Model versions, not names: the registries of registries.py hold loss terms, tasks and metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

from .gate import GateDecision


def version_tags(report: dict, decision: GateDecision, lineage: dict[str, str]) -> dict[str, str]:
    """What a registered version carries: its figures, the gate's verdict, and where it came from."""
    def number(value) -> str:  # a figure the report could not compute is null there and "n/a" here
        return "n/a" if value is None else f"{value:.6g}"

    low, high = report["forgetting_clipped_ci"]
    return {"forgetting": number(report["forgetting"]), "forgetting_clipped": number(report["forgetting_clipped"]),
            "forgetting_clipped_interval": f"[{number(low)}, {number(high)}]", "task_gain": number(report["task_gain"]),
            "gate": decision.label, "gate_reason": decision.reason, **lineage}


def serving_requirements() -> list[str]:
    """Pinned from this environment: MLflow's own inference would load the model in a subprocess."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "transformers", "torch", "safetensors", "accelerate")]


def register_candidate(run_id: str, model_dir: str, registered_model: str, tags: dict[str, str]) -> str:
    """Logs the candidate into MLflow run `run_id` with the transformers flavour (from the local
    checkpoint, without loading it), registers it, tags the version; returns the version number."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow.start_run(run_id=run_id):
        info = mlflow.transformers.log_model(transformers_model=model_dir, name="model", task="text-generation",
                                             registered_model_name=registered_model,
                                             pip_requirements=serving_requirements())
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    return version


def champion_version(registered_model: str, alias: str):
    """The version the alias points at, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(registered_model, alias)
    except MlflowException:
        return None


def apply_gate(registered_model: str, version: str, decision: GateDecision, alias: str) -> str:
    """Tags the version with the decision and keeps the alias honest: a passing version gets it; a
    rejected version never keeps it (it goes back to the latest other passing version, or is
    removed). Returns what happened to the alias, in words."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(registered_model, version, "gate", decision.label)
    client.set_model_version_tag(registered_model, version, "gate_reason", decision.reason)
    if decision.passed:
        client.set_registered_model_alias(registered_model, alias, version)
        return f"'{alias}' now points at version {version}"
    current = champion_version(registered_model, alias)
    if current is None or str(current.version) != str(version):
        return f"'{alias}' not moved"
    passing = [v for v in client.search_model_versions(f"name='{registered_model}'")
               if str(v.version) != str(version) and v.tags.get("gate") == "passed"]
    if passing:
        previous = max(passing, key=lambda v: int(v.version))
        client.set_registered_model_alias(registered_model, alias, previous.version)
        return f"'{alias}' moved back from rejected version {version} to version {previous.version}, the latest passing one"
    client.delete_registered_model_alias(registered_model, alias)
    return f"'{alias}' removed from rejected version {version}: no other version passed the gate"


def download_champion(registered_model: str, alias: str, out_dir: Path) -> dict | None:
    """Saves the alias's version as a plain HF directory in `out_dir`; None when no version has it."""
    import mlflow

    version = champion_version(registered_model, alias)
    if version is None:
        return None
    components = mlflow.transformers.load_model(f"models:/{registered_model}@{alias}", return_type="components")
    components["model"].save_pretrained(out_dir, safe_serialization=True)
    components["tokenizer"].save_pretrained(out_dir)
    return {"model_dir": str(out_dir), "version": version.version}


def registry_versions_of_run(run_id: str) -> list:
    from mlflow import MlflowClient

    return list(MlflowClient().search_model_versions(f"run_id='{run_id}'"))


def lineage_round_records(registered_model: str, version: str, out_dir: Path) -> list[str]:
    """The round records of `version` and of every version it started from (its `started_from` tags,
    back to the base), oldest first, downloaded to `out_dir/v<N>/`: what the next round must keep.
    A version in the chain without a record (its rows came from a validation split) is skipped."""
    from mlflow import MlflowClient

    client = MlflowClient()
    chain, current = [], str(version)
    while current and current not in chain:
        chain.append(current)
        started_from = client.get_model_version(registered_model, current).tags.get("started_from", "base")
        current = started_from.removeprefix("champion v") if started_from.startswith("champion v") else None
    dirs = []
    for number in reversed(chain):
        found = client.get_model_version(registered_model, number)
        if found.tags.get("round_record", "none").startswith("none"):
            continue
        target, scratch = Path(out_dir) / f"v{number}", Path(out_dir) / f".v{number}-download"
        scratch.mkdir(parents=True, exist_ok=True)
        downloaded = Path(client.download_artifacts(found.run_id, "round", str(scratch)))
        shutil.rmtree(target, ignore_errors=True)  # a resumed run's earlier download
        downloaded.rename(target)  # v<N>/: the round task is named after it (round_v<N>)
        shutil.rmtree(scratch)
        dirs.append(str(target))
    return dirs

"""The promotion gate: ship a candidate only when it kept what the base model knew.

Default rule (methods.md section 5): aggregate forgetting <= gate.max_forgetting
and task gain >= gate.min_task_gain, with every gate input finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str

    @property
    def label(self) -> str:
        return "passed" if self.passed else "rejected"


def decide(forgetting: float, task_gain: float, gate_config, gain_over_champion: float | None = None) -> GateDecision:
    """`gain_over_champion`: the candidate's task gain over the current champion's, when
    `gate.require_beat_champion` asks for it (None: there is no champion to beat)."""
    if not (math.isfinite(forgetting) and math.isfinite(task_gain)):
        return GateDecision(False, f"gate inputs not finite (forgetting={forgetting}, task_gain={task_gain})")
    if forgetting > gate_config.max_forgetting:
        return GateDecision(False, f"forgetting {forgetting:.4f} > gate.max_forgetting {gate_config.max_forgetting}")
    if task_gain < gate_config.min_task_gain:
        return GateDecision(False, f"task gain {task_gain:.4f} < gate.min_task_gain {gate_config.min_task_gain}")
    reason = f"forgetting {forgetting:.4f} <= {gate_config.max_forgetting} and " \
             f"task gain {task_gain:.4f} >= {gate_config.min_task_gain}"
    if gate_config.require_beat_champion and gain_over_champion is not None:
        if not (math.isfinite(gain_over_champion) and gain_over_champion > 0):
            return GateDecision(False, f"task score does not beat the champion's (gain over it {gain_over_champion:.4f})")
        reason += f" and beats the champion by {gain_over_champion:.4f}"
    return GateDecision(True, reason)


def version_tags(report: dict, decision: GateDecision, lineage: dict[str, str]) -> dict[str, str]:
    """What a registered version carries: its figures, the gate's verdict, and where it came from."""
    return {"forgetting": f"{report['forgetting']:.6g}", "task_gain": f"{report['task_gain']:.6g}",
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


def apply_gate(registered_model: str, version: str, decision: GateDecision, alias: str) -> bool:
    """Moves `alias` to the version when the gate passed; a rejected version leaves it where it is."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(registered_model, version, "gate", decision.label)
    client.set_model_version_tag(registered_model, version, "gate_reason", decision.reason)
    if decision.passed:
        client.set_registered_model_alias(registered_model, alias, version)
    return decision.passed


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

"""In-training forgetting monitor.

Every `train.monitor_every` steps it scores small probes, in the units the gate reads:

- general text: the relative change of its NLL over the value before training, which
  is the relative change of bits per byte (the same bytes each time): the monitor's drop;
- held-out context-free replay samples: the change of their mean token NLL since the
  start, the replay KL estimate in nats per token (logged, beside the drop, as the report
  shows it).

The probes are selection items (`nofrog_core/splits.py`); the gate reads test items only,
so no step is chosen on the items that judge it. With `train.monitor_early_stop`
the run stops once the drop passes `train.monitor_max_drop` and keeps the last state
whose drop stayed within it.
"""

from __future__ import annotations

from ..data import Example
from ..scoring import mean_token_nll, sequence_nll
from .checkpoints import trainable_state
from .distributed import World


TEXT_PROBE = "general_text"


class ForgettingMonitor:
    def __init__(self, probes: dict[str, list[Example]], pad_token_id: int, world: World, every: int,
                 max_drop: float, early_stop: bool, samples: int, batch_size: int, chunk_size: int):
        self.probes = {name: examples[:samples] for name, examples in probes.items() if examples}
        self.pad_token_id, self.world = pad_token_id, world
        self.every, self.max_drop, self.early_stop = every, max_drop, early_stop
        self.chunk_size, self.batch_size = chunk_size, batch_size
        self.baseline: dict[str, float] | None = None
        self.should_stop = False
        self.best_step: int | None = None
        self._best_weights = None

    @property
    def enabled(self) -> bool:
        return self.every > 0 and TEXT_PROBE in self.probes

    def score(self, model) -> dict[str, float]:
        """Mean token NLL per probe, averaged over workers so that every worker decides alike."""
        was_training = model.training
        scores = {}
        for name, examples in self.probes.items():
            nll, counts = sequence_nll(model, examples, self.batch_size, self.pad_token_id, self.chunk_size,
                                       desc=f"monitor {name}")
            scores[name] = mean_token_nll(nll, counts)
        model.train(was_training)
        averaged = self.world.sum(list(scores.values()))
        return {name: value / self.world.size for name, value in zip(scores, averaged)}

    def start(self, model) -> None:
        self.baseline = self.score(model)
        self._keep(0, model)

    def maybe_score(self, step: int, model) -> dict[str, float]:
        """History fields for this step: probe NLLs and the drop, on monitor steps only."""
        if not self.enabled or step % self.every:
            return {}
        scores = self.score(model)
        record = {f"monitor_{name}_nll": value for name, value in scores.items()}
        if "replay_heldout" in scores:
            record["monitor_replay_kl"] = scores["replay_heldout"] - self.baseline["replay_heldout"]
        text, start = scores[TEXT_PROBE], self.baseline[TEXT_PROBE]
        drop = (text - start) / abs(start)
        record["monitor_drop"] = drop
        if drop <= self.max_drop:
            self._keep(step, model)
        elif self.early_stop:
            self.should_stop = True
        return record

    def _keep(self, step: int, model) -> None:
        if self.early_stop:
            # A copy: on CPU, trainable_state returns views of the live parameters.
            self.best_step = step
            self._best_weights = {name: value.clone() for name, value in trainable_state(model).items()}

    def restore_best(self, model) -> int | None:
        """Puts the last within-threshold weights back; returns their step."""
        if self._best_weights is not None:
            model.load_state_dict(self._best_weights, strict=False)
        return self.best_step

    def state_dict(self) -> dict:
        return {"baseline": self.baseline}

    def load_state_dict(self, state: dict | None, model, step: int) -> None:
        if state and state.get("baseline"):
            self.baseline = state["baseline"]
            self._keep(step, model)  # the resumed weights are the first state kept

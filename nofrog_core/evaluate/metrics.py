"""Metrics computed from per-item scores.

Every evaluation keeps its per-item scores (lm-eval's "samples" idea) as a few
parallel arrays per task: `acc` 0/1 per question, `nll` / `bytes` / `words` per
document, and so on. A metric is a function of those arrays, so the same code
gives the score of the whole task, of any subset, and of every bootstrap
resample at once: arrays of shape (n,) give a number, arrays of shape
(resamples, n) give one number per resample.

A new metric is one registration here; its direction follows lm-eval's
`higher_is_better` defaults.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..registries import Registry

Items = dict[str, np.ndarray]


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    # Per-item 0/1 scores: flips and McNemar's test apply.
    binary: bool
    compute: Callable[[Items], np.ndarray]


METRICS: Registry = Registry("metric")


def register_metric(name: str, higher_is_better: bool, binary: bool = False):
    def register(compute: Callable[[Items], np.ndarray]) -> Callable[[Items], np.ndarray]:
        METRICS[name] = Metric(name, higher_is_better, binary, compute)
        return compute

    return register


def _mean_of(key: str) -> Callable[[Items], np.ndarray]:
    return lambda items: items[key].mean(axis=-1)


for _name in ("acc", "acc_norm", "exact_match"):
    register_metric(_name, higher_is_better=True, binary=True)(_mean_of(_name))


@register_metric("bits_per_byte", higher_is_better=False)
def bits_per_byte(items: Items) -> np.ndarray:
    # Linear in NLL, so its relative change is the relative change of the text's total NLL.
    return items["nll"].sum(axis=-1) / items["bytes"].sum(axis=-1) / math.log(2)


@register_metric("word_perplexity", higher_is_better=False)
def word_perplexity(items: Items) -> np.ndarray:
    return np.exp(items["nll"].sum(axis=-1) / items["words"].sum(axis=-1))


@register_metric("byte_perplexity", higher_is_better=False)
def byte_perplexity(items: Items) -> np.ndarray:
    return np.exp(items["nll"].sum(axis=-1) / items["bytes"].sum(axis=-1))


@register_metric("perplexity", higher_is_better=False)
def perplexity(items: Items) -> np.ndarray:
    """lm-eval's `perplexity` of a loglikelihood task: exp of the mean NLL per request."""
    return np.exp(items["nll"].mean(axis=-1))


@register_metric("answer_loss", higher_is_better=False)
def answer_loss(items: Items) -> np.ndarray:
    """Mean token NLL of the reference answers (token-weighted)."""
    return items["nll"].sum(axis=-1) / items["tokens"].sum(axis=-1)


@register_metric("replay_kl", higher_is_better=False)
def replay_kl(items: Items) -> np.ndarray:
    """Mean per-token log p_base(x) - log p_model(x) over context-free samples of the base."""
    return (items["nll"] - items["base_nll"]).sum(axis=-1) / items["tokens"].sum(axis=-1)


def as_arrays(samples: dict[str, list]) -> Items:
    return {key: np.asarray(values, dtype=np.float64) for key, values in samples.items()}


def item_count(items: Items) -> int:
    return len(next(iter(items.values()))) if items else 0


def value(metric: str, samples: dict[str, list]) -> float:
    """The metric of a whole task from its per-item samples."""
    return float(METRICS[metric].compute(as_arrays(samples)))


def default_higher_is_better(metric: str) -> bool | None:
    return METRICS[metric].higher_is_better if metric in METRICS else None


def text_samples(nll_per_window: list[float], owners: list[int], documents: list[str]) -> dict:
    """Per-document NLL, bytes and words: what bits per byte and the perplexities are made of."""
    nll = [0.0] * len(documents)
    for value, owner in zip(nll_per_window, owners):
        nll[owner] += value
    return {"nll": nll, "bytes": [len(d.encode("utf-8")) for d in documents],
            "words": [len(re.split(r"\s+", d)) for d in documents]}


def standard_error(values: list[float]) -> float:
    """Standard error of the mean (sample std / sqrt(n)), as lm-eval reports it."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)

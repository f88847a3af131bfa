"""Scoring lm-eval task YAMLs on an HF causal LM, the way lm-eval's HFLM does.

- Context and continuation are encoded as lm-eval's `_encode_pair` does:
  trailing spaces of the context move to the continuation, the pair is encoded
  whole and the continuation is what follows the encoded context. Every
  encoding starts with BOS (what Gemma needs, and what HFLM does for it).
- Loglikelihoods run batched, longest first, through nofrog's chunked scorer.
- `acc` = the right choice has the highest loglikelihood; `acc_norm` = the
  same after dividing each by its choice's length in characters.
- Rolling loglikelihood scores every token of a document once, in disjoint
  windows of `max_length` (lm-eval's get_rolling_token_windows with
  context_len=1); word_perplexity, byte_perplexity and bits_per_byte as lm-eval
  defines them. Standard errors are lm-eval's (sample std / sqrt(n)).
- generate_until: greedy decoding up to `generation_kwargs.max_gen_toks` (256),
  cut at the first `until` string, scored by exact match with lm-eval's
  options (ignore_case, ignore_punctuation, regexes_to_ignore).
"""

from __future__ import annotations

import math
import re
import string
import time

from tqdm.auto import tqdm

from ..data import IGNORE_INDEX, Example
from . import metrics as metric_registry
from .generation import greedy_continuations
from ..scoring import sequence_nll, shared_context_nll
from .yaml_tasks import TaskSpec


class Encoder:
    def __init__(self, tokenizer, bos_token_id: int | None, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.prefix = [bos_token_id] if bos_token_id is not None else []

    def encode(self, text: str) -> list[int]:
        return self.prefix + self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, head = self.encode(context + continuation), self.encode(context)
        return head, whole[len(head):]

    def example(self, context: list[int], continuation: list[int]) -> Example:
        """Scores `continuation` given `context`, keeping the last max_length + 1 tokens (lm-eval truncates left)."""
        ids = (context + continuation)[-(self.max_length + 1):]
        scored = min(len(continuation), len(ids) - 1)
        return Example(ids, [IGNORE_INDEX] * (len(ids) - scored) + ids[len(ids) - scored:])

    def rolling_windows(self, text: str) -> list[Example]:
        # As lm-eval 0.4.13's HFLM: the token list is the encoded document *with* its BOS, and the
        # first window is conditioned on a prefix token (BOS, else EOS), so P(BOS | BOS) is scored
        # too. Measured on Gemma 3 270M this is what makes lm-eval's word perplexity 33.56 where
        # the document given BOS scores 25.06 (nofrog's built-in general_text).
        tokens = self.encode(text)
        prefix = self.prefix or [self.tokenizer.eos_token_id]
        windows = []
        for start in range(0, len(tokens), self.max_length):
            target = tokens[start : start + self.max_length]
            context = prefix if start == 0 else tokens[max(0, start + len(target) - self.max_length - 1) : start]
            windows.append(Example(context + target, [IGNORE_INDEX] * len(context) + target))
        return windows


def loglikelihoods(model, examples: list[Example], batch_size: int, pad_token_id: int, chunk_size: int,
                   desc: str) -> list[float]:
    nll, _ = sequence_nll(model, examples, batch_size, pad_token_id, chunk_size, desc=desc)
    return [-value for value in nll]


def with_stderr(samples: dict, names: tuple[str, ...]) -> dict:
    """lm-eval's metric values and, for per-item means, their standard errors."""
    out = {}
    for name in names:
        out[name] = metric_registry.value(name, samples)
        if metric_registry.METRICS[name].binary:
            out[f"{name}_stderr"] = metric_registry.standard_error(samples[name])
    return out


def choice_loglikelihoods(task: TaskSpec, items: list[tuple[dict, str]], model, encoder: Encoder, batch_size, pad,
                          chunk) -> tuple[list, int]:
    """Each question's choice loglikelihoods. The context is encoded once per question and its
    choices scored together after it (`shared_context_nll`); a question that lm-eval would
    truncate, or that outgrows the model's sliding window, is scored one request at a time."""
    groups, fallback = [], {}
    window = getattr(model.config, "sliding_window", None) or math.inf
    for index, (doc, context) in enumerate(items):
        pairs = [encoder.pair(context, task.target_delimiter + c) for c in task.choices(doc)]
        context, continuations = pairs[0][0], [continuation for _, continuation in pairs]
        longest = len(context) + max(len(c) for c in continuations)
        if longest > encoder.max_length + 1 or len(context) + sum(map(len, continuations)) > window:
            fallback[index] = [encoder.example(*pair) for pair in pairs]
        groups.append((context, continuations))
    packed = [i for i in range(len(groups)) if i not in fallback]
    scores = dict(zip(packed, shared_context_nll(model, [groups[i] for i in packed], batch_size, pad, chunk,
                                                 desc=task.name)))
    for index, requests in fallback.items():
        scores[index] = [-ll for ll in loglikelihoods(model, requests, batch_size, pad, chunk, task.name)]
    tokens = sum(len(context) + sum(map(len, continuations)) for context, continuations in groups)
    return [[-nll for nll in scores[i]] for i in range(len(groups))], tokens


def score_multiple_choice(task: TaskSpec, items: list[tuple[dict, str]], model, encoder: Encoder, batch_size, pad,
                          chunk):
    lls, tokens = choice_loglikelihoods(task, items, model, encoder, batch_size, pad, chunk)
    samples = {"acc": [], "acc_norm": []}
    for (doc, _), scores in zip(items, lls):
        choices, gold = task.choices(doc), task.gold(doc)
        normed = [s / len(c) for s, c in zip(scores, choices)]
        samples["acc"].append(float(max(range(len(scores)), key=scores.__getitem__) == gold))
        samples["acc_norm"].append(float(max(range(len(normed)), key=normed.__getitem__) == gold))
    return with_stderr(samples, ("acc", "acc_norm")), samples, tokens


def score_loglikelihood(task: TaskSpec, items: list[tuple[dict, str]], model, encoder: Encoder, batch_size, pad,
                        chunk):
    requests = [encoder.example(*encoder.pair(context, task.target_delimiter + str(task.resolve("doc_to_target", doc))))
                for doc, context in items]
    samples = {"nll": [-ll for ll in loglikelihoods(model, requests, batch_size, pad, chunk, task.name)]}
    return with_stderr(samples, ("perplexity",)), samples, sum(len(r.input_ids) for r in requests)


def score_rolling(task: TaskSpec, items: list[tuple[dict, str]], model, encoder: Encoder, batch_size, pad, chunk):
    texts = [str(task.resolve("doc_to_target", doc)) for doc, _ in items]
    windows, owner = [], []
    for index, text in enumerate(texts):
        for window in encoder.rolling_windows(text):
            windows.append(window)
            owner.append(index)
    nll = [-ll for ll in loglikelihoods(model, windows, batch_size, pad, chunk, task.name)]
    samples = metric_registry.text_samples(nll, owner, texts)
    metrics = with_stderr(samples, ("word_perplexity", "byte_perplexity", "bits_per_byte"))
    return metrics, samples, sum(len(w.input_ids) for w in windows)


def exact_match_options(task: TaskSpec) -> dict:
    """lm-eval's exact_match options from metric_list (ignore_case, ignore_punctuation, regexes_to_ignore)."""
    for entry in task.raw.get("metric_list") or []:
        if isinstance(entry, dict) and entry.get("metric") == "exact_match":
            return {k: entry[k] for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore") if k in entry}
    return {}


def normalise(text: str, options: dict) -> str:
    for pattern in options.get("regexes_to_ignore", []):
        text = re.sub(pattern, "", text)
    if options.get("ignore_case"):
        text = text.lower()
    if options.get("ignore_punctuation"):
        text = text.translate(str.maketrans("", "", string.punctuation))
    return text


def generate_greedy(model, tokenizer, encoder: Encoder, context: str, until: list[str], max_new_tokens: int) -> str:
    """lm-eval's generate_until for one context: greedy, cut at the first stop string."""
    prompt = encoder.encode(context)[-encoder.max_length:]
    ids = greedy_continuations(model, [prompt], max_new_tokens, 1, tokenizer.pad_token_id, tokenizer, until)[0]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for stop in until:  # cut at the first stop string, as lm-eval does
        text = text.split(stop)[0]
    return text


def score_generate_until(task: TaskSpec, items: list[tuple[dict, str]], model, encoder: Encoder, batch_size, pad,
                         chunk) -> tuple[dict, int]:
    kwargs = task.generation_kwargs
    until = kwargs.get("until", [task.fewshot_delimiter])
    until = [until] if isinstance(until, str) else list(until)
    max_new = int(kwargs.get("max_gen_toks", 256))
    options = exact_match_options(task)
    matches, tokens = [], 0
    model.eval()
    for doc, context in tqdm(items, desc=task.name, leave=False):
        prediction = generate_greedy(model, encoder.tokenizer, encoder, context, until, max_new)
        target = str(task.resolve("doc_to_target", doc))
        matches.append(float(normalise(prediction, options) == normalise(target, options)))
        tokens += len(encoder.tokenizer(prediction, add_special_tokens=False)["input_ids"])
    samples = {"exact_match": matches}
    return with_stderr(samples, ("exact_match",)), samples, tokens


SCORERS = {"multiple_choice": score_multiple_choice, "loglikelihood": score_loglikelihood,
           "loglikelihood_rolling": score_rolling, "generate_until": score_generate_until}


def document_contexts(task: TaskSpec) -> list[str]:
    """Every document's prompt, drawn over the whole task in document order (few-shot examples come
    from one seeded sampler), so an item's prompt does not depend on which items are scored."""
    if task.output_type == "loglikelihood_rolling":
        return [""] * len(task.docs)
    return [task.context(doc, index) for index, doc in enumerate(task.docs)]


def run_task(task: TaskSpec, model, tokenizer, bos_token_id, max_length: int, batch_size: int, pad_token_id: int,
             chunk_size: int, indices: list[int] | None = None) -> tuple[dict, dict]:
    """lm-eval's results entry for one task ("<metric>,none" keys, plus tokens/s of scoring) and the
    per-item samples of the documents at `indices` (default: all), in that order."""
    scorer = SCORERS[task.output_type]
    encoder = Encoder(tokenizer, bos_token_id, max_length)
    contexts = document_contexts(task)
    indices = range(len(task.docs)) if indices is None else indices
    items = [(task.docs[i], contexts[i]) for i in indices]
    started = time.time()
    metrics, samples, tokens = scorer(task, items, model, encoder, batch_size, pad_token_id, chunk_size)
    seconds = time.time() - started
    entry = {"alias": task.name}
    for name, value in metrics.items():
        entry[f"{name},none"] = value
    entry["tokens_per_second"] = tokens / seconds if seconds > 0 else math.nan
    entry["seconds"] = round(seconds, 2)
    return entry, samples

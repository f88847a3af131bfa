"""Greedy decoding for evaluation: the held-out answers and lm-eval's generate_until tasks."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def greedy_continuations(model, prompts: list[list[int]], max_new_tokens: int, batch_size: int, pad_token_id: int,
                         tokenizer=None, stop_strings: list[str] | None = None,
                         desc: str = "greedy answers") -> list[list[int]]:
    """Greedy new tokens after each prompt (token ids), in left-padded batches.

    With `stop_strings` (and the `tokenizer` to read them), a row stops once its decoded new
    text holds one of them: transformers' own stop_strings needs a BPE-like vocabulary, and
    decoding works with any tokenizer.
    """
    from transformers import StoppingCriteria, StoppingCriteriaList

    device = next(model.parameters()).device
    model.eval()
    out_ids = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, leave=False, disable=len(prompts) <= batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(ids) for ids in batch)

        class UntilSeen(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.tensor([any(s in tokenizer.decode(row[width:], skip_special_tokens=True)
                                         for s in stop_strings) for row in input_ids], device=input_ids.device)

        input_ids = torch.tensor([[pad_token_id] * (width - len(ids)) + ids for ids in batch], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
        stopping = StoppingCriteriaList([UntilSeen()]) if stop_strings else None
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad_token_id,
                                 stopping_criteria=stopping)
        out_ids += [row.tolist() for row in out[:, width:]]
    return out_ids

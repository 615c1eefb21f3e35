"""Batched decoding whose batch shrinks as its rows finish.

Hugging Face `generate` keeps a finished row in the batch until the longest one ends, feeding it padding: with
short answers beside long ones (a benchmark batch's answers range from a 2-token "yes" to the token limit) most
of a batch's decoding steps compute rows whose answer is already complete. `decode_dropping_finished` is the
decoding loop `generate` runs instead (its documented `custom_generate=<callable>` hook: `generate` still merges
the generation config, builds the logits processors and stopping criteria, the attention mask, position ids and
KV cache, so all of that stays transformers' own); after each step it removes the rows that stopped, from the
inputs and from every layer of the KV cache (`Cache.batch_select_indices`), so the next forward sees live rows only.

What each row generates is what `generate`'s own loop (`GenerationMixin._sample`) gives it: a row's logits do not
depend on the other rows (left padding is masked, positions come from the row's own mask), the logits processors
and stopping criteria act row by row, and greedy picks each row's argmax (tests/model/test_decoding.py compares
the ids with transformers' loop and with each row decoded alone; bench/eval_batched_vs_loop.py the answers on
real benchmarks). Sampling draws from the full batch's width, finished rows included, so a seeded run draws the
same random numbers for every row as transformers' loop does (`sample_full_width`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import Cache, GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList

# `on_tokens(rows, tokens)`: after each step, the batch rows (indices into the original batch) still generating
# and the token each of them just got; a row's last token is the one that finished it.
OnTokens = Callable[[list[int], list[int]], None]


def decode_dropping_finished(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    on_tokens: OnTokens | None = None,
    **model_kwargs: Any,
) -> list[list[int]]:
    """Greedy or sampled decoding of a left-padded batch; returns each row's generated ids (the token that
    stopped it included, no padding after it). For `model.generate(..., custom_generate=decode_dropping_finished)`.

    `input_ids` [B, L] may extend a KV cache that already holds their first positions (a shared prompt prefix
    prefilled once): only the uncached tail is run. `model_kwargs` are what `generate` prepared: `position_ids`
    [B, L], `attention_mask` [B, L] (None when nothing is padded), the `Cache`, and the rest (`use_cache`,
    `logits_to_keep`, `image_features`) is passed to the prefill; only the image inputs are left out afterwards.
    """
    if generation_config.num_beams != 1 or generation_config.num_return_sequences != 1:
        raise ValueError("decode_dropping_finished decodes one sequence per row: num_beams and num_return_sequences must be 1")
    cache = next((value for value in model_kwargs.values() if isinstance(value, Cache)), None)
    if cache is None:
        raise ValueError("decode_dropping_finished needs a KV cache (use_cache=True)")
    attention_mask = model_kwargs.pop("attention_mask", None)  # [B, L] or None
    position_ids = model_kwargs.pop("position_ids")  # [B, L]
    image_inputs = {name: model_kwargs.pop(name) for name in ("image_features", "pixel_values") if name in model_kwargs}
    cached = cache.get_seq_length()
    outputs = model(
        input_ids=input_ids[:, cached:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, cached:],
        **image_inputs,
        **model_kwargs,
    )
    batch_size = input_ids.shape[0]
    rows = torch.arange(batch_size, device=input_ids.device)  # [n] the original row of each live row
    sequences = input_ids  # [n, L + t] prompt and generated ids of the live rows, as processors expect
    positions = position_ids[:, -1:]  # [n, 1] position of each live row's last token
    generated: list[list[int]] = [[] for _ in range(batch_size)]
    while True:
        logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32)  # [n, V]
        del outputs  # the prefill's logits can be large: free them before the next forward
        scores = logits_processor(sequences, logits)
        if generation_config.do_sample:
            tokens = sample_full_width(torch.softmax(scores, dim=-1), rows, batch_size)
        else:
            tokens = scores.argmax(dim=-1)  # [n]
        sequences = torch.cat([sequences, tokens[:, None]], dim=-1)
        finished = stopping_criteria(sequences, None)  # [n] bool
        live_rows, new_tokens = rows.tolist(), tokens.tolist()
        for row, token in zip(live_rows, new_tokens, strict=True):
            generated[row].append(token)
        if on_tokens is not None:
            on_tokens(live_rows, new_tokens)
        if bool(finished.all()):
            return generated
        if bool(finished.any()):
            keep = (~finished).nonzero().squeeze(1)  # [n'] positions of the rows still generating
            rows, sequences, tokens, positions = rows[keep], sequences[keep], tokens[keep], positions[keep]
            attention_mask = attention_mask[keep] if attention_mask is not None else None
            cache.batch_select_indices(keep)  # every layer's K/V: [n, ...] -> [n', ...]
        positions = positions + 1
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=-1)  # [n, L + t + 1]
        outputs = model(input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=positions, **model_kwargs)


def sample_full_width(probs: torch.Tensor, rows: torch.Tensor, batch_size: int) -> torch.Tensor:
    """One token per live row from `probs` [n, V], drawn as `torch.multinomial` would draw it for the whole
    batch [batch_size, V] with each live row at its original index (`rows` [n]).

    `multinomial` with one sample takes the argmax of `probs / q`, `q` ~ Exp(1) drawn for every entry of its
    input in order, whatever the probabilities are: the same seed gives a row the same draw only if the input
    has the same shape and the row the same place in it. Finished rows get a stand-in distribution (all on
    token 0), as `generate` gave them one (the padding token's); their draws are discarded. So sampling still
    draws batch_size x V numbers a step, as transformers' loop does; only the forward shrinks.
    """
    if probs.shape[0] == batch_size:
        return torch.multinomial(probs, num_samples=1).squeeze(1)
    full = probs.new_zeros(batch_size, probs.shape[1])
    full[:, 0] = 1.0
    full[rows] = probs
    return torch.multinomial(full, num_samples=1).squeeze(1)[rows]

"""Decoding that drops finished rows (`llama3med.model.decoding`): every row's ids equal those of transformers'
own `generate` loop on the same inputs and of the row answered alone, and each forward sees only live rows.

The tiny model rarely emits its end-of-turn token, so each test makes rows end where it wants them to: it runs
the batch once to its token limit, then declares end-of-turn some of the ids those free-running answers contain
(the model's `generation_config.eos_token_id`, which `generate`'s stopping criteria and `Llama3Med` read).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from llama3med.api import ChatRequest, GenerationSettings, Llama3Med
from llama3med.model.decoding import decode_dropping_finished

MAX_NEW_TOKENS = 12
QUESTIONS = [
    "Is there a nodule?",
    "Which organ is shown?",
    "Is this a normal study of the chest?",
    "Why?",
    "Where is the lesion?",
    "How many?",
]


def random_image(seed: int, size: tuple[int, int] = (40, 50)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8))


def batch(kind: str) -> list[ChatRequest]:
    """Six questions: on three images (rows share image prefixes), on an image each, or without images."""
    shared = [random_image(1), random_image(2, (64, 48)), random_image(3, (30, 70))]
    images = {
        "shared image prefix": [shared[i] for i in (0, 1, 0, 2, 1, 0)],
        "an image per row": [random_image(10 + row) for row in range(len(QUESTIONS))],
        "text only": [None] * len(QUESTIONS),
    }[kind]
    return [ChatRequest(image, [{"role": "user", "content": q}]) for image, q in zip(images, QUESTIONS, strict=True)]


@pytest.fixture(scope="module")
def api(tiny_model_dir: Path) -> Llama3Med:
    return Llama3Med.from_pretrained(tiny_model_dir)


@contextmanager
def end_of_turn(api: Llama3Med, eos: set[int]) -> Iterator[None]:
    """Make `eos` end-of-turn ids too, for the duration."""
    config = api.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = sorted(eos | api._eos_ids())
    try:
        yield
    finally:
        config.eos_token_id = saved


def decode(api: Llama3Med, requests: Sequence[ChatRequest], seed: int | None = None, **settings: Any) -> tuple[list[list[int]], list[int]]:
    """(each row's generated ids, rows in each model forward) with `decode_dropping_finished`, as `generate` runs it."""
    kwargs = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, **settings).generate_kwargs(api.processor.tokenizer)
    forward_rows: list[int] = []
    with torch.inference_mode():
        inputs = api.generation_inputs(requests, api.prompt_sequences(requests))  # shared prefixes prefilled here
        hook = api.model.register_forward_pre_hook(
            lambda _module, _args, kwargs: forward_rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
        )
        try:
            if seed is not None:
                torch.manual_seed(seed)
            generated = api.model.generate(**inputs, **kwargs, custom_generate=decode_dropping_finished)
        finally:
            hook.remove()
    return generated, forward_rows


def hf_generate(api: Llama3Med, requests: Sequence[ChatRequest], seed: int | None = None, **settings: Any) -> list[list[int]]:
    """Each row's ids from transformers' own loop, which keeps finished rows in the batch and pads them: the
    padding after a row's last token is cut (the tiny model's answers never end in its padding id)."""
    kwargs = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, **settings).generate_kwargs(api.processor.tokenizer)
    if "stopping_criteria" in kwargs:  # transformers' own route to stop strings
        kwargs.pop("stopping_criteria")
        kwargs.update(stop_strings=settings["stop"], tokenizer=api.processor.tokenizer)
    with torch.inference_mode():
        inputs = api.generation_inputs(requests, api.prompt_sequences(requests))
        if seed is not None:
            torch.manual_seed(seed)
        output = api.model.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1]:].tolist()
    pad = api.processor.tokenizer.pad_token_id
    return [ids[: max((i + 1 for i, token in enumerate(ids) if token != pad), default=0)] for ids in output]


def end_steps(runs: Sequence[Sequence[int]], eos: set[int]) -> list[int]:
    """How many tokens each free-running answer in `runs` has once `eos` ends it."""
    return [next((i + 1 for i, token in enumerate(run) if token in eos), len(run)) for run in runs]


def spreading_eos(runs: Sequence[Sequence[int]]) -> set[int]:
    """End-of-turn ids, from the answers themselves, that end the rows after as many different numbers of tokens
    as they can while one row still runs to the token limit (chosen greedily, ties to the lower id)."""

    def spread(eos: set[int]) -> int:
        steps = end_steps(runs, eos)
        return len(set(steps)) if max(steps) == MAX_NEW_TOKENS else 0

    eos: set[int] = set()
    candidates = sorted({token for run in runs for token in run})
    while True:
        best = max(candidates, key=lambda token: spread(eos | {token}))
        if spread(eos | {best}) <= spread(eos):
            return eos
        eos.add(best)


def expected_forward_rows(generated: Sequence[Sequence[int]]) -> list[int]:
    """The prefill sees every row; the forward for token k + 1 sees the rows that have not ended by token k."""
    return [len(generated)] + [sum(len(g) > k for g in generated) for k in range(1, max(map(len, generated)))]


@pytest.mark.parametrize("kind", ["shared image prefix", "an image per row", "text only"])
def test_rows_leave_the_batch_as_they_end_and_keep_their_ids(api: Llama3Med, kind: str) -> None:
    requests = batch(kind)
    free, _ = decode(api, requests)
    eos = spreading_eos(free)
    with end_of_turn(api, eos):
        generated, forward_rows = decode(api, requests)
        lengths = [len(ids) for ids in generated]
        assert lengths == end_steps(free, eos) and len(set(lengths)) >= 3 and min(lengths) <= 3, lengths
        assert generated == hf_generate(api, requests)
        assert generated == [decode(api, [r])[0][0] for r in requests]  # the one-question-at-a-time loop
    assert forward_rows == expected_forward_rows(generated)
    assert forward_rows[0] == len(requests) and forward_rows[-1] < len(requests)
    assert sum(forward_rows) < len(requests) * MAX_NEW_TOKENS  # what transformers' loop computes


def test_answers_streamed_pieces_and_finish_reasons_match_one_question_at_a_time(api: Llama3Med) -> None:
    requests = batch("shared image prefix")
    free, _ = decode(api, requests)
    eos = spreading_eos(free)
    pieces: dict[int, list[str]] = {}
    with end_of_turn(api, eos):
        results = api.generate(requests, max_new_tokens=MAX_NEW_TOKENS, on_text=lambda row, p: pieces.setdefault(row, []).append(p))
        alone = [api.generate([r], max_new_tokens=MAX_NEW_TOKENS)[0] for r in requests]
    assert results == alone
    assert [r.completion_tokens for r in results] == end_steps(free, eos)
    assert [r.finish_reason for r in results] == ["length" if n == MAX_NEW_TOKENS else "stop" for n in end_steps(free, eos)]
    assert ["".join(pieces.get(row, [])) for row in range(len(requests))] == [r.text for r in results]


def test_every_row_ending_at_the_first_step_takes_only_the_prefill(api: Llama3Med) -> None:
    requests = batch("an image per row")
    free, _ = decode(api, requests)
    with end_of_turn(api, {run[0] for run in free}):
        generated, forward_rows = decode(api, requests)
        assert generated == [run[:1] for run in free] == hf_generate(api, requests)
    assert forward_rows == [len(requests)]


def test_rows_ending_together_stay_in_one_batch_to_the_end(api: Llama3Med) -> None:
    requests = batch("shared image prefix")
    free, _ = decode(api, requests)
    together = [(k, {run[k - 1] for run in free}) for k in range(2, MAX_NEW_TOKENS)]
    step, eos = next(((k, eos) for k, eos in together if end_steps(free, eos) == [k] * len(free)), (None, set()))
    assert step is not None, f"no step ends every free answer at once: {free}"
    with end_of_turn(api, eos):
        generated, forward_rows = decode(api, requests)
        assert generated == [run[:step] for run in free] == hf_generate(api, requests)
    assert forward_rows == [len(requests)] * step


def test_rows_reaching_max_new_tokens_run_full_width(api: Llama3Med) -> None:
    requests = batch("text only")
    generated, forward_rows = decode(api, requests)  # the model's own end-of-turn id does not come up here
    assert [len(ids) for ids in generated] == [MAX_NEW_TOKENS] * len(requests)
    assert generated == hf_generate(api, requests)
    assert forward_rows == [len(requests)] * MAX_NEW_TOKENS
    assert api.generate(requests[:1], max_new_tokens=MAX_NEW_TOKENS)[0].finish_reason == "length"


def test_stop_strings_end_rows_as_transformers_does(api: Llama3Med) -> None:
    requests = batch("shared image prefix")
    free, _ = decode(api, requests)
    # A stop string: the text of the free answers' most common token after their first.
    tokens = [token for run in free for token in run[1:]]
    stop = api.processor.decode([max(set(tokens), key=lambda t: (tokens.count(t), -t))])
    generated, forward_rows = decode(api, requests, stop=[stop])
    assert 1 < len({len(ids) for ids in generated}) and forward_rows[-1] < len(requests)
    assert generated == hf_generate(api, requests, stop=[stop])
    assert forward_rows == expected_forward_rows(generated)


@pytest.mark.parametrize("seed", [0, 1])
def test_seeded_sampling_draws_what_transformers_draws(api: Llama3Med, seed: int) -> None:
    requests = batch("an image per row")
    sampling = {"temperature": 1.5, "top_p": 0.95, "seed": seed}
    free = hf_generate(api, requests, **sampling)
    eos = spreading_eos(free)
    with end_of_turn(api, eos):
        generated, forward_rows = decode(api, requests, **sampling)
        assert len({len(ids) for ids in generated}) >= 3 and forward_rows[-1] < len(requests)
        assert generated == hf_generate(api, requests, **sampling)
        assert [r.text for r in api.generate(requests, max_new_tokens=MAX_NEW_TOKENS, **sampling)] == [
            api.processor.decode(ids, skip_special_tokens=True).strip() for ids in generated
        ]


def test_beam_search_is_refused_not_run_as_greedy(api: Llama3Med) -> None:
    requests = batch("text only")[:2]
    with torch.inference_mode(), pytest.raises(ValueError, match="num_beams"):
        inputs = api.generation_inputs(requests, api.prompt_sequences(requests))
        api.model.generate(**inputs, max_new_tokens=4, num_beams=2, custom_generate=decode_dropping_finished)

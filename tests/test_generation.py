"""`llama3med.generation.GenerationSettings`: the one decoding-settings type of the API, evaluation and the CLI,
and its one translation into transformers' `generate` keyword arguments."""

from __future__ import annotations

import pytest
from transformers import StopStringCriteria

from llama3med.eval.protocols import PROTOCOLS
from llama3med.generation import GenerationSettings, generation_settings
from llama3med.model.tokenization import build_tiny_tokenizer, prepare_tokenizer


def test_greedy_settings_turn_sampling_off() -> None:
    kwargs = GenerationSettings(max_new_tokens=7, top_p=0.5, seed=3).generate_kwargs(prepare_tokenizer(build_tiny_tokenizer()))
    assert kwargs == {"max_new_tokens": 7, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def test_sampled_settings_and_stop_strings() -> None:
    tokenizer = prepare_tokenizer(build_tiny_tokenizer())
    kwargs = GenerationSettings(max_new_tokens=5, temperature=0.7, top_p=0.9, stop=["\n\n", "Q:"]).generate_kwargs(tokenizer)
    criteria = kwargs.pop("stopping_criteria")
    assert kwargs == {"max_new_tokens": 5, "do_sample": True, "temperature": 0.7, "top_p": 0.9}
    assert len(criteria) == 1 and isinstance(criteria[0], StopStringCriteria)


def test_report_fields_stay_the_four_evaluation_records() -> None:
    # Evaluation reports (and resumed runs' settings checks) record exactly these fields, in this order.
    settings = GenerationSettings(max_new_tokens=64, temperature=0.0, top_p=1.0, seed=0)
    assert list(settings.as_dict().items()) == [("max_new_tokens", 64), ("temperature", 0.0), ("top_p", 1.0), ("seed", 0)]
    assert GenerationSettings(stop=["x"]).as_dict()["stop"] == ["x"]
    assert PROTOCOLS["ours"].decoding == settings


def test_settings_or_keywords_not_both() -> None:
    given = GenerationSettings(max_new_tokens=3)
    assert generation_settings(given, {}) is given
    assert generation_settings(None, {"max_new_tokens": 4, "seed": 1}) == GenerationSettings(max_new_tokens=4, seed=1)
    with pytest.raises(TypeError, match="not both"):
        generation_settings(given, {"temperature": 0.5})
    with pytest.raises(TypeError):
        generation_settings(None, {"max_tokens": 4})  # a misspelt field is refused, not ignored


@pytest.mark.parametrize("temperature", [0.0, 1e-320, 5e-324, 9.9e-6])
def test_a_temperature_below_the_sampling_minimum_is_greedy(temperature: float) -> None:
    # 1e-320 divides logits into infinities and the sampler refuses the NaN distribution: greedy is its limit
    settings = GenerationSettings(temperature=temperature)
    assert settings.temperature == 0.0 and settings.generate_kwargs(prepare_tokenizer(build_tiny_tokenizer()))["do_sample"] is False
    assert GenerationSettings(temperature=1e-5).temperature == 1e-5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"temperature": float("inf")}, "temperature must be a finite number"),
        ({"temperature": -0.1}, "temperature must be a finite number >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": float("nan")}, "top_p must be in"),
        ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
    ],
)
def test_impossible_settings_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationSettings(**fields)

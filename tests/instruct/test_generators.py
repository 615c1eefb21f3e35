"""Generator specs (inline and from a file) and the weighted, seeded draw (`llama3med.instruct.generators`)."""

from __future__ import annotations

from collections import Counter

import pytest

from llama3med.instruct.generators import (
    GeneratorSpec,
    GeneratorSpecError,
    choose_generator,
    parse_generator_option,
    resolve_generators,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("anthropic:claude-3-opus-20240229", ("anthropic:claude-3-opus-20240229", "anthropic", None, 1.0, False)),
        ("anthropic:claude-3-opus-20240229:2.5", ("anthropic:claude-3-opus-20240229", "anthropic", None, 2.5, False)),
        ("anthropic-batch:claude-3-opus-20240229:3", ("anthropic:claude-3-opus-20240229", "anthropic", None, 3.0, True)),
        ("openai:llama-3-70b@http://host:8000/v1", ("openai:llama-3-70b", "openai", "http://host:8000/v1", 1.0, False)),
        ("openai:llama-3-70b@http://host:8000/v1:4", ("openai:llama-3-70b", "openai", "http://host:8000/v1", 4.0, False)),
        ("openai:llama-3-70b@http://host:8000", ("openai:llama-3-70b", "openai", "http://host:8000", 1.0, False)),
        ("openai:llama3:70b@http://h/v1", ("openai:llama3:70b", "openai", "http://h/v1", 1.0, False)),
    ],
)
def test_inline_spec_syntax(text, expected):
    spec = parse_generator_option(text, {})
    assert (spec.name, spec.provider, spec.base_url, spec.weight, spec.batch) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gemini:pro", "PROVIDER one of anthropic, anthropic-batch, openai"),
        ("openai:", "missing model name"),
        ("openai:m@ftp://host/v1", "must start with http:// or https://"),
        ("anthropic:m:0", "weight must be positive"),
    ],
)
def test_bad_specs_are_explained(text, message):
    with pytest.raises(GeneratorSpecError, match=message):
        parse_generator_option(text, {})


def test_generators_file_names_weights_and_defaults(tmp_path):
    path = tmp_path / "generators.yaml"
    path.write_text(
        "generators:\n"
        "  claude-opus:\n    provider: anthropic\n    model: claude-3-opus-20240229\n    weight: 1\n"
        "  llama3-70b:\n    provider: openai\n    model: meta-llama/Meta-Llama-3-70B-Instruct\n"
        "    base_url: http://gpu:8000/v1\n    api_key_env: VLLM_KEY\n    concurrency: 32\n"
    )
    specs = resolve_generators([], path, {"concurrency": 4, "timeout": 60.0})
    assert [(s.name, s.concurrency, s.timeout, s.key_env) for s in specs] == [
        ("claude-opus", 4, 60.0, "ANTHROPIC_API_KEY"),
        ("llama3-70b", 32, 60.0, "VLLM_KEY"),
    ]
    picked = resolve_generators(["llama3-70b:3", "anthropic:claude-3-haiku-20240307"], path)
    assert [(s.name, s.weight) for s in picked] == [("llama3-70b", 3.0), ("anthropic:claude-3-haiku-20240307", 1.0)]
    path.write_text("generators:\n  x:\n    provider: openai\n    model: m\n    colour: red\n")
    with pytest.raises(GeneratorSpecError, match=r"generator 'x': unknown field\(s\) \['colour'\]"):
        resolve_generators([], path)


def test_same_name_twice_and_batch_for_openai_are_refused(tmp_path):
    with pytest.raises(GeneratorSpecError, match="used twice: openai:m"):
        resolve_generators(["openai:m@http://a/v1", "openai:m@http://b/v1"], None)
    path = tmp_path / "g.yaml"
    path.write_text("generators:\n  x:\n    provider: openai\n    model: m\n    batch: true\n")
    with pytest.raises(GeneratorSpecError, match="batch mode exists for anthropic only"):
        resolve_generators([], path)


def test_weighted_draw_is_deterministic_and_follows_weights():
    specs = [GeneratorSpec("claude", "anthropic", "c", weight=1.0), GeneratorSpec("llama", "openai", "l", weight=3.0)]
    draws = [choose_generator(specs, f"rec-{i}", seed=0).name for i in range(4000)]
    share = Counter(draws)["llama"] / len(draws)
    assert 0.72 < share < 0.78
    assert draws == [choose_generator(specs, f"rec-{i}", seed=0).name for i in range(4000)]
    assert draws != [choose_generator(specs, f"rec-{i}", seed=1).name for i in range(4000)]

"""Generator specs: which provider and model writes a record's conversations, and with what weight.

On the command line (`--generator`, repeatable):

    PROVIDER:MODEL[@BASE_URL][:WEIGHT]   an inline generator, named PROVIDER:MODEL
    NAME[:WEIGHT]                        a generator defined in the `--generators-file` YAML

PROVIDER is `anthropic` (Messages API), `anthropic-batch` (the same through Message Batches) or
`openai` (any OpenAI-compatible server; give its BASE_URL, e.g. `http://gpu-host:8000/v1`). WEIGHT is a
positive number (default 1). A trailing `:NUMBER` after a URL is read as a weight only when the URL has
a path, so `openai:m@http://host:8000` means port 8000 and `openai:m@http://host:8000/v1:3` weight 3.

Each record goes to one generator, drawn by weight from a hash of (seed, record id): the same seed gives
the same assignment on every run and machine, whatever the order or the concurrency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from llama3med.instruct.prompting import stable_fraction

PROVIDERS = ("anthropic", "anthropic-batch", "openai")
DEFAULT_API_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
_WEIGHT = re.compile(r"^(?P<head>.+):(?P<weight>\d+(?:\.\d*)?|\.\d+)$")


class GeneratorSpecError(ValueError):
    """A generator spec or generators file that cannot be used; says which one and why."""


@dataclass(frozen=True)
class GeneratorSpec:
    """One configured generator. `name` is the key stored with every output line."""

    name: str
    provider: str  # "anthropic" or "openai"
    model: str
    base_url: str | None = None
    api_key_env: str | None = None  # None: ANTHROPIC_API_KEY / OPENAI_API_KEY
    weight: float = 1.0
    batch: bool = False  # Anthropic Message Batches instead of one request per call
    max_tokens: int = 1024
    temperature: float | None = None  # None: the provider's default
    concurrency: int = 8
    timeout: float = 120.0

    @property
    def key_env(self) -> str:
        """The environment variable holding this generator's API key."""
        return self.api_key_env or DEFAULT_API_KEY_ENV[self.provider]


def _split_weight(text: str) -> tuple[str, float | None]:
    match = _WEIGHT.match(text)
    if not match:
        return text, None
    head = match["head"]
    if "@" in head and not urlsplit(head.split("@", 1)[1]).path:
        return text, None  # `http://host:8000`: the number is the port
    return head, float(match["weight"])


def _check_weight(weight: float, spec: str) -> float:
    if not weight > 0:
        raise GeneratorSpecError(f"generator {spec!r}: weight must be positive, got {weight}")
    return weight


def _check_url(url: str, spec: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GeneratorSpecError(f"generator {spec!r}: base URL {url!r} must start with http:// or https://")
    return url


def parse_generator_option(
    text: str, named: dict[str, GeneratorSpec], defaults: dict[str, Any] | None = None
) -> GeneratorSpec:
    """Parse one `--generator` value (see the module docstring); `defaults` fill unset fields of inline specs."""
    head, weight = _split_weight(text.strip())
    if head in named:
        spec = named[head]
        return replace(spec, weight=_check_weight(weight, text)) if weight is not None else spec
    provider, sep, rest = head.partition(":")
    if not sep or provider not in PROVIDERS:
        known = f"; defined in the generators file: {', '.join(named)}" if named else ""
        raise GeneratorSpecError(
            f"generator {text!r}: expected PROVIDER:MODEL[@BASE_URL][:WEIGHT] with PROVIDER one of "
            f"{', '.join(PROVIDERS)}, or a NAME from --generators-file{known}"
        )
    model, _, base_url = rest.partition("@")
    if not model:
        raise GeneratorSpecError(f"generator {text!r}: missing model name after {provider}:")
    batch = provider == "anthropic-batch"
    provider = "anthropic" if batch else provider
    return GeneratorSpec(
        name=f"{provider}:{model}",
        provider=provider,
        model=model,
        base_url=_check_url(base_url, text) if base_url else None,
        weight=_check_weight(weight if weight is not None else 1.0, text),
        batch=batch,
        **(defaults or {}),
    )


def load_generators_file(path: Path, defaults: dict[str, Any] | None = None) -> dict[str, GeneratorSpec]:
    """Read a YAML file `generators: {NAME: {provider, model, base_url, api_key_env, weight, ...}}`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise GeneratorSpecError(f"{path}: cannot read generators file: {error}") from None
    entries = data.get("generators") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise GeneratorSpecError(f"{path}: expected a non-empty mapping under 'generators:'")
    allowed = {f.name for f in fields(GeneratorSpec)} - {"name"}
    specs = {}
    for name, entry in entries.items():
        where = f"{path}: generator {name!r}"
        if not isinstance(entry, dict):
            raise GeneratorSpecError(f"{where}: expected a mapping")
        unknown = set(entry) - allowed
        if unknown:
            raise GeneratorSpecError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if entry.get("provider") not in ("anthropic", "openai"):
            raise GeneratorSpecError(f"{where}: provider must be 'anthropic' or 'openai'")
        if not isinstance(entry.get("model"), str) or not entry["model"]:
            raise GeneratorSpecError(f"{where}: missing 'model'")
        if entry.get("base_url"):
            _check_url(entry["base_url"], where)
        try:
            spec = GeneratorSpec(name=str(name), **{**(defaults or {}), **entry})
        except TypeError as error:
            raise GeneratorSpecError(f"{where}: {error}") from None
        _check_weight(spec.weight, where)
        specs[str(name)] = spec
    return specs


def resolve_generators(
    options: list[str], generators_file: Path | None, defaults: dict[str, Any] | None = None
) -> list[GeneratorSpec]:
    """The generators of a run: the `--generator` options, or every generator in the file if none."""
    named = load_generators_file(generators_file, defaults) if generators_file else {}
    specs = [parse_generator_option(option, named, defaults) for option in options] or list(named.values())
    if not specs:
        raise GeneratorSpecError("no generator: give --generator PROVIDER:MODEL or --generators-file FILE")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise GeneratorSpecError(
            f"generator name(s) used twice: {', '.join(duplicates)}; name them apart in a generators file"
        )
    for spec in specs:
        if spec.batch and spec.provider != "anthropic":
            raise GeneratorSpecError(f"generator {spec.name!r}: batch mode exists for anthropic only")
        if spec.concurrency < 1 or spec.max_tokens < 1 or spec.timeout <= 0:
            raise GeneratorSpecError(f"generator {spec.name!r}: concurrency, max_tokens and timeout must be positive")
    return specs


def choose_generator(specs: list[GeneratorSpec], record_id: str, seed: int) -> GeneratorSpec:
    """The generator for one record: a weighted draw fixed by (seed, record id)."""
    total = sum(spec.weight for spec in specs)
    point = stable_fraction(str(seed), record_id, "generator") * total
    for spec in specs:
        point -= spec.weight
        if point < 0:
            return spec
    return specs[-1]

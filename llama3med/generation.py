"""Decoding settings, one type for every interface: the Python API (`Llama3Med.generate`), evaluation (each
answerer's decoding, recorded in its report), the server's requests and the command line's options.

Pure data, so that importing it costs neither torch nor transformers (evaluation against an endpoint and the
CLI's option parsing need the settings, not the model); `generate_kwargs` imports transformers when called.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Below this a temperature divides logits into infinities (a NaN distribution, which sampling refuses): it is the
# limit of sampling, greedy decoding, and is decoded as temperature 0 (vLLM draws the line at the same place).
MIN_SAMPLING_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode an answer. `temperature=0` means greedy decoding (`top_p` and `seed` then change nothing);
    `stop` strings end an answer before them; `seed` seeds sampling (and is recorded by evaluation).

    A temperature below `MIN_SAMPLING_TEMPERATURE` is stored as 0 (greedy); a negative or non-finite temperature,
    a `top_p` outside (0, 1] or fewer than one new token is refused with ValueError."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (got {self.temperature}); 0 is greedy decoding")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.temperature < MIN_SAMPLING_TEMPERATURE:
            object.__setattr__(self, "temperature", 0.0)  # frozen: the normalised value is set once, here

    def as_dict(self) -> dict[str, Any]:
        """The settings as reports and batch keys record them; `stop` only when set, so an evaluation's
        `decoding` entry keeps its four fields (evaluation never sets stop strings)."""
        settings = asdict(self)
        if self.stop is None:
            del settings["stop"]
        return settings

    def generate_kwargs(self, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        """Keyword arguments for transformers' `generate`: the token budget, greedy or sampled decoding, and stop
        strings as the `StopStringCriteria` that `generate(stop_strings=..., tokenizer=...)` would build (with a
        `custom_generate` callable, transformers 5.x does not hand `tokenizer` on to the stopping criteria it
        builds). Seeding is the caller's, around its `generate` call."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop:
            from transformers import StoppingCriteriaList, StopStringCriteria

            kwargs.update(stopping_criteria=StoppingCriteriaList([StopStringCriteria(tokenizer, list(self.stop))]))
        return kwargs


def generation_settings(settings: GenerationSettings | None, overrides: dict[str, Any]) -> GenerationSettings:
    """`settings`, or settings built from keyword arguments (`max_new_tokens=...`, ...); not both."""
    if settings is None:
        return GenerationSettings(**overrides)
    if overrides:
        raise TypeError(f"give either settings or keyword arguments, not both (got settings and {sorted(overrides)})")
    return settings

"""Cost estimate before a run: prompt tokens measured with the Llama-3 tokenizer, reply tokens taken from
the few-shot examples (what the model is shown to imitate) or measured in an earlier run's output.

Llama-3's tokenizer is exact for Llama-3-70B and an approximation for Claude, whose tokenizer is not
public; after a run, `instruct stats` reports the providers' own counts.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.pricing import PriceTable
from llama3med.instruct.prompting import ChatRequest, PromptTemplate, build_request
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.store import load_contents

# Llama-3 chat template per message: <|start_header_id|>, role, <|end_header_id|>, "\n\n", <|eot_id|>.
TEMPLATE_TOKENS_PER_MESSAGE = 5

TokenCounter = Callable[[str], int]


def llama3_token_counter() -> TokenCounter:
    """Token counts with Meta's Llama-3 tokenizer (package `llama-models`, installed offline)."""
    try:
        from llama_models.llama3.tokenizer import Tokenizer
    except ImportError as error:
        raise RuntimeError(
            "the Llama-3 tokenizer is needed: pip install tiktoken && pip install --no-deps llama-models==0.3.0"
        ) from error
    tokenizer = Tokenizer.get_instance()
    return lambda text: len(tokenizer.encode(text, bos=False, eos=False))


def request_tokens(request: ChatRequest, count: TokenCounter) -> int:
    """Prompt tokens of one request as a Llama-3 chat (system + messages + begin-of-text)."""
    texts = [request.system, *(message["content"] for message in request.messages)]
    return 1 + sum(count(text) + TEMPLATE_TOKENS_PER_MESSAGE for text in texts)


@dataclass(frozen=True)
class KindEstimate:
    """Mean tokens per request of one kind."""

    kind: str
    requests: int
    input_tokens: float
    output_tokens: float
    output_source: str


def measured_output_tokens(out_dir: Path) -> dict[str, float]:
    """Mean reply tokens per kind reported by the providers in an earlier run's output folder."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    contents = load_contents(out_dir)
    for entry in contents.accepted + contents.rejected:
        if entry.get("usage"):
            by_kind[entry["kind"]].append(int(entry["usage"]["output_tokens"]))
    return {kind: statistics.fmean(values) for kind, values in by_kind.items()}


def estimate_kinds(
    records: list[CaptionRecord],
    templates: dict[str, PromptTemplate],
    count: TokenCounter,
    measured_output: dict[str, float] | None = None,
) -> list[KindEstimate]:
    """Mean prompt tokens over `records` and expected reply tokens, per kind."""
    estimates = []
    for kind, template in templates.items():
        prompts = [
            request_tokens(build_request(template, record, max_tokens=1, temperature=None), count) for record in records
        ]
        if measured_output and kind in measured_output:
            output, source = measured_output[kind], "measured"
        else:
            output = statistics.fmean(count(example.output) + 1 for example in template.examples)
            source = "few-shot examples"
        estimates.append(KindEstimate(kind, len(records), statistics.fmean(prompts), output, source))
    return estimates


def cost_for_records(
    estimates: list[KindEstimate], spec: GeneratorSpec, prices: PriceTable, records: int
) -> float | None:
    """US dollars for `records` records (every kind in `estimates`) all sent to `spec`; None without a price."""
    input_tokens = records * sum(e.input_tokens for e in estimates)
    output_tokens = records * sum(e.output_tokens for e in estimates)
    return prices.cost(spec.provider, spec.model, round(input_tokens), round(output_tokens), spec.batch)

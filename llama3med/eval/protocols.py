"""Named evaluation protocols: the prompts, decoding and token budget a figure was measured with.

A VQA score depends on the protocol as much as on the model (greedy vs sampled answers, a format instruction
vs the bare question), so every report names its protocol, and the published rows beside ours are marked
as measured under another one.

- `ours` (default): a format instruction per answer type (closed: "yes" or "no", or one of the offered
  options; open: a single word or phrase), greedy decoding, at most 64 new tokens.
- `llava-med`: LLaVA-Med's zero-shot VQA protocol (`llava/eval/model_vqa_med.py`): the bare question as the
  prompt, sampling at temperature 0.7, at most 1,024 new tokens, one answer per question. The image goes where
  the evaluated model's chat format puts it (LLaVA-Med's script appends its image tokens after the question;
  Llama3-Med models are trained with the image first), and LLaVA-Med's own conversation template is not
  applied: each model answers in its own chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from llama3med.eval.templates import PromptTemplates
from llama3med.generation import GenerationSettings


@dataclass(frozen=True)
class Protocol:
    """A named protocol: its prompt folder (packaged, under `llama3med/eval/prompts`), decoding and source."""

    name: str
    description: str
    prompts: str | None  # sub-folder of the packaged prompts; None = the packaged default prompts
    decoding: GenerationSettings
    reference: str

    def templates(self, override: str | Path | None = None) -> PromptTemplates:
        """The protocol's prompt templates, or those of `override` (a folder with closed.txt and open.txt)."""
        if override is not None:
            return PromptTemplates.load(override)
        folder = resources.files("llama3med.eval") / "prompts"
        return PromptTemplates.load(folder / self.prompts if self.prompts else folder)


PROTOCOLS: dict[str, Protocol] = {
    "ours": Protocol(
        name="ours",
        description="format instruction per answer type, greedy decoding, at most 64 new tokens",
        prompts=None,
        decoding=GenerationSettings(max_new_tokens=64, temperature=0.0, top_p=1.0, seed=0),
        reference="llama3med (docs/EVALUATION.md)",
    ),
    "llava-med": Protocol(
        name="llava-med",
        description="the bare question as the prompt, sampling at temperature 0.7, at most 1,024 new tokens",
        prompts="llava-med",
        decoding=GenerationSettings(max_new_tokens=1024, temperature=0.7, top_p=1.0, seed=0),
        reference="LLaVA-Med llava/eval/model_vqa_med.py (zero-shot VQA)",
    ),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`, with an error listing the known ones."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def protocol_settings(
    protocol: Protocol, decoding: GenerationSettings, templates: PromptTemplates, prompts_override: str | Path | None = None
) -> dict[str, Any]:
    """What a report records about the protocol: its name, description, reference, and every setting that was
    changed from it (decoding values given on the command line, another prompts folder)."""
    changed = {k: v for k, v in decoding.as_dict().items() if v != protocol.decoding.as_dict()[k]}
    if prompts_override is not None:
        changed["prompts"] = templates.source
    return {
        "name": protocol.name,
        "description": protocol.description,
        "reference": protocol.reference,
        "decoding": protocol.decoding.as_dict(),
        "changed": changed,
    }


def protocol_decoding(protocol: Protocol, **given: Any) -> GenerationSettings:
    """The protocol's decoding with the values given explicitly (not None) put in their place."""
    return replace(protocol.decoding, **{k: v for k, v in given.items() if v is not None})


def describe_protocol(decoding: GenerationSettings, templates: PromptTemplates) -> dict[str, Any]:
    """The report entry for a run made without naming a protocol (the Python API): the named protocol whose
    decoding and prompt texts it matches exactly, else a `custom` protocol that lists its settings."""
    for protocol in PROTOCOLS.values():
        if protocol.decoding == decoding and protocol.templates().texts == templates.texts:
            return protocol_settings(protocol, decoding, templates)
    return {
        "name": "custom",
        "description": "decoding and prompt templates as given (see decoding and prompts in report.json)",
        "reference": templates.source,
        "decoding": decoding.as_dict(),
        "changed": {},
    }

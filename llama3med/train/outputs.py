"""What a training run leaves in its output folder, and `merge` for LoRA outputs.

Every output model folder holds, beside the Hugging Face model (or LoRA adapter) and processor:
- `training_manifest.jsonl` (`llama3med.io.manifest`): one line per training image `{"source", "image",
  "image_sha256", "data_file"}`, including the images the starting model was trained on (read from its own
  manifest), for contamination checks;
- `data_report.json`: skipped records by reason with ids, truncated and dropped samples;
- `recipe.yaml`: the resolved recipe the run used;
- `run_info.json`: the seeds and what else a float result depends on (thread count, world size, device,
  library versions): a run repeated with the same recipe under the same `run_info` gives identical weights.

A LoRA output is a standard PEFT adapter folder: `adapter_config.json`'s `base_model_name_or_path` is the base
model folder (the recipe's model folder, or `base-model/` inside the output for a preset), so `ask`, `serve`,
`eval`, `Llama3Med.from_pretrained` and PEFT's `AutoPeftModel` load it directly; `merge` writes a plain folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from llama3med.io.files import atomic_write
from llama3med.io.jsonl import read_jsonl, write_jsonl
from llama3med.io.manifest import MANIFEST_FILE
from llama3med.train.data.dataset import TrainingSample

REPORT_FILE = "data_report.json"
RECIPE_FILE = "recipe.yaml"
RUN_INFO_FILE = "run_info.json"


def manifest_entries(samples: Sequence[TrainingSample], data_files: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """One entry per distinct (source, image) among the samples, in first-seen order; with `data_files`
    ({source label: data file path}) each entry also names its data file, which evaluation reads to tell
    which benchmarks (any split) the model was trained on."""
    entries: dict[tuple[str, str, str], None] = {}
    for sample in samples:
        conversation = sample.conversation
        if sample.image_sha256 is not None:
            entries[(conversation.source, conversation.image_relpath or "", sample.image_sha256)] = None
    files = data_files or {}
    return [
        {"source": s, "image": i, "image_sha256": h, **({"data_file": files[s]} if s in files else {})} for s, i, h in entries
    ]


def read_manifest(folder: str | Path | None) -> list[dict[str, str]]:
    """Entries of a model folder's manifest (none when the folder has no manifest or is not a folder)."""
    path = Path(folder) / MANIFEST_FILE if folder else None
    if path is None or not path.is_file():
        return []
    return [entry for _, entry in read_jsonl(path)]


def write_manifest(folder: Path, *entry_lists: Iterable[dict[str, str]]) -> int:
    """Write the de-duplicated union of the entry lists; returns the number of lines."""
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for entries in entry_lists:
        for entry in entries:
            seen.setdefault((entry["source"], entry["image"], entry["image_sha256"]), entry)
    write_jsonl(folder / MANIFEST_FILE, seen.values())
    return len(seen)


def run_info(seeds: dict[str, int], world_size: int, device: str) -> dict[str, Any]:
    """Seeds and the conditions a run's floating-point results depend on: sums are reduced in an order set
    by the intra-op thread count and the number of ranks, and kernels change between library versions."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for package in ("llama3med", "torch", "transformers", "accelerate", "peft"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "seeds": seeds,
        "torch_num_threads": torch.get_num_threads(),
        "world_size": world_size,
        "device": device,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "versions": versions,
    }


def write_run_files(
    folder: Path,
    recipe: dict[str, Any],
    report: dict[str, Any],
    manifests: Sequence[Iterable[dict[str, str]]],
    info: dict[str, Any],
) -> None:
    """Manifest, run info, data report and recipe next to a saved model."""
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, *manifests)
    atomic_write(folder / RUN_INFO_FILE, json.dumps(info, indent=2))
    atomic_write(folder / REPORT_FILE, json.dumps(report, indent=2))
    atomic_write(folder / RECIPE_FILE, yaml.safe_dump(recipe, sort_keys=False))


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Fold a LoRA adapter folder into the base model its `adapter_config.json` names and save a plain model
    folder (for tools that take no adapters: vLLM-style servers, `AutoModelForImageTextToText`)."""
    from llama3med.folders import ADAPTER_CONFIG_FILE, ModelFolderError, resolve_model_folder
    from llama3med.model.loading import load_model, load_processor

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    folder = resolve_model_folder(adapter_dir)
    if not folder.is_adapter:
        raise ModelFolderError(f"{adapter_dir} is not a LoRA adapter folder (no {ADAPTER_CONFIG_FILE}): it is a plain model folder already")
    load_model(folder).save_pretrained(out_dir)
    load_processor(folder).save_pretrained(out_dir)
    write_manifest(out_dir, read_manifest(adapter_dir))
    return out_dir

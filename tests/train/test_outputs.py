"""What a training run leaves beside its model (`llama3med.train.outputs`): the training manifest, the run info,
the data report and the resolved recipe. `merge` of a LoRA output is tested in test_lora.py."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from llama3med.io.manifest import MANIFEST_FILE
from llama3med.train.data.conversations import Conversation
from llama3med.train.data.dataset import TrainingSample
from llama3med.train.outputs import (
    RECIPE_FILE,
    REPORT_FILE,
    RUN_INFO_FILE,
    manifest_entries,
    read_manifest,
    run_info,
    write_manifest,
    write_run_files,
)

USER = ({"role": "user", "content": "<image>"},)


def test_training_manifest_records_each_entrys_data_file(tmp_path: Path) -> None:
    conversation = Conversation("slake/train:1", "slake/train", ({"role": "user", "content": "<image>"},), tmp_path / "a.png", "a.png")
    entries = manifest_entries([TrainingSample(conversation, "ab" * 32)], {"slake/train": "/data/slake/train.jsonl"})
    assert entries == [{"source": "slake/train", "image": "a.png", "image_sha256": "ab" * 32, "data_file": "/data/slake/train.jsonl"}]


def sample(source: str, image: str | None, sha: str | None, tmp_path: Path) -> TrainingSample:
    return TrainingSample(Conversation(f"{source}:{image}", source, USER, tmp_path / image if image else None, image), sha)


def test_manifest_entries_are_distinct_in_first_seen_order_without_text_only_samples(tmp_path: Path) -> None:
    samples = [sample("vqa", "b.png", "b" * 64, tmp_path), sample("vqa", "a.png", "a" * 64, tmp_path),
               sample("vqa", "b.png", "b" * 64, tmp_path), sample("text", None, None, tmp_path),
               sample("captions", "b.png", "b" * 64, tmp_path)]
    assert manifest_entries(samples) == [
        {"source": "vqa", "image": "b.png", "image_sha256": "b" * 64},
        {"source": "vqa", "image": "a.png", "image_sha256": "a" * 64},
        {"source": "captions", "image": "b.png", "image_sha256": "b" * 64},
    ]


def test_manifests_are_written_as_a_union_and_read_back(tmp_path: Path) -> None:
    base = [{"source": "vqa", "image": "a.png", "image_sha256": "a" * 64}]
    new = [{"source": "vqa", "image": "a.png", "image_sha256": "a" * 64}, {"source": "caps", "image": "c.png", "image_sha256": "c" * 64}]
    assert write_manifest(tmp_path, base, new) == 2
    assert read_manifest(tmp_path) == [base[0], new[1]]
    assert (tmp_path / MANIFEST_FILE).read_text().count("\n") == 2
    assert read_manifest(None) == [] and read_manifest(tmp_path / "none") == []


def test_run_info_records_what_the_floats_depend_on() -> None:
    info = run_info({"data": 1, "model": 2}, world_size=2, device="cpu")
    assert info["seeds"] == {"data": 1, "model": 2} and (info["world_size"], info["device"]) == (2, "cpu")
    assert info["torch_num_threads"] == torch.get_num_threads()
    assert info["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert info["versions"]["torch"] == torch.__version__ and set(info["versions"]) == {"llama3med", "torch", "transformers", "accelerate", "peft"}


def test_run_files_beside_the_model(tmp_path: Path) -> None:
    recipe = {"name": "tiny-align", "stage": "align", "data": [{"path": "x.jsonl"}]}
    report = {"read": {"x.jsonl": 3}, "skipped": {}}
    entries = [{"source": "vqa", "image": "a.png", "image_sha256": "a" * 64}]
    write_run_files(tmp_path / "out", recipe, report, [entries], {"seeds": {"data": 0}})
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_FILE, RUN_INFO_FILE, REPORT_FILE, RECIPE_FILE])
    assert yaml.safe_load((out / RECIPE_FILE).read_text()) == recipe and list(yaml.safe_load((out / RECIPE_FILE).read_text())) == ["name", "stage", "data"]
    assert json.loads((out / REPORT_FILE).read_text()) == report
    assert json.loads((out / RUN_INFO_FILE).read_text()) == {"seeds": {"data": 0}}
    assert read_manifest(out) == entries

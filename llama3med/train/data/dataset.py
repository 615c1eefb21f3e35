"""Training set: conversations -> checked samples -> a torch `Dataset` and its right-padding collator.

Before training every image is scanned once (content sha256 + a decode through `load_image`) and every
conversation is tokenised and masked, so bad records, over-long samples and template mismatches are all
found and counted before the first step. The scan is kept in `image_scan.json` (keyed by path, size and
mtime) so that resumed runs and the other ranks of a distributed run do not redo it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from llama3med.io.files import atomic_write
from llama3med.model.processing import Llama3MedProcessor
from llama3med.train.data.conversations import Conversation, DataReport
from llama3med.train.data.supervision import (
    IGNORE_INDEX,
    SampleTooLong,
    SupervisedSample,
    fit_length,
    supervise,
)


class FeatureStore(Protocol):
    """What the dataset needs from a feature cache (`llama3med.model.feature_cache.FeatureCache`)."""

    def load(self, image_sha256: str) -> torch.Tensor: ...


# Image scan --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageScan:
    """Outcome of reading one image file: its content hash, or why it cannot be used."""

    sha256: str | None
    error: str | None  # "missing image file" | "undecodable image"
    detail: str | None = None


def scan_image(path: Path) -> ImageScan:
    """Hash the file's bytes and decode it once through `load_image`."""
    from llama3med.io.images import ImageLoadError, load_image

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageScan(None, "missing image file", str(path))
    except OSError as error:
        return ImageScan(None, "unreadable image file", f"{path}: {error}")
    try:
        load_image(path)
    except ImageLoadError as error:
        return ImageScan(None, "undecodable image", f"{path}: {error.reason}")
    return ImageScan(hashlib.sha256(data).hexdigest(), None)


def scan_images(
    paths: Sequence[Path], index_file: Path | None = None, workers: int | None = None
) -> dict[Path, ImageScan]:
    """Scan every distinct path (in threads); reuse and update `index_file` entries whose size and mtime match."""
    index: dict[str, Any] = json.loads(index_file.read_text()) if index_file and index_file.is_file() else {}

    def stamp(path: Path) -> list[int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return [stat.st_size, stat.st_mtime_ns]

    results: dict[Path, ImageScan] = {}
    todo = []
    for path in dict.fromkeys(paths):
        entry = index.get(str(path))
        if entry is not None and entry["stamp"] == stamp(path):
            results[path] = ImageScan(entry["sha256"], entry["error"], entry.get("detail"))
        else:
            todo.append(path)
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for path, scan in zip(todo, pool.map(scan_image, todo), strict=True):
            results[path] = scan
            index[str(path)] = {
                "stamp": stamp(path),
                "sha256": scan.sha256,
                "error": scan.error,
                "detail": scan.detail,
            }
    if index_file is not None and todo:
        atomic_write(index_file, json.dumps(index))
    return results


# Samples -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingSample:
    """A conversation that passed every check, with its image's content hash."""

    conversation: Conversation
    image_sha256: str | None


def prepare_samples(
    conversations: Sequence[Conversation],
    processor: Llama3MedProcessor,
    report: DataReport,
    max_length: int,
    truncation: str = "text",
    image_index: Path | None = None,
) -> list[TrainingSample]:
    """Drop records whose image is missing or undecodable (counted), check every sample's masking
    (a `SupervisionError` is fatal) and length (over-long ones truncated or dropped, counted)."""
    scans = scan_images([c.image for c in conversations if c.image is not None], image_index)
    samples = []
    for conversation in conversations:
        scan = scans.get(conversation.image) if conversation.image is not None else None
        if scan is not None and scan.error:
            report.skip(conversation.id, scan.error, scan.detail)
            continue
        try:
            sample = fit_length(
                supervise(processor, conversation.messages, conversation.id),
                max_length,
                truncation,
                processor.image_token_id,
            )
        except SampleTooLong as error:
            report.drop_too_long(conversation.id, str(error))
            continue
        if sample.truncated:
            report.truncated.append(conversation.id)
        samples.append(TrainingSample(conversation, scan.sha256 if scan else None))
    if not samples:
        raise ValueError(f"no usable training samples: {json.dumps(report.to_dict())[:2000]}")
    return samples


class ConversationDataset(Dataset):
    """Items `{input_ids, labels, pixel_values | image_features}`; tokenised on access (deterministic,
    so the ids equal those checked by `prepare_samples`, without holding every sample's ids in memory)."""

    def __init__(
        self,
        samples: Sequence[TrainingSample],
        processor: Llama3MedProcessor,
        max_length: int,
        truncation: str = "text",
        feature_cache: FeatureStore | None = None,
    ) -> None:
        self.samples = list(samples)
        self.processor = processor
        self.max_length = max_length
        self.truncation = truncation
        self.feature_cache = feature_cache

    def __len__(self) -> int:
        return len(self.samples)

    def encode(self, index: int) -> SupervisedSample:
        conversation = self.samples[index].conversation
        sample = supervise(self.processor, conversation.messages, conversation.id)
        return fit_length(sample, self.max_length, self.truncation, self.processor.image_token_id)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        supervised = self.encode(index)
        item: dict[str, Any] = {
            "input_ids": torch.tensor(supervised.input_ids, dtype=torch.long),
            "labels": torch.tensor(supervised.labels, dtype=torch.long),
        }
        if sample.image_sha256 is not None:
            if self.feature_cache is not None:
                item["image_features"] = self.feature_cache.load(sample.image_sha256)  # [g*g, k*C]
            else:
                item["pixel_values"] = self.processor.image_processor.preprocess_one(
                    sample.conversation.image
                )  # [3, S, S]
        return item


@dataclass
class RightPaddingCollator:
    """Stack items into a batch: ids/labels right-padded (pad id / -100), attention mask, images in order."""

    pad_token_id: int

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), length), self.pad_token_id, dtype=torch.long)  # [B, L]
        labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)  # [B, L]
        attention_mask = torch.zeros((len(items), length), dtype=torch.long)  # [B, L]
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            input_ids[row, :n] = item["input_ids"]
            labels[row, :n] = item["labels"]
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        for key in ("pixel_values", "image_features"):
            images = [item[key] for item in items if key in item]
            if images:
                batch[key] = torch.stack(images)  # [N_img, 3, S, S] or [N_img, g*g, k*C]
        return batch

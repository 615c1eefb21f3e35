"""The training set: the image scan (content hash, bad files, the reusable index), sample checks (bad images
skipped, over-long samples cut or dropped, all counted), dataset items and the right-padding collator."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from llama3med.model.feature_cache import FeatureCache
from llama3med.model.presets import build_preset
from llama3med.model.processing import Llama3MedProcessor
from llama3med.train.data.conversations import Conversation, DataReport
from llama3med.train.data.dataset import (
    ConversationDataset,
    RightPaddingCollator,
    TrainingSample,
    prepare_samples,
    scan_images,
)
from llama3med.train.data.supervision import IGNORE_INDEX


@pytest.fixture(scope="module")
def processor() -> Llama3MedProcessor:
    return build_preset("tiny")[1]


def conversation(record_id: str, image: Path | None, answer: str = "Yes.") -> Conversation:
    question = f"{'<image>' + chr(10) if image is not None else ''}Is there a nodule?"
    return Conversation(record_id, "test", ({"role": "user", "content": question}, {"role": "assistant", "content": answer}),
                        image)


def test_the_scan_hashes_good_files_names_bad_ones_and_reuses_its_index(image_folder: Path, tmp_path: Path) -> None:
    good, corrupt, missing = image_folder / "img0.png", image_folder / "corrupt.png", image_folder / "nope.png"
    index = tmp_path / "image_scan.json"
    scans = scan_images([good, corrupt, missing, good], index)
    assert list(scans) == [good, corrupt, missing]  # each distinct path once
    assert scans[good].sha256 == hashlib.sha256(good.read_bytes()).hexdigest() and scans[good].error is None
    assert scans[corrupt].error == "undecodable image" and scans[missing].error == "missing image file"
    # an entry whose size and mtime still match is taken from the index, not read again
    recorded = json.loads(index.read_text())
    recorded[str(good)]["sha256"] = "from the index"
    index.write_text(json.dumps(recorded))
    assert scan_images([good], index)[good].sha256 == "from the index"
    copy = tmp_path / "copy.png"
    copy.write_bytes(good.read_bytes())
    assert scan_images([copy], index)[copy].sha256 == scans[good].sha256
    os.utime(copy, ns=(0, 0))  # a changed file (other mtime) is scanned again
    recorded = json.loads(index.read_text())
    recorded[str(copy)]["sha256"] = "stale"
    index.write_text(json.dumps(recorded))
    assert scan_images([copy], index)[copy].sha256 == scans[good].sha256


def test_samples_with_bad_images_are_skipped_and_long_ones_cut_or_dropped(
    processor: Llama3MedProcessor, image_folder: Path
) -> None:
    long_answer = " ".join(["the nodule is small"] * 40)
    records = [conversation("ok", image_folder / "img1.png"), conversation("corrupt", image_folder / "corrupt.png"),
               conversation("missing", image_folder / "gone.png"), conversation("text", None),
               conversation("long", image_folder / "img2.png", long_answer)]
    report = DataReport()
    samples = prepare_samples(records, processor, report, max_length=64)
    assert [s.conversation.id for s in samples] == ["ok", "text", "long"]
    assert dict(report.skipped) == {"undecodable image": ["corrupt"], "missing image file": ["missing"]}
    assert report.truncated == ["long"] and samples[1].image_sha256 is None
    dropped = DataReport()
    assert [s.conversation.id for s in prepare_samples(records, processor, dropped, 64, "drop")] == ["ok", "text"]
    assert dropped.dropped_too_long == ["long"]
    with pytest.raises(ValueError, match="no usable training samples"):
        prepare_samples(records[1:3], processor, DataReport(), 64)


def test_items_carry_ids_labels_and_pixels_or_cached_features(
    processor: Llama3MedProcessor, image_folder: Path, tmp_path: Path
) -> None:
    report = DataReport()
    samples = prepare_samples([conversation("a", image_folder / "img3.png"), conversation("b", None, "No, none.")],
                              processor, report, max_length=128)
    dataset = ConversationDataset(samples, processor, max_length=128)
    item = dataset[0]
    assert item["input_ids"].shape == item["labels"].shape and item["input_ids"].dtype == torch.long
    assert (item["input_ids"] == processor.image_token_id).sum() == processor.num_image_tokens
    assert (item["labels"][item["input_ids"] == processor.image_token_id] == IGNORE_INDEX).all()
    size = processor.image_processor.image_size
    assert item["pixel_values"].shape == (3, size, size) and "pixel_values" not in dataset[1]
    features = torch.randn(16, 96)  # [g*g, k*C]
    store = FeatureCache(tmp_path, "fingerprint")
    store.store(samples[0].image_sha256, features)
    cached = ConversationDataset(samples, processor, 128, feature_cache=store)
    assert torch.equal(cached[0]["image_features"], features) and "pixel_values" not in cached[0]
    assert len(dataset) == 2 and isinstance(samples[0], TrainingSample)


def test_the_collator_pads_right_and_stacks_images() -> None:
    items = [{"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7]), "pixel_values": torch.ones(3, 4, 4)},
             {"input_ids": torch.tensor([8]), "labels": torch.tensor([8])},
             {"input_ids": torch.tensor([9, 9]), "labels": torch.tensor([-100, 9]), "pixel_values": torch.zeros(3, 4, 4)}]
    batch = RightPaddingCollator(pad_token_id=0)(items)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 9, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100], [-100, 9, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert batch["pixel_values"].shape == (2, 3, 4, 4) and batch["pixel_values"][0].eq(1).all()
    assert "image_features" not in batch

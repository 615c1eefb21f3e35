"""Readers (LLaVA JSON/JSONL, caption JSONL, VQA JSONL), bad-record accounting and weighted mixing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama3med.train.data.conversations import (
    BadRecordError,
    DataReport,
    DataSource,
    read_mixture,
    read_source,
)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


LLAVA_RECORDS = [
    {
        "id": "ok-1",
        "image": "a/1.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown? "},
            {"from": "gpt", "value": " A chest X-ray."},
            {"from": "human", "value": "Any effusion?"},
            {"from": "gpt", "value": "No."},
        ],
    },
    {
        "id": "no-tag",
        "image": "a/2.png",
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Modality?"},
            {"from": "gpt", "value": "CT."},
        ],
    },
    {
        "id": "text-only",
        "conversations": [{"from": "human", "value": "Define edema."}, {"from": "gpt", "value": "Fluid."}],
    },
    {"id": "empty", "image": "a/3.png", "conversations": []},
    {
        "id": "roles",
        "image": "a/4.png",
        "conversations": [{"from": "gpt", "value": "Hi"}, {"from": "human", "value": "<image>"}],
    },
    {
        "id": "unknown-role",
        "image": "a/4.png",
        "conversations": [{"from": "doctor", "value": "<image>x"}, {"from": "gpt", "value": "y"}],
    },
    {
        "id": "two-tags",
        "image": "a/5.png",
        "conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "y"}],
    },
    {
        "id": "ends-user",
        "image": "a/6.png",
        "conversations": [
            {"from": "human", "value": "<image>x"},
            {"from": "gpt", "value": "y"},
            {"from": "human", "value": "z"},
        ],
    },
    {
        "id": "empty-answer",
        "image": "a/7.png",
        "conversations": [{"from": "human", "value": "<image>x"}, {"from": "gpt", "value": "  "}],
    },
]
BAD_IDS = [
    "llava:empty",
    "llava:roles",
    "llava:unknown-role",
    "llava:two-tags",
    "llava:ends-user",
    "llava:empty-answer",
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_llava_reader_normalises_roles_tags_and_skips_bad_records(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"llava{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(LLAVA_RECORDS))
    else:
        write_jsonl(path, LLAVA_RECORDS)
    report = DataReport()
    conversations = read_source(DataSource(path, "llava", image_root=tmp_path / "imgs", name="llava"), report)
    assert [c.id for c in conversations] == ["llava:ok-1", "llava:no-tag", "llava:text-only"]
    first = conversations[0]
    assert first.messages == (
        {"role": "user", "content": "<image>\nWhat is shown?"},
        {"role": "assistant", "content": "A chest X-ray."},
        {"role": "user", "content": "Any effusion?"},
        {"role": "assistant", "content": "No."},
    )
    assert first.image == (tmp_path / "imgs" / "a" / "1.png").resolve() and first.image_relpath == "a/1.png"
    assert conversations[1].messages[0] == {"role": "system", "content": "Be brief."}
    assert conversations[1].messages[1]["content"] == "<image>\nModality?"  # tag added as inference does
    assert conversations[2].image is None and "<image>" not in conversations[2].messages[0]["content"]
    assert sorted(report.skipped_ids) == sorted(BAD_IDS)
    assert report.skipped["empty conversation"] == ["llava:empty"]
    assert report.skipped["2 <image> tags for one image"] == ["llava:two-tags"]
    assert report.read["llava"] == len(LLAVA_RECORDS)


def test_strict_mode_makes_the_first_bad_record_fatal(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "llava.jsonl", LLAVA_RECORDS)
    with pytest.raises(BadRecordError, match="record llava:empty: empty conversation"):
        read_source(DataSource(path, "llava", name="llava"), DataReport(strict=True))


def test_caption_and_vqa_readers(tmp_path: Path) -> None:
    captions = write_jsonl(
        tmp_path / "caps.jsonl",
        [
            {"id": "c1", "image": "x.png", "caption": "Axial CT of the chest."},
            {"id": "c2", "image": "y.png", "caption": ""},
            {"id": "c3", "caption": "no image"},
            "{not json",
        ],
    )
    report = DataReport()
    [caption] = read_source(DataSource(captions, "caption", name="caps"), report)
    assert caption.messages == (
        {"role": "user", "content": "<image>"},
        {"role": "assistant", "content": "Axial CT of the chest."},
    )
    assert caption.image == (tmp_path / "x.png").resolve()
    assert report.skipped_ids == ["caps:c2", "caps:c3", "caps:3"]
    vqa = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "id": "7",
                "image": "s.jpg",
                "question": "Is it normal?",
                "answer": "Yes",
                "answer_type": "CLOSED",
            }
        ],
    )
    [qa] = read_source(DataSource(vqa, "vqa", image_root=tmp_path / "images", name="rad"), DataReport())
    assert qa.id == "rad:7" and qa.source == "rad"
    assert qa.messages == (
        {"role": "user", "content": "<image>\nIs it normal?"},
        {"role": "assistant", "content": "Yes"},
    )


def test_real_vqa_rad_train_split_reads_completely(benchmarks_dir: Path) -> None:
    source = DataSource(
        benchmarks_dir / "vqa-rad" / "train.jsonl", "vqa", image_root=benchmarks_dir / "vqa-rad" / "images"
    )
    report = DataReport()
    conversations = read_source(source, report)
    assert len(conversations) == 1797 and not report.skipped
    assert (
        conversations[0].id == "vqa-rad/train:0" and conversations[0].source == "vqa-rad/train"
    )  # default name
    assert all(c.image.is_file() for c in conversations[:50])


def test_mixture_weights_repeat_and_subsample_deterministically(tmp_path: Path) -> None:
    a = write_jsonl(
        tmp_path / "a.jsonl", [{"id": i, "image": f"{i}.png", "caption": f"c{i}"} for i in range(10)]
    )
    b = write_jsonl(
        tmp_path / "b.jsonl", [{"id": i, "image": f"{i}.png", "caption": f"d{i}"} for i in range(10)]
    )
    sources = [
        DataSource(a, "caption", weight=2.0, name="a"),
        DataSource(b, "caption", weight=0.3, max_samples=10, name="b"),
    ]
    mixture = read_mixture(sources, DataReport(), seed=3)
    ids = [c.id for c in mixture]
    assert ids[:20] == [f"a:{i}" for i in range(10)] * 2
    assert len(ids) == 23 and len(set(ids[20:])) == 3 and all(i.startswith("b:") for i in ids[20:])
    assert [c.id for c in read_mixture(sources, DataReport(), seed=3)] == ids
    assert [c.id for c in read_mixture(sources, DataReport(), seed=4)] != ids  # the seed picks the subset


def test_data_source_rejects_unknown_keys_and_formats() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        DataSource.from_dict({"path": "x.jsonl", "format": "vqa", "imageroot": "y"})
    with pytest.raises(ValueError, match="format 'csv' is not one of"):
        DataSource.from_dict({"path": "x.jsonl", "format": "csv"})
    with pytest.raises(ValueError, match="weight must be > 0"):
        DataSource.from_dict({"path": "x.jsonl", "format": "vqa", "weight": 0})


def test_caption_template_keeps_only_the_image_in_the_user_turn(tmp_path: Path) -> None:
    # LLaVA-Med's alignment records: an instruction + <image>, then the caption.
    records = [
        {"id": "a1", "image": "x.png", "conversations": [
            {"from": "human", "value": "Describe the image concisely.\n<image>"},
            {"from": "gpt", "value": "Axial CT of the chest showing a right upper lobe nodule."}]},
        {"id": "a2", "image": "y.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"}]},
    ]
    path = write_jsonl(tmp_path / "align.jsonl", records)
    report = DataReport()
    source = DataSource.from_dict({"path": str(path), "format": "llava", "template": "caption"})
    (conversation,) = read_source(source, report)
    assert list(conversation.messages) == [
        {"role": "user", "content": "<image>"},
        {"role": "assistant", "content": "Axial CT of the chest showing a right upper lobe nodule."},
    ]
    assert [i.rsplit("/", 1)[-1] for i in report.skipped_ids] == ["align:a2"]  # no caption (no assistant turn)
    plain = read_source(DataSource.from_dict({"path": str(path), "format": "llava"}), DataReport())
    assert plain[0].messages[0]["content"] == "Describe the image concisely.\n<image>"  # default: the record's turns
    assert DataSource.from_dict({"path": "c.jsonl", "format": "caption"}).template == "caption"
    with pytest.raises(ValueError, match="template 'plain' is not one of"):
        DataSource.from_dict({"path": "a.jsonl", "format": "llava", "template": "plain"})
    with pytest.raises(ValueError, match="vqa records have no caption"):
        DataSource.from_dict({"path": "a.jsonl", "format": "vqa", "template": "caption"})

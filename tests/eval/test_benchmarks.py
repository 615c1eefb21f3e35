"""Benchmark loaders against the real test sets in ../shared/benchmarks and hand-made files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llama3med.eval.benchmarks import (
    OFFICIAL_COUNTS,
    BenchmarkFormatError,
    MissingImagesError,
    load_benchmark,
)
from llama3med.eval.data_specs import load_custom, resolve_benchmarks


def rows(benchmark) -> list[tuple]:
    return [(q.id, str(q.image), q.question, q.answer, q.answer_type, q.categories) for q in benchmark.questions]


@pytest.mark.parametrize("name", ["vqa-rad", "slake", "pathvqa"])
def test_shared_layout_has_official_counts(benchmarks_dir: Path, name: str) -> None:
    benchmark = load_benchmark(name, benchmarks_dir / name)
    assert benchmark.layout == "jsonl"
    assert benchmark.counts() == OFFICIAL_COUNTS[name]
    assert benchmark.check_counts() == []


@pytest.mark.parametrize("name", ["vqa-rad", "slake", "pathvqa"])
def test_original_release_files_give_the_same_rows(benchmarks_dir: Path, name: str) -> None:
    shared = load_benchmark(name, benchmarks_dir / name, layout="jsonl")
    original = load_benchmark(name, benchmarks_dir / name, layout="original")
    assert original.layout == "original" and "original" in original.source
    assert rows(original) == rows(shared)


def test_vqa_rad_categories(benchmarks_dir: Path) -> None:
    benchmark = load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad")
    organs = [q.categories["organ"] for q in benchmark.questions]
    assert {o: organs.count(o) for o in set(organs)} == {"CHEST": 174, "ABD": 158, "HEAD": 119}  # README counts
    assert sum(q.categories["question_type"] == "PRES" for q in benchmark.questions) == 163


def test_slake_chinese_reports_its_missing_images(benchmarks_dir: Path) -> None:
    # The shared copy holds the images of the English questions only; the Chinese ones use others.
    with pytest.raises(MissingImagesError, match=r"^84 of 96 images referenced by .*test\.json are missing") as caught:
        load_benchmark("slake", benchmarks_dir / "slake", language="zh")
    assert len(caught.value.missing) == 84


def test_hugging_face_parquet_layout(benchmarks_dir: Path, tmp_path: Path) -> None:
    """The flaviagiammarino/vqa-rad layout: image {bytes, path}, question, answer; no answer type."""
    shared = load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad")
    table = pa.table({
        "image": [{"bytes": q.image_bytes(), "path": q.image.name} for q in shared.questions],
        "question": [q.question for q in shared.questions],
        "answer": [q.answer for q in shared.questions],
    })
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "test-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 3), tmp_path / "data" / "train-00000-of-00001.parquet")  # other splits are ignored
    hf = load_benchmark("vqa-rad", tmp_path)
    assert hf.layout == "parquet"
    assert [(q.question, q.answer) for q in hf.questions] == [(q.question, q.answer) for q in shared.questions]
    assert [hashlib.sha256(q.image_bytes()).hexdigest() for q in hf.questions[:20]] == [
        hashlib.sha256(q.image_bytes()).hexdigest() for q in shared.questions[:20]
    ]
    # Answer types are inferred from yes/no answers: VQA-RAD's 21 closed option answers become OPEN,
    # and the size check says so while images and questions match.
    assert hf.counts().images == 203 and hf.counts().questions == 451
    assert hf.counts().closed == 272 - 21
    assert [m.split(" = ")[0] for m in hf.check_counts()] == ["vqa-rad: open", "vqa-rad: closed"]


def test_parquet_with_language_and_answer_type_columns(benchmarks_dir: Path, tmp_path: Path) -> None:
    shared = load_benchmark("slake", benchmarks_dir / "slake").questions[:6]
    table = pa.table({
        "image": [q.image_bytes() for q in shared] + [shared[0].image_bytes()],
        "question": [q.question for q in shared] + ["这是什么?"],
        "answer": [q.answer for q in shared] + ["肺"],
        "answer_type": [q.answer_type for q in shared] + ["OPEN"],
        "q_lang": ["en"] * len(shared) + ["zh"],
        "qid": [int(q.id) for q in shared] + [99999],
        "content_type": [q.categories["content_type"] for q in shared] + ["Organ"],
    })
    (tmp_path / "test").mkdir()
    pq.write_table(table, tmp_path / "test" / "0000.parquet")
    loaded = load_benchmark("slake", tmp_path, layout="parquet")
    assert [(q.id, q.answer, q.answer_type, q.categories["content_type"]) for q in loaded.questions] == [
        (q.id, q.answer, q.answer_type, q.categories["content_type"]) for q in shared
    ]
    assert [q.id for q in load_benchmark("slake", tmp_path, layout="parquet", language="zh").questions] == ["99999"]


def test_user_jsonl_and_csv(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "mine.jsonl").write_text(
        json.dumps({"image": "a.png", "question": "Any fracture?", "answer": "No."}) + "\n"
        + json.dumps({"id": "x7", "image": "a.png", "question": "Which bone?", "answer": "femur", "site": "knee"}) + "\n",
        encoding="utf-8",
    )
    jsonl = load_custom(tmp_path / "mine.jsonl")
    assert [(q.id, q.answer_type, q.categories) for q in jsonl.questions] == [("1", "CLOSED", {}), ("x7", "OPEN", {"site": "knee"})]
    assert jsonl.check_counts() == []  # no official count for a user's dataset
    assert jsonl.layout == "custom-jsonl" and jsonl.name == f"{tmp_path.name}/mine"
    (tmp_path / "mine.csv").write_text("image,question,answer,answer_type\na.png,Which bone?,femur,\na.png,Is it broken?,yes,OPEN\n", encoding="utf-8")
    [csv_benchmark] = resolve_benchmarks([str(tmp_path / "mine.csv")], None)
    assert [(q.id, q.answer_type) for q in csv_benchmark.questions] == [("2", "OPEN"), ("3", "OPEN")]
    assert csv_benchmark.layout == "custom-csv"


def test_missing_images_error_lists_count_and_first_few(tmp_path: Path, make_benchmark) -> None:
    records = [{"id": str(i), "image": f"gone{i}.png", "question": "q?", "answer": "yes", "answer_type": "CLOSED"} for i in range(7)]
    folder = make_benchmark(tmp_path / "pathvqa", records, {"present.png": (0, 0, 0)})
    with pytest.raises(MissingImagesError) as caught:
        load_benchmark("pathvqa", folder)
    message = str(caught.value)
    assert message.startswith(f"7 of 7 images referenced by {folder / 'test.jsonl'} are missing under {folder / 'images'}: ")
    assert message.endswith("gone0.png, gone1.png, gone2.png, gone3.png, gone4.png, ...")


def test_bad_records_name_file_and_line(tmp_path: Path, make_benchmark) -> None:
    folder = make_benchmark(tmp_path / "slake", [{"id": "1", "image": "a.png", "question": "q?", "answer": ""}], {"a.png": (0, 0, 0)})
    with pytest.raises(BenchmarkFormatError, match=r"test\.jsonl:1: field 'answer' is missing or empty"):
        load_benchmark("slake", folder)
    make_benchmark(folder, [{"id": "1", "image": "a.png", "question": "q?", "answer": "x", "answer_type": "FREE"}], {})
    with pytest.raises(BenchmarkFormatError, match=r"test\.jsonl:1: answer_type must be OPEN or CLOSED, got 'FREE'"):
        load_benchmark("slake", folder)
    duplicate = {"id": "1", "image": "a.png", "question": "q?", "answer": "x"}
    make_benchmark(folder, [duplicate, duplicate], {})
    with pytest.raises(BenchmarkFormatError, match=r"1 duplicate question ids, e\.g\. \['1'\]"):
        load_benchmark("slake", folder)
    (folder / "test.jsonl").write_text('{"id": "1",\n', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"test\.jsonl:1: not valid JSON"):
        load_benchmark("slake", folder)


def test_unknown_names_and_layouts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'medqa'"):
        resolve_benchmarks(["medqa"], tmp_path)
    with pytest.raises(ValueError, match="layout must be one of"):
        load_benchmark("slake", tmp_path, layout="csv")
    with pytest.raises(FileNotFoundError, match="no VQA-RAD release file"):
        load_benchmark("vqa-rad", tmp_path)


def test_limited_keeps_file_order(small_benchmark_dir: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    assert [q.id for q in benchmark.limited(3).questions] == ["q1", "q2", "q3"]
    assert benchmark.limited(None) is benchmark

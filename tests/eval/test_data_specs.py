"""Custom data sets: unique, stable names (two `test.jsonl` never share predictions), and the formats users
have: Hugging Face dataset folders (`save_to_disk`) and parquet files with column mapping, LLaVA-Med's question
JSONL, test JSON and answers JSONL — each reported with the format detected."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.eval.benchmarks import BenchmarkFormatError, load_benchmark
from llama3med.eval.data_specs import ColumnMap, load_custom, resolve_benchmarks
from llama3med.eval.scoring import score_benchmark

CLOSED_TEXT = [("Is there a fracture?", "no"), ("Is the lung clear?", "yes")]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def vqa_rad_sample(benchmarks_dir: Path, n: int = 12):
    return load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad").questions[:n]


def copy_as_jsonl(folder: Path, questions, **extra) -> Path:
    """`folder/test.jsonl` with the questions' images copied beside it; ids restart at 1 in every copy."""
    folder.mkdir(parents=True, exist_ok=True)
    for q in questions:
        (folder / q.image.name).write_bytes(q.image_bytes())
    records = [{"id": str(i), "image": q.image.name, "question": q.question, "answer": q.answer, "answer_type": q.answer_type, **extra}
               for i, q in enumerate(questions, start=1)]
    return write_jsonl(folder / "test.jsonl", records)


# Names -----------------------------------------------------------------------------------------------------
def test_two_test_jsonl_files_get_distinct_names_and_their_own_predictions(
    benchmarks_dir: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = vqa_rad_sample(benchmarks_dir, 8)
    copy_as_jsonl(tmp_path / "a", sample[:4])
    copy_as_jsonl(tmp_path / "b", sample[4:])  # same ids 1..4, other questions
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--benchmarks", "a/test.jsonl,b/test.jsonl",
                                      "--out", str(out), "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert "a/test: 4 questions, JSONL rows" in result.output and "b/test: 4 questions, JSONL rows" in result.output
    report = json.loads((out / "report.json").read_text())
    assert list(report["benchmarks"]) == ["a/test", "b/test"]
    for name, questions in (("a", sample[:4]), ("b", sample[4:])):
        lines = [json.loads(line) for line in (out / "predictions" / name / "test.jsonl").read_text().splitlines()]
        assert [(r["id"], r["question"], r["reference"]) for r in lines] == [(str(i), q.question, q.answer) for i, q in enumerate(questions, 1)]
        assert report["runs"][f"{name}/test"]["predictions"] == str(out / "predictions" / name / "test.jsonl")
    markdown = (out / "report.md").read_text()
    assert "| a/test | 4 |" in markdown and "| b/test | 4 |" in markdown


def test_names_are_stable_unique_and_explicit_names_win(benchmarks_dir: Path, tmp_path: Path) -> None:
    sample = vqa_rad_sample(benchmarks_dir, 2)
    paths = [copy_as_jsonl(tmp_path / top / "site", sample) for top in ("x", "y")]
    names = [b.name for b in resolve_benchmarks([str(p) for p in paths], None)]
    assert names == ["x/site/test", "y/site/test"]  # "site/test" twice: one more folder each
    assert [b.name for b in resolve_benchmarks([str(p) for p in paths], None)] == names
    explicit = resolve_benchmarks([f"mine={paths[0]}", str(paths[1])], None)
    assert [b.name for b in explicit] == ["mine", "site/test"]
    official = resolve_benchmarks([f"vqa-rad={benchmarks_dir / 'vqa-rad'}", str(paths[0])], None)
    assert [b.name for b in official] == ["vqa-rad", "site/test"] and official[0].official and not official[1].official
    with pytest.raises(ValueError, match="two data sets are named 'mine'"):
        resolve_benchmarks([f"mine={paths[0]}", f"mine={paths[1]}"], None)
    with pytest.raises(ValueError, match="is given twice"):
        resolve_benchmarks([str(paths[0]), str(paths[0])], None)
    with pytest.raises(ValueError, match="needs a data root.*--data-root DIR or set LLAMA3MED_DATA_ROOT"):
        resolve_benchmarks(["vqa-rad"], None)


def test_the_data_root_comes_from_the_environment(benchmarks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rad = benchmarks_dir / "vqa-rad"
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": q.id, "prediction": "yes"} for q in load_benchmark("vqa-rad", rad).questions])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLAMA3MED_DATA_ROOT", str(benchmarks_dir))
    result = CliRunner().invoke(app, ["score", "--benchmark", "vqa-rad", "--predictions", str(predictions), "--out", "s.json"])
    assert result.exit_code == 0, result.output
    assert "VQA-RAD: 451 questions, shared JSONL layout" in result.output
    monkeypatch.delenv("LLAMA3MED_DATA_ROOT")
    result = CliRunner().invoke(app, ["score", "--benchmark", "vqa-rad", "--predictions", str(predictions), "--out", "s.json"])
    assert result.exit_code == 1 and "LLAMA3MED_DATA_ROOT" in result.output


# Formats ---------------------------------------------------------------------------------------------------
def hf_table(questions) -> dict[str, list]:
    """Columns as a Hugging Face VQA copy has them, under other names than ours."""
    return {
        "img": [{"bytes": q.image_bytes(), "path": q.image.name} for q in questions],
        "query": [q.question for q in questions],
        "label": [q.answer for q in questions],
        "kind": [q.answer_type for q in questions],
        "qid": [q.id for q in questions],
        "organ": [q.categories["organ"] for q in questions],
    }


def test_a_datasets_save_to_disk_folder_with_column_mapping(benchmarks_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict, Features, Image, Value

    sample = vqa_rad_sample(benchmarks_dir)
    features = Features({"img": Image(), "query": Value("string"), "label": Value("string"), "kind": Value("string"),
                         "qid": Value("string"), "organ": Value("string")})
    splits = DatasetDict({"train": Dataset.from_dict(hf_table(sample[:3]), features=features),
                          "test": Dataset.from_dict(hf_table(sample), features=features)})
    splits.save_to_disk(str(tmp_path / "rad_hf"))
    columns = ColumnMap.parse("image=img,question=query,answer=label,answer_type=kind", "organ")
    [loaded] = resolve_benchmarks([str(tmp_path / "rad_hf")], None, columns=columns)
    assert loaded.name == "rad_hf/test" and loaded.layout == "hf-dataset"
    assert "Hugging Face dataset folder" in loaded.describe()
    assert [(q.id, q.question, q.answer, q.answer_type, q.categories) for q in loaded.questions] == [
        (q.id, q.question, q.answer, q.answer_type, {"organ": q.categories["organ"]}) for q in sample
    ]
    assert [hashlib.sha256(q.image_bytes()).hexdigest() for q in loaded.questions] == [q.image_sha256() for q in sample]
    assert len(load_custom(tmp_path / "rad_hf", columns=columns, split="train").questions) == 3
    with pytest.raises(BenchmarkFormatError, match=r"no split 'validation' \(splits: train, test\); choose one with --split"):
        load_custom(tmp_path / "rad_hf", columns=columns, split="validation")
    with pytest.raises(BenchmarkFormatError, match=r"no image \(looked for column image; name yours with --columns image=COLUMN\)"):
        load_custom(tmp_path / "rad_hf")

    splits["test"].save_to_disk(str(tmp_path / "one_split"))  # a plain Dataset: no splits to choose from
    assert len(load_custom(tmp_path / "one_split", columns=columns).questions) == len(sample)


def test_parquet_files_and_hub_folders_with_column_mapping(benchmarks_dir: Path, tmp_path: Path) -> None:
    sample = vqa_rad_sample(benchmarks_dir)
    table = pa.table(hf_table(sample))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(table, tmp_path / "hub" / "data" / "test-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 2), tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    columns = ColumnMap.parse("image=img,question=query,answer=label")
    folder, single = resolve_benchmarks([str(tmp_path / "hub"), str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")],
                                        None, columns=columns)
    assert (folder.name, folder.layout, len(folder.questions)) == ("hub/test", "parquet", len(sample))
    assert (single.name, len(single.questions)) == ("data/train-00000-of-00001", 2)
    assert [q.answer_type for q in folder.questions] == [q.answer_type for q in sample]  # no kind column given: inferred
    assert folder.questions[0].categories == {}  # table formats: categories only when named
    with pytest.raises(ValueError, match="--columns item 'prompt=query' must be FIELD=COLUMN"):
        ColumnMap.parse("prompt=query")


def test_llava_med_question_file_test_json_and_answers_file(benchmarks_dir: Path, tmp_path: Path) -> None:
    sample = vqa_rad_sample(benchmarks_dir)
    for q in sample:
        (tmp_path / q.image.name).write_bytes(q.image_bytes())
    questions = write_jsonl(tmp_path / "llava_med_questions.jsonl", [
        {"question_id": int(q.id), "image": q.image.name, "text": f"<image>\n{q.question}", "answer": q.answer, "answer_type": q.answer_type}
        for q in sample
    ])
    conversations = tmp_path / "test.json"
    conversations.write_text(json.dumps([
        {"id": q.id, "image": q.image.name, "answer_type": q.answer_type,
         "conversations": [{"from": "human", "value": f"<image>\n{q.question}"}, {"from": "gpt", "value": q.answer}]}
        for q in sample
    ]), encoding="utf-8")
    from_questions, from_json = resolve_benchmarks([str(questions), str(conversations)], None)
    assert from_questions.layout == "llava-med-questions" and from_json.layout == "llava-med-conversations"
    expected = [(q.id, q.question, q.answer, q.answer_type) for q in sample]
    for loaded in (from_questions, from_json):
        assert [(q.id, q.question, q.answer, q.answer_type) for q in loaded.questions] == expected  # <image> tag removed

    # LLaVA-Med's model_vqa answers file scores as our predictions file does.
    answers = write_jsonl(tmp_path / "answers.jsonl", [
        {"question_id": int(q.id), "prompt": q.question, "text": ["yes", q.answer, "no"][i % 3], "answer_id": f"a{i}", "model_id": "m", "metadata": {}}
        for i, q in enumerate(sample)
    ])
    result = CliRunner().invoke(app, ["score", "--benchmark", str(conversations), "--predictions", str(answers), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "LLaVA-Med test JSON" in result.output and "LLaVA-Med answers JSONL" in result.output
    scored = json.loads((tmp_path / "s.json").read_text())["benchmarks"][from_json.name]
    direct = score_benchmark(from_json, {q.id: ["yes", q.answer, "no"][i % 3] for i, q in enumerate(sample)})
    assert scored["llava_med"] == direct["llava_med"] and scored["strict"] == direct["strict"]


def test_eval_on_a_hugging_face_folder_says_what_it_read(benchmarks_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset

    sample = vqa_rad_sample(benchmarks_dir, 4)
    Dataset.from_dict({"image": [{"bytes": q.image_bytes(), "path": None} for q in sample], "question": [q.question for q in sample],
                       "answer": [q.answer for q in sample]}).save_to_disk(str(tmp_path / "mine"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--benchmarks", f"rad4={tmp_path / 'mine'}",
                                      "--out", str(out), "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert "rad4: 4 questions, Hugging Face dataset folder written by datasets' save_to_disk" in result.output
    lines = (out / "predictions" / "rad4.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["00000", "00001", "00002", "00003"]

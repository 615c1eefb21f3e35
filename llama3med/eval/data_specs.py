"""What `eval --benchmarks` and `score --benchmark` name: the official benchmarks, and custom data sets in the
formats users already have, each under a unique, stable name.

A spec is one of
- `vqa-rad`, `slake`, `pathvqa`: the official test split from `<data root>/<name>` (`--data-root` or
  `LLAMA3MED_DATA_ROOT`), in any layout `load_benchmark` reads; `vqa-rad=FOLDER` takes it from FOLDER;
- `PATH` or `NAME=PATH`: a custom data set. Formats (detected, named in `Benchmark.layout` and reported by
  `Benchmark.describe`):

  | format | what is read |
  | --- | --- |
  | `custom-jsonl`, `custom-csv` | rows with `image`, `question`, `answer`, optional `answer_type`, `id` |
  | `llava-med-questions` | LLaVA-Med's question JSONL: `question_id`, `image`, `text` (+ a reference answer column) |
  | `llava-med-conversations` | LLaVA-Med's test JSON: a list of `{id, image, conversations, answer_type}` |
  | `parquet` | `.parquet` files, or a folder of them as the Hugging Face hub lays them out (`--split`) |
  | `hf-dataset` | a folder written by `datasets`' `save_to_disk` (`Dataset` or `DatasetDict`, `--split`) |
  | `folder-jsonl` | a folder with `<split>.jsonl` and `images/` (the layout of the official copies) |

  Columns are found by name (`ColumnMap`); `--columns question=query,answer=label` names others.

Names: an explicit `NAME=` wins; otherwise the file's folder and stem (`my-data/test`), or a folder's name and
the split (`vqa_rad_hf/test`), with more parent folders until no two data sets share a name. Predictions
are stored per name, so two data sets can never share predictions.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from llama3med.eval.benchmarks import (
    BENCHMARKS,
    Benchmark,
    BenchmarkFormatError,
    Question,
    check_images,
    load_benchmark,
    make_question,
    parquet_files,
    parquet_records,
    read_json_list,
    unique_ids,
)
from llama3med.folders import DATA_ROOT_ENV
from llama3med.io.image_tag import IMAGE_TOKEN
from llama3med.io.jsonl import read_jsonl

EXPLICIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# LLaVA-Med's question texts start with the image tag; the image goes to the model separately.
IMAGE_TAG = re.compile(rf"^\s*{re.escape(IMAGE_TOKEN)}\s*|\s*{re.escape(IMAGE_TOKEN)}\s*$")
FILE_SUFFIXES = (".jsonl", ".csv", ".json", ".parquet")


@dataclass(frozen=True)
class ColumnMap:
    """Which column holds each field of a custom data set, and which columns are breakdown categories.

    A field left None is looked up under its usual names, in order: `id` (`id`, `qid`, `question_id`),
    `image`, `question` (`question`, `text`), `answer` (`answer`, `gpt4_answer`), `answer_type`. `categories`
    None means every other text or integer column of JSONL/CSV rows, and none for the other formats (whose
    tables often carry free-text columns).
    """

    id: str | None = None
    image: str | None = None
    question: str | None = None
    answer: str | None = None
    answer_type: str | None = None
    categories: tuple[str, ...] | None = None

    DEFAULTS = {
        "id": ("id", "qid", "question_id"),
        "image": ("image",),
        "question": ("question", "text"),
        "answer": ("answer", "gpt4_answer"),
        "answer_type": ("answer_type",),
    }

    @classmethod
    def parse(cls, columns: str | None = None, categories: str | None = None) -> ColumnMap:
        """From the CLI: `columns` as `field=column,...`, `categories` as `column,...`."""
        mapping: dict[str, Any] = {}
        for item in (columns or "").split(","):
            if not item.strip():
                continue
            field_name, sep, column = (part.strip() for part in item.partition("="))
            if not sep or not column or field_name not in cls.DEFAULTS:
                raise ValueError(f"--columns item {item.strip()!r} must be FIELD=COLUMN with FIELD one of {', '.join(cls.DEFAULTS)}")
            mapping[field_name] = column
        if categories is not None:
            mapping["categories"] = tuple(c.strip() for c in categories.split(",") if c.strip())
        return cls(**mapping)

    def candidates(self, field_name: str) -> tuple[str, ...]:
        chosen = getattr(self, field_name)
        return (chosen,) if chosen else self.DEFAULTS[field_name]

    def explicit(self) -> dict[str, Any]:
        """The settings given (for run records and messages)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# Rows -> questions -----------------------------------------------------------------------------------------
# Rows are (where, id used when the record has none, record): the line number of a text file, the
# zero-padded row index of a table (as the official parquet loader numbers PathVQA's questions).
Rows = Iterable[tuple[str, str, dict[str, Any]]]


def pick(record: dict[str, Any], columns: ColumnMap, field_name: str) -> Any:
    """The record's value for `field_name` under the first of its candidate columns present (None if none)."""
    for column in columns.candidates(field_name):
        if record.get(column) is not None:
            return record[column]
    return None


def image_of(value: Any, where: str, image_dir: Path) -> Path | bytes:
    """An image cell: a path (relative to `image_dir`), raw bytes, or a Hugging Face `{bytes, path}` struct."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, bytes) and value:
        return value
    if isinstance(value, str) and value.strip():
        return image_dir / value.strip()
    raise BenchmarkFormatError(f"{where}: no image (an image path, bytes, or a {{bytes, path}} struct)")


def rows_to_questions(rows: Rows, columns: ColumnMap, image_dir: Path, *, default_categories: bool) -> list[Question]:
    """Questions from rows. Embedded images that are byte-identical share one bytes object (a PathVQA copy
    has 6,719 rows on 858 images)."""
    used = {c for name in ColumnMap.DEFAULTS for c in columns.candidates(name)} | {"image"}
    distinct: dict[str, bytes] = {}
    questions = []
    for where, fallback_id, record in rows:
        fields_found = {name: pick(record, columns, name) for name in ColumnMap.DEFAULTS}
        for name in ("image", "question", "answer"):
            if fields_found[name] is None or (isinstance(fields_found[name], str) and not fields_found[name].strip()):
                looked = ", ".join(columns.candidates(name))
                raise BenchmarkFormatError(f"{where}: no {name} (looked for column {looked}; name yours with --columns {name}=COLUMN)")
        image = image_of(fields_found["image"], where, image_dir)
        if isinstance(image, bytes):
            image = distinct.setdefault(hashlib.sha256(image).hexdigest(), image)
        if columns.categories is not None:
            categories = {c: str(record[c]).strip() for c in columns.categories if record.get(c) is not None and str(record[c]).strip()}
        elif default_categories:
            categories = {k: str(v).strip() for k, v in record.items()
                          if k not in used and isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip()}
        else:
            categories = {}
        raw_id = fields_found["id"]
        qid = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else fallback_id
        text = {"question": IMAGE_TAG.sub("", str(fields_found["question"])), "answer": fields_found["answer"],
                "answer_type": fields_found["answer_type"]}
        questions.append(make_question(text, where, image, categories, qid))
    return questions


# Readers, one per format -----------------------------------------------------------------------------------
def jsonl_rows(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for number, record in read_jsonl(path, BenchmarkFormatError):
        yield f"{path}:{number}", str(number), record


def csv_rows(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):  # line 1 is the header
            yield f"{path}:{number}", str(number), dict(row)


def conversation_rows(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """LLaVA-Med's test JSON: the first human turn is the question, the first gpt turn the answer."""
    for index, record in enumerate(read_json_list(path)):
        where = f"{path} row {index}"
        turns = record.get("conversations") if isinstance(record, dict) else None
        if not isinstance(turns, list):
            raise BenchmarkFormatError(f"{where}: expected an object with a `conversations` list")
        said = {}
        for turn in turns:
            if isinstance(turn, dict) and isinstance(turn.get("value"), str):
                said.setdefault(str(turn.get("from", "")).lower(), turn["value"])
        flat = {k: v for k, v in record.items() if k != "conversations"}
        yield where, f"{index:05d}", {**flat, "question": said.get("human"), "answer": said.get("gpt")}


def parquet_rows(files: list[Path]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    index = 0
    for path in files:
        for offset, record in enumerate(parquet_records(path)):
            yield f"{path} row {offset}", f"{index:05d}", record
            index += 1


def saved_dataset_rows(root: Path, split: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Rows of a `save_to_disk` folder (memory-mapped arrow, nothing copied), images left undecoded."""
    try:
        from datasets import DatasetDict, load_from_disk
        from datasets import Image as ImageFeature
    except ImportError as error:
        raise ImportError(f"{root} is a Hugging Face dataset folder: reading it needs `datasets` (pip install 'llama3med[eval]')") from error
    data = load_from_disk(str(root))
    if isinstance(data, DatasetDict):
        if split not in data:
            raise BenchmarkFormatError(f"{root}: no split {split!r} (splits: {', '.join(data)}); choose one with --split")
        data = data[split]
    for column, feature in data.features.items():
        if isinstance(feature, ImageFeature):
            data = data.cast_column(column, ImageFeature(decode=False))  # {bytes, path}: hashed, decoded later
    for index, record in enumerate(data):
        yield f"{root} split {split} row {index}", f"{index:05d}", record


def sniff_jsonl(path: Path) -> str:
    """`llava-med-questions` when the first record has LLaVA-Med's `question_id` and `text` and no `question`."""
    first = next((record for _, record in read_jsonl(path, BenchmarkFormatError)), {})
    return "llava-med-questions" if {"question_id", "text"} <= first.keys() and "question" not in first else "custom-jsonl"


def detect_format(path: Path, split: str) -> str:
    """The format of a custom data set at `path` (see the module docstring)."""
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return "hf-dataset"
        if (path / f"{split}.jsonl").is_file():
            return "folder-jsonl"
        if any(path.rglob("*.parquet")):
            return "parquet"
        raise BenchmarkFormatError(
            f"{path}: not a data set folder (no dataset_dict.json / state.json of datasets' save_to_disk,"
            f" no {split}.jsonl, no parquet files)"
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return sniff_jsonl(path)
    if suffix == ".csv":
        return "custom-csv"
    if suffix == ".json":
        return "llava-med-conversations"
    if suffix == ".parquet":
        return "parquet"
    raise BenchmarkFormatError(f"{path}: a custom data set is a {', '.join(FILE_SUFFIXES)} file or a folder")


def load_custom(
    path: str | Path,
    name: str | None = None,
    *,
    columns: ColumnMap = ColumnMap(),
    split: str = "test",
    image_dir: str | Path | None = None,
) -> Benchmark:
    """A custom data set from a file or folder (format detected). Image paths are relative to `image_dir`
    (default: the file's folder; a data set folder's `images/` or the folder itself). `name` defaults to
    `default_name(path, split)`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data set {path} does not exist")
    data_format = detect_format(path, split)
    folder = path if path.is_dir() else path.parent
    images = Path(image_dir) if image_dir else folder
    source = str(path)
    if data_format == "folder-jsonl":
        source = str(path / f"{split}.jsonl")
        images = Path(image_dir) if image_dir else (path / "images" if (path / "images").is_dir() else path)
        rows: Rows = jsonl_rows(path / f"{split}.jsonl")
    elif data_format in ("custom-jsonl", "llava-med-questions"):
        rows = jsonl_rows(path)
    elif data_format == "custom-csv":
        rows = csv_rows(path)
    elif data_format == "llava-med-conversations":
        rows = conversation_rows(path)
    elif data_format == "hf-dataset":
        source = f"{path} (split {split})"
        rows = saved_dataset_rows(path, split)
    else:
        files = [path] if path.is_file() else parquet_files(path, split)
        if not files:
            found = ", ".join(str(p.relative_to(path)) for p in sorted(path.rglob("*.parquet"))[:5])
            raise BenchmarkFormatError(f"{path}: no {split} parquet files ({split}-*.parquet, {split}/*.parquet) among {found}; choose with --split")
        if path.is_dir():
            source = f"{path} ({len(files)} {split} parquet file{'s' * (len(files) > 1)})"
        rows = parquet_rows(files)
    default_categories = data_format in ("custom-jsonl", "custom-csv", "folder-jsonl")
    questions = rows_to_questions(rows, columns, images, default_categories=default_categories)
    if not questions:
        raise BenchmarkFormatError(f"{source}: no questions")
    check_images(questions, source, images)
    return Benchmark(name or default_name(path, split), source, data_format, unique_ids(questions, source),
                     columns=columns.explicit())


# Specs and names -------------------------------------------------------------------------------------------
def default_name(path: Path, split: str, depth: int = 1) -> str:
    """`folder/stem` for a file, `folder/split` for a folder; `depth` > 1 adds more parent folders."""
    path = Path(path).absolute()
    if path.is_dir():
        parts = [*path.parts[-depth:], split]
    else:
        parts = [*path.parent.parts[-depth:], path.stem]
    return "/".join(p.strip("/") for p in parts if p.strip("/")) or path.stem


def split_spec(spec: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH); anything else -> (None, spec)."""
    name, sep, rest = spec.partition("=")
    if sep and EXPLICIT_NAME.fullmatch(name.strip()) and rest.strip():
        return name.strip(), rest.strip()
    return None, spec.strip()


def data_root_error(name: str) -> ValueError:
    return ValueError(
        f"benchmark {name!r} needs a data root, a folder holding {name}/: pass --data-root DIR or set {DATA_ROOT_ENV}"
    )


def resolve_benchmarks(
    specs: Iterable[str],
    data_root: str | Path | None,
    *,
    layout: str = "auto",
    language: str = "en",
    columns: ColumnMap = ColumnMap(),
    split: str = "test",
    image_dir: str | Path | None = None,
) -> list[Benchmark]:
    """Load every spec (see the module docstring); names are unique or this raises `ValueError`."""
    parsed = [split_spec(spec) for spec in specs if spec.strip()]
    official = [name in BENCHMARKS or (name is None and target in BENCHMARKS) for name, target in parsed]
    names = custom_names([(name, Path(target)) for (name, target), is_official in zip(parsed, official) if not is_official], split)
    loaded = []
    for (name, target), is_official in zip(parsed, official, strict=True):
        if is_official:
            benchmark = name or target
            if name is None and data_root is None:
                raise data_root_error(benchmark)
            folder = Path(target) if name else Path(data_root) / benchmark
            loaded.append(load_benchmark(benchmark, folder, layout=layout, language=language))
        else:
            path = Path(target)
            if not path.exists() and name is None and not path.suffix and "/" not in target:
                raise ValueError(f"unknown benchmark {target!r}; choose from {', '.join(BENCHMARKS)} or give a data file or folder")
            loaded.append(load_custom(path, names[(name, path)], columns=columns, split=split, image_dir=image_dir))
    seen: dict[str, str] = {}
    for benchmark in loaded:
        if benchmark.name in seen:
            raise ValueError(f"two data sets are named {benchmark.name!r} ({seen[benchmark.name]} and {benchmark.source}); "
                             "give each a distinct NAME=PATH")
        seen[benchmark.name] = benchmark.source
    return loaded


def custom_names(custom: list[tuple[str | None, Path]], split: str) -> dict[tuple[str | None, Path], str]:
    """The name of every custom spec: explicit, or derived with as many parent folders as it takes to be unique."""
    names = {}
    derived = [path for name, path in custom if name is None]
    repeated = [p for p in derived if derived.count(p) > 1]
    if repeated:
        raise ValueError(f"data set {repeated[0]} is given twice")
    taken = {name for name, _ in custom if name is not None} | set(BENCHMARKS)
    for depth in range(1, 64):
        candidates = {path: default_name(path, split, depth) for path in derived}
        values = list(candidates.values())
        if all(values.count(v) == 1 and v not in taken for v in values):
            break
    for name, path in custom:
        names[(name, path)] = name if name is not None else candidates[path]
    return names

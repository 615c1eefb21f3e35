"""Benchmark loaders: VQA-RAD, SLAKE and PathVQA test splits in every layout users have (custom data sets, and
the names they get, are in `llama3med.eval.data_specs`).

Layouts (`layout=` in `load_benchmark`; "auto" tries them in this order):

- `jsonl`: the shared layout — `<root>/test.jsonl` with `id, image, question, answer, answer_type` (+ the
  dataset's own fields), images under `<root>/images/`.
- `original`: the release files — VQA-RAD `VQA_RAD Dataset Public.json` (test = `phrase_type`
  `test_freeform` + `test_para`), SLAKE `test.json` (rows of one `q_lang`), PathVQA `test.json` of the
  `flaviagiammarino/path-vqa`-derived copy (see `load_pathvqa_original`).
- `parquet`: Hugging Face dataset folders (`data/test-*.parquet` or `*/test/*.parquet`) with the image
  bytes embedded (`image: {bytes, path}`); `answer_type` is taken from a column when there is one, else
  inferred (CLOSED for yes/no answers).

Every question is checked for its image; missing files raise one `MissingImagesError` naming how many
and the first few. Split sizes are compared with the official counts (`check_counts`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from llama3med.eval.metrics import CLOSED, OPEN, YES_NO
from llama3med.io.jsonl import read_jsonl

BENCHMARKS = ("vqa-rad", "slake", "pathvqa")
LAYOUTS = ("auto", "jsonl", "original", "parquet")
# What `Benchmark.layout` says, for messages and reports: the official layouts, then the custom formats.
LAYOUT_DESCRIPTIONS = {
    "jsonl": "shared JSONL layout (test.jsonl + images/)",
    "original": "original release files",
    "parquet": "Hugging Face parquet files",
    "custom-jsonl": "JSONL rows (id, image, question, answer)",
    "custom-csv": "CSV rows (id, image, question, answer)",
    "llava-med-questions": "LLaVA-Med question JSONL (question_id, image, text)",
    "llava-med-conversations": "LLaVA-Med test JSON (id, image, conversations, answer_type)",
    "hf-dataset": "Hugging Face dataset folder written by datasets' save_to_disk",
    "folder-jsonl": "folder with a JSONL split and images/",
}
DISPLAY_NAMES = {"vqa-rad": "VQA-RAD", "slake": "SLAKE", "pathvqa": "PathVQA"}


@dataclass(frozen=True)
class SplitCounts:
    """Size of a test split: distinct images, questions, open and closed questions."""

    images: int
    questions: int
    open: int
    closed: int


# The official test splits (SLAKE: English part; PathVQA: the de-duplicated test split).
OFFICIAL_COUNTS = {
    "vqa-rad": SplitCounts(images=203, questions=451, open=179, closed=272),
    "slake": SplitCounts(images=96, questions=1061, open=645, closed=416),
    "pathvqa": SplitCounts(images=858, questions=6719, open=3357, closed=3362),
}

# The datasets' own question categories, reported as breakdowns: {our name: field in the shared layout}.
CATEGORY_FIELDS = {
    "vqa-rad": {"question_type": "question_type", "organ": "image_organ"},
    "slake": {"content_type": "content_type", "modality": "modality"},
    "pathvqa": {},
}


class BenchmarkFormatError(ValueError):
    """A benchmark file has a record that cannot be used; the message names the file, record and reason."""


class MissingImagesError(FileNotFoundError):
    """Images referenced by a benchmark are missing (message: how many, and the first few)."""

    def __init__(self, source: str, image_dir: Path, missing: list[str], total: int) -> None:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        super().__init__(f"{len(missing)} of {total} images referenced by {source} are missing under {image_dir}: {shown}")
        self.missing = missing


@dataclass(frozen=True)
class Question:
    """One test question. `image` is a file path or the image's encoded bytes (parquet layouts)."""

    id: str
    image: Path | bytes
    question: str
    answer: str
    answer_type: str
    categories: dict[str, str] = field(default_factory=dict)

    def image_bytes(self) -> bytes:
        return self.image if isinstance(self.image, bytes) else Path(self.image).read_bytes()

    def image_sha256(self) -> str:
        """sha256 of the image's content (the file's bytes or the embedded bytes): equal for copies of one
        image, so distinct images are counted by content, and training manifests can be matched."""
        return bytes_sha256(self.image) if isinstance(self.image, bytes) else file_sha256(Path(self.image))


@lru_cache(maxsize=16384)
def bytes_sha256(data: bytes) -> str:
    """sha256 hex digest of embedded image bytes (cached: identical images share one bytes object)."""
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=16384)
def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes (cached per path for the life of the process)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Benchmark:
    """A loaded test split: its questions in file order and where they came from."""

    name: str
    source: str
    layout: str
    questions: list[Question]
    language: str = "en"
    columns: dict[str, Any] = field(default_factory=dict)  # a custom data set's --columns / --categories

    @property
    def official(self) -> bool:
        """One of VQA-RAD, SLAKE, PathVQA (custom data sets can never take these names)."""
        return self.name in BENCHMARKS

    def describe(self) -> str:
        """One line: the name, how many questions, the format detected and where from."""
        what = LAYOUT_DESCRIPTIONS.get(self.layout, self.layout)
        columns = f", columns {self.columns}" if self.columns else ""
        return f"{DISPLAY_NAMES.get(self.name, self.name)}: {len(self.questions)} questions, {what}{columns}, from {self.source}"

    def counts(self) -> SplitCounts:
        return SplitCounts(
            images=len({q.image_sha256() for q in self.questions}),
            questions=len(self.questions),
            open=sum(q.answer_type == OPEN for q in self.questions),
            closed=sum(q.answer_type == CLOSED for q in self.questions),
        )

    def check_counts(self) -> list[str]:
        """Mismatches with the official split size, one line each; empty when it matches
        or when there is no official count (user datasets, SLAKE Chinese)."""
        official = OFFICIAL_COUNTS.get(self.name)
        if official is None or self.language != "en":
            return []
        counts = self.counts()
        return [
            f"{self.name}: {key} = {getattr(counts, key)}, official {getattr(official, key)} ({self.source})"
            for key in ("images", "questions", "open", "closed")
            if getattr(counts, key) != getattr(official, key)
        ]

    def limited(self, limit: int | None) -> Benchmark:
        """The first `limit` questions (all when None)."""
        return self if limit is None else replace(self, questions=self.questions[:limit])


# Helpers ---------------------------------------------------------------------------------------------
def infer_answer_type(answer: str) -> str:
    """CLOSED for a yes/no answer, else OPEN (for data without an answer type)."""
    return CLOSED if answer.strip().lower().rstrip(".") in YES_NO else OPEN


def parse_answer_type(value: Any, answer: str, where: str) -> str:
    """The record's answer type (OPEN/CLOSED, any case, whitespace stripped), inferred when absent."""
    if value is None or str(value).strip() == "":
        return infer_answer_type(answer)
    answer_type = str(value).strip().upper()
    if answer_type not in (OPEN, CLOSED):
        raise BenchmarkFormatError(f"{where}: answer_type must be OPEN or CLOSED, got {value!r}")
    return answer_type


def read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BenchmarkFormatError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
    if not isinstance(rows, list):
        raise BenchmarkFormatError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
    return rows


def required_text(record: dict[str, Any], key: str, where: str) -> str:
    """A required field as stripped text (numbers, as in VQA-RAD's 5 numeric answers, become strings)."""
    value = record.get(key)
    if value is None or isinstance(value, (dict, list)) or str(value).strip() == "":
        raise BenchmarkFormatError(f"{where}: field {key!r} is missing or empty")
    return str(value).strip()


def check_images(questions: Iterable[Question], source: str, image_dir: Path) -> None:
    """Raise one `MissingImagesError` if any question's image file does not exist."""
    paths = sorted({q.image for q in questions if isinstance(q.image, Path)})
    missing = [str(p.relative_to(image_dir)) if p.is_relative_to(image_dir) else str(p) for p in paths if not p.is_file()]
    if missing:
        raise MissingImagesError(source, image_dir, missing, len(paths))


def first_dir(*candidates: Path) -> Path:
    """The first existing folder among `candidates` (the first one when none exists, for the error)."""
    return next((c for c in candidates if c.is_dir()), candidates[0])


def make_question(record: dict[str, Any], where: str, image: Path | bytes, categories: dict[str, str], qid: str) -> Question:
    answer = required_text(record, "answer", where)
    return Question(
        id=qid,
        image=image,
        question=required_text(record, "question", where),
        answer=answer,
        answer_type=parse_answer_type(record.get("answer_type"), answer, where),
        categories=categories,
    )


def categories_of(name: str, record: dict[str, Any]) -> dict[str, str]:
    """The dataset's own categories of a record (verbatim values, whitespace stripped)."""
    return {ours: str(record[key]).strip() for ours, key in CATEGORY_FIELDS.get(name, {}).items() if record.get(key) is not None}


def unique_ids(questions: list[Question], source: str) -> list[Question]:
    """`questions`, after checking that no id repeats (predictions are matched to questions by id)."""
    duplicates = [qid for qid, n in Counter(q.id for q in questions).items() if n > 1]
    if duplicates:
        raise BenchmarkFormatError(f"{source}: {len(duplicates)} duplicate question ids, e.g. {duplicates[:5]}")
    return questions


# Shared JSONL layout ------------------------------------------------------------------------------------
def load_jsonl_layout(name: str, root: Path, split: str = "test") -> Benchmark:
    """`<root>/<split>.jsonl` with images under `<root>/images/` (the layout of the VQA-RAD, SLAKE and PathVQA folders)."""
    path = root / f"{split}.jsonl"
    image_dir = root / "images"
    questions = []
    for number, record in read_jsonl(path, BenchmarkFormatError):
        where = f"{path}:{number}"
        qid = required_text(record, "id", where)
        image = image_dir / required_text(record, "image", where)
        questions.append(make_question(record, where, image, categories_of(name, record), qid))
    check_images(questions, str(path), image_dir)
    return Benchmark(name, str(path), "jsonl", unique_ids(questions, str(path)))


# Original release files ------------------------------------------------------------------------------
VQA_RAD_JSON_NAMES = ("VQA_RAD Dataset Public.json", "VQA_RAD_Dataset_Public.json")
VQA_RAD_TEST_PHRASE_TYPES = ("test_freeform", "test_para")


def find_file(root: Path, names: Iterable[str], what: str) -> Path:
    for folder in (root, root / "original"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"no {what} under {root} or {root / 'original'} (looked for {', '.join(names)})")


def load_vqa_rad_original(root: Path) -> Benchmark:
    """VQA-RAD's `VQA_RAD Dataset Public.json` (2,248 rows); the test split is `phrase_type` in
    {test_freeform, test_para}. Images from `VQA_RAD Image Folder/` or `images/`."""
    path = find_file(root, VQA_RAD_JSON_NAMES, "VQA-RAD release file")
    image_dir = first_dir(root / "VQA_RAD Image Folder", path.parent / "VQA_RAD Image Folder", root / "images")
    questions = []
    for index, record in enumerate(read_json_list(path)):
        where = f"{path} row {index}"
        if str(record.get("phrase_type", "")).strip() not in VQA_RAD_TEST_PHRASE_TYPES:
            continue
        image = image_dir / required_text(record, "image_name", where)
        questions.append(make_question(record, where, image, categories_of("vqa-rad", record), required_text(record, "qid", where)))
    check_images(questions, str(path), image_dir)
    return Benchmark("vqa-rad", str(path), "original", unique_ids(questions, str(path)))


def load_slake_original(root: Path, language: str = "en") -> Benchmark:
    """SLAKE's bilingual `test.json`: the rows whose `q_lang` is `language` ("en" or "zh").
    Images from `imgs/` (the release layout) or `images/`."""
    if language not in ("en", "zh"):
        raise ValueError(f"SLAKE language must be 'en' or 'zh', got {language!r}")
    path = find_file(root, ("test.json",), "SLAKE test.json")
    image_dir = first_dir(root / "imgs", path.parent / "imgs", root / "images")
    questions = []
    for index, record in enumerate(read_json_list(path)):
        where = f"{path} row {index}"
        if record.get("q_lang") != language:
            continue
        image = image_dir / required_text(record, "img_name", where)
        questions.append(make_question(record, where, image, categories_of("slake", record), required_text(record, "qid", where)))
    check_images(questions, str(path), image_dir)
    return Benchmark("slake", str(path), "original", unique_ids(questions, str(path)), language=language)


PATHVQA_MIXED_ROWS, PATHVQA_VALIDATION_ROWS = 12_978, 6_259


def load_pathvqa_original(root: Path) -> Benchmark:
    """PathVQA `test.json` as the PathVQA release distributes it.

    That file holds the validation split (rows 0-6,258) followed by the test split (rows 6,259-12,977),
    see its README; with 12,978 rows only the test block is read, and its i-th row is question id
    `f"{i:05d}"` with image `pathvqa_<i>.jpg` (the row's `image_path`). A file of any other length is read
    whole as a test split. `answer_type` is re-derived from the answer (yes/no -> CLOSED), as the shared
    layout does: the file's own `answer_type` is the source repository's heuristic.

    Images: `images/test/` (the source layout, one file per question) or `images/`. The shared copy keeps
    one file per distinct image; there, its `test.jsonl` maps each per-question file name (`source_image`)
    to the kept file.
    """
    path = find_file(root, ("test.json",), "PathVQA test.json")
    rows = read_json_list(path)
    start = PATHVQA_VALIDATION_ROWS if len(rows) == PATHVQA_MIXED_ROWS else 0
    image_dir = first_dir(root / "images" / "test", root / "images")
    aliases = pathvqa_image_aliases(root)
    questions = []
    for index, record in enumerate(rows[start:]):
        where = f"{path} row {start + index}"
        file_name = required_text(record, "image_path", where).replace("\\", "/").rsplit("/", 1)[-1]
        if not (image_dir / file_name).is_file():
            file_name = aliases.get(file_name, file_name)
        answer = required_text(record, "answer", where)
        record = {**record, "answer_type": infer_answer_type(answer)}
        questions.append(make_question(record, where, image_dir / file_name, {}, f"{index:05d}"))
    check_images(questions, str(path), image_dir)
    return Benchmark("pathvqa", str(path), "original", unique_ids(questions, str(path)))


def pathvqa_image_aliases(root: Path) -> dict[str, str]:
    """Per-question image name -> de-duplicated file, from the shared layout's `test.jsonl` (if present)."""
    path = root / "test.jsonl"
    if not path.is_file():
        return {}
    return {r["source_image"]: r["image"] for _, r in read_jsonl(path, BenchmarkFormatError) if "source_image" in r and "image" in r}


# Hugging Face parquet folders ------------------------------------------------------------------------
def parquet_files(root: Path, split: str = "test") -> list[Path]:
    """The split's parquet shards: `**/<split>-*.parquet`, `**/<split>/*.parquet` or `**/<split>.parquet`."""
    files = {p for p in root.rglob("*.parquet") if p.name.startswith(f"{split}-") or p.stem == split or p.parent.name == split}
    return sorted(files)


def parquet_records(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of one parquet file, read in batches so that only one batch of image bytes is decoded at a time."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        yield from batch.to_pylist()


def load_parquet(name: str, root: Path, split: str = "test", language: str = "en") -> Benchmark:
    """A Hugging Face dataset folder: parquet shards with `image` ({bytes, path} or raw bytes), `question`,
    `answer`, optional `answer_type`, id (`qid`/`id`, else the row number), category and `q_lang` columns."""
    files = parquet_files(root, split)
    if not files:
        raise FileNotFoundError(f"no {split} parquet files under {root} (looked for {split}-*.parquet, {split}/*.parquet)")
    questions: list[Question] = []
    distinct: dict[str, bytes] = {}  # identical images share one bytes object (PathVQA: 6,719 rows, 858 images)
    for path in files:
        for offset, record in enumerate(parquet_records(path)):
            where = f"{path} row {offset}"
            if "q_lang" in record and record["q_lang"] != language:
                continue
            image = record.get("image")
            data = image.get("bytes") if isinstance(image, dict) else image
            if not isinstance(data, bytes) or not data:
                raise BenchmarkFormatError(f"{where}: no embedded image bytes in column 'image'")
            data = distinct.setdefault(hashlib.sha256(data).hexdigest(), data)
            raw_id = record.get("qid", record.get("id"))
            qid = str(raw_id) if raw_id is not None else f"{len(questions):05d}"
            questions.append(make_question(record, where, data, categories_of(name, record), qid))
    source = f"{root} ({len(files)} parquet file{'s' * (len(files) > 1)})"
    return Benchmark(name, source, "parquet", unique_ids(questions, source), language=language)


# Entry point -----------------------------------------------------------------------------------------
def detect_layout(name: str, root: Path) -> str:
    if (root / "test.jsonl").is_file():
        return "jsonl"
    if parquet_files(root):
        return "parquet"
    return "original"


def load_benchmark(name: str, root: str | Path, *, layout: str = "auto", language: str = "en") -> Benchmark:
    """Load the test split of `name` ("vqa-rad", "slake", "pathvqa") from the folder `root`.

    `layout`: "jsonl", "original", "parquet" or "auto" (jsonl if `test.jsonl` exists, else parquet shards,
    else the original files). `language` selects SLAKE's English ("en") or Chinese ("zh") questions.
    """
    root = Path(root)
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)} or give a .jsonl/.csv file")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark folder {root} does not exist")
    layout = detect_layout(name, root) if layout == "auto" else layout
    if name == "slake" and language != "en" and layout == "jsonl":
        layout = "original"  # the shared JSONL holds the English questions only
    if layout == "jsonl":
        return load_jsonl_layout(name, root)
    if layout == "parquet":
        return load_parquet(name, root, language=language)
    if name == "vqa-rad":
        return load_vqa_rad_original(root)
    if name == "slake":
        return load_slake_original(root, language)
    return load_pathvqa_original(root)

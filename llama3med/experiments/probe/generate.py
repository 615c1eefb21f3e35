"""The fine-detail probe: a procedurally generated VQA dataset whose answers depend on targets a few
pixels across, to test whether multi-scale (high-resolution) encoding helps.

`generate_probe(out_dir, seed=..., n_train=..., n_test=..., size=...)` writes, in the layout of
a VQA-RAD benchmark folder so that every tool reads it:

    out_dir/images/<split>-<index>.png   grayscale radiographs and RGB microscopy fields
    out_dir/train.jsonl, test.jsonl      {"id", "image", "question", "answer", "answer_type", "question_type", "style"}
    out_dir/captions.jsonl               stage-1 captions of the train images {"id", "image", "caption"}
    out_dir/conversations.jsonl          stage-2 LLaVA conversations about the train images
    out_dir/targets.jsonl                ground truth per image: style, targets (kind, x, y, radius, size class, place)
    out_dir/README.md, probe.json        what the probe is; the parameters (written last: marks a complete probe)

Everything is a function of (seed, split, index): image `i` of a split is the same whether 10 or 1000
images are generated, and the same seed gives byte-identical files. Conventions: image index `i` has
style radiograph when `i` is even, microscopy when odd, and targets when `i // 2` is even, so presence
answers are balanced within each style. "Left lung" is the patient's left, on the image's right
(radiological convention for a frontal radiograph); microscopy quadrants are plain image quadrants.
Pixels are drawn by `llama3med.experiments.probe.images`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from llama3med.experiments.probe.images import (
    MICROSCOPY,
    RADIOGRAPH,
    REFERENCE_SIZE,
    SIZE_CLASSES,
    SOLID,
    STIPPLE_DIAMETER,
    STIPPLE_DIAMETER_FORMAT_2,
    STIPPLED,
    STYLES,
    Layout,
    Target,
    lung_ellipses,
    plan_microscopy,
    plan_radiograph,
    render,
)
from llama3med.io.image_tag import add_image_tag

FORMAT_VERSION = 3  # bump when the images or texts change, so that stale probes are regenerated


class ProbeFormat(NamedTuple):
    """What a probe format draws: the targets' look, the default image side and the stippled targets' diameters
    (px at REFERENCE_SIZE per size class; None for solid targets)."""

    look: str
    size: int
    stipple_diameter: dict[str, tuple[float, float]] | None = None


# Formats 2 and 3 (stippled targets) are drawn at the `small` preset's largest scale, 896 px, so that no resize
# stands between the pixels and the encoder; format 3 (the calibrated default) has discs wide enough to survive
# S2's area pooling, format 2 the narrower first try; format 1 (solid targets at 1024 px) reproduces the first
# runs. docs/EXPERIMENTS.md has the linear-probe measurements of each.
FORMATS = {
    1: ProbeFormat(SOLID, 1024),
    2: ProbeFormat(STIPPLED, 896, STIPPLE_DIAMETER_FORMAT_2),
    3: ProbeFormat(STIPPLED, 896, STIPPLE_DIAMETER),
}
SPLITS = ("train", "test")
SPLIT_CODES = {"train": 0, "test": 1}
DEFAULT_TRAIN, DEFAULT_TEST = 200, 100
DEFAULT_SIZE = FORMATS[FORMAT_VERSION].size
MIN_SIZE, MAX_SIZE = 256, 4096
COUNT_CHOICES, COUNT_WEIGHTS = (1, 2, 3), (0.5, 0.3, 0.2)  # targets per positive image
CLOSED, OPEN = "CLOSED", "OPEN"
DATA_FILES = (
    "train.jsonl",
    "test.jsonl",
    "captions.jsonl",
    "conversations.jsonl",
    "targets.jsonl",
    "README.md",
)
IMAGE_NAME = re.compile(r"^(train|test)-\d+\.png(\.tmp)?$")  # images and half-written ones
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
# Fixed PNG settings (zlib level 1, run-length strategy: fast, and the same bytes on every run).
PNG_OPTIONS = {"format": "PNG", "compress_level": 1, "compress_type": 3, "optimize": False}
DESCRIBE_QUESTION = "Describe the image."


class ProbeError(ValueError):
    """Bad probe parameters or an output folder the probe must not write into."""


@dataclass(frozen=True)
class ProbeImage:
    """One probe image: where it is and what it shows."""

    id: str
    split: str
    index: int
    layout: Layout

    @property
    def file(self) -> str:
        """File name relative to `images/`."""
        return f"{self.id}.png"

    @property
    def style(self) -> str:
        return self.layout.style


@dataclass(frozen=True)
class ProbeSummary:
    """What `generate_probe` left in `out_dir`. `generated` is False when a complete probe with the same
    parameters was already there and was kept."""

    out_dir: Path
    seed: int
    size: int
    n_train: int
    n_test: int
    questions: dict[str, int] = field(default_factory=dict)  # split -> number of QA records
    version: int = FORMAT_VERSION
    generated: bool = True
    seconds: float = 0.0

    @property
    def image_dir(self) -> Path:
        return self.out_dir / "images"

    def split_file(self, split: str) -> Path:
        """`train.jsonl` or `test.jsonl` (VQA records in the shared-benchmark layout)."""
        return self.out_dir / f"{split}.jsonl"

    @property
    def captions_file(self) -> Path:
        return self.out_dir / "captions.jsonl"

    @property
    def conversations_file(self) -> Path:
        return self.out_dir / "conversations.jsonl"

    @property
    def targets_file(self) -> Path:
        return self.out_dir / "targets.jsonl"


# Images -----------------------------------------------------------------------------------------------
def image_streams(seed: int, split: str, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The two random streams of one image (layout, pixels), derived from (seed, split, index) only."""
    layout_seq, pixel_seq = np.random.SeedSequence([seed, SPLIT_CODES[split], index]).spawn(2)
    return np.random.Generator(np.random.PCG64(layout_seq)), np.random.Generator(np.random.PCG64(pixel_seq))


def image_id(split: str, index: int, total: int) -> str:
    return f"{split}-{index:0{max(5, len(str(max(total - 1, 0))))}d}"


def plan_probe_image(
    seed: int, split: str, index: int, size: int, total: int, version: int = FORMAT_VERSION
) -> ProbeImage:
    """Image `index` of `split`: radiograph for even, microscopy for odd indices; targets when index // 2 is
    even; targets drawn in the look of probe format `version`."""
    rng, _ = image_streams(seed, split, index)
    style = STYLES[index % 2]
    n_targets = int(rng.choice(COUNT_CHOICES, p=COUNT_WEIGHTS)) if (index // 2) % 2 == 0 else 0
    size_class = SIZE_CLASSES[int(rng.integers(len(SIZE_CLASSES)))]
    plan = plan_radiograph if style == RADIOGRAPH else plan_microscopy
    look, _, diameter = FORMATS[version]
    layout = plan(rng, size, n_targets, size_class, look, diameter or STIPPLE_DIAMETER)
    return ProbeImage(image_id(split, index, total), split, index, layout)


def render_probe_image(seed: int, image: ProbeImage, *, with_targets: bool = True) -> np.ndarray:
    """Pixels of `image` (uint8 [S, S] or [S, S, 3]); without targets, only the targets' footprints differ."""
    _, pixel_rng = image_streams(seed, image.split, image.index)
    return render(image.layout if with_targets else image.layout.without_targets(), pixel_rng)


# Facts -> text ----------------------------------------------------------------------------------------
def lung_side(target: Target, size: int) -> str:
    """The patient's side: a frontal radiograph shows the patient's left lung on the image's right."""
    return "left" if target.x >= size / 2 else "right"


def lung_zone(target: Target, layout: Layout) -> str:
    """Upper, middle or lower third of the lung that holds the target."""
    _, cy, _, ay = lung_ellipses(layout.geometry)[0 if target.x < layout.size / 2 else 1]
    third = int(np.clip((target.y / layout.size - (cy - ay)) / (2 * ay) * 3, 0, 2))
    return ("upper", "middle", "lower")[third]


def quadrant(target: Target, size: int) -> str:
    return ("upper" if target.y < size / 2 else "lower") + " " + ("left" if target.x < size / 2 else "right")


def target_place(target: Target, layout: Layout) -> str:
    """Where a target is, in words: "upper zone of the left lung" or "lower right quadrant"."""
    if layout.style == RADIOGRAPH:
        return f"{lung_zone(target, layout)} zone of the {lung_side(target, layout.size)} lung"
    return f"{quadrant(target, layout.size)} quadrant"


def noun(style: str, count: int) -> str:
    singular = "nodule" if style == RADIOGRAPH else "mitotic figure"
    return singular if count == 1 else singular + "s"


def questions_for(image: ProbeImage) -> list[dict[str, str]]:
    """The image's VQA records: presence (CLOSED) and count (OPEN) always; location and size (OPEN) when
    there are targets (microscopy location only for a single figure: quadrants of several are a list)."""
    layout, style = image.layout, image.style
    targets, n = layout.targets, len(layout.targets)
    things = noun(style, n)
    asked: list[tuple[str, str, str]] = []  # (question_type, question, answer)
    if style == RADIOGRAPH:
        asked += [("PRES", "Is there a nodule in the lungs?", "yes" if n else "no")]
        asked += [("COUNT", "How many nodules are visible?", str(n))]
        if n:
            sides = sorted({lung_side(t, layout.size) for t in targets})
            asked += [("POS", f"Which lung contains the {things}?", sides[0] if len(sides) == 1 else "both")]
    else:
        asked += [("PRES", "Is there a mitotic figure in this field?", "yes" if n else "no")]
        asked += [("COUNT", "How many mitotic figures are visible?", str(n))]
        if n == 1:
            question = "Which quadrant of the image contains the mitotic figure?"
            asked += [("POS", question, quadrant(targets[0], layout.size))]
    if n:
        asked += [("SIZE", f"What is the size of the {things}?", targets[0].size_class)]
    return [
        {
            "id": f"{image.id}-{question_type.lower()}",
            "image": image.file,
            "question": question,
            "answer": answer,
            "answer_type": CLOSED if question_type == "PRES" else OPEN,
            "question_type": question_type,
            "style": style,
        }
        for question_type, question, answer in asked
    ]


def caption_for(image: ProbeImage) -> str:
    """One sentence naming every target with its size class and place."""
    layout, n = image.layout, len(image.layout.targets)
    if image.style == RADIOGRAPH:
        scene, finding = "Frontal chest radiograph with", "pulmonary " + noun(RADIOGRAPH, n)
        if n == 0:
            return f"{scene} clear lungs: no pulmonary nodule is visible."
    else:
        scene, finding = (
            "High-power H&E-stained tissue section with numerous normal nuclei and",
            noun(MICROSCOPY, n),
        )
        if n == 0:
            return f"{scene} no mitotic figure."
    places = Counter(target_place(t, layout) for t in layout.targets)  # in the targets' order
    if len(places) == 1:
        where = f" in the {next(iter(places))}"
    else:
        parts = [f"{NUMBER_WORDS[k]} in the {place}" for place, k in places.items()]
        where = ": " + ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return f"{scene} {NUMBER_WORDS[n]} {layout.targets[0].size_class} {finding}{where}."


def conversation_for(image: ProbeImage, questions: list[dict[str, str]]) -> dict[str, Any]:
    """A LLaVA-format multi-turn conversation: the image's questions, then a description request."""
    turns: list[dict[str, str]] = []
    for position, record in enumerate(
        [*questions, {"question": DESCRIBE_QUESTION, "answer": caption_for(image)}]
    ):
        prompt = add_image_tag(record["question"]) if position == 0 else record["question"]
        turns += [{"from": "human", "value": prompt}, {"from": "gpt", "value": record["answer"]}]
    return {"id": image.id, "image": image.file, "conversations": turns}


def targets_record(image: ProbeImage) -> dict[str, Any]:
    """Ground truth of one image; coordinates in pixels (x right, y down), rounded to 0.01."""
    layout = image.layout
    targets = []
    for t in layout.targets:
        entry: dict[str, Any] = {
            "kind": t.kind,
            "x": round(t.x, 2),
            "y": round(t.y, 2),
            "radius": round(t.radius, 2),
            "size_class": t.size_class,
            "place": target_place(t, layout),
        }
        if image.style == MICROSCOPY:
            entry.update(length=round(t.length, 2), width=round(t.width, 2))
        targets.append(entry)
    return {"id": image.id, "image": image.file, "split": image.split, "style": image.style,
            "size": layout.size, "targets": targets}  # fmt: skip


# Files ------------------------------------------------------------------------------------------------
def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def probe_parameters(seed: int, n_train: int, n_test: int, size: int, version: int = FORMAT_VERSION) -> dict[str, int]:
    return {"format": version, "seed": seed, "n_train": n_train, "n_test": n_test, "size": size}


def check_parameters(seed: int, n_train: int, n_test: int, size: int, version: int = FORMAT_VERSION) -> None:
    if version not in FORMATS:
        raise ProbeError(f"probe format must be one of {sorted(FORMATS)}, got {version}")
    if seed < 0:
        raise ProbeError(f"seed must be >= 0, got {seed}")
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ProbeError(f"need n_train >= 0, n_test >= 0 and at least one image, got {n_train} and {n_test}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ProbeError(
            f"size must be between {MIN_SIZE} and {MAX_SIZE} px (targets are defined at 1024), got {size}"
        )


def read_probe_json(out_dir: Path) -> dict[str, Any] | None:
    """The recorded parameters, or None when `out_dir` holds no readable probe.json."""
    try:
        recorded = json.loads((out_dir / "probe.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def is_complete(out_dir: Path, parameters: dict[str, int], recorded: dict[str, Any] | None) -> bool:
    """Whether `out_dir` holds a finished probe made with `parameters` (every file present)."""
    if (
        recorded is None
        or not recorded.get("complete")
        or any(recorded.get(k) != v for k, v in parameters.items())
    ):
        return False
    if not all((out_dir / name).is_file() for name in DATA_FILES):
        return False
    names = [
        image_id(split, i, n) + ".png"
        for split, n in zip(SPLITS, (parameters["n_train"], parameters["n_test"]))
        for i in range(n)
    ]
    return all((out_dir / "images" / name).is_file() for name in names)


def write_probe_json(
    out_dir: Path, parameters: dict[str, int], complete: bool, questions: dict[str, int]
) -> None:
    content = {
        **parameters,
        "complete": complete,
        "questions": questions,
        "generator": "llama3med.experiments.probe",
    }
    (out_dir / "probe.json").write_bytes(
        (json.dumps(content, sort_keys=True, indent=2) + "\n").encode("utf-8")
    )


def prepare_folder(out_dir: Path, recorded: dict[str, Any] | None, keep: set[str]) -> None:
    """Make `out_dir` ready for a new probe: refuse a non-empty folder that is not a probe; in an old probe,
    remove the images this probe will not write and half-written ones (so nothing stale is left behind)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ProbeError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and recorded is None and any(out_dir.iterdir()):
        raise ProbeError(
            f"{out_dir} is not empty and holds no probe.json: refusing to write a probe into it; choose a new or empty folder"
        )
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for path in (out_dir / "images").iterdir():
        if IMAGE_NAME.match(path.name) and path.name not in keep:
            path.unlink()


def generate_probe(
    out_dir: Path | str,
    *,
    seed: int = 0,
    n_train: int = DEFAULT_TRAIN,
    n_test: int = DEFAULT_TEST,
    size: int | None = None,
    version: int | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeSummary:
    """Write the probe to `out_dir` (see the module docstring), or keep the one there when it is complete
    and was made with the same parameters (unless `force`); an interrupted run with the same parameters
    resumes. `version` is the probe format (default: the calibrated `FORMAT_VERSION`); `size` defaults to
    that format's side (896 px for format 2). `progress(done, total)` is called per image.

    Raises `ProbeError` for bad parameters, or when `out_dir` is a non-empty folder without probe.json.
    """
    version = FORMAT_VERSION if version is None else version
    size = (FORMATS[version].size if version in FORMATS else DEFAULT_SIZE) if size is None else size
    check_parameters(seed, n_train, n_test, size, version)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    parameters = probe_parameters(seed, n_train, n_test, size, version)
    recorded = read_probe_json(out_dir)
    if not force and is_complete(out_dir, parameters, recorded):
        questions = dict(recorded["questions"])
        return ProbeSummary(
            out_dir,
            seed,
            size,
            n_train,
            n_test,
            questions,
            generated=False,
            seconds=time.perf_counter() - start,
            version=version,
        )
    # An interrupted run with the same parameters resumes: its images are kept (each was written whole, by
    # rename) and only the missing ones are drawn; the texts are cheap and always rewritten.
    resume = not force and recorded is not None and all(recorded.get(k) == v for k, v in parameters.items())

    counts = {"train": n_train, "test": n_test}
    images = [
        plan_probe_image(seed, split, i, size, counts[split], version)
        for split in SPLITS
        for i in range(counts[split])
    ]
    prepare_folder(out_dir, recorded, {image.file for image in images})
    write_probe_json(out_dir, parameters, False, {})  # an interrupted run leaves an incomplete probe
    records: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    captions, conversations = [], []
    for done, image in enumerate(images, start=1):
        path = out_dir / "images" / image.file
        if not (resume and path.is_file()):
            partial = path.with_name(path.name + ".tmp")
            Image.fromarray(render_probe_image(seed, image)).save(partial, **PNG_OPTIONS)
            os.replace(partial, path)
        questions = questions_for(image)
        records[image.split] += questions
        if image.split == "train":  # training texts only for training images: nothing leaks into test
            captions.append({"id": image.id, "image": image.file, "caption": caption_for(image)})
            conversations.append(conversation_for(image, questions))
        if progress is not None:
            progress(done, len(images))

    for split in SPLITS:
        (out_dir / f"{split}.jsonl").write_bytes(jsonl_bytes(records[split]))
    (out_dir / "captions.jsonl").write_bytes(jsonl_bytes(captions))
    (out_dir / "conversations.jsonl").write_bytes(jsonl_bytes(conversations))
    (out_dir / "targets.jsonl").write_bytes(jsonl_bytes([targets_record(image) for image in images]))
    questions = {split: len(records[split]) for split in SPLITS}
    (out_dir / "README.md").write_bytes(probe_readme(parameters, questions).encode("utf-8"))
    write_probe_json(out_dir, parameters, True, questions)
    return ProbeSummary(
        out_dir, seed, size, n_train, n_test, questions, generated=True, seconds=time.perf_counter() - start,
        version=version,
    )


TARGET_TEXT = {
    1: "At 1024 px the targets are visible; down-sampled to 224 px they look like the normal structures around them.",
    2: "Each target is a disc of pixel-scale granular texture (a checkerboard of brighter and darker pixels) whose "
       "local mean is the background's: at the full size it is the strongest texture in the image, and any 2x or "
       "4x down-sampling (448 or 224 px) cancels it, so a low-resolution view holds no trace of it.",
}
TARGET_LIST = {
    1: """- **Nodules** (radiographs): sharp-edged bright discs, small 4-6 px or large 7-10 px across (at 1024 px),
  on aerated lung. End-on vessels are soft Gaussian dots of about the same integrated brightness and
  extent. At full size every nodule is among the brightest spots of the lung; down-sampled to 224 px a
  typical nodule is one more bump of the lung texture, like the vessels.
- **Mitotic figures** (microscopy): dense, spiky chromosome plates, small 7-9 px or large 11-15 px long
  (at 1024 px), on tissue. At full size each is darker than every normal nucleus; at 224 px it is one
  more dark dot, as dark as many nuclei.""",
}


def stippled_target_list(diameter: dict[str, tuple[float, float]]) -> str:
    """The README's target list of a stippled format, with its sizes at 896 px."""
    small, large = ([d * 896 / REFERENCE_SIZE for d in diameter[c]] for c in ("small", "large"))
    return f"""- **Nodules** (radiographs): discs of calcific stippling on aerated lung, among end-on vessels (soft Gaussian
  dots). **Mitotic figures** (microscopy): discs of clumped, granular chromatin on tissue, among normal nuclei.
- Sizes at 896 px: small {small[0]:.0f}-{small[1]:.0f} px, large {large[0]:.0f}-{large[1]:.0f} px across; at 224 px a quarter of that, and
  the texture itself (1 px at 896) is a quarter of a pixel: gone."""


TARGET_LIST.update({v: stippled_target_list(f.stipple_diameter) for v, f in FORMATS.items() if f.stipple_diameter})
TARGET_TEXT[3] = TARGET_TEXT[2]


def probe_readme(parameters: dict[str, int], questions: dict[str, int]) -> str:
    """README.md of a generated probe."""
    p = parameters
    return f"""# Fine-detail probe (generated by llama3med)

Procedurally generated images whose answers depend on detail only a high-resolution view keeps. It tests
whether multi-scale (high-resolution) image encoding helps. {TARGET_TEXT[p["format"]]} Target sizes scale with
the image size; these images are {p["size"]} px (probe format {p["format"]}). Regenerate with

    llama3med probe generate --out <this folder> --seed {p["seed"]} --train {p["n_train"]} --test {p["n_test"]} --size {p["size"]} --format {p["format"]}

(same seed, byte-identical files). Parameters: seed {p["seed"]}, {p["n_train"]} train and {p["n_test"]} test images of
{p["size"]} x {p["size"]} px; {questions["train"]} train and {questions["test"]} test questions.

## Images

Even image indices are **radiograph**-style (grayscale frontal chest radiograph: body outline, lungs,
heart, spine, ribs, mottled lung markings made of smooth noise, end-on vessels, an intensity gradient);
odd indices are **microscopy**-style (RGB H&E-like field: pink stroma with fibres, pale lumina, many
normal nuclei). Images whose index // 2 is even hold 1-3 targets (1: 50 %, 2: 30 %, 3: 20 %), the
others none, so "yes" and "no" are balanced within each style.

{TARGET_LIST[p["format"]]}

All targets of one image share one size class. Sizes scale with the image size.

## Files

| file | content |
| --- | --- |
| `images/<split>-<index>.png` | the images (PNG; radiographs 8-bit grayscale, microscopy RGB) |
| `train.jsonl`, `test.jsonl` | VQA records `id, image, question, answer, answer_type, question_type, style` (the layout of a VQA-RAD benchmark folder; `image` is relative to `images/`) |
| `captions.jsonl` | stage-1 captions of the **train** images: `id, image, caption` |
| `conversations.jsonl` | stage-2 LLaVA conversations about the **train** images: `id, image, conversations` (`from` human/gpt; the questions of the image, then "{DESCRIBE_QUESTION}") |
| `targets.jsonl` | ground truth per image: `id, image, split, style, size, targets` with `kind, x, y, radius, size_class, place` (pixels, x right, y down; mitotic figures also `length, width`) |
| `probe.json` | the parameters; `complete` is true once every file is written |

## Questions

| question_type | answer_type | radiograph | microscopy | answers |
| --- | --- | --- | --- | --- |
| PRES | CLOSED | Is there a nodule in the lungs? | Is there a mitotic figure in this field? | yes / no |
| COUNT | OPEN | How many nodules are visible? | How many mitotic figures are visible? | 0-3 (digits) |
| POS | OPEN | Which lung contains the nodule(s)? (when there are any) | Which quadrant of the image contains the mitotic figure? (exactly one) | left / right / both; upper left / upper right / lower left / lower right |
| SIZE | OPEN | What is the size of the nodule(s)? (when there are any) | What is the size of the mitotic figure(s)? (when there are any) | small / large |

"Left lung" is the **patient's** left lung, which a frontal radiograph shows on the **image's right**
(radiological convention). Quadrants are plain image quadrants; mitotic figures stay at least 6 % of
the image size away from the centre lines, so the quadrant is never ambiguous.
"""

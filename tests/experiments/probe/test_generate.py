"""The fine-detail probe: deterministic files, answers correct by construction (checked against the drawn
pixels), balanced classes, the shared JSONL layout, and targets that vanish at 224 px but not at full size.

The pixel-level checks here are of probe format 1 (solid targets at 1024 px, still selectable); the calibrated
formats 2 and 3 (stippled targets) have their own in test_images.py. Texts and files are the same in both."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from llama3med.eval.benchmarks import load_jsonl_layout
from llama3med.experiments.probe.generate import (
    ProbeError,
    ProbeImage,
    generate_probe,
    plan_probe_image,
    render_probe_image,
)
from llama3med.experiments.probe.images import MITOSIS_LENGTH, NODULE_DIAMETER, RADIOGRAPH, on_aerated_lung
from llama3med.train.data.conversations import DataReport, DataSource, read_source

SEED, N_TRAIN, N_TEST, SIZE = 7, 12, 8, 1024
SHARED_FIELDS = {"id", "image", "question", "answer", "answer_type", "question_type"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size probe of format 1: 12 train + 8 test images at 1024 px."""
    out = tmp_path_factory.mktemp("probe") / "probe"
    generate_probe(out, seed=SEED, n_train=N_TRAIN, n_test=N_TEST, size=SIZE, version=1)
    return out


@pytest.fixture(scope="module")
def targets(probe: Path) -> list[dict]:
    return read_jsonl(probe / "targets.jsonl")


def planned(record: dict) -> ProbeImage:
    """The fixture probe's image behind a targets.jsonl record (its layout: geometry, distractors)."""
    split, index = record["split"], int(record["id"].split("-")[1])
    return plan_probe_image(SEED, split, index, SIZE, N_TRAIN if split == "train" else N_TEST, version=1)


# Determinism --------------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = generate_probe(tmp_path / "a", seed=3, n_train=6, n_test=4, size=512)
    generate_probe(tmp_path / "b", seed=3, n_train=6, n_test=4, size=512)
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert len(a) == 10 + 7  # images + 5 JSONL + README + probe.json
    assert a.keys() == b.keys()
    assert [name for name in a if a[name] != b[name]] == []
    assert first.generated
    assert first.questions == {split: a[f"{split}.jsonl"].count(b"\n") for split in ("train", "test")}
    other = all_files(generate_probe(tmp_path / "c", seed=4, n_train=6, n_test=4, size=512).out_dir)
    assert other["images/train-00000.png"] != a["images/train-00000.png"]


def test_fewer_images_are_a_prefix_of_more(tmp_path: Path) -> None:
    small = all_files(generate_probe(tmp_path / "small", seed=5, n_train=3, n_test=2, size=512).out_dir)
    large = all_files(generate_probe(tmp_path / "large", seed=5, n_train=5, n_test=4, size=512).out_dir)
    images = [name for name in small if name.startswith("images/")]
    assert len(images) == 5 and all(small[name] == large[name] for name in images)
    for name in ("train.jsonl", "test.jsonl", "captions.jsonl", "conversations.jsonl"):
        lines = small[name].decode().splitlines()
        assert large[name].decode().splitlines()[: len(lines)] == lines


# Answers correct by construction ----------------------------------------------------------------
def expected_answers(record: dict) -> dict[str, str]:
    """Answers re-derived from the ground-truth coordinates alone."""
    found, size = record["targets"], record["size"]
    answers = {"PRES": "yes" if found else "no", "COUNT": str(len(found))}
    if found:
        answers["SIZE"] = found[0]["size_class"]
        if record["style"] == RADIOGRAPH:  # the patient's left lung is on the image's right
            sides = {"left" if t["x"] >= size / 2 else "right" for t in found}
            answers["POS"] = sides.pop() if len(sides) == 1 else "both"
        elif len(found) == 1:
            t = found[0]
            answers["POS"] = (
                f"{'upper' if t['y'] < size / 2 else 'lower'} {'left' if t['x'] < size / 2 else 'right'}"
            )
    return answers


def test_answers_follow_from_target_coordinates(probe: Path, targets: list[dict]) -> None:
    questions = read_jsonl(probe / "train.jsonl") + read_jsonl(probe / "test.jsonl")
    by_image: dict[str, dict[str, str]] = {}
    for q in questions:
        by_image.setdefault(q["image"], {})[q["question_type"]] = q["answer"]
        assert q["answer_type"] == ("CLOSED" if q["question_type"] == "PRES" else "OPEN")
    assert len(targets) == N_TRAIN + N_TEST
    for record in targets:
        assert by_image[record["image"]] == expected_answers(record), record["id"]
        assert len({t["size_class"] for t in record["targets"]}) <= 1
        for t in record["targets"]:
            low, high = (NODULE_DIAMETER if record["style"] == RADIOGRAPH else MITOSIS_LENGTH)[
                t["size_class"]
            ]
            extent = 2 * t["radius"] if record["style"] == RADIOGRAPH else t["length"]
            assert low - 0.02 <= extent <= high + 0.02, (record["id"], t)


def test_captions_and_conversations_state_the_same_facts(probe: Path, targets: list[dict]) -> None:
    train_truth = {r["image"]: r for r in targets if r["split"] == "train"}
    captions = read_jsonl(probe / "captions.jsonl")
    conversations = read_jsonl(probe / "conversations.jsonl")
    assert [c["image"] for c in captions] == [c["image"] for c in conversations] == list(train_truth)
    words = {0: "no", 1: "one", 2: "two", 3: "three"}
    for caption, conversation in zip(captions, conversations):
        truth = train_truth[caption["image"]]
        n = len(truth["targets"])
        assert f" {words[n]} " in f" {caption['caption']} ", caption
        for t in truth["targets"]:
            assert t["place"] in caption["caption"] and t["size_class"] in caption["caption"]
        turns = conversation["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith("<image>\n") and all(
            "<image>" not in t["value"] for t in turns[1:]
        )
        assert turns[3]["value"] == str(n) and turns[2]["value"].startswith("How many")
        assert turns[-2:] == [
            {"from": "human", "value": "Describe the image."},
            {"from": "gpt", "value": caption["caption"]},
        ]


def mean_within(gray: np.ndarray, xs: np.ndarray, ys: np.ndarray, r0: float, r1: float) -> np.ndarray:
    """Mean gray level of the pixels r0..r1 px from each position (xs, ys) (integer pixel positions)."""
    reach = int(np.ceil(r1)) + 1
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    distance = np.hypot(dx, dy)
    keep = (distance >= r0) & (distance <= r1)
    rows = np.clip(ys[:, None] + dy[keep][None], 0, gray.shape[0] - 1)
    cols = np.clip(xs[:, None] + dx[keep][None], 0, gray.shape[1] - 1)
    return gray[rows, cols].mean(axis=1)


def test_drawn_pixels_hold_exactly_the_listed_targets(probe: Path, targets: list[dict]) -> None:
    """The saved image differs from the same image rendered without targets only within 1.5 px of the
    listed targets, each listed target changes about its drawn area, nodules only brighten and mitotic
    figures only darken (no channel gets brighter), and each target's centre differs from its surroundings the same way: every drawn
    target is listed and every listed target is drawn."""
    for record in targets:
        saved = np.asarray(Image.open(probe / "images" / record["image"]), dtype=np.int16)
        bare = render_probe_image(SEED, planned(record), with_targets=False).astype(np.int16)
        difference = (saved - bare).reshape(SIZE, SIZE, -1)  # [S, S, channels]
        rows, cols = np.nonzero(np.abs(difference).max(axis=2))
        changes = difference[rows, cols]  # [changed pixels, channels]
        assert (changes > 0).all() if record["style"] == RADIOGRAPH else (changes <= 0).all(), record["id"]
        near = np.zeros((len(record["targets"]), rows.size), bool)  # [targets, changed pixels]
        for k, t in enumerate(record["targets"]):
            near[k] = np.hypot(cols + 0.5 - t["x"], rows + 0.5 - t["y"]) <= t["radius"] + 1.5
        assert near.any(axis=0).all(), record["id"]  # nothing else changed
        gray = saved.astype(np.float32) if saved.ndim == 2 else saved.mean(axis=2)
        for k, t in enumerate(record["targets"]):
            nodule = record["style"] == RADIOGRAPH
            drawn = np.pi * t["radius"] ** 2 if nodule else np.pi / 4 * t["length"] * t["width"]
            assert near[k].sum() >= 0.7 * drawn, (record["id"], t)
            xs, ys = np.array([int(t["x"])]), np.array([int(t["y"])])
            centre = mean_within(gray, xs, ys, 0, t["radius"] - 0.5 if nodule else t["width"] / 2)[0]
            ring = mean_within(gray, xs, ys, t["radius"] + 2, t["radius"] + 5)[0]
            if nodule:
                assert centre - ring > 10, (
                    record["id"],
                    t,
                    centre,
                    ring,
                )  # 0.12 x 255 = 31 gray levels drawn
            else:
                assert ring - centre > 50, (record["id"], t, centre, ring)


def test_presence_is_balanced_and_counts_and_sizes_vary() -> None:
    images = [plan_probe_image(11, "train", i, SIZE, 400) for i in range(400)]
    by_style = Counter((im.style, bool(im.layout.targets)) for im in images)
    assert set(by_style.values()) == {100}  # yes/no exactly half within each style
    counts = Counter(len(im.layout.targets) for im in images if im.layout.targets)
    assert counts[1] > counts[2] > counts[3] > 20
    sizes = Counter(im.layout.targets[0].size_class for im in images if im.layout.targets)
    assert 0.4 < sizes["small"] / 200 < 0.6


# Shared layout ---------------------------------------------------------------------------------------
def test_splits_load_like_the_shared_benchmarks(probe: Path) -> None:
    for split, n_images in (("train", N_TRAIN), ("test", N_TEST)):
        benchmark = load_jsonl_layout("probe", probe, split)  # checks every image file exists
        counts = benchmark.counts()
        assert counts.images == n_images and counts.closed == n_images
        assert counts.open == counts.questions - n_images > n_images
        records = read_jsonl(probe / f"{split}.jsonl")
        assert all(set(r) == SHARED_FIELDS | {"style"} for r in records)


def test_fields_match_vqa_rad(probe: Path, benchmarks_dir: Path) -> None:
    vqa_rad = read_jsonl(benchmarks_dir / "vqa-rad" / "test.jsonl")[0]
    assert SHARED_FIELDS <= set(vqa_rad)
    assert {type(vqa_rad[k]) for k in SHARED_FIELDS} == {str}
    assert {type(v) for r in read_jsonl(probe / "test.jsonl") for v in r.values()} == {str}


def test_training_readers_accept_captions_and_conversations(probe: Path) -> None:
    report = DataReport(strict=True)
    for name, data_format in (
        ("captions.jsonl", "caption"),
        ("conversations.jsonl", "llava"),
        ("train.jsonl", "vqa"),
    ):
        source = DataSource(probe / name, data_format, image_root=probe / "images")
        conversations = read_source(source, report)
        assert len(conversations) == len(read_jsonl(probe / name))
        assert all(c.image is not None and c.image.is_file() for c in conversations)
    assert report.skipped_ids == []


# Fine detail: visible at full size, not at 224 px ----------------------------------------------------
def centre_surround(gray: np.ndarray, xs: np.ndarray, ys: np.ndarray, radius: float) -> np.ndarray:
    """Mean of the disc of `radius` (at least the centre pixel) minus the mean of the ring 1-3 px outside it."""
    return mean_within(gray, xs, ys, 0, max(radius, 0.5)) - mean_within(gray, xs, ys, radius + 1, radius + 3)


def downsampled(path: Path, side: int) -> np.ndarray:
    return np.asarray(
        Image.open(path).convert("L").resize((side, side), Image.Resampling.BICUBIC), np.float32
    )


def scaled(xs: np.ndarray, factor: float) -> np.ndarray:
    return (np.asarray(xs) * factor).astype(int)


def test_nodules_stand_out_at_full_size_and_sink_into_the_lung_at_224(
    probe: Path, targets: list[dict]
) -> None:
    """Contrast to clutter: a nodule's centre-surround contrast as a z-score against the same statistic at
    2,000 random points of aerated lung (texture, ribs, vessels), at 1024 px and after a bicubic resize
    to 224 px (what the smallest scale of the encoder sees)."""
    rng = np.random.default_rng(0)
    z = {SIZE: [], 224: []}
    for record in (r for r in targets if r["style"] == RADIOGRAPH and r["targets"]):
        points = rng.uniform(0, 1, (30000, 2))
        points = points[on_aerated_lung(planned(record).layout.geometry, points[:, 0], points[:, 1])] * SIZE
        for t in record["targets"]:  # background: away from every target
            points = points[np.hypot(points[:, 0] - t["x"], points[:, 1] - t["y"]) > 3 * t["radius"] + 8]
        points = points[:2000]
        for side in z:
            gray, f = downsampled(probe / "images" / record["image"], side), side / SIZE
            for t in record["targets"]:
                r = t["radius"] * f
                background = centre_surround(gray, scaled(points[:, 0], f), scaled(points[:, 1], f), r)
                value = centre_surround(gray, scaled([t["x"]], f), scaled([t["y"]], f), r)[0]
                z[side].append((value - background.mean()) / background.std())
    z_full, z_low = np.array(z[SIZE]), np.array(z[224])
    assert len(z_full) >= 6
    assert z_full.min() > 6.0  # every nodule is among the brightest spots of the lung at full size
    assert np.median(z_low) < 1.5  # at 224 px the typical nodule is an ordinary bump of the texture
    assert np.median(z_full / np.maximum(z_low, 0.1)) > 5.0


def test_mitotic_figures_are_darker_than_every_nucleus_at_full_size_but_not_at_224(
    probe: Path, targets: list[dict]
) -> None:
    """Darkness (mean gray level of a disc of half the plate's width, at least the centre pixel) at each
    mitotic figure against the same at every normal nucleus: no nucleus is as dark at 1024 px; at 224 px
    many are."""
    as_dark = {SIZE: [], 224: []}
    for record in (r for r in targets if r["style"] != RADIOGRAPH and r["targets"]):
        nuclei = planned(record).layout.distractors  # rows (x, y, a, b, angle, density)
        for side in as_dark:
            gray, f = downsampled(probe / "images" / record["image"], side), side / SIZE
            for t in record["targets"]:
                r = t["width"] / 2 * f
                nucleus = mean_within(gray, scaled(nuclei[:, 0], f), scaled(nuclei[:, 1], f), 0, max(r, 0.5))
                figure = mean_within(gray, scaled([t["x"]], f), scaled([t["y"]], f), 0, max(r, 0.5))[0]
                as_dark[side].append(float((nucleus <= figure).mean()))
    assert len(as_dark[SIZE]) >= 6
    assert max(as_dark[SIZE]) == 0.0
    assert np.median(as_dark[224]) > 0.3


# Reuse, errors, CLI ------------------------------------------------------------------------------------
def test_complete_probe_is_kept_interrupted_one_resumed_and_changed_one_regenerated(tmp_path: Path) -> None:
    out = tmp_path / "probe"
    assert generate_probe(out, seed=1, n_train=4, n_test=2, size=256).generated
    files = all_files(out)
    stamp = (out / "images" / "train-00000.png").stat().st_mtime_ns
    kept = generate_probe(out, seed=1, n_train=4, n_test=2, size=256)
    assert not kept.generated and kept.questions == json.loads(files["probe.json"])["questions"]
    assert (out / "images" / "train-00000.png").stat().st_mtime_ns == stamp

    # Interrupted: probe.json not complete, one image missing, one half written.
    (out / "probe.json").write_text(json.dumps({**json.loads(files["probe.json"]), "complete": False}))
    (out / "images" / "test-00001.png").unlink()
    (out / "images" / "train-00002.png.tmp").write_bytes(b"half an image")
    assert generate_probe(out, seed=1, n_train=4, n_test=2, size=256).generated
    assert all_files(out) == files  # as if never interrupted ...
    assert (out / "images" / "train-00000.png").stat().st_mtime_ns == stamp  # ... without redrawing the rest

    generate_probe(out, seed=1, n_train=4, n_test=2, size=256, force=True)
    assert (out / "images" / "train-00000.png").stat().st_mtime_ns != stamp

    fewer = generate_probe(out, seed=2, n_train=2, n_test=1, size=256)  # new parameters: stale images go
    assert fewer.generated
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "test-00000.png",
        "train-00000.png",
        "train-00001.png",
    ]
    assert json.loads((out / "probe.json").read_text())["seed"] == 2


def test_bad_parameters_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ProbeError, match=r"is not empty and holds no probe.json"):
        generate_probe(tmp_path, n_train=1, n_test=1, size=256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(ProbeError, match="size must be between 256 and 4096 px"):
        generate_probe(tmp_path / "p", size=128)
    with pytest.raises(ProbeError, match=r"size must be between 256 and 4096 px .*, got 0$"):
        generate_probe(tmp_path / "p", size=0)  # an explicit 0 is refused, not read as "the default"
    with pytest.raises(ProbeError, match="seed must be >= 0, got -1"):
        generate_probe(tmp_path / "p", seed=-1)
    with pytest.raises(ProbeError, match="at least one image"):
        generate_probe(tmp_path / "p", n_train=0, n_test=0)


def test_cli_generates_and_reports(tmp_path: Path) -> None:
    from llama3med.cli.main import app

    runner = CliRunner()
    args = ["probe", "generate", "--out", str(tmp_path / "p"), "--train", "2", "--test", "2", "--size", "256"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "2 train + 2 test images of 256 px" in " ".join(result.output.split())
    assert len(read_jsonl(tmp_path / "p" / "test.jsonl")) >= 4
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "kept the complete probe" in again.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    refused = runner.invoke(app, ["probe", "generate", "--out", str(tmp_path / "other"), "--size", "256"])
    assert refused.exit_code == 2 and "holds no probe.json" in refused.output

"""Hostile files through every image entry point: decompression bombs refused within bounded memory and
time (peak RSS measured in a fresh process), corrupt headers and unsupported datatypes named for what
they are, and one decoder for paths, bytes and data: URLs."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (
    MiB,
    bare_dicom_bytes,
    deflated_dicom,
    deflated_dicom_declaring,
    nifti_corrupt_header,
    nifti_extension_bomb,
    nifti_rgb24,
    nifti_unknown_datatype,
    nifti_voxel_bomb,
    png_idat_bomb,
    png_text_bomb,
    rle_dicom_bomb,
    tiff_strip_bomb,
    truncated_dicom,
)
from medical_files import ct_dataset, dicom_dataset, rgb_dataset, write_dicom, write_nifti
from PIL import Image
from pydicom.uid import RLELossless
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.io.images import ImageLimits, ImageLoadError, load_image
from llama3med.serve.conversation import decode_data_url
from llama3med.serve.limits import ServerLimits

pytestmark = pytest.mark.timeout(120)

CT_HU = (np.arange(48 * 40).reshape(48, 40) % 1400) - 1000
PEAK_RSS_BOUND = 1024 * MiB  # above the process's baseline, for any single input
SECONDS_BOUND = 5.0  # beyond start-up

# name -> (builder, words the refusal must contain). Bombs inflate to 1.5-3 GiB if nothing stops them.
BOMBS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "deflated DICOM, honest header": (
        lambda folder: deflated_dicom(folder / "bomb.dcm", ct_dataset(CT_HU), trailing_zero_mib=3000),
        "bytes its header declares (header, Rows x Columns x SamplesPerPixel",
    ),
    "deflated DICOM declaring 16 x 8000 x 8000": (
        lambda folder: deflated_dicom_declaring(folder / "declares.dcm", 8000, 8000, 16, zero_mib=3000),
        "inflates past the limit of 536870912 decompressed bytes",
    ),
    "RLE DICOM, 64x expansion": (
        lambda folder: rle_dicom_bomb(folder / "rle.dcm", encoded_mib=6),
        "RLE segment 0 of frame 0 decodes to more than the 4096 bytes Rows x Columns declare",
    ),
    "NIfTI gzip, 1.5 GiB extension": (
        lambda folder: nifti_extension_bomb(folder / "extension.nii.gz", extension_mib=1536),
        "reaching the slices shown means inflating 16106",
    ),
    "NIfTI gzip, 2 GiB of float32 voxels": (
        lambda folder: nifti_voxel_bomb(folder / "voxels.nii.gz", (1024, 1024, 512)),
        "over the limit of 536870912 decompressed bytes",
    ),
    "PNG, 64 MiB zTXt": (
        lambda folder: png_text_bomb(folder / "text.png"),
        "Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK",
    ),
}
# Bombs whose excess is never inflated at all: the file loads, as its declared size.
HARMLESS_BOMBS: dict[str, Callable[[Path], Path]] = {
    "PNG, 64 x 64 with 1 GiB IDAT": lambda folder: png_idat_bomb(folder / "idat.png"),
    "TIFF, 64 x 64 with a 1 GiB deflate strip": lambda folder: tiff_strip_bomb(folder / "strip.tif"),
}

MEASURE = textwrap.dedent(
    """
    import json, os, resource, sys, time
    from pathlib import Path
    from llama3med.io.images import ImageLoadError, load_image

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def measure(path):
        data = path.read_bytes()
        baseline, results = peak(), []  # after imports and reading the input
        for source in (path, data):
            start = time.perf_counter()
            try:
                outcome = f"loaded {load_image(source).size}"
            except ImageLoadError as error:
                outcome = str(error)
            results.append({"outcome": outcome, "seconds": time.perf_counter() - start, "peak": peak() - baseline})
        return results

    report = []
    for path in map(Path, sys.argv[1:]):
        # A forked child starts with its peak RSS at the parent's current RSS: each file its own baseline.
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(reader)
            with os.fdopen(writer, "w") as pipe:
                pipe.write(json.dumps(measure(path)))
            os._exit(0)
        os.close(writer)
        with os.fdopen(reader) as pipe:
            report.append(json.loads(pipe.read()))
        os.waitpid(child, 0)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict]]]:
    """Every bomb loaded from its path and then from its bytes, each bomb in a process of its own forked from one
    fresh interpreter: name -> (path, [the path's load, the bytes' load]), each with its outcome, seconds and
    peak RSS above the baseline (after imports and after reading the input)."""
    folder = tmp_path_factory.mktemp("bombs")
    builders = {name: build for name, (build, _) in BOMBS.items()} | HARMLESS_BOMBS
    paths = {name: build(folder) for name, build in builders.items()}
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, paths.values())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: (path, loads) for (name, path), loads in zip(paths.items(), report)}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_refused_with_bounded_memory_and_time(measured: dict, name: str) -> None:
    path, loads = measured[name]
    assert path.stat().st_size < 8 * MiB  # small on disk, built at test time
    for load, label in zip(loads, (str(path), "<bytes>")):
        assert load["outcome"].startswith(f"{label}: ") and BOMBS[name][1] in load["outcome"], load
        assert load["peak"] < PEAK_RSS_BOUND, load
        assert load["seconds"] < SECONDS_BOUND, load


@pytest.mark.parametrize("name", list(HARMLESS_BOMBS))
def test_compressed_excess_past_the_declared_size_is_never_inflated(measured: dict, name: str) -> None:
    _, loads = measured[name]
    for load in loads:
        assert load["outcome"] == "loaded (64, 64)"
        assert load["peak"] < 64 * MiB and load["seconds"] < SECONDS_BOUND, load


def test_declared_size_cap_follows_the_configured_limit(tmp_path: Path) -> None:
    """A legitimate deflated file inflates; the same file refused once the limit is below its size."""
    path = deflated_dicom(tmp_path / "ok.dcm", ct_dataset(CT_HU))
    assert load_image(path).size == (40, 48)
    with pytest.raises(ImageLoadError, match="inflates past the limit of 1000 decompressed bytes"):
        load_image(path, limits=ImageLimits(max_decompressed_bytes=1000))


def test_gzip_nifti_rereads_count_against_the_limit(tmp_path: Path) -> None:
    """A montage across the fastest axis rewinds the gzip stream once per slice: each rewind is counted."""
    volume = np.arange(64 * 32 * 16, dtype=np.float32).reshape(64, 32, 16)
    path = write_nifti(tmp_path / "volume.nii.gz", volume)
    volume_bytes = volume.nbytes + 352
    assert load_image(path, montage=4, slice_axis=0).size  # within the default limit
    limits = ImageLimits(max_decompressed_bytes=2 * volume_bytes)  # one pass fits; four do not
    assert load_image(path, slice_axis=0, slice_index=63, limits=limits).size
    with pytest.raises(ImageLoadError, match="reading this gzip stream inflates past the limit"):
        load_image(path, montage=4, slice_axis=0, limits=limits)


# --- right reasons -----------------------------------------------------------------------------------

REASONS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "DICOM cut inside the header": (
        lambda folder: truncated_dicom(folder / "cut.dcm", cut=400),
        "corrupt DICOM header: the data ends inside an element",
    ),
    "DICOM cut inside the file meta": (
        lambda folder: truncated_dicom(folder / "cut-meta.dcm", cut=200),
        "corrupt DICOM header: the data ends inside an element",
    ),
    "RGB24 NIfTI": (
        lambda folder: nifti_rgb24(folder / "rgb.nii"),
        "unsupported NIfTI datatype NIFTI_TYPE_RGB24 (code 128)",
    ),
    "NIfTI of datatype code 999": (
        lambda folder: nifti_unknown_datatype(folder / "unknown.nii"),
        "unsupported NIfTI datatype code 999",
    ),
    "NIfTI with dim[0] = 9": (
        lambda folder: nifti_corrupt_header(folder / "dims.nii"),
        "corrupt NIfTI header: dimensions [9, 4, 4, 2",
    ),
}


@pytest.mark.parametrize("name", list(REASONS))
def test_reasons_name_the_file_and_the_problem(tmp_path: Path, name: str) -> None:
    build, words = REASONS[name]
    path = build(tmp_path)
    for source, label in ((path, str(path)), (path.read_bytes(), "<bytes>")):
        with pytest.raises(ImageLoadError) as caught:
            load_image(source)
        assert caught.value.source == label and str(caught.value).startswith(f"{label}: ")
        assert words in caught.value.reason


def test_inspect_image_and_ask_exit_1_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Every hostile file through the CLI: exit code 1, one line on stderr, no traceback."""
    paths = [build(tmp_path) for build, _ in (*BOMBS.values(), *REASONS.values())]
    for path in paths:
        result = CliRunner().invoke(app, ["inspect-image", str(path), "--out", str(tmp_path / "out.png")])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), (
            result.output
        )
    for path in paths[:2]:  # the deflate bombs, through a command that answers with a model
        result = CliRunner().invoke(app, ["ask", str(path), "What?", "--model", str(tiny_model_dir)])
        assert result.exit_code == 1 and (
            "decompressed bytes" in result.output or "declares" in result.output
        )


# --- one decoder for paths, bytes and data: URLs ---------------------------------------------------------


def every_fixture(folder: Path) -> dict[str, Path]:
    """One file of every kind the loader supports, including the encodings that differ by source."""
    rle = ct_dataset(CT_HU)
    rle.compress(RLELossless, encoding_plugin="pydicom")
    multiframe = dicom_dataset(np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6) * 20)
    rgb = np.dstack([np.arange(48).reshape(6, 8) * 5 % 256] * 3).astype(np.uint8)
    (folder / "bare").write_bytes(bare_dicom_bytes(ct_dataset(CT_HU)))
    volume = np.arange(10 * 12 * 5, dtype=np.int16).reshape(10, 12, 5)
    sixteen = Image.fromarray((np.arange(30 * 20).reshape(30, 20) * 90).astype(np.uint16))
    sixteen.save(folder / "sixteen.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=90)
    Image.fromarray(rgb).save(folder / "scan.tif", compression="tiff_lzw")
    return {
        "CT": write_dicom(folder / "ct.dcm", ct_dataset(CT_HU)),
        "multi-frame": write_dicom(folder / "frames.dcm", multiframe),
        "RGB DICOM": write_dicom(folder / "rgb.dcm", rgb_dataset(rgb)),
        "RLE DICOM": write_dicom(folder / "rle.dcm", rle),
        "deflated DICOM": deflated_dicom(folder / "deflated.dcm", ct_dataset(CT_HU)),
        "DICOM without preamble": folder / "bare",
        "NIfTI": write_nifti(folder / "volume.nii", volume),
        "gzip NIfTI": write_nifti(folder / "volume.nii.gz", volume),
        "16-bit PNG": folder / "sixteen.png",
        "JPEG": folder / "photo.jpg",
        "TIFF": folder / "scan.tif",
    }


def test_same_pixels_from_path_bytes_and_data_url(tmp_path: Path) -> None:
    server_limits = ServerLimits()
    for name, path in every_fixture(tmp_path).items():
        from_path = np.asarray(load_image(path))
        data = path.read_bytes()
        url = f"data:application/octet-stream;base64,{base64.b64encode(data).decode()}"
        from_url = decode_data_url(url, "image_url", server_limits.max_image_bytes)
        assert from_url == data
        np.testing.assert_array_equal(np.asarray(load_image(data)), from_path, err_msg=name)
        served = load_image(from_url, limits=server_limits.image_limits())
        np.testing.assert_array_equal(np.asarray(served), from_path, err_msg=name)

"""`load_image` (`llama3med.io.images`): every format recognised by content, with a specific reason for each hostile
or broken input; limits, paths and options. Each format's decoding is tested in test_dicom.py, test_nifti.py and
test_raster.py."""

from __future__ import annotations

import gzip
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from medical_files import png_chunk, png_claiming
from PIL import Image

from llama3med.io.images import ImageLimits, ImageLoadError, load_image

pytestmark = pytest.mark.timeout(60)


def png_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, format="JPEG"
    )
    return buffer.getvalue()


HOSTILE_CASES = [
    ("empty.png", b"", r"^empty file \(0 bytes\)$"),
    ("empty.dcm", b"", r"^empty file \(0 bytes\)$"),
    (
        "truncated.jpg",
        jpeg_bytes()[:1500],
        r"^truncated or corrupt image data \(OSError: image file is truncated",
    ),
    ("truncated.png", png_bytes()[:2000], r"^truncated or corrupt image data"),
    (
        "claims-50000x50000.png",
        png_claiming(50000, 50000),
        r"^too many pixels, refused as a decompression bomb",
    ),
    (
        "claims-10000x10000.png",
        png_claiming(10000, 10000),
        r"^image size 10000 x 10000 = 100000000 pixels exceeds",
    ),
    ("random.dcm", np.random.default_rng(1).bytes(4096), r"^not a DICOM file: no 'DICM' marker at byte 128"),
    ("random.png", np.random.default_rng(2).bytes(4096), r"^not a recognised image format"),
    (
        "fake-dicm.dcm",
        bytes(128) + b"DICM" + np.random.default_rng(3).bytes(2048),
        r"^corrupt DICOM header: no file meta information after the .DICM. marker$",
    ),
    ("random.nii", np.random.default_rng(4).bytes(4096), r"^not a single-file NIfTI-1/2 image"),
    ("text.nii.gz", gzip.compress(b"hello" * 200), r"^not a single-file NIfTI-1/2 image"),
]


@pytest.mark.parametrize(
    ("name", "content", "reason"), HOSTILE_CASES, ids=[case[0] for case in HOSTILE_CASES]
)
def test_hostile_files_get_specific_errors(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError) as caught:
            load_image(path)
    assert re.match(reason, caught.value.reason), caught.value.reason
    assert caught.value.source == str(path) and str(caught.value) == f"{path}: {caught.value.reason}"


def test_limits_paths_and_options(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes((20, 20)))
    with pytest.raises(ImageLoadError, match=r"20 x 20 = 400 pixels exceeds the limit of 399 pixels"):
        load_image(small, limits=ImageLimits(max_pixels=399))
    with pytest.raises(ImageLoadError, match=r"bytes exceeds the limit of 100 bytes"):
        load_image(small.read_bytes(), limits=ImageLimits(max_bytes=100))
    with pytest.raises(ImageLoadError, match=r"missing.png: file not found$"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match=r"is a directory"):
        load_image(tmp_path)
    with pytest.raises(
        ImageLoadError,
        match=r"invalid window 'lungs': use a preset \(lung, mediastinum, bone, brain, abdomen\)",
    ):
        load_image(small, window="lungs")
    with pytest.raises(ImageLoadError, match=r"width positive"):
        load_image(small, window=(40, 0))
    with pytest.raises(ImageLoadError, match=r"unsupported source type int"):
        load_image(3)  # type: ignore[arg-type]


def test_png_chunk_crc_is_valid() -> None:
    """The hand-made header is a real PNG header: Pillow reads its size without complaint."""
    header = png_chunk(b"IHDR", bytes(13))
    assert len(header) == 25
    with Image.open(io.BytesIO(png_claiming(300, 200))) as image:
        assert image.size == (300, 200)

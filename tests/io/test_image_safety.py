"""The loader's error type and the size limits checked from headers (`llama3med.io.image_safety`)."""

from __future__ import annotations

import pytest

from llama3med.io.image_safety import ImageLimits, ImageLoadError, MiB


def test_an_error_is_a_value_error_with_a_safe_label_and_a_reason():
    error = ImageLoadError("<bytes>", "empty file (0 bytes)")
    assert isinstance(error, ValueError) and str(error) == "<bytes>: empty file (0 bytes)"
    assert (error.source, error.reason) == ("<bytes>", "empty file (0 bytes)")


def test_defaults():
    limits = ImageLimits()
    assert (limits.max_pixels, limits.max_bytes, limits.max_voxels) == (64_000_000, 512 * MiB, 2**30)
    assert limits.max_decompressed_bytes == 512 * 1024 * 1024


def test_each_limit_admits_its_value_and_refuses_one_more():
    limits = ImageLimits(max_pixels=100, max_bytes=10, max_voxels=1000)
    limits.check_bytes("a.png", 10)
    limits.check_pixels("a.png", 10, 10)
    limits.check_voxels("v.nii", (10, 10, 10))
    with pytest.raises(ImageLoadError, match=r"^a\.png: 11 bytes exceeds the limit of 10 bytes$"):
        limits.check_bytes("a.png", 11)
    with pytest.raises(ImageLoadError, match=r"^a\.png: empty file \(0 bytes\)$"):
        limits.check_bytes("a.png", 0)
    with pytest.raises(ImageLoadError, match=r"image size 101 x 1 = 101 pixels exceeds the limit of 100 pixels$"):
        limits.check_pixels("a.png", 101, 1)
    with pytest.raises(ImageLoadError, match=r"invalid image size 0 x 5"):
        limits.check_pixels("a.png", 0, 5)
    with pytest.raises(ImageLoadError, match=r"volume size 10 x 10 x 11 = 1100 voxels exceeds the limit of 1000 voxels"):
        limits.check_voxels("v.nii", (10, 10, 11))


def test_decompression_error_names_what_inflates_and_the_limit():
    error = ImageLimits(max_decompressed_bytes=4096).decompression_error("x.nii.gz", "the gzip stream")
    assert isinstance(error, ImageLoadError) and error.source == "x.nii.gz"
    assert error.reason.startswith("the gzip stream inflates past the limit of 4096 decompressed bytes")

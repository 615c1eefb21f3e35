"""PNG, JPEG and TIFF through `load_image` (`llama3med.io.raster`): 16-bit and float scaling, alpha composited on
black, CMYK, 1-bit, EXIF orientation, pages, numpy arrays, and the benchmarks' CMYK JPEGs and RGBA PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from medical_files import gray
from PIL import Image

from llama3med.io.images import IMAGE_INFO_KEY, ImageLoadError, load_image

pytestmark = pytest.mark.timeout(60)


def save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def test_16bit_png_and_tiff_scaled_min_max(tmp_path: Path) -> None:
    values = np.array([[0, 257], [25700, 65535]], dtype=np.uint16)  # k * 257 -> k
    for name in ("x.png", "x.tif"):
        path = save(Image.fromarray(values), tmp_path / name)
        assert Image.open(path).mode == "I;16"
        image = load_image(path)
        np.testing.assert_array_equal(gray(image), [[0, 1], [100, 255]])
        assert image.info[IMAGE_INFO_KEY]["window"].startswith("minmax")
    path = save(Image.fromarray(values), tmp_path / "offset.png")
    np.testing.assert_array_equal(gray(load_image(path, window=(20000, 20000))), [[0, 0], [200, 255]])


def test_float_tiff_scaled(tmp_path: Path) -> None:
    path = save(
        Image.fromarray(np.array([[-1.0, -0.5], [1.0, np.nan]], dtype=np.float32)), tmp_path / "f.tif"
    )
    np.testing.assert_array_equal(gray(load_image(path)), [[0, 64], [255, 0]])


def test_rgba_la_and_palette_composited_on_black(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [200, 100, 50, 0]]], dtype=np.uint8)
    loaded = np.asarray(load_image(save(Image.fromarray(rgba), tmp_path / "rgba.png")))
    np.testing.assert_array_equal(loaded, [[[200, 100, 50], [100, 50, 25], [0, 0, 0]]])
    la = Image.fromarray(np.array([[[200, 255], [200, 128]]], dtype=np.uint8), mode="LA")
    np.testing.assert_array_equal(gray(load_image(save(la, tmp_path / "la.png"))), [[200, 100]])
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    path = save(palette, tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(np.asarray(load_image(path)), [[[0, 0, 0], [0, 255, 0]]])
    opaque = save(palette, tmp_path / "p-opaque.png")
    np.testing.assert_array_equal(np.asarray(load_image(opaque)), [[[255, 0, 0], [0, 255, 0]]])


def test_cmyk_one_bit_and_grayscale(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # no black, full magenta + yellow: red
    np.testing.assert_array_equal(
        np.asarray(load_image(save(cmyk, tmp_path / "c.tif"))), np.full((2, 2, 3), [255, 0, 0])
    )
    bits = Image.fromarray(np.array([[True, False]]))
    np.testing.assert_array_equal(gray(load_image(save(bits, tmp_path / "b.png"))), [[255, 0]])
    np.testing.assert_array_equal(
        gray(load_image(Image.fromarray(np.array([[7, 9]], dtype=np.uint8)))), [[7, 9]]
    )


def test_exif_orientation_applied_and_metadata_dropped(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 2), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(image, tmp_path / "o.jpg", exif=exif, comment=b"Doe^Jane")
    assert Image.open(path).info["comment"] == b"Doe^Jane"
    loaded = load_image(path)
    assert loaded.size == (2, 4)
    assert set(loaded.info) == {IMAGE_INFO_KEY}


def test_multipage_tiff_page_selection(tmp_path: Path) -> None:
    pages = [Image.new("L", (2, 2), value) for value in (10, 20, 30)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert gray(load_image(path))[0, 0] == 10
    assert gray(load_image(path, frame=2))[0, 0] == 30
    with pytest.raises(ImageLoadError, match=r"frame 3 out of range: the file has 3 frames"):
        load_image(path, frame=3)


def test_arrays() -> None:
    np.testing.assert_array_equal(gray(load_image(np.array([[0.0, 0.5], [1.0, 2.0]]))), [[0, 64], [128, 255]])
    np.testing.assert_array_equal(np.asarray(load_image(np.full((1, 1, 3), 0.5))), [[[128, 128, 128]]])
    np.testing.assert_array_equal(
        np.asarray(load_image(np.full((1, 1, 3), 65535, dtype=np.uint16))), [[[255] * 3]]
    )
    with pytest.raises(ImageLoadError, match=r"array of shape \(2, 2, 2\)"):
        load_image(np.zeros((2, 2, 2)))
    with pytest.raises(
        ImageLoadError, match=r"colour array of dtype float64: expected uint8, uint16, or float in \[0, 1\]"
    ):
        load_image(np.full((1, 1, 3), 3.0))


def test_benchmark_cmyk_jpegs_and_rgba_pngs(benchmarks_dir: Path) -> None:
    checked = {"CMYK": 0, "RGBA": 0}
    candidates = sorted((benchmarks_dir / "pathvqa" / "images").glob("*.jpg"))[:400]
    candidates += sorted((benchmarks_dir / "captions-sample" / "images" / "medpix").glob("*.png"))
    for path in candidates:
        with Image.open(path) as original:
            if original.mode not in checked or checked[original.mode] >= 3:
                continue
            mode = original.mode
            expected = np.asarray(original.convert("RGB"))
            alpha = np.asarray(original.getchannel("A")) if mode == "RGBA" else None
        loaded = load_image(path)
        assert loaded.mode == "RGB" and loaded.size == (expected.shape[1], expected.shape[0])
        if alpha is not None:
            expected = np.rint(expected * (alpha[..., None] / 255.0)).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(loaded), expected)
        checked[mode] += 1
    assert checked == {"CMYK": 3, "RGBA": 3}

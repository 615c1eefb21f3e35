"""`load_image` over files the tests build (DICOM, NIfTI, 16-bit, odd colour modes), real benchmark
images, pydicom's bundled test files, and hostile inputs."""

from __future__ import annotations

import gzip
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from medical_files import (
    PATIENT_STRINGS,
    ct_dataset,
    dicom_dataset,
    no_pixel_dataset,
    png_chunk,
    png_claiming,
    rgb_dataset,
    write_dicom,
    write_nifti,
)
from PIL import Image

from llama3med.io.images import IMAGE_INFO_KEY, ImageLimits, ImageLoadError, load_image

pytestmark = pytest.mark.timeout(60)

# Hounsfield units of the test CT and their 8-bit values, worked by hand from 255 * (HU - (C - W/2)) / W.
CT_HU = np.array([[-1024, -850, -160, 20], [80, 140, 400, 1500]])
ABDOMEN_EXPECTED = np.array([[0, 0, 0, 115], [153, 191, 255, 255]])  # C 40, W 400: 0.6375 per HU from -160
LUNG_EXPECTED = np.array([[55, 85, 202, 233], [243, 253, 255, 255]])  # C -600, W 1500: 0.17 per HU from -1350


def gray(image: Image.Image) -> np.ndarray:
    """The single channel of an RGB image whose three channels are equal."""
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return pixels[..., 0]


# --- DICOM -------------------------------------------------------------------------------------------


def test_ct_hounsfield_units_windowed_by_presets(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm", ct_dataset(CT_HU))
    np.testing.assert_array_equal(gray(load_image(path, window="abdomen")), ABDOMEN_EXPECTED)
    np.testing.assert_array_equal(gray(load_image(path, window="lung")), LUNG_EXPECTED)
    assert load_image(path, window="lung").info[IMAGE_INFO_KEY]["window"] == "lung (centre -600, width 1500)"


def test_window_numbers_equal_the_preset(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm", ct_dataset(CT_HU))
    for spec in ("40,400", "40/400", (40, 400), [40.0, 400.0]):
        np.testing.assert_array_equal(gray(load_image(path, window=spec)), ABDOMEN_EXPECTED)


def test_rescale_slope_applied_before_windowing(tmp_path: Path) -> None:
    ds = dicom_dataset(((CT_HU + 1024) // 2).astype(np.uint16))  # every HU above is even: exact halves
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    path = write_dicom(tmp_path / "ct-slope2.dcm", ds)
    np.testing.assert_array_equal(gray(load_image(path, window="abdomen")), ABDOMEN_EXPECTED)


def test_window_from_file_first_value_then_minmax(tmp_path: Path) -> None:
    ds = ct_dataset(CT_HU)
    ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]  # several windows: the first is the default
    with_window = write_dicom(tmp_path / "with-window.dcm", ds)
    image = load_image(with_window)
    np.testing.assert_array_equal(gray(image), ABDOMEN_EXPECTED)
    assert image.info[IMAGE_INFO_KEY]["window"] == "file (centre 40, width 400)"
    # "minmax" overrides the file's window; without a window in the file min-max is the default.
    minmax = gray(load_image(with_window, window="minmax"))
    without_window = gray(load_image(write_dicom(tmp_path / "plain.dcm", ct_dataset(CT_HU))))
    np.testing.assert_array_equal(minmax, without_window)
    assert without_window.min() == 0 and without_window.max() == 255
    assert without_window[0, 3] == 105  # HU 20: 255 * (20 + 1024) / (1500 + 1024) = 105.47


def test_monochrome1_is_inverted_after_windowing(tmp_path: Path) -> None:
    ds = ct_dataset(CT_HU, photometric="MONOCHROME1")
    path = write_dicom(tmp_path / "mono1.dcm", ds)
    np.testing.assert_array_equal(gray(load_image(path, window="abdomen")), 255 - ABDOMEN_EXPECTED)


def test_multiframe_frame_selection_default_and_range(tmp_path: Path) -> None:
    frames = np.stack([np.full((3, 4), 10 * k, dtype=np.uint16) for k in range(5)])  # frame k is all 10k
    path = write_dicom(tmp_path / "multi.dcm", dicom_dataset(frames))
    window = (25, 50)  # value v -> 5.1 v
    assert (gray(load_image(path, frame=3, window=window)) == 153).all()
    middle = load_image(path, window=window)
    assert (gray(middle) == 102).all() and middle.info[IMAGE_INFO_KEY]["frame"] == 2
    assert (gray(load_image(path, slice_index=1, window=window)) == 51).all()
    with pytest.raises(
        ImageLoadError, match=r"frame 5 out of range: the file has 5 frame\(s\), indices 0\.\.4"
    ):
        load_image(path, frame=5)


def test_multiframe_montage_tiles_evenly_spaced_frames(tmp_path: Path) -> None:
    frames = np.stack([np.full((3, 4), 10 * k, dtype=np.uint16) for k in range(5)])
    path = write_dicom(tmp_path / "multi.dcm", dicom_dataset(frames))
    montage = gray(load_image(path, montage=4, window=(25, 50)))  # frames 0, 1, 3, 4 in a 2 x 2 grid
    assert montage.shape == (6, 8)
    tiles = [montage[:3, :4], montage[:3, 4:], montage[3:, :4], montage[3:, 4:]]
    assert [np.unique(tile).tolist() for tile in tiles] == [[0], [51], [153], [204]]


def test_voi_lut_table_from_the_file(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    ds = dicom_dataset(np.array([[0, 1], [2, 3]], dtype=np.uint16))
    table = Dataset()
    table.add_new("LUTDescriptor", "US", [4, 0, 8])  # 4 entries, first stored value 0, 8-bit output
    table.add_new("LUTData", "US", [0, 100, 200, 255])
    ds.VOILUTSequence = [table]
    image = load_image(write_dicom(tmp_path / "voi-lut.dcm", ds))
    np.testing.assert_array_equal(gray(image), [[0, 100], [200, 255]])
    assert image.info[IMAGE_INFO_KEY]["window"] == "file VOI LUT"


def test_rgb_dicom_keeps_its_colours(tmp_path: Path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    path = write_dicom(tmp_path / "rgb.dcm", rgb_dataset(rgb))
    image = load_image(path, window="lung")  # a window does not apply to colour
    np.testing.assert_array_equal(np.asarray(image), rgb)
    assert image.info[IMAGE_INFO_KEY]["window"] is None


def test_dicom_from_bytes_equals_from_path(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ct.dcm", ct_dataset(CT_HU))
    np.testing.assert_array_equal(
        np.asarray(load_image(path.read_bytes(), window="bone")), np.asarray(load_image(path, window="bone"))
    )


def test_dicom_without_suffix_recognised_by_content(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM000001", ct_dataset(CT_HU))
    np.testing.assert_array_equal(gray(load_image(path, window="abdomen")), ABDOMEN_EXPECTED)


def test_dicom_declaring_too_many_pixels_refused_before_decoding(tmp_path: Path) -> None:
    ds = ct_dataset(CT_HU)
    ds.Rows, ds.Columns = 60000, 60000  # the pixel data stays 8 values: never decoded
    path = write_dicom(tmp_path / "bomb.dcm", ds)
    with pytest.raises(
        ImageLoadError, match=r"60000 x 60000 = 3600000000 pixels exceeds the limit of 64000000"
    ):
        load_image(path)


def test_pydicom_palette_and_ybr_examples_become_rgb() -> None:
    from pydicom.data import get_testdata_file

    palette = load_image(get_testdata_file("examples_palette.dcm"))
    assert palette.size == (800, 350) and len(np.unique(np.asarray(palette).reshape(-1, 3), axis=0)) > 10
    ybr = load_image(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    rgb = load_image(get_testdata_file("SC_rgb_small_odd.dcm"))
    assert ybr.size == (100, 100) and rgb.size == (3, 3)
    red = np.asarray(load_image(get_testdata_file("SC_rgb_rle.dcm")))[
        5, 50
    ]  # top band of the test image is red
    assert red[0] > 200 and red[1] < 50 and red[2] < 50


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's complaints about its deliberately broken files
def test_every_bundled_pydicom_file_loads_or_fails_with_a_named_reason() -> None:
    from pydicom.data import get_testdata_files

    files = [Path(f) for f in get_testdata_files() if Path(f).is_file()]
    assert len(files) > 50
    loaded, refused = 0, {}
    for path in files:
        try:
            image = load_image(path)
        except ImageLoadError as error:
            assert error.source == str(path) and error.reason
            refused[path.name] = error.reason
        else:
            assert image.mode == "RGB" and image.width > 0
            loaded += 1
    assert loaded >= 40
    assert refused["MR_truncated.dcm"].startswith("pixel data could not be decoded")
    assert (
        refused["rtplan.dcm"] == "no pixel data: this DICOM file holds no image (SOP class: RT Plan Storage)"
    )
    assert refused["no_meta.dcm"].startswith("not a DICOM file")


def test_compressed_syntax_without_decoder_names_the_syntax() -> None:
    from pydicom.data import get_testdata_file
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(ImageLoadError) as caught:
        load_image(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    assert "1.2.840.10008.1.2.4.80 (JPEG-LS Lossless Image Compression)" in caught.value.reason
    assert caught.value.reason.startswith("no installed decoder for transfer syntax")


def test_patient_identifiers_reach_no_output_message_warning_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = ct_dataset(CT_HU)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PatientBirthDate = "MRN-12345"  # an invalid date that value validation would quote in a warning
    ds.OtherPatientNames = "Doe^Jane"
    good = write_dicom(tmp_path / "ct.dcm", ds)
    bad = write_dicom(tmp_path / "no-pixels.dcm", no_pixel_dataset())
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-6])
    texts = []
    caplog.clear()  # building the file above logged pydicom's complaint about the invalid date
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(good)
        texts.append(repr(image.info))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        texts.append(buffer.getvalue().decode("latin-1"))
        for path in (bad, truncated):
            with pytest.raises(ImageLoadError) as error:
                load_image(path)
            texts.append(str(error.value))
    texts += [str(w.message) for w in caught] + [caplog.text]
    assert "no pixel data" in texts[2] and "could not be decoded" in texts[3]
    for text in texts:
        for identifier in PATIENT_STRINGS:
            assert identifier not in text


# --- NIfTI -------------------------------------------------------------------------------------------


def coordinate_volume(shape: tuple[int, int, int] = (4, 5, 6)) -> np.ndarray:
    """volume[x, y, z] = x + 10 y + 100 z: every voxel tells where it is."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (x + 10 * y + 100 * z).astype(np.float32)


def test_nifti_slice_in_radiological_orientation(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "vol.nii", coordinate_volume())  # identity affine: x->R, y->A, z->S
    image = load_image(path, slice_index=2, window=(221.5, 43))  # values 200..243 -> 0..255
    pixels = gray(image)
    assert pixels.shape == (5, 4)  # rows: y (anterior at the top), columns: x (patient's right on the left)
    for row in range(5):
        for column in range(4):
            value = (3 - column) + 10 * (4 - row) + 200
            assert pixels[row, column] == round(255 * (value - 200) / 43)
    assert image.info[IMAGE_INFO_KEY]["slice"] == 2 and image.info[IMAGE_INFO_KEY]["slices"] == 6


def test_nifti_lps_affine_and_coronal_axis(tmp_path: Path) -> None:
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # x runs toward the patient's left, y toward posterior
    path = write_nifti(tmp_path / "lps.nii.gz", coordinate_volume(), lps)
    axial = gray(load_image(path, slice_index=0, window="minmax"))
    # Posterior-most y (4) must be at the bottom, patient's right (x = 0) on the left.
    assert axial[0, 0] == 0 and axial[-1, -1] == 255 and axial.shape == (5, 4)
    coronal = gray(
        load_image(path, slice_axis=1, slice_index=0, window=(0, 2000))
    )  # v -> 255 (v + 1000) / 2000
    assert coronal.shape == (6, 4)  # rows: z (superior at the top); columns: x = 0 (patient's right) first
    assert [coronal[0, 0], coronal[0, 3], coronal[5, 0]] == [191, 192, 128]  # values 500, 503, 0


def test_nifti_default_slice_and_percentile_window(tmp_path: Path) -> None:
    volume = coordinate_volume()
    path = write_nifti(tmp_path / "vol.nii.gz", volume)
    image = load_image(path)
    assert image.info[IMAGE_INFO_KEY]["slice"] == 3
    assert image.info[IMAGE_INFO_KEY]["window"].startswith("percentiles 0.5-99.5")
    low, high = np.percentile(volume[:, :, 3], [0.5, 99.5])
    expected = np.rint(np.clip((volume[:, :, 3] - low) / (high - low), 0, 1) * 255)
    np.testing.assert_array_equal(gray(image), np.flip(expected.T, axis=(0, 1)))


def test_nifti_montage_of_evenly_spaced_slices(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "vol.nii.gz", coordinate_volume())
    pixels = gray(load_image(path, montage=3, window=(400, 800)))  # slices 1, 3, 5 in a 2 x 2 grid
    assert pixels.shape == (10, 8)
    # The bottom-right pixel of each tile is voxel (x=0, y=0): value 100 z -> 255 * 100 z / 800.
    assert [pixels[4, 3], pixels[4, 7], pixels[9, 3]] == [32, 96, 159]
    assert (pixels[5:, 4:] == 0).all()  # the empty fourth cell
    with pytest.raises(ImageLoadError, match=r"montage of 7 slices requested: the axis has 6 slice\(s\)"):
        load_image(path, montage=7)


def test_nifti_ct_in_hounsfield_units_with_lung_window_and_4d_frame(tmp_path: Path) -> None:
    first_volume = np.broadcast_to(CT_HU.T[:, :, None], (4, 2, 3))  # [x, y, z]: every axial slice is CT_HU
    series = np.stack([first_volume, np.full_like(first_volume, -1024)], axis=-1)  # volume 1 is all air
    path = write_nifti(tmp_path / "ct4d.nii.gz", series.astype(np.int16))
    first = gray(load_image(path, window="lung"))
    np.testing.assert_array_equal(first, np.flip(LUNG_EXPECTED, axis=(0, 1)))
    assert (gray(load_image(path, window="lung", frame=1)) == 55).all()
    with pytest.raises(ImageLoadError, match=r"frame 2 out of range: the image has 2 volume\(s\)"):
        load_image(path, frame=2)


def test_nifti_from_bytes_and_huge_header_refused(tmp_path: Path) -> None:
    import nibabel as nib

    path = write_nifti(tmp_path / "vol.nii.gz", coordinate_volume())
    np.testing.assert_array_equal(np.asarray(load_image(path.read_bytes())), np.asarray(load_image(path)))
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))
    header.set_data_dtype(np.int16)
    claim = tmp_path / "claims-8-gigavoxels.nii"
    claim.write_bytes(header.binaryblock + b"\x00" * 4 + b"\x01" * 100)
    with pytest.raises(ImageLoadError, match="2000 x 2000 x 2000 = 8000000000 voxels exceeds the limit"):
        load_image(claim)
    short = tmp_path / "short.nii"
    short.write_bytes(path.read_bytes()[:200])  # gzip stream cut inside the header
    with pytest.raises(ImageLoadError):
        load_image(short)


# --- PNG / JPEG / TIFF and colour modes -----------------------------------------------------------------


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


# --- hostile inputs ------------------------------------------------------------------------------------


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


def test_dicom_without_pixel_data_and_with_truncated_pixels(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "sr.dcm", no_pixel_dataset())
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert (
        caught.value.reason == "no pixel data: this DICOM file holds no image (SOP class: CT Image Storage)"
    )
    full = write_dicom(tmp_path / "ct.dcm", ct_dataset(CT_HU)).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(full[:-4])
    with pytest.raises(
        ImageLoadError, match=r"pixel data could not be decoded \(transfer syntax Explicit VR Little Endian"
    ):
        load_image(cut)


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

"""DICOM through `load_image` (`llama3med.io.dicom`): Hounsfield units and windows, VOI LUTs, MONOCHROME1,
frames and montages, colour, pydicom's bundled files, size limits, and no patient identifier in any output."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from medical_files import (
    ABDOMEN_EXPECTED,
    CT_HU,
    LUNG_EXPECTED,
    PATIENT_STRINGS,
    ct_dataset,
    dicom_dataset,
    gray,
    no_pixel_dataset,
    rgb_dataset,
    write_dicom,
)

from llama3med.io.images import IMAGE_INFO_KEY, ImageLoadError, load_image

pytestmark = pytest.mark.timeout(60)


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

"""NIfTI through `load_image` (`llama3med.io.nifti`): radiological orientation from the affine, slices, axes,
montages, 4-D volumes, percentile and CT windows, and headers declaring too many voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from medical_files import CT_HU, LUNG_EXPECTED, gray, write_nifti

from llama3med.io.images import IMAGE_INFO_KEY, ImageLoadError, load_image

pytestmark = pytest.mark.timeout(60)


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

"""NIfTI-1/2 volumes (.nii, .nii.gz) -> one 8-bit slice or a montage of slices.

Only the slices shown are read from disk (nibabel's array proxy), never the whole volume. Slices are
shown in radiological orientation from the affine: superior (or anterior) up, patient's right on the
image's left, and in sagittal planes anterior on the left.
"""

from __future__ import annotations

import gzip
import zlib
from typing import IO, Any

import nibabel as nib
import numpy as np

from llama3med.data.image_safety import ImageLimits, ImageLoadError
from llama3med.data.intensity import (
    Window,
    apply_window,
    evenly_spaced_indices,
    minmax_window,
    montage_grid,
    percentile_window,
    tile_montage,
)

NIFTI1_HEADER_BYTES, NIFTI2_HEADER_BYTES = 348, 540
GZIP_MAGIC = b"\x1f\x8b"


def nifti_version(head: bytes) -> int | None:
    """1 or 2 when `head` (the first bytes, decompressed) is a single-file NIfTI header, else None."""
    if head[344:348] == b"n+1\x00":
        return 1
    if head[4:8] == b"n+2\x00":
        return 2
    return None


def gunzip_head(head: bytes, size: int = NIFTI2_HEADER_BYTES) -> bytes:
    """The first `size` decompressed bytes of gzip data (b"" if it does not decompress)."""
    try:
        return zlib.decompressobj(wbits=31).decompress(head, size)
    except zlib.error:
        return b""


def read_nifti_pixels(
    file: IO[bytes],
    label: str,
    *,
    window: Window | str | None,
    frame: int | None,
    slice_index: int | None,
    slice_axis: int,
    montage: int | None,
    limits: ImageLimits,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A seekable NIfTI stream (gzip or not) -> ([H, W] uint8, description).

    `slice_axis` counts the three spatial axes of the stored array (-1: the third); `frame` picks the
    volume of a 4-D series (default 0). Default window: percentiles 0.5-99.5 of the shown slices.
    """
    compressed = file.read(2) == GZIP_MAGIC
    file.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=file, mode="rb") if compressed else file
    try:
        head = stream.read(NIFTI2_HEADER_BYTES)
        stream.seek(0)
    except (OSError, EOFError, zlib.error) as error:
        raise ImageLoadError(label, f"corrupt gzip stream ({type(error).__name__})") from None
    version = nifti_version(head)
    if version is None:
        raise ImageLoadError(
            label, "not a single-file NIfTI-1/2 image (no 'n+1' or 'n+2' magic in the header)"
        )
    image_class = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    try:
        image = image_class.from_stream(stream)
        shape = tuple(int(n) for n in image.shape)
    except Exception as error:  # a hostile header fails in nibabel's checks in many ways
        raise ImageLoadError(label, f"corrupt NIfTI header ({type(error).__name__}: {error})") from None
    limits.check_voxels(label, shape)
    volume_shape, frames = _spatial_shape(shape, label)
    axis = 2 if len(shape) == 2 else _normalise_axis(slice_axis, label)
    depth = volume_shape[axis]
    indices = _slice_indices(slice_index, montage, depth, label)
    in_plane = [n for a, n in enumerate(volume_shape) if a != axis]
    grid_rows, grid_columns = montage_grid(len(indices))
    limits.check_pixels(label, in_plane[0] * grid_columns, in_plane[1] * grid_rows)
    volume = _frame_index(frame, frames, label)
    slices = [
        _oriented(_read_slice(image, axis, index, volume, len(shape), label), image.affine, axis)
        for index in indices
    ]
    used = window if isinstance(window, Window) else None
    stacked = np.concatenate([s.ravel() for s in slices])
    if used is None:
        used = minmax_window(stacked) if window is not None else percentile_window(stacked)
    tiles = [apply_window(s, used) for s in slices]
    info: dict[str, Any] = {
        "format": f"NIfTI-{version}",
        "size": shape,
        "slice_axis": axis,
        "slice": indices[0] if len(indices) == 1 else indices,
        "slices": depth,
        "frame": volume if frames > 1 else None,
        "window": used.describe(),
    }
    return (tiles[0] if len(tiles) == 1 else tile_montage(tiles)), info


def _spatial_shape(shape: tuple[int, ...], label: str) -> tuple[tuple[int, int, int], int]:
    """(the 3 spatial sizes, number of volumes); 2-D images count as one slice deep."""
    if len(shape) == 2:
        return (shape[0], shape[1], 1), 1
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2]), 1
    if len(shape) >= 4 and all(n == 1 for n in shape[4:]):
        return (shape[0], shape[1], shape[2]), shape[3]
    raise ImageLoadError(label, f"NIfTI image of shape {shape}: only 2-D, 3-D and 4-D images are supported")


def _normalise_axis(slice_axis: int, label: str) -> int:
    if not -3 <= slice_axis <= 2:
        raise ImageLoadError(
            label, f"slice axis {slice_axis} out of range: a volume has spatial axes 0, 1, 2 (or -3..-1)"
        )
    return slice_axis % 3


def _slice_indices(slice_index: int | None, montage: int | None, depth: int, label: str) -> list[int]:
    if montage is not None:
        if not 1 <= montage <= depth:
            raise ImageLoadError(
                label, f"montage of {montage} slices requested: the axis has {depth} slice(s)"
            )
        return evenly_spaced_indices(montage, depth)
    if slice_index is None:
        return [depth // 2]
    if not 0 <= slice_index < depth:
        raise ImageLoadError(
            label, f"slice {slice_index} out of range: the axis has {depth} slice(s), indices 0..{depth - 1}"
        )
    return [slice_index]


def _frame_index(frame: int | None, frames: int, label: str) -> int:
    if frame is None:
        return 0
    if not 0 <= frame < frames:
        raise ImageLoadError(
            label, f"frame {frame} out of range: the image has {frames} volume(s), indices 0..{frames - 1}"
        )
    return frame


def _read_slice(
    image: nib.Nifti1Image, axis: int, index: int, volume: int, ndim: int, label: str
) -> np.ndarray:
    """One spatial slice, scaled by the header's slope/intercept: [n_a, n_b] for the two other axes in order."""
    if ndim == 2:
        selector: tuple[Any, ...] = (slice(None), slice(None))
    else:
        selector = tuple(index if a == axis else slice(None) for a in range(3))
        if ndim >= 4:
            selector += (volume,) + (0,) * (ndim - 4)
    try:
        return np.asarray(image.dataobj[selector], dtype=np.float64)
    except Exception as error:  # short files, bad offsets and gzip errors all surface here
        raise ImageLoadError(
            label, f"truncated or corrupt NIfTI voxel data ({type(error).__name__}: {error})"
        ) from None


def _oriented(plane: np.ndarray, affine: np.ndarray, axis: int) -> np.ndarray:
    """[n_a, n_b] slice -> display [rows, columns]: superior/anterior up, patient's right on the left.

    Each in-plane axis that runs toward R, A or S is reversed; the axis nearer to S (then A) is vertical.
    """
    try:
        orientation = nib.io_orientation(affine)  # [3, 2]: (RAS axis, +1/-1 direction) per array axis
    except Exception:  # a singular affine has no orientation: show the array as stored
        return np.ascontiguousarray(plane.T)
    first, second = (a for a in range(3) if a != axis)
    if np.isnan(orientation[[first, second]]).any():
        return np.ascontiguousarray(plane.T)
    if orientation[first, 0] > orientation[second, 0]:  # first axis is the more superior/anterior one: rows
        rows_axis_flip, columns_axis_flip, display = orientation[first, 1], orientation[second, 1], plane
    else:
        rows_axis_flip, columns_axis_flip, display = orientation[second, 1], orientation[first, 1], plane.T
    if rows_axis_flip > 0:
        display = display[::-1, :]
    if columns_axis_flip > 0:
        display = display[:, ::-1]
    return np.ascontiguousarray(display)

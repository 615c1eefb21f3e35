"""NIfTI-1/2 volumes (.nii, .nii.gz) -> one 8-bit slice or a montage of slices.

Only the slices shown are read from disk (nibabel's array proxy), never the whole volume. Slices are
shown in radiological orientation from the affine: superior (or anterior) up, patient's right on the
image's left, and in sagittal planes anterior on the left.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from typing import IO, Any

import nibabel as nib
import numpy as np

from llama3med.io.image_safety import ImageLimits, ImageLoadError
from llama3med.io.intensity import (
    Window,
    apply_window,
    chosen_indices,
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
    Header extensions are never read (they may hold a whole DICOM header, or gigabytes); a gzip stream is
    inflated at most `limits.max_decompressed_bytes`, counting re-reads.
    """
    compressed = file.read(2) == GZIP_MAGIC
    file.seek(0)
    stream: IO[bytes] = CappedGzipReader(file, label, limits) if compressed else file
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
    header = parse_nifti_header(head, version, label)
    try:
        shape = tuple(int(n) for n in header.get_data_shape())
        affine = header.get_best_affine()
        vox_offset = int(header.get_data_offset())
    except Exception as error:  # e.g. a qform that is not a rotation
        raise ImageLoadError(label, f"corrupt NIfTI header ({type(error).__name__}: {error})") from None
    limits.check_voxels(label, shape)
    volume_shape, frames = _spatial_shape(shape, label)
    axis = 2 if len(shape) == 2 else _normalise_axis(slice_axis, label)
    depth = volume_shape[axis]
    indices = chosen_indices(slice_index, montage, depth, label, unit="slice", holder="the axis")
    in_plane = [n for a, n in enumerate(volume_shape) if a != axis]
    grid_rows, grid_columns = montage_grid(len(indices))
    limits.check_pixels(label, in_plane[0] * grid_columns, in_plane[1] * grid_rows)
    volume = _frame_index(frame, frames, label)
    if compressed:
        needed = vox_offset + _bytes_to_reach(
            volume_shape, axis, max(indices), volume, header.get_data_dtype()
        )
        if needed > limits.max_decompressed_bytes:
            raise ImageLoadError(
                label,
                f"reaching the slices shown means inflating {needed} bytes of this gzip stream, over the "
                f"limit of {limits.max_decompressed_bytes} decompressed bytes (gunzip the file to read it "
                "without inflating)",
            )
    proxy = nib.arrayproxy.ArrayProxy(stream, header, mmap=False)
    slices = [
        _oriented(_read_slice(proxy, axis, index, volume, len(shape), label), affine, axis)
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


def _frame_index(frame: int | None, frames: int, label: str) -> int:
    if frame is None:
        return 0
    if not 0 <= frame < frames:
        raise ImageLoadError(
            label, f"frame {frame} out of range: the image has {frames} volume(s), indices 0..{frames - 1}"
        )
    return frame


def _read_slice(
    proxy: nib.arrayproxy.ArrayProxy, axis: int, index: int, volume: int, ndim: int, label: str
) -> np.ndarray:
    """One spatial slice, scaled by the header's slope/intercept: [n_a, n_b] for the two other axes in order."""
    if ndim == 2:
        selector: tuple[Any, ...] = (slice(None), slice(None))
    else:
        selector = tuple(index if a == axis else slice(None) for a in range(3))
        if ndim >= 4:
            selector += (volume,) + (0,) * (ndim - 4)
    try:
        return np.asarray(proxy[selector], dtype=np.float64)
    except ImageLoadError:
        raise
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


def parse_nifti_header(head: bytes, version: int, label: str) -> nib.Nifti1Header:
    """The header in the first bytes of a NIfTI-1/2 file, checked; its extensions are left unread.

    Refuses with "corrupt NIfTI header" (sizes and dimensions that cannot be) or "unsupported NIfTI
    datatype" (a valid file whose voxels are not integer or floating point: RGB, complex, binary).
    """
    size, sizeof_format, datatype_at, dims_format, dims_at = (
        (NIFTI1_HEADER_BYTES, "i", 70, "8h", 40) if version == 1 else (NIFTI2_HEADER_BYTES, "i", 12, "8q", 16)
    )
    if len(head) < size:
        raise ImageLoadError(label, f"corrupt NIfTI header: the file ends inside the {size}-byte header")
    endian = next((e for e in "<>" if struct.unpack_from(e + sizeof_format, head)[0] == size), None)
    if endian is None:
        raise ImageLoadError(label, f"corrupt NIfTI header: sizeof_hdr is not {size} in either byte order")
    dims = struct.unpack_from(endian + dims_format, head, dims_at)
    if not 1 <= dims[0] <= 7 or any(n < 1 for n in dims[1 : dims[0] + 1]):
        raise ImageLoadError(
            label, f"corrupt NIfTI header: dimensions {list(dims)} (dim[0] must be 1..7, sizes >= 1)"
        )
    (code,) = struct.unpack_from(endian + "h", head, datatype_at)
    codes = nib.nifti1.data_type_codes
    if code not in codes.code:
        raise ImageLoadError(
            label, f"unsupported NIfTI datatype code {code}: not a datatype the NIfTI standard defines"
        )
    dtype = np.dtype(codes.dtype[code])
    if dtype.fields is not None or dtype.kind not in "iuf":
        raise ImageLoadError(
            label,
            f"unsupported NIfTI datatype {codes.niistring[code]} (code {code}): only integer and "
            "floating-point voxels can be shown",
        )
    header_class = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    try:  # only the fixed-size header: nibabel would read the extensions too, whatever their size
        return header_class.from_fileobj(io.BytesIO(head[:size]), check=True)
    except Exception as error:  # nibabel's consistency checks (offsets, pixdim, ...)
        raise ImageLoadError(label, f"corrupt NIfTI header ({type(error).__name__}: {error})") from None


def _bytes_to_reach(
    volume_shape: tuple[int, int, int], axis: int, index: int, volume: int, dtype: np.dtype
) -> int:
    """Bytes from the voxel offset to the end of slice `index` along `axis` of `volume` (NIfTI stores the
    array in Fortran order: the first axis varies fastest)."""
    x, y, z = volume_shape
    last = [x - 1, y - 1, z - 1]
    last[axis] = index
    element = ((volume * z + last[2]) * y + last[1]) * x + last[0]
    return (element + 1) * np.dtype(dtype).itemsize


class CappedGzipReader(gzip.GzipFile):
    """A gzip stream that inflates at most `limits.max_decompressed_bytes` in total, counting the work of
    every backward seek (a gzip stream can only rewind to its start and inflate forward again)."""

    def __init__(self, fileobj: IO[bytes], label: str, limits: ImageLimits) -> None:
        super().__init__(fileobj=fileobj, mode="rb")
        self._label, self._limits, self._inflated = label, limits, 0

    def _charge(self, end: int) -> None:
        """Count the inflation needed to reach decompressed offset `end`; refuse past the cap first."""
        position = self.tell()
        cost = end - position if end >= position else end
        if self._inflated + cost > self._limits.max_decompressed_bytes:
            raise self._limits.decompression_error(self._label, "reading this gzip stream")
        self._inflated += cost

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # to the end: at most what the cap leaves, plus one byte to notice
            data = super().read(self._limits.max_decompressed_bytes - self._inflated + 1)
            self._inflated += len(data)
            if self._inflated > self._limits.max_decompressed_bytes:
                raise self._limits.decompression_error(self._label, "reading this gzip stream")
            return data
        self._charge(self.tell() + size)
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(memoryview(buffer).nbytes)
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return super().seek(0, io.SEEK_CUR)  # io.IOBase.tell would call our seek, which calls tell

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence in (io.SEEK_SET, io.SEEK_CUR):
            self._charge(offset if whence == io.SEEK_SET else self.tell() + offset)
        return super().seek(offset, whence)

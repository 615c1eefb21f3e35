"""DICOM -> 8-bit pixels: frame selection, rescale (HU), VOI window, MONOCHROME1 inversion, colour.

Privacy: nothing here reads or reports patient-identifying attributes. Errors raised while parsing the
header name only the exception type; errors raised while decoding pixel data (which reads only the
Image Pixel module) keep pydicom's message, which describes sizes and encodings.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.pixels import pixel_array as decode_pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from llama3med.data.image_safety import ImageLimits, ImageLoadError
from llama3med.data.intensity import (
    MINMAX,
    Window,
    apply_window,
    evenly_spaced_indices,
    minmax_window,
    montage_grid,
    tile_montage,
)

PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DICOM_MAGIC_OFFSET = 128


def is_dicom_header(head: bytes) -> bool:
    """True when the first bytes of a file carry the DICOM Part 10 "DICM" marker at offset 128."""
    return head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


def read_dicom_pixels(
    file: str | IO[bytes],
    label: str,
    *,
    window: Window | str | None,
    frame: int | None,
    montage: int | None,
    limits: ImageLimits,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One frame (default: the middle one) or a montage of frames -> ([H, W] or [H, W, 3] uint8, description)."""
    ds = _read_dataset(file, label)
    try:
        return _dataset_pixels(ds, label, window=window, frame=frame, montage=montage, limits=limits)
    except ImageLoadError:
        raise
    except Exception as error:  # malformed attribute values fail on access, in many ways
        raise ImageLoadError(
            label, f"corrupt or unsupported DICOM image attributes ({type(error).__name__})"
        ) from None


def _dataset_pixels(
    ds: Dataset,
    label: str,
    *,
    window: Window | str | None,
    frame: int | None,
    montage: int | None,
    limits: ImageLimits,
) -> tuple[np.ndarray, dict[str, Any]]:
    if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        sop_class = ds.get("SOPClassUID")
        kind = f" (SOP class: {UID(sop_class).name})" if sop_class else ""
        raise ImageLoadError(label, f"no pixel data: this DICOM file holds no image{kind}")
    if not ds.get("Rows") or not ds.get("Columns"):
        raise ImageLoadError(label, "corrupt DICOM image: pixel data without Rows/Columns attributes")
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames") or 1)
    limits.check_pixels(
        label, columns, rows
    )  # the encoded frames are bounded by max_bytes; one is decoded at a time
    _check_decoder(ds, label)
    indices = _frame_indices(frame, montage, frames, label)
    grid_rows, grid_columns = montage_grid(len(indices))
    limits.check_pixels(label, columns * grid_columns, rows * grid_rows)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    decoded = [_decode_frame(ds, index, label) for index in indices]
    info: dict[str, Any] = {
        "format": "DICOM",
        "modality": str(ds.get("Modality", "")),
        "transfer_syntax": ds.file_meta.TransferSyntaxUID.name,
        "photometric": photometric,
        "size": (columns, rows),
        "frames": frames,
        "frame": indices[0] if len(indices) == 1 else indices,
        "window": None,
    }
    if decoded[0].ndim == 3 or photometric == "PALETTE COLOR":  # colour: display values, no window
        tiles = [_colour_to_uint8(ds, pixels, photometric) for pixels in decoded]
        return (tiles[0] if len(tiles) == 1 else _tile_colour(tiles)), info
    values = [_modality_values(ds, pixels, index) for pixels, index in zip(decoded, indices)]
    used = _choose_window(ds, window, values, indices[0])
    if isinstance(used, int):  # the file's VOI LUT table, applied per frame, output depth `used` bits
        scale = Window((2**used - 1) / 2, 2**used - 1, "file VOI LUT")
        tiles = [apply_window(apply_voi(np.rint(v).astype(np.int64), ds), scale) for v in values]
        info["window"] = scale.label
    else:
        tiles = [apply_window(v, used) for v in values]
        info["window"] = used.describe()
    gray = tiles[0] if len(tiles) == 1 else tile_montage(tiles)
    if photometric == "MONOCHROME1":  # low values are white: invert after windowing
        gray = 255 - gray
    return gray, info


def _read_dataset(file: str | IO[bytes], label: str) -> Dataset:
    try:
        ds = pydicom.dcmread(file)
    except InvalidDicomError:
        ds = _read_without_preamble(file, label)
    except Exception as error:  # a hostile header can fail anywhere in the parser
        raise ImageLoadError(label, f"corrupt DICOM header ({type(error).__name__})") from None
    else:
        if len(ds.file_meta) == 0:  # "DICM" followed by garbage still parses, as one meaningless element
            raise ImageLoadError(
                label, "corrupt DICOM header: no file meta information after the 'DICM' marker"
            )
    if "TransferSyntaxUID" not in ds.file_meta:
        # Files without a meta header: pydicom worked out the encoding while reading.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return ds


def _read_without_preamble(file: str | IO[bytes], label: str) -> Dataset:
    """Old files lack the 128-byte preamble and "DICM": accept them if they parse to an object or an image."""
    if not isinstance(file, str):
        file.seek(0)
    try:
        ds = pydicom.dcmread(file, force=True)
        if "SOPClassUID" in ds or any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
            return ds
    except Exception:  # whatever the parser makes of it, the answer is the same
        pass
    raise ImageLoadError(
        label, "not a DICOM file: no 'DICM' marker at byte 128 and no readable DICOM dataset"
    )


def _check_decoder(ds: Dataset, label: str) -> None:
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageLoadError(
            label, f"transfer syntax {syntax} ({syntax.name}) is not supported by pydicom"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise ImageLoadError(
            label,
            f"no installed decoder for transfer syntax {syntax} ({syntax.name}); pydicom's plugins need: {missing}",
        )


def _frame_indices(frame: int | None, montage: int | None, frames: int, label: str) -> list[int]:
    if montage is not None:
        if not 1 <= montage <= frames:
            raise ImageLoadError(
                label, f"montage of {montage} frames requested: the file has {frames} frame(s)"
            )
        return evenly_spaced_indices(montage, frames)
    if frame is None:
        return [frames // 2]
    if not 0 <= frame < frames:
        raise ImageLoadError(
            label, f"frame {frame} out of range: the file has {frames} frame(s), indices 0..{frames - 1}"
        )
    return [frame]


def _decode_frame(ds: Dataset, index: int, label: str) -> np.ndarray:
    try:
        return decode_pixel_array(ds, index=index)  # [rows, columns] or [rows, columns, samples]; YBR -> RGB
    except Exception as error:  # decoders raise many types on truncated/corrupt data
        message = " ".join(line.strip() for line in str(error).splitlines())[:400]
        syntax = ds.file_meta.TransferSyntaxUID
        raise ImageLoadError(
            label,
            f"pixel data could not be decoded (transfer syntax {syntax.name}; {type(error).__name__}: {message})",
        ) from None


def _functional_group_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The first item of `sequence` for frame `index` in an enhanced multi-frame file (per-frame, then shared)."""
    for groups, position in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(groups)
        if items and position < len(items) and items[position].get(sequence):
            return items[position].get(sequence)[0]
    return None


def _modality_values(ds: Dataset, pixels: np.ndarray, index: int) -> np.ndarray:
    """Stored values -> modality values (Hounsfield units for CT) via rescale slope/intercept or LUT."""
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    item = _functional_group_item(ds, index, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item:
        return pixels.astype(np.float64) * float(item.RescaleSlope) + float(item.get("RescaleIntercept", 0.0))
    return pixels.astype(np.float64)


def _choose_window(
    ds: Dataset, window: Window | str | None, values: list[np.ndarray], index: int
) -> Window | int:
    """Explicit window > the file's window > the file's VOI LUT (returned as its bit depth) > min-max."""
    if isinstance(window, Window):
        return window
    if window != MINMAX:
        source = ds if "WindowCenter" in ds else _functional_group_item(ds, index, "FrameVOILUTSequence")
        if source is not None and "WindowCenter" in source and "WindowWidth" in source:
            center, width = _first_value(source.WindowCenter), _first_value(source.WindowWidth)
            if width > 0:
                return Window(center, width, "file")
        if ds.get("VOILUTSequence"):
            return int(ds.VOILUTSequence[0].LUTDescriptor[2])
    return minmax_window(np.concatenate([v.ravel() for v in values]))


def _first_value(value: Any) -> float:
    """Window centre/width may be multi-valued (several windows): the first is the default one."""
    return float(value[0]) if isinstance(value, list | tuple | MultiValue) else float(value)


def _colour_to_uint8(ds: Dataset, pixels: np.ndarray, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)  # [H, W, 3] uint8 or uint16 by the LUT's depth
        bits = 16 if pixels.dtype == np.uint16 else 8
    else:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    pixels = pixels[..., :3]
    if bits == 8 and pixels.dtype == np.uint8:
        return pixels
    return np.rint(np.clip(pixels.astype(np.float64) / (2**bits - 1), 0.0, 1.0) * 255.0).astype(np.uint8)


def _tile_colour(tiles: list[np.ndarray]) -> np.ndarray:
    return np.stack([tile_montage([tile[..., c] for tile in tiles]) for c in range(3)], axis=-1)

"""The one image-loading function every entry point uses: any supported source -> 8-bit RGB PIL image.

Formats are recognised by content (DICOM "DICM" marker or a bare dataset's first element, NIfTI magic,
gzip + NIfTI magic, Pillow's signatures), so a path, its bytes and a data: URL of them decode the same;
the suffixes .dcm/.dicom/.ima and .nii/.nii.gz are only a fallback that picks the error message.
Sizes are checked against `ImageLimits` from headers before pixel data is decoded. Options that do not
apply to a format (a window on an 8-bit photo, a frame on a PNG) are ignored, so one set of options
can serve a mixed folder. See docs/IMAGES.md.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from llama3med.io.dicom import is_dicom_header, looks_like_bare_dicom, read_dicom_pixels
from llama3med.io.image_safety import ImageLimits, ImageLoadError
from llama3med.io.intensity import WINDOW_PRESETS, Window, WindowSpec, parse_window
from llama3med.io.nifti import GZIP_MAGIC, gunzip_head, nifti_version, read_nifti_pixels
from llama3med.io.raster import array_to_rgb, open_raster, pil_to_rgb

__all__ = ["IMAGE_INFO_KEY", "WINDOW_PRESETS", "ImageLimits", "ImageLoadError", "ImageSource", "load_image"]

# `image.info[IMAGE_INFO_KEY]` describes what the loader did (format, size, frame/slice, window used);
# it never holds header values that could identify a patient.
IMAGE_INFO_KEY = "llama3med"
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SNIFF_BYTES = 4096

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


def load_image(
    source: ImageSource,
    *,
    window: WindowSpec = None,
    frame: int | None = None,
    slice_index: int | None = None,
    slice_axis: int = -1,
    montage: int | None = None,
    limits: ImageLimits | None = None,
) -> Image.Image:
    """Load `source` (path, bytes, PIL image or numpy array) as an RGB uint8 image.

    `window`: preset name (lung, mediastinum, bone, brain, abdomen), "minmax", "CENTER,WIDTH" or a
    (centre, width) pair; applies to DICOM, NIfTI, 16-bit/float rasters and non-uint8 arrays.
    `frame`: DICOM frame (default the middle one), 4-D NIfTI volume (default 0), or page of a multi-page
    TIFF/GIF/WebP (default the first).
    `slice_index`/`slice_axis`: NIfTI slice (default the middle one of the last spatial axis); for a
    DICOM file without `frame`, `slice_index` picks the frame.
    `montage`: tile that many evenly spaced NIfTI slices or DICOM frames into one image.
    Raises `ImageLoadError` (a ValueError) with a safe `source` label and a `reason`.
    """
    limits = limits or ImageLimits()
    label = source_label(source)
    try:
        parsed_window = parse_window(window)
    except ValueError as error:
        raise ImageLoadError(label, str(error)) from None
    options = _Options(parsed_window, frame, slice_index, slice_axis, montage)
    if isinstance(source, Image.Image):
        image, info = pil_to_rgb(source, label, parsed_window, limits)
    elif isinstance(source, np.ndarray):
        image, info = array_to_rgb(source, label, parsed_window, limits)
    elif isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        limits.check_bytes(label, len(data))
        image, info = _load_encoded(io.BytesIO(data), "", label, options, limits)
    elif isinstance(source, str | os.PathLike):
        image, info = _load_path(Path(source), label, options, limits)
    else:
        raise ImageLoadError(
            label, f"unsupported source type {type(source).__name__}: give a path, bytes, PIL image or array"
        )
    image.info = {IMAGE_INFO_KEY: info}
    return image


def source_label(source: object) -> str:
    """A label safe to print: the path as given, or the kind of in-memory source."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return f"<{type(source).__name__}>"


@dataclass(frozen=True)
class _Options:
    """`load_image`'s keyword options, with the window already parsed."""

    window: Window | str | None
    frame: int | None
    slice_index: int | None
    slice_axis: int
    montage: int | None


def _load_path(
    path: Path, label: str, options: _Options, limits: ImageLimits
) -> tuple[Image.Image, dict[str, Any]]:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ImageLoadError(label, "is a directory, not an image file")
        limits.check_bytes(label, size)
        with path.open("rb") as file:
            return _load_encoded(file, path.name.lower(), label, options, limits)
    except FileNotFoundError:
        raise ImageLoadError(label, "file not found") from None
    except PermissionError:
        raise ImageLoadError(label, "permission denied") from None
    except OSError as error:  # e.g. an I/O error or a name too long; decoders wrap their own errors
        raise ImageLoadError(
            label, f"cannot read the file ({error.strerror or type(error).__name__})"
        ) from None


def _load_encoded(
    file: IO[bytes], name: str, label: str, options: _Options, limits: ImageLimits
) -> tuple[Image.Image, dict[str, Any]]:
    """Recognise the format of an open, seekable file and decode it."""
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    window = options.window
    if is_dicom_header(head) or looks_like_bare_dicom(head) or name.endswith(DICOM_SUFFIXES):
        # A multi-frame DICOM's frames are often the slices of a volume: --slice picks one as --frame does.
        frame = options.frame if options.frame is not None else options.slice_index
        pixels, info = read_dicom_pixels(
            file, label, window=window, frame=frame, montage=options.montage, limits=limits
        )
        return Image.fromarray(pixels).convert("RGB"), info
    is_gzip = head[:2] == GZIP_MAGIC
    if nifti_version(gunzip_head(head) if is_gzip else head) or name.endswith(NIFTI_SUFFIXES):
        pixels, info = read_nifti_pixels(
            file,
            label,
            window=window,
            frame=options.frame,
            slice_index=options.slice_index,
            slice_axis=options.slice_axis,
            montage=options.montage,
            limits=limits,
        )
        return Image.fromarray(pixels).convert("RGB"), info
    if is_gzip:
        raise ImageLoadError(label, "gzip-compressed data that is not a NIfTI volume")
    return pil_to_rgb(open_raster(file, label, limits, options.frame), label, window, limits)

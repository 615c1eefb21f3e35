"""PNG / JPEG / TIFF / BMP / WebP files, PIL images and numpy arrays -> 8-bit RGB.

Channel handling: grayscale and 1-bit are replicated to three channels; RGBA, LA and transparent
palette images are composited on black; palette, CMYK and YCbCr are converted by Pillow; 16-bit,
32-bit integer and float single-channel images are windowed (min-max unless a window is given).
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from llama3med.io.image_safety import ImageLimits, ImageLoadError
from llama3med.io.intensity import Window, apply_window, minmax_window

# Single-channel modes with more than 8 bits per pixel: the only raster modes a window applies to.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def open_raster(
    file: str | IO[bytes], label: str, limits: ImageLimits, frame: int | None = None
) -> Image.Image:
    """Open a raster file lazily (header only); `pil_to_rgb` checks its size and then decodes it.

    `frame` picks a page of a multi-page TIFF / GIF / WebP (default the first); single-page files ignore it.
    """
    try:
        image = Image.open(file)
    except UnidentifiedImageError:
        raise ImageLoadError(
            label, "not a recognised image format (expected PNG, JPEG, TIFF, BMP, WebP, DICOM or NIfTI)"
        ) from None
    except Image.DecompressionBombError as error:
        # Pillow's own guard (its global MAX_IMAGE_PIXELS) fired before our limit could be checked.
        raise ImageLoadError(label, f"too many pixels, refused as a decompression bomb ({error})") from None
    except Exception as error:  # any decoder failure on a hostile header is a bad file
        raise ImageLoadError(label, f"corrupt image header ({type(error).__name__}: {error})") from None
    pages = getattr(image, "n_frames", 1)
    if frame is not None and pages > 1:
        if not 0 <= frame < pages:
            raise ImageLoadError(
                label, f"frame {frame} out of range: the file has {pages} frames, indices 0..{pages - 1}"
            )
        try:
            image.seek(frame)
        except Exception as error:
            raise ImageLoadError(label, f"corrupt frame {frame} ({type(error).__name__}: {error})") from None
    return image


def pil_to_rgb(
    image: Image.Image, label: str, window: Window | str | None, limits: ImageLimits
) -> tuple[Image.Image, dict[str, Any]]:
    """A decoded PIL image of any mode -> (RGB image without metadata, description of what was done)."""
    limits.check_pixels(label, image.width, image.height)
    try:
        image.load()  # a no-op for decoded images; a lazily opened one may still be truncated
    except Exception as error:
        raise ImageLoadError(
            label, f"truncated or corrupt image data ({type(error).__name__}: {error})"
        ) from None
    info: dict[str, Any] = {
        "format": image.format or "PIL image",
        "mode": image.mode,
        "size": image.size,
        "window": None,
    }
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as error:  # a malformed EXIF block is a corrupt file
        raise ImageLoadError(
            label, f"corrupt EXIF orientation data ({type(error).__name__}: {error})"
        ) from None
    if image.mode in HIGH_DEPTH_MODES:
        values = np.asarray(image)  # [H, W] uint16 / int32 / float32
        used = window if isinstance(window, Window) else minmax_window(values)
        info["window"] = used.describe()
        return Image.fromarray(apply_window(values, used)).convert("RGB"), info
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ALPHA_MODES:
        image = composite_on_black(image.convert("RGBA"))
    try:
        rgb = image.convert("RGB")
    except ValueError:
        raise ImageLoadError(label, f"colour mode {image.mode} is not supported") from None
    rgb.info = {}  # drop text chunks, EXIF, comments: nothing from the file's metadata travels on
    return rgb, info


def composite_on_black(rgba: Image.Image) -> Image.Image:
    """RGBA -> RGB with each pixel weighted by its alpha over a black background."""
    canvas = Image.new("RGB", rgba.size, (0, 0, 0))
    canvas.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return canvas


def array_to_rgb(
    array: np.ndarray, label: str, window: Window | str | None, limits: ImageLimits
) -> tuple[Image.Image, dict[str, Any]]:
    """A numpy image -> RGB. [H, W] any numeric dtype (uint8 as is, others windowed), [H, W, 1|3|4].

    Colour arrays must be uint8, uint16 (divided by 257) or float in [0, 1] (multiplied by 255).
    """
    info: dict[str, Any] = {
        "format": "array",
        "mode": f"{array.dtype}{list(array.shape)}",
        "size": None,
        "window": None,
    }
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(label, f"array of shape {array.shape}: expected [H, W] or [H, W, 1|3|4]")
    if array.dtype.kind not in "biuf":
        raise ImageLoadError(label, f"array of dtype {array.dtype}: expected a numeric or boolean array")
    height, width = array.shape[:2]
    info["size"] = (width, height)
    limits.check_pixels(label, width, height)
    if array.ndim == 2:
        if array.dtype == np.bool_:
            gray = array.astype(np.uint8) * 255
        elif array.dtype == np.uint8:
            gray = array
        else:
            used = window if isinstance(window, Window) else minmax_window(array)
            info["window"] = used.describe()
            gray = apply_window(array, used)
        return Image.fromarray(np.ascontiguousarray(gray)).convert("RGB"), info
    channels = _colour_to_uint8(array, label)
    image = Image.fromarray(np.ascontiguousarray(channels))
    return (composite_on_black(image) if image.mode == "RGBA" else image), info


def _colour_to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array / 257.0).astype(np.uint8)
    if array.dtype.kind == "f" and np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0:
        return np.rint(array * 255.0).astype(np.uint8)
    raise ImageLoadError(
        label, f"colour array of dtype {array.dtype}: expected uint8, uint16, or float in [0, 1]"
    )

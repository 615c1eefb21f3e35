"""Intensity windows (CT presets, numbers, min-max, percentiles) mapping raw values to 8-bit, and montages.

A window (centre C, width W) maps value x linearly to 255 * (x - (C - W/2)) / W, clipped to [0, 255] and
rounded to the nearest integer — the DICOM "LINEAR_EXACT" VOI function with an 8-bit output range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llama3med.io.image_safety import ImageLoadError

# Standard CT windows in Hounsfield units: name -> (centre, width).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
}
MINMAX = "minmax"
# Percentiles used as the default window of NIfTI volumes (robust to a few extreme voxels).
NIFTI_PERCENTILES = (0.5, 99.5)

WindowSpec = str | tuple[float, float] | Sequence[float] | None


@dataclass(frozen=True)
class Window:
    """A linear window: `label` says where it came from (preset name, "file", "minmax", ...)."""

    center: float
    width: float
    label: str

    def describe(self) -> str:
        """Human-readable form, e.g. "lung (centre -600, width 1500)"."""
        return f"{self.label} (centre {self.center:g}, width {self.width:g})"


def parse_window(spec: WindowSpec) -> Window | str | None:
    """A window option -> a `Window`, `"minmax"`, or None (the format's default).

    Accepts a preset name, "minmax", "CENTER,WIDTH" (also "CENTER/WIDTH"), or a (centre, width) pair.
    Raises ValueError naming the accepted forms.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in WINDOW_PRESETS:
            center, width = WINDOW_PRESETS[text]
            return Window(center, width, text)
        if text == MINMAX:
            return MINMAX
        parts = text.replace("/", ",").split(",")
        if len(parts) != 2:
            raise ValueError(_window_help(spec))
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(_window_help(spec)) from None
    else:
        try:
            center, width = (float(value) for value in spec)
        except (TypeError, ValueError):
            raise ValueError(_window_help(spec)) from None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise ValueError(f"invalid window {spec!r}: centre and width must be finite and the width positive")
    return Window(center, width, "custom")


def _window_help(spec: object) -> str:
    presets = ", ".join(WINDOW_PRESETS)
    return f"invalid window {spec!r}: use a preset ({presets}), '{MINMAX}', 'CENTER,WIDTH' or a (center, width) pair"


def minmax_window(values: np.ndarray) -> Window:
    """The window spanning the finite minimum and maximum of `values`."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Window(0.0, 1.0, MINMAX)
    low, high = float(finite.min()), float(finite.max())
    return Window((low + high) / 2, max(high - low, 1e-12), MINMAX)


def percentile_window(values: np.ndarray, percentiles: tuple[float, float] = NIFTI_PERCENTILES) -> Window:
    """The window spanning two percentiles of the finite values (min-max if they coincide)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Window(0.0, 1.0, MINMAX)
    low, high = (float(v) for v in np.percentile(finite, percentiles))
    if high <= low:
        return minmax_window(finite)
    return Window((low + high) / 2, high - low, f"percentiles {percentiles[0]:g}-{percentiles[1]:g}")


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Raw values -> uint8 through `window`; NaN becomes 0. Output has the shape of `values`."""
    lower = window.center - window.width / 2
    scaled = (values.astype(np.float64) - lower) / window.width
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def evenly_spaced_indices(count: int, total: int) -> list[int]:
    """`count` indices into `total` items at the centres of `count` equal bins (ends left out)."""
    return [int((i + 0.5) * total / count) for i in range(count)]


def chosen_indices(
    index: int | None, montage: int | None, total: int, label: str, *, unit: str, holder: str
) -> list[int]:
    """The `unit`s (frames of a file, slices of an axis) to draw: a montage of `montage` evenly spaced ones, the one
    at `index`, or the middle one; out-of-range requests raise `ImageLoadError` naming `holder`'s size."""
    if montage is not None:
        if not 1 <= montage <= total:
            raise ImageLoadError(label, f"montage of {montage} {unit}s requested: {holder} has {total} {unit}(s)")
        return evenly_spaced_indices(montage, total)
    if index is None:
        return [total // 2]
    if not 0 <= index < total:
        raise ImageLoadError(
            label, f"{unit} {index} out of range: {holder} has {total} {unit}(s), indices 0..{total - 1}"
        )
    return [index]


def montage_grid(count: int) -> tuple[int, int]:
    """(rows, columns) of the near-square grid holding `count` tiles, filled row by row."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def tile_montage(tiles: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-shaped 2-D tiles [H, W] -> one [rows*H, columns*W] image, row by row, empty cells zero."""
    rows, columns = montage_grid(len(tiles))
    height, width = tiles[0].shape
    canvas = np.zeros((rows * height, columns * width), dtype=tiles[0].dtype)
    for i, tile in enumerate(tiles):
        row, column = divmod(i, columns)
        canvas[row * height : (row + 1) * height, column * width : (column + 1) * width] = tile
    return canvas

"""Intensity windows and montages (`llama3med.io.intensity`): every value worked by hand from
255 * (x - (C - W/2)) / W, rounded half to even."""

from __future__ import annotations

import numpy as np
import pytest

from llama3med.io.image_safety import ImageLoadError
from llama3med.io.intensity import (
    MINMAX,
    Window,
    apply_window,
    chosen_indices,
    evenly_spaced_indices,
    minmax_window,
    montage_grid,
    parse_window,
    percentile_window,
    tile_montage,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, None),
        (" Lung ", Window(-600.0, 1500.0, "lung")),
        ("minmax", MINMAX),
        ("40,400", Window(40.0, 400.0, "custom")),
        ("-600/1500", Window(-600.0, 1500.0, "custom")),
        ((40, 400), Window(40.0, 400.0, "custom")),
        ([2.5, 0.5], Window(2.5, 0.5, "custom")),
    ],
)
def test_window_options(spec, expected):
    assert parse_window(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lungs", r"invalid window 'lungs': use a preset \(lung, mediastinum, bone, brain, abdomen\), 'minmax'"),
        ("1,2,3", r"invalid window '1,2,3': use a preset"),
        ("a,b", r"invalid window 'a,b': use a preset"),
        ([40], r"invalid window \[40\]: use a preset"),
        ((40, 0), r"centre and width must be finite and the width positive"),
        ("nan,400", r"centre and width must be finite"),
    ],
)
def test_bad_window_options_name_the_accepted_forms(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_window(spec)


def test_describe():
    assert parse_window("lung").describe() == "lung (centre -600, width 1500)"
    assert Window(40.5, 400.0, "file").describe() == "file (centre 40.5, width 400)"


def test_minmax_and_percentile_windows_ignore_non_finite_values():
    assert minmax_window(np.array([np.nan, 2.0, 10.0, np.inf])) == Window(6.0, 8.0, MINMAX)
    assert minmax_window(np.array([np.nan])) == Window(0.0, 1.0, MINMAX)
    assert minmax_window(np.array([3.0, 3.0])) == Window(3.0, 1e-12, MINMAX)
    values = np.append(np.arange(101.0), np.nan)  # 0..100: the 10th and 90th percentiles are 10 and 90
    assert percentile_window(values, (10, 90)) == Window(50.0, 80.0, "percentiles 10-90")
    assert percentile_window(np.array([5.0] * 99 + [7.0]), (10, 90)) == Window(6.0, 2.0, MINMAX)  # equal percentiles


def test_apply_window_clips_rounds_and_maps_nan_to_zero():
    values = np.array([[-1.0, 0.0, 0.5, 1.0], [np.nan, np.inf, -np.inf, 0.25]])
    out = apply_window(values, Window(0.5, 1.0, "x"))  # lower edge 0: x -> 255 x
    np.testing.assert_array_equal(out, [[0, 0, 128, 255], [0, 255, 0, 64]])  # 127.5 -> 128, 63.75 -> 64
    assert out.dtype == np.uint8 and out.shape == values.shape


def test_indices_of_frames_and_slices():
    assert evenly_spaced_indices(3, 6) == [1, 3, 5] and evenly_spaced_indices(4, 5) == [0, 1, 3, 4]
    assert chosen_indices(None, None, 6, "v.nii", unit="slice", holder="the axis") == [3]
    assert chosen_indices(5, None, 6, "v.nii", unit="slice", holder="the axis") == [5]
    assert chosen_indices(0, 3, 6, "v.nii", unit="slice", holder="the axis") == [1, 3, 5]  # a montage wins
    with pytest.raises(ImageLoadError, match=r"^v\.nii: slice 6 out of range: the axis has 6 slice\(s\), indices 0\.\.5$"):
        chosen_indices(6, None, 6, "v.nii", unit="slice", holder="the axis")
    with pytest.raises(ImageLoadError, match=r"montage of 0 frames requested: the file has 2 frame\(s\)"):
        chosen_indices(None, 0, 2, "x.dcm", unit="frame", holder="the file")


def test_montage_grid_and_tiles():
    assert [montage_grid(n) for n in (1, 2, 3, 5, 9, 10)] == [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4)]
    tiles = [np.full((2, 3), value, dtype=np.uint16) for value in (1, 2, 3)]
    canvas = tile_montage(tiles)
    assert canvas.shape == (4, 6) and canvas.dtype == np.uint16
    np.testing.assert_array_equal(canvas, [[1, 1, 1, 2, 2, 2]] * 2 + [[3, 3, 3, 0, 0, 0]] * 2)

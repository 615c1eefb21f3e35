"""The calibrated probe (formats 2 and 3): target sizes at each scale, and stippled targets that the encoder's own
down-sampling to 448 and 224 px cancels while at 896 px they are the strongest texture of the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llama3med.experiments.probe.generate import (
    FORMAT_VERSION,
    FORMATS,
    generate_probe,
    plan_probe_image,
    render_probe_image,
)
from llama3med.experiments.probe.images import (
    REFERENCE_SIZE,
    STIPPLE_DIAMETER,
    STIPPLE_DIAMETER_FORMAT_2,
    STIPPLED,
    stipple,
)
from llama3med.model.multiscale import resize_to_scales

SIZE = FORMATS[3].size
SCALES = (224, 448, 896)


def test_format_3_is_the_default_and_is_drawn_at_the_small_presets_largest_scale() -> None:
    from llama3med.model.presets import build_preset

    assert FORMAT_VERSION == 3 and FORMATS[3] == (STIPPLED, 896, STIPPLE_DIAMETER)
    assert FORMATS[2] == (STIPPLED, 896, STIPPLE_DIAMETER_FORMAT_2)
    model, processor = build_preset("small")
    assert max(model.config.scales) == processor.image_processor.image_size == SIZE  # no resize before the encoder


@pytest.mark.parametrize("size_class", ["small", "large"])
@pytest.mark.parametrize("version", [2, 3])
def test_target_sizes_per_scale(size_class: str, version: int) -> None:
    """Format 3's discs fill a good part of one 128 px cell of the 896 px view's 7 x 7 tokens (S2 area-pools the
    28 x 28 map of that view to 7 x 7); format 2's cover a sixth of a cell's width at most. The 1 px texture is a
    quarter pixel at 224 px and half a pixel at 448 px whatever the disc's size."""
    low, high = (d * SIZE / REFERENCE_SIZE for d in FORMATS[version].stipple_diameter[size_class])
    diameters, spacing_ok = [], True
    for index in range(0, 400, 4):  # images with targets: index // 2 even
        targets = plan_probe_image(3, "train", index, SIZE, 400, version=version).layout.targets
        diameters += [2 * t.radius for t in targets if t.size_class == size_class]
        spacing_ok &= all(np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius
                          for i, a in enumerate(targets) for b in targets[i + 1:])
    assert diameters and low - 1e-6 <= min(diameters) and max(diameters) <= high + 1e-6
    assert spacing_ok  # targets never touch: counting them is well defined
    at = {scale: np.array(diameters) * scale / SIZE for scale in SCALES}
    cell = SIZE / 7  # one token of the 896 px view after pooling to the 7 x 7 base grid
    if version == 3:
        assert 0.4 * cell <= at[896].min() and at[896].max() <= cell
        assert at[224].max() <= 28.0
    else:
        assert 20.0 <= at[896].min() and at[896].max() <= 40.0
    texture_pixel = {scale: scale / SIZE for scale in SCALES}
    assert texture_pixel == {224: 0.25, 448: 0.5, 896: 1.0}


def _model_views(image: np.ndarray) -> list[np.ndarray]:
    """The encoder's views of one 896 px image: 224, 448 and 896 px, as the model resizes them (bicubic)."""
    rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0  # [1, 3, S, S]
    return [view[0].numpy() for view in resize_to_scales(pixels, SCALES)]


def test_stippled_targets_vanish_at_224_and_448_and_dominate_at_896() -> None:
    """Inside each disc the texture cancels under the encoder's 2x and 4x bicubic down-sampling (what is left is
    8-bit rounding); only the disc's one-pixel anti-aliased rim leaves a faint trace at 224 and 448 px."""
    checked = 0
    for index in (0, 1, 4, 5):  # two radiographs, two microscopy fields, all with targets
        image = plan_probe_image(0, "test", index, SIZE, 100)
        assert image.layout.targets and image.layout.target_look == STIPPLED
        with_targets = _model_views(render_probe_image(0, image))
        without = _model_views(render_probe_image(0, image, with_targets=False))
        for scale, a, b in zip(SCALES, with_targets, without):
            f = scale / SIZE
            centres = (np.arange(scale) + 0.5) / f  # view pixel centres in 896 px coordinates
            difference = np.abs(a - b).max(axis=0)  # [scale, scale], max over channels
            for t in image.layout.targets:
                distance = np.hypot(centres[None, :] - t.x, centres[:, None] - t.y)
                interior = difference[distance < t.radius - 3]
                rim = difference[(distance >= t.radius - 3) & (distance < t.radius + 3)]
                if scale == 896:
                    assert interior.max() > 0.2
                else:
                    assert interior.max() < 0.02, (index, scale, interior.max())
                    assert rim.max() < 0.15, (index, scale, rim.max())
        checked += 1
    assert checked == 4


def test_stipple_keeps_every_2x2_block_mean_and_never_clips() -> None:
    from llama3med.experiments.probe.images import Target

    base = np.full((64, 64), 200, np.uint8)
    target = Target("nodule", 32.0, 32.0, 12.0, "small")
    out = stipple(base, (target,), amplitude=0.8).astype(np.float64)
    inner = out[24:40, 24:40]  # well inside the disc
    blocks = inner.reshape(8, 2, 8, 2).mean(axis=(1, 3))
    assert np.abs(blocks - 200).max() <= 0.5  # rounding only
    assert inner.max() <= 255 and inner.min() >= 0 and inner.max() - inner.min() > 80
    rgb = np.full((64, 64, 3), 250, np.uint8)
    assert stipple(rgb, (target,), amplitude=0.8).max() <= 255


def test_format_1_stays_selectable(tmp_path) -> None:
    summary = generate_probe(tmp_path / "v1", seed=1, n_train=2, n_test=1, version=1)
    assert summary.size == 1024 and summary.version == 1
    assert '"format": 1' in (tmp_path / "v1" / "probe.json").read_text()
    assert plan_probe_image(1, "train", 0, 1024, 2, version=1).layout.target_look == "solid"

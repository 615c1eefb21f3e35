"""Pixels of the fine-detail probe: synthetic chest radiographs with lung nodules, and H&E-like
microscopy fields with mitotic figures among normal nuclei.

Each image is made in two steps, so that tests can check the targets pixel by pixel:

1. `plan_radiograph` / `plan_microscopy` draw the *layout* from one random stream: anatomy or tissue
   parameters, the targets (nodules, mitotic figures) and their look-alikes (end-on vessels, normal nuclei).
2. `render` draws the pixels from the layout and a second, independent random stream (texture, noise).
   Rendering the same layout without its targets changes pixels only inside the targets' footprints.

Why the targets need high resolution: geometry is defined at 1024 px (and scaled to the requested size).
A nodule is a sharp-edged bright disc 4-10 px across on mottled lung; the lungs also hold end-on vessels,
soft Gaussian dots of about the same integrated brightness and extent. At 1024 px a nodule's flat, bright
top stands out; down-sampled to 224 px it is one more bump of the texture, like the vessels. A mitotic
figure is a dense, spiky chromosome plate 7-15 px long whose integrated darkness is close to that of a
normal nucleus: at 1024 px it is darker than every nucleus and irregular, at 224 px one more dark dot.
(tests/experiments/probe/test_generate.py measures both.)

Two target looks (chosen by the probe's format version, `llama3med.experiments.probe.generate`):

- `SOLID` (format 1): the targets above, drawn into the image. Measured with a linear probe on the frozen
  `small` features (`llama3med experiment linear-probe`), their presence was not readable at any scale:
  a 4-10 px disc among mass-matched vessels leaves no trace in EfficientNet-Lite0's stride-32 features.
- `STIPPLED` (format 2, the default): the calibrated probe. Each target is a disc of fine granular texture,
  a pixel checkerboard whose values go up and down by `STIPPLE_AMPLITUDE` of the room left to the intensity
  range, so its local mean is the background's: calcific stippling in a nodule, clumped chromatin in a
  mitotic figure. Detail at the pixel scale is exactly what a lower-resolution view loses: resampling
  by 2x or 4x (bicubic, as S2 does from the largest scale) sums every 2 x 2 block with equal weights and
  cancels the pattern, so at 224 and 448 px the target is absent from the pixels, while at the full size
  (896 px, the `small` preset's largest scale) it is the strongest texture in the image. Images of this
  look must be generated at the model's largest scale: any resize before the encoder blurs the pattern.

Drawing is vectorised numpy over the whole image or over a small patch per object; smooth textures are
made on a coarse grid and up-sampled once with Pillow (bicubic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

REFERENCE_SIZE = 1024  # the pixel sizes below are at this image size
SOLID, STIPPLED = "solid", "stippled"  # target looks of probe formats 1 and 2
# Stippled target diameters in px at REFERENCE_SIZE (the texture is 1 px whatever the size). Format 3 (the
# default): at 896 px small 56-70 and large 88-112 px, so that a target fills a good part of one token of the
# `small` encoder's 896 px view after S2 area-pools its 28 x 28 map to 7 x 7 (a 128 px cell). Calibrated with
# `llama3med experiment linear-probe` (docs/EXPERIMENTS.md): format 2's 21-39 px discs covered a tenth of a cell
# or less and their presence read at 0.75 from the 896 px view; these read at 0.95.
STIPPLE_DIAMETER = {"small": (64.0, 80.0), "large": (100.0, 128.0)}
STIPPLE_DIAMETER_FORMAT_2 = {"small": (24.0, 30.0), "large": (36.0, 44.0)}
STIPPLE_AMPLITUDE = 0.8  # fraction of the distance to black or white that each stipple pixel moves
RADIOGRAPH, MICROSCOPY = "radiograph", "microscopy"
STYLES = (RADIOGRAPH, MICROSCOPY)
NODULE, MITOSIS = "nodule", "mitotic figure"
SMALL, LARGE = "small", "large"
SIZE_CLASSES = (SMALL, LARGE)
NODULE_DIAMETER = {SMALL: (4.0, 6.0), LARGE: (7.0, 10.0)}  # px at 1024
MITOSIS_LENGTH = {SMALL: (7.0, 9.0), LARGE: (11.0, 15.0)}  # px at 1024
NODULE_BRIGHTNESS = 0.12  # added to the [0, 1] radiograph at a nodule's centre
MITOSIS_DENSITY = 1.8  # haematoxylin optical density of condensed chromosomes (normal nuclei: 0.65-1.05)
QUADRANT_MARGIN = 0.06  # mitotic figures keep this fraction of the size away from the centre lines
# Ruifrok & Johnston optical-density vectors (R, G, B) of haematoxylin and eosin.
HAEMATOXYLIN = np.array([0.65, 0.70, 0.29], dtype=np.float32)
EOSIN = np.array([0.07, 0.99, 0.11], dtype=np.float32)

Ellipse = tuple[float, float, float, float]  # centre x, centre y, semi-axis x, semi-axis y (unit coordinates)


@dataclass(frozen=True)
class Target:
    """One target. `x`, `y`: centre in pixels (x to the right, y down, pixel centres at +0.5);
    `radius`: half its largest extent in pixels.

    Mitotic figures also carry their shape: the chromosome plate's `length`, `width` and `angle`
    (radians), and the chromatin clumps around it as `(dx, dy, radius)` offsets from the centre.
    """

    kind: str
    x: float
    y: float
    radius: float
    size_class: str
    length: float = 0.0
    width: float = 0.0
    angle: float = 0.0
    clumps: tuple[tuple[float, float, float], ...] = ()


@dataclass(frozen=True)
class Layout:
    """Everything about one image but its noise.

    `geometry`: the style's scalar parameters (radiograph: body, lung and heart placement, ribs, intensity
    gradient; microscopy: eosin density, fibre angle). `distractors`: the targets'
    look-alikes, radiograph rows `(x, y, sigma, peak)` (end-on vessels), microscopy rows
    `(x, y, semi-axis a, semi-axis b, angle, density)` (normal nuclei), in pixels. `lumina` (microscopy):
    pale spaces without tissue, rows `(x, y, semi-axis x, semi-axis y)` in unit coordinates.
    """

    style: str
    size: int
    geometry: dict[str, float]
    targets: tuple[Target, ...]
    distractors: np.ndarray
    lumina: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    target_look: str = SOLID

    def without_targets(self) -> Layout:
        """The same image with no targets."""
        return replace(self, targets=())


# Layout ---------------------------------------------------------------------------------------------
def lung_ellipses(geometry: dict[str, float]) -> tuple[Ellipse, Ellipse]:
    """The two lungs, image-left first (the patient's right lung on a frontal radiograph)."""
    cx, cy, ax, ay = geometry["body_x"], geometry["lung_y"], geometry["lung_ax"], geometry["lung_ay"]
    offset = geometry["lung_offset"]
    return (cx - offset, cy, ax, ay), (cx + offset, cy, ax, ay)


def heart_ellipse(geometry: dict[str, float]) -> Ellipse:
    """The heart shadow, left of the patient's midline (right of the image centre)."""
    return geometry["body_x"] + geometry["heart_x"], geometry["heart_y"], 0.14, 0.10


def inside_ellipse(
    x: np.ndarray | float, y: np.ndarray | float, ellipse: Ellipse, shrink: float = 1.0
) -> np.ndarray:
    """Whether unit points (x, y) lie inside `ellipse` scaled by `shrink`."""
    ex, ey, ax, ay = ellipse
    return ((x - ex) / (ax * shrink)) ** 2 + ((y - ey) / (ay * shrink)) ** 2 <= 1.0


def on_aerated_lung(geometry: dict[str, float], x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """Whether unit points (x, y) lie in the inner 80 % of a lung and clear of the heart shadow."""
    left, right = lung_ellipses(geometry)
    in_lung = inside_ellipse(x, y, left, 0.8) | inside_ellipse(x, y, right, 0.8)
    return in_lung & ~inside_ellipse(x, y, heart_ellipse(geometry), 1.15)


def target_spacing(diameters: dict[str, tuple[float, float]], least: float) -> float:
    """Unit distance between target centres: `least`, or more where the largest targets would touch."""
    return max(least, 1.1 * max(high for _, high in diameters.values()) / REFERENCE_SIZE)


def place_points(
    rng: np.random.Generator, count: int, accept: Callable[[float, float], bool], min_distance: float
) -> list[tuple[float, float]]:
    """`count` unit points accepted by `accept(x, y)`, each `min_distance` from the others (rejection sampling)."""
    points: list[tuple[float, float]] = []
    while len(points) < count:  # the acceptance regions below are large: a few dozen draws suffice
        x, y = (float(v) for v in rng.uniform(0.0, 1.0, 2))
        if accept(x, y) and all((x - px) ** 2 + (y - py) ** 2 >= min_distance**2 for px, py in points):
            points.append((x, y))
    return points


def nodule_mass(radius: np.ndarray | float) -> np.ndarray | float:
    """Integrated brightness of a nodule of `radius` px: a disc whose profile runs from 1 at the centre
    to 0.55 at the rim (a sphere in projection on a flat base), `0.85 * pi * r^2 * NODULE_BRIGHTNESS`."""
    return 0.85 * np.pi * np.square(radius) * NODULE_BRIGHTNESS


def plan_radiograph(
    rng: np.random.Generator,
    size: int,
    n_targets: int,
    size_class: str,
    look: str = SOLID,
    stipple_diameter: dict[str, tuple[float, float]] = STIPPLE_DIAMETER,
) -> Layout:
    """A frontal chest radiograph with `n_targets` nodules of `size_class` and `look` on aerated lung, among
    end-on vessels (stippled nodules drawn `stipple_diameter[size_class]` px across at REFERENCE_SIZE)."""
    scale = size / REFERENCE_SIZE
    geometry = {
        "body_x": 0.5 + rng.uniform(-0.012, 0.012),
        "body_ax": rng.uniform(0.40, 0.45),
        "lung_y": rng.uniform(0.45, 0.49),
        "lung_ax": rng.uniform(0.12, 0.135),
        "lung_ay": rng.uniform(0.25, 0.29),
        "lung_offset": rng.uniform(0.165, 0.18),
        "heart_x": rng.uniform(0.03, 0.06),
        "heart_y": rng.uniform(0.66, 0.70),
        "rib_period": rng.uniform(0.058, 0.068),
        "rib_phase": rng.uniform(0.0, 1.0),
        "rib_curve": rng.uniform(0.9, 1.3),
        "gradient_x": rng.uniform(-0.06, 0.06),
        "gradient_y": rng.uniform(-0.06, 0.06),
    }
    targets = []
    diameters = stipple_diameter if look == STIPPLED else NODULE_DIAMETER
    spacing = target_spacing(diameters, 0.06)
    for x, y in place_points(rng, n_targets, lambda x, y: bool(on_aerated_lung(geometry, x, y)), spacing):
        diameter = rng.uniform(*diameters[size_class]) * scale
        targets.append(Target(NODULE, x * size, y * size, diameter / 2, size_class))

    # End-on vessels: Gaussian dots with a nodule's mass (radius drawn over both size classes) and a
    # sigma close to that radius, so that below ~4x down-sampling they look like nodules.
    n_vessels = 100
    candidates = rng.uniform(0.0, 1.0, (5000, 2))  # ~9 % fall on aerated lung
    points = candidates[on_aerated_lung(geometry, candidates[:, 0], candidates[:, 1])][:n_vessels] * size
    classes = rng.integers(0, 2, n_vessels)  # half as massive as small nodules, half as large ones
    low = np.where(classes == 0, NODULE_DIAMETER[SMALL][0], NODULE_DIAMETER[LARGE][0]) / 2
    high = np.where(classes == 0, NODULE_DIAMETER[SMALL][1], NODULE_DIAMETER[LARGE][1]) / 2
    equivalent_radius = rng.uniform(low, high) * scale
    sigma = equivalent_radius * rng.uniform(0.75, 1.05, n_vessels)
    peak = nodule_mass(equivalent_radius) / (2 * np.pi * sigma**2)
    vessels = np.column_stack([points, sigma, peak])
    for t in targets:  # keep each target's footprint free
        vessels = vessels[
            np.hypot(vessels[:, 0] - t.x, vessels[:, 1] - t.y) > t.radius + 3 * vessels[:, 2] + 2 * scale
        ]
    return Layout(RADIOGRAPH, size, geometry, tuple(targets), vessels.astype(np.float32), target_look=look)


def in_quadrant(x: float, y: float) -> bool:
    """Unit point well inside one quadrant: off the borders and `QUADRANT_MARGIN` off the centre lines."""
    return 0.08 <= x <= 0.92 and 0.08 <= y <= 0.92 and min(abs(x - 0.5), abs(y - 0.5)) >= QUADRANT_MARGIN


def plan_microscopy(
    rng: np.random.Generator,
    size: int,
    n_targets: int,
    size_class: str,
    look: str = SOLID,
    stipple_diameter: dict[str, tuple[float, float]] = STIPPLE_DIAMETER,
) -> Layout:
    """An H&E-like field with `n_targets` mitotic figures of `size_class` and `look` among normal nuclei, on
    tissue (stippled figures drawn `stipple_diameter[size_class]` px across at REFERENCE_SIZE)."""
    scale = size / REFERENCE_SIZE
    geometry = {
        "eosin": rng.uniform(0.42, 0.55),
        "fibre_angle": rng.uniform(0.0, 180.0),
    }
    n_lumina = int(rng.integers(0, 3))
    lumina = np.column_stack(
        [
            rng.uniform(0.1, 0.9, (n_lumina, 2)),
            rng.uniform(0.04, 0.11, n_lumina),
            rng.uniform(0.04, 0.11, n_lumina),
        ]
    )

    def on_tissue_in_quadrant(x: float, y: float) -> bool:  # mitotic figures sit on tissue, clear of lumina
        return in_quadrant(x, y) and not any(inside_ellipse(x, y, tuple(lumen), 1.3) for lumen in lumina)

    targets = []
    spacing = target_spacing(stipple_diameter, 0.12) if look == STIPPLED else 0.12
    for x, y in place_points(rng, n_targets, on_tissue_in_quadrant, spacing):
        length = rng.uniform(*MITOSIS_LENGTH[size_class]) * scale
        width = rng.uniform(2.2, 3.0) * scale
        angle = rng.uniform(0.0, np.pi)
        n_clumps = int(rng.integers(4, 8))
        along = rng.uniform(-0.5, 0.5, n_clumps) * length
        across = rng.uniform(-1.0, 1.0, n_clumps) * 2.6 * scale
        radii = rng.uniform(0.9, 1.5, n_clumps) * scale
        cos, sin = np.cos(angle), np.sin(angle)
        clumps = tuple(
            (float(a * cos - c * sin), float(a * sin + c * cos), float(r))
            for a, c, r in zip(along, across, radii)
        )
        radius = max(length / 2, *(np.hypot(dx, dy) + r for dx, dy, r in clumps))
        if look == STIPPLED:  # a granular disc instead of the plate (its shape fields are kept, unused)
            radius = rng.uniform(*stipple_diameter[size_class]) * scale / 2
        targets.append(
            Target(MITOSIS, x * size, y * size, float(radius), size_class, length, width, angle, clumps)
        )

    # Normal nuclei: a jittered grid (cells tile the tissue), thinned at random, clear of the mitoses.
    spacing = 40.0 * scale
    grid = np.arange(spacing / 2, size, spacing)
    gx, gy = np.meshgrid(grid, grid)
    xs = (gx + rng.uniform(-0.35, 0.35, gx.shape) * spacing).ravel()
    ys = (gy + rng.uniform(-0.35, 0.35, gy.shape) * spacing).ravel()
    a = rng.uniform(5.5, 8.0, xs.size) * scale
    b = a * rng.uniform(0.65, 0.9, xs.size)
    angles = rng.uniform(0.0, np.pi, xs.size)
    density = rng.uniform(0.65, 1.05, xs.size)
    keep = rng.uniform(0.0, 1.0, xs.size) < 0.85
    for t in targets:
        keep &= np.hypot(xs - t.x, ys - t.y) > t.radius + a + 6.0 * scale
    nuclei = np.column_stack([xs, ys, a, b, angles, density])[keep]
    return Layout(
        MICROSCOPY, size, geometry, tuple(targets), nuclei.astype(np.float32), lumina.astype(np.float32), look
    )


# Rendering ------------------------------------------------------------------------------------------
def upsample(array: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of a float array [h, w] to [size, size]."""
    resized = Image.fromarray(array.astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC)
    return np.array(resized, dtype=np.float32)  # a writable copy


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise [size, size] (std about 0.7) with features about size/cells pixels across."""
    return upsample(rng.standard_normal((cells, cells), dtype=np.float32), size)


def soft_ellipse(size: int, ellipse: Ellipse, edge: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """1 inside the ellipse, 0 outside, a linear ramp `edge` wide (in normalised radius) across its rim;
    computed only on the ellipse's bounding box, which is returned with the values [h, w]."""
    ex, ey, ax, ay = ellipse
    reach_x, reach_y = ax * (1 + edge), ay * (1 + edge)
    x0, x1 = max(int((ex - reach_x) * size), 0), min(int(np.ceil((ex + reach_x) * size)), size)
    y0, y1 = max(int((ey - reach_y) * size), 0), min(int(np.ceil((ey + reach_y) * size)), size)
    u = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / size - ex)[None, :] / ax  # [1, w]
    v = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / size - ey)[:, None] / ay  # [h, 1]
    values = np.clip((1.0 - np.sqrt(u**2 + v**2)) / edge + 0.5, 0.0, 1.0)
    return (slice(y0, y1), slice(x0, x1)), values


def patch_offsets(
    x: float, y: float, reach: float, size: int
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The patch of pixels within `reach` of (x, y), clipped to the image, and its pixel-centre offsets
    from (x, y): dx [1, w], dy [h, 1]."""
    x0, x1 = max(int(np.floor(x - reach)), 0), min(int(np.ceil(x + reach)) + 1, size)
    y0, y1 = max(int(np.floor(y - reach)), 0), min(int(np.ceil(y + reach)) + 1, size)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - x
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - y
    return (slice(y0, y1), slice(x0, x1)), dx, dy


def render_radiograph(layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """Grayscale radiograph, uint8 [S, S]; bright = dense (bone, heart, vessels, nodules)."""
    size, g = layout.size, layout.geometry
    u = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :]  # [1, S] image x in [0, 1]
    v = ((np.arange(size, dtype=np.float32) + 0.5) / size)[:, None]  # [S, 1] image y in [0, 1]
    cx = g["body_x"]

    # Density of the trunk: soft tissue and spine, minus aerated lung, plus heart and ribs. Lungs, heart and
    # ribs are computed on their bounding boxes only (speed).
    box, body = soft_ellipse(size, (cx, 0.58, g["body_ax"], 0.62), 0.03)
    density = np.zeros((size, size), np.float32)
    density[box] = body
    density *= 0.47 + 0.12 * np.exp(-(((u - cx) / 0.028) ** 2))  # [S, S]; spine along the midline
    lungs = np.zeros((size, size), np.float32)
    for lung in lung_ellipses(g):
        box, inside = soft_ellipse(size, lung, 0.05)
        np.maximum(lungs[box], inside, out=lungs[box])
    density -= 0.29 * lungs
    box, heart = soft_ellipse(size, heart_ellipse(g), 0.12)
    density[box] += 0.22 * heart
    # Posterior ribs: bands periodic in y - curve * (x - cx)^2 (curving down laterally), beside the spine.
    rows = slice(int(0.15 * size), int(0.82 * size))
    band = 0.5 + 0.5 * np.cos(
        (2 * np.pi / g["rib_period"]) * (v[rows] - g["rib_curve"] * (u - cx) ** 2)
        + 2 * np.pi * g["rib_phase"]
    )
    band *= band * band  # cos^6 profile: narrow bright bands
    band *= band
    density[rows] += 0.09 * band * np.clip((np.abs(u - cx) - 0.03) / 0.03, 0.0, 1.0) * (density[rows] > 0)

    # Lung markings: smooth mottle ~20 px across plus blotches ~100 px across, made on a coarse grid.
    cells = max(size // 20, 8)
    markings = 0.08 * rng.standard_normal((cells, cells), dtype=np.float32)
    markings += 0.035 * smooth_noise(rng, cells, max(cells // 8, 2))
    lungs *= 0.7
    lungs += 0.3
    lungs *= upsample(markings, size)
    image = density
    image += lungs
    image += 0.05 + g["gradient_x"] * (u - 0.5) + g["gradient_y"] * (v - 0.5)

    for x, y, sigma, peak in layout.distractors:  # end-on vessels
        patch, dx, dy = patch_offsets(x, y, 3.5 * sigma, size)
        image[patch] += peak * np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    for target in solid_targets(layout):  # nodules: domes (spheres in projection), sharp anti-aliased rim
        patch, dx, dy = patch_offsets(target.x, target.y, target.radius + 1.0, size)
        distance = np.sqrt(dx**2 + dy**2)
        sphere = np.sqrt(np.clip(1.0 - (distance / target.radius) ** 2, 0.0, 1.0))
        coverage = np.clip(target.radius + 0.5 - distance, 0.0, 1.0)
        image[patch] += NODULE_BRIGHTNESS * coverage * (0.55 + 0.45 * sphere)
    return to_uint8(image)


def raise_in_ellipses(density: np.ndarray, ellipses: np.ndarray) -> None:
    """Raise `density` [S, S] to at least each ellipse's value inside it, with a one-pixel anti-aliased rim.

    `ellipses`: rows (x, y, semi-axis a >= b, semi-axis b, angle of the a axis in radians, value), all
    drawn at once on [N, P, P] patches and scattered with a maximum (overlaps keep the larger value).
    """
    if len(ellipses) == 0:
        return
    x, y, a, b, angle, value = (
        column[:, None, None] for column in ellipses.T.astype(np.float32)
    )  # [N, 1, 1]
    reach = int(np.ceil(ellipses[:, 2].max() + 1.5))
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    left, top = (
        np.floor(x) + offsets[None, None, :],
        np.floor(y) + offsets[None, :, None],
    )  # [N, 1, P], [N, P, 1]
    dx, dy = left + 0.5 - x, top + 0.5 - y  # pixel-centre offsets from the ellipse centre
    cos, sin = np.cos(angle), np.sin(angle)
    radial = np.sqrt(
        (dx * (cos / a) + dy * (sin / a)) ** 2 + (dy * (cos / b) - dx * (sin / b)) ** 2
    )  # [N, P, P]
    distance = np.sqrt(dx**2 + dy**2)
    # The rim lies at distance / radial along the ray through the pixel.
    rim = np.divide(distance, radial, out=np.full_like(distance, reach), where=radial > 0)
    coverage = np.clip(rim - distance + 0.5, 0.0, 1.0) * value
    size = density.shape[0]
    rows = np.broadcast_to(top.astype(np.int64), coverage.shape)
    cols = np.broadcast_to(left.astype(np.int64), coverage.shape)
    keep = (coverage > 0) & (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    np.maximum.at(density, (rows[keep], cols[keep]), coverage[keep])


def render_microscopy(layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """RGB H&E-like field, uint8 [S, S, 3], composed in optical density (Beer-Lambert)."""
    size, g = layout.size, layout.geometry
    # Stroma texture on a coarse grid (one cell ~ 6 px), up-sampled once: fibres (streaky noise rotated
    # to the fibre angle on a canvas big enough to leave no empty corner) and blotches; then the lumina.
    cells = max(size // 6, 8)
    canvas = int(np.ceil(cells * 1.42))
    streaks = Image.fromarray(rng.standard_normal((max(canvas // 8, 2), canvas), dtype=np.float32))
    streaks = streaks.resize((canvas, canvas), Image.Resampling.BICUBIC).rotate(
        g["fibre_angle"], Image.Resampling.BILINEAR
    )
    margin = (canvas - cells) // 2
    fibres = np.asarray(
        streaks.crop((margin, margin, margin + cells, margin + cells)), dtype=np.float32
    )  # [c, c]
    blotches = smooth_noise(rng, cells, max(cells // 8, 2))  # [c, c]
    eosin = upsample(g["eosin"] + 0.10 * fibres + 0.05 * blotches, size)  # [S, S]
    lumen = np.zeros((size, size), np.float32)
    for lumen_ellipse in layout.lumina:
        box, inside = soft_ellipse(size, tuple(lumen_ellipse), 0.15)
        np.maximum(lumen[box], inside, out=lumen[box])
    eosin *= 1.0 - 0.85 * lumen

    haem = np.zeros((size, size), np.float32)
    raise_in_ellipses(haem, layout.distractors)  # normal nuclei
    haem *= (1.0 - lumen) * (0.8 + 0.4 * rng.random((size, size), dtype=np.float32))  # chromatin speckle
    # Condensed chromosomes: a dense plate with spiky clumps around it.
    targets = solid_targets(layout)
    plates = [(t.x, t.y, t.length / 2, t.width / 2, t.angle, MITOSIS_DENSITY) for t in targets]
    clumps = [(t.x + dx, t.y + dy, r, r, 0.0, MITOSIS_DENSITY) for t in targets for dx, dy, r in t.clumps]
    raise_in_ellipses(haem, np.array(plates + clumps, dtype=np.float32).reshape(-1, 6))

    rgb = np.empty((size, size, 3), np.uint8)
    for channel in range(3):
        optical_density = eosin * EOSIN[channel]
        optical_density += haem * HAEMATOXYLIN[channel]
        optical_density += 0.04
        rgb[..., channel] = to_uint8(np.exp(-optical_density, out=optical_density))
    return rgb


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 (clipped, rounded)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def solid_targets(layout: Layout) -> tuple[Target, ...]:
    """The targets drawn as shapes (format 1); stippled targets are added after rendering."""
    return layout.targets if layout.target_look == SOLID else ()


def stipple(image: np.ndarray, targets: tuple[Target, ...], amplitude: float = STIPPLE_AMPLITUDE) -> np.ndarray:
    """Add each target as a disc of pixel-checkerboard texture to a uint8 image [S, S] or [S, S, 3].

    Pixel (row, col) inside a disc moves towards white when row + col is even and towards black when odd,
    by `amplitude` times the smaller of its distances to black and white (so nothing clips and the
    up and down steps are equal: every 2 x 2 block keeps the background's mean). The disc's rim is
    anti-aliased over one pixel."""
    out = image.astype(np.float32) / 255.0
    size = out.shape[0]
    for target in targets:
        patch, dx, dy = patch_offsets(target.x, target.y, target.radius + 1.0, size)
        coverage = np.clip(target.radius + 0.5 - np.sqrt(dx**2 + dy**2), 0.0, 1.0)  # [h, w]
        rows = np.arange(patch[0].start, patch[0].stop)[:, None]
        cols = np.arange(patch[1].start, patch[1].stop)[None, :]
        sign = np.where((rows + cols) % 2 == 0, 1.0, -1.0).astype(np.float32)  # [h, w]
        step = amplitude * coverage * sign
        if out.ndim == 3:
            step = step[..., None]
        base = out[patch]
        out[patch] = base + step * np.minimum(base, 1.0 - base)
    return to_uint8(out)


def render(layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """The image of `layout`: uint8 [S, S] (radiograph) or [S, S, 3] (microscopy); `rng` gives the noise."""
    image = render_radiograph(layout, rng) if layout.style == RADIOGRAPH else render_microscopy(layout, rng)
    if layout.target_look == STIPPLED and layout.targets:
        image = stipple(image, layout.targets)
    return image

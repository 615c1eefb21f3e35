"""Linear-probe ceiling: what the frozen visual features of each arm can tell about the probe's targets.

An end-to-end model of an arm (connector + LLM on the frozen encoder) cannot answer better than the
information its visual tokens carry. This measures that cheaply: the probe's train and test images are
encoded once (through the frozen-feature cache), each image's tokens are pooled into one vector, and a
regularised logistic regression (scikit-learn) is fitted per question type:

- `presence`: any target in the image (yes / no), every image;
- `count`: number of targets (0-3), every image;
- `position`: the lung side (radiographs: left / right / both) or the quadrant (microscopy, one target),
  images whose questions ask it.

The regularisation strength is chosen on a validation split carved from train (stratified, never test),
then the classifier is refitted on all of train and scored on the unseen test images, with a 95 % bootstrap
interval over test images. Arms are read as channel slices of one encoding: S2 pools every scale to the
base grid independently and concatenates them, so the `single-224` arm's features are exactly the 224 px
slice of the hierarchical features and `single-896`'s (tiled at 224) exactly the 896 px slice
(tests/experiments/test_linear_probe.py checks this identity against a direct encoding).

Pooling: per scale slice [g*g, C] -> the mean over the grid (C), the max over the grid (C), or both with the
max over each 2 x 2 region of the grid (6 C: a target one token wide is not averaged away and its side or
quadrant is kept). Which pooling, like the regularisation, is chosen on the validation split.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llama3med.eval.intervals import bootstrap_interval

Log = Callable[[str], None]
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # inverse L2 strengths tried on the validation split
POOLINGS = {"mean": ("mean",), "max": ("max",), "mean+max+2x2 max": ("mean", "max", "region_max")}
Views = dict[str, np.ndarray]  # pooling name -> features [N, D]
VALIDATION_FRACTION = 0.25
TASKS = ("presence", "count", "position")


@dataclass
class ProbeLabels:
    """Per-image labels of one split, read from the probe's targets.jsonl. -1 where a task does not apply."""

    ids: list[str]
    files: list[str]
    styles: list[str]
    labels: dict[str, np.ndarray]  # task -> [N] int labels


def probe_labels(probe_dir: Path, split: str) -> ProbeLabels:
    """Labels of every image of `split`: presence, count and position (side or quadrant, -1 if not asked)."""
    from llama3med.io.jsonl import read_jsonl

    records = [r for _, r in read_jsonl(Path(probe_dir) / "targets.jsonl") if r["split"] == split]
    questions = {(q["image"], q["question_type"]): q["answer"] for _, q in read_jsonl(Path(probe_dir) / f"{split}.jsonl")}
    positions = sorted({a for (_, t), a in questions.items() if t == "POS"})
    presence, count, position = [], [], []
    for record in records:
        n = len(record["targets"])
        presence.append(int(n > 0))
        count.append(n)
        answer = questions.get((record["image"], "POS"))
        position.append(positions.index(answer) if answer is not None else -1)
    return ProbeLabels(
        [r["id"] for r in records],
        [r["image"] for r in records],
        [r["style"] for r in records],
        {"presence": np.array(presence), "count": np.array(count), "position": np.array(position)},
    )


def pool_tokens(features: np.ndarray, grid: int) -> dict[str, np.ndarray]:
    """Tokens [N, g*g, C] -> {"mean": [N, C], "max": [N, C], "region_max": [N, 4 C] (max per 2 x 2 region)}."""
    import torch
    import torch.nn.functional as F

    tokens = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    n, _, channels = tokens.shape
    maps = tokens.transpose(1, 2).reshape(n, channels, grid, grid)  # [N, C, g, g]
    return {
        "mean": maps.mean(dim=(2, 3)).numpy(),
        "max": maps.amax(dim=(2, 3)).numpy(),
        "region_max": F.adaptive_max_pool2d(maps, 2).flatten(1).numpy(),  # [N, 4 C], channel-major
    }


def pooled_views(per_scale: Sequence[dict[str, np.ndarray]], rows: slice | np.ndarray = slice(None)) -> Views:
    """Every pooling of POOLINGS over the given scales' pooled parts (scales concatenated), for `rows`."""
    return {
        name: np.concatenate([parts[part][rows] for parts in per_scale for part in pieces], axis=1)
        for name, pieces in POOLINGS.items()
    }


class SpanProjection:
    """scikit-learn transformer: coordinates in an orthonormal basis of the span of the training rows.

    With far more features than images (up to 18 x 1280 pooled features for a few hundred images), an
    L2-regularised linear model's optimum lies in the span of its training rows (the representer theorem): a
    weight component orthogonal to every row changes no score and only adds to the penalty. Rotating the rows onto
    that span (at most N dimensions) keeps every dot product and the penalty, so the fitted classifier is the same
    one, found in seconds instead of minutes."""

    def fit(self, x: np.ndarray, y: Any = None) -> SpanProjection:
        _, singular, basis = np.linalg.svd(np.asarray(x, dtype=np.float64), full_matrices=False)  # basis [r, D]
        self.basis_ = basis[singular > singular.max() * 1e-10]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.basis_.T  # [N, r]

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x).transform(x)


def fit_and_score(
    train_x: Views | np.ndarray, train_y: np.ndarray, test_x: Views | np.ndarray, test_y: np.ndarray, seed: int
) -> dict[str, Any]:
    """Choose the pooling (when several views are given) and C on a stratified validation split of train, refit
    on all of train, score on test.

    Returns test accuracy with its 95 % bootstrap interval, validation and train accuracy, the chosen pooling
    and C, and the per-item correctness (for per-style breakdowns)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model(c: float) -> Any:
        return make_pipeline(StandardScaler(), SpanProjection(), LogisticRegression(C=c, max_iter=1000))

    if isinstance(train_x, np.ndarray):
        train_x, test_x = {"given": train_x}, {"given": test_x}
    classes, counts = np.unique(train_y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"train split has a single class ({classes.tolist()}): generate a larger probe")
    stratify = train_y if counts.min() >= 2 else None
    fit_rows, val_rows = train_test_split(
        np.arange(len(train_y)), test_size=VALIDATION_FRACTION, random_state=seed, stratify=stratify
    )
    validation: dict[tuple[str, float], float] = {}
    for pooling, x in train_x.items():
        for c in C_GRID:
            fitted = model(c).fit(x[fit_rows], train_y[fit_rows]) if len(set(train_y[fit_rows])) > 1 else None
            validation[pooling, c] = float(fitted.score(x[val_rows], train_y[val_rows])) if fitted else 0.0
    # Ties go to the first pooling listed (the simplest) and the stronger regularisation.
    order = list(train_x)
    pooling, best = max(validation, key=lambda key: (validation[key], -order.index(key[0]), -key[1]))
    final = model(best).fit(train_x[pooling], train_y)
    correct = (final.predict(test_x[pooling]) == test_y).astype(np.float64)
    return {
        "test_accuracy": float(correct.mean()),
        "ci95": list(bootstrap_interval(correct, seed=seed)),
        "n_test": int(len(test_y)),
        "n_train": int(len(train_y)),
        "validation_accuracy": validation[pooling, best],
        "train_accuracy": float(final.score(train_x[pooling], train_y)),
        "pooling": pooling,
        "C": best,
        "chance": float(np.max(np.bincount(test_y)) / len(test_y)),  # always answering the majority class
        "correct": correct,
    }


def probe_tasks(
    per_scale: Sequence[dict[str, np.ndarray]], train: ProbeLabels, test: ProbeLabels, seed: int
) -> dict[str, Any]:
    """Every task on one feature set (the pooled parts of its scales, train rows first, then test rows);
    each task also broken down by image style."""
    n_train = len(train.ids)
    results: dict[str, Any] = {}
    for task in TASKS:
        train_rows, test_rows = train.labels[task] >= 0, test.labels[task] >= 0
        if train_rows.sum() < 4 or test_rows.sum() == 0:
            continue
        scored = fit_and_score(
            pooled_views(per_scale, np.flatnonzero(train_rows)), train.labels[task][train_rows],
            pooled_views(per_scale, n_train + np.flatnonzero(test_rows)), test.labels[task][test_rows], seed,
        )
        correct = scored.pop("correct")
        styles = np.array(test.styles)[test_rows]
        scored["by_style"] = {
            style: {
                "test_accuracy": float(correct[styles == style].mean()),
                "ci95": list(bootstrap_interval(correct[styles == style], seed=seed)),
                "n_test": int((styles == style).sum()),
            }
            for style in sorted(set(styles))
        }
        results[task] = scored
    return results


def encode_probe(
    probe_dir: Path,
    files: Sequence[str],
    scales: Sequence[int],
    feature_cache: Path | None,
    log: Log,
    built: tuple[Any, Any] | None = None,
    preset: str = "small",
) -> tuple[np.ndarray, int, int, str]:
    """Frozen features [N, g*g, len(scales) * C] of the probe images (through the feature cache), from
    `preset` with `scales`, or from `built` = (model, processor) when given (its own scales).

    Returns the features, the grid side g, the per-scale width C and the encoder fingerprint."""
    import torch

    from llama3med.folders import feature_cache_dir
    from llama3med.model.feature_cache import FeatureCache, encoder_fingerprint
    from llama3med.model.presets import build_preset

    model, processor = built or build_preset(preset, scales=list(scales), tile_size=min(scales))
    model.eval()
    fingerprint = encoder_fingerprint(model, processor.image_processor)
    cache = FeatureCache(feature_cache or feature_cache_dir(), fingerprint)
    paths = [Path(probe_dir) / "images" / name for name in files]
    shas = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]  # the cache's key
    done = [0]
    started = time.perf_counter()

    def encode(batch: list[Path]) -> torch.Tensor:
        return model.encode_images(processor.image_processor(batch)["pixel_values"])  # [B, g*g, k*C]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] % 40 < n or done[0] == len(paths):
            log(f"  encoded {done[0]} new images ({time.perf_counter() - started:.0f} s)")

    cache.fill(list(zip(shas, paths)), encode, batch_size=4, progress=progress)
    features = torch.stack([cache.load(sha) for sha in shas]).float().numpy()  # [N, g*g, k*C]
    grid = int(round(features.shape[1] ** 0.5))
    return features, grid, features.shape[2] // len(scales), fingerprint


def presence_ceiling(
    probe_dir: Path, model: Any, processor: Any, *, feature_cache: Path | None = None, seed: int = 0, log: Log = print
) -> dict[str, Any]:
    """The linear-probe presence ceiling of `model`'s own frozen features on a probe (all its scales together):
    what its connector and LLM could at best read. Reuses the features training cached."""
    train, test = probe_labels(probe_dir, "train"), probe_labels(probe_dir, "test")
    scales = list(model.config.scales)
    features, grid, width, _ = encode_probe(
        probe_dir, train.files + test.files, scales, feature_cache, log, built=(model, processor)
    )
    per_scale = [pool_tokens(features[:, :, i * width:(i + 1) * width], grid) for i in range(len(scales))]
    return probe_tasks(per_scale, train, test, seed)["presence"]


def run_linear_probe(
    out: Path,
    arms: dict[str, dict[str, Any]],
    *,
    probe_train: int,
    probe_test: int,
    probe_seed: int = 0,
    probe_version: int | None = None,
    seed: int = 0,
    feature_cache: Path | None = None,
    preset: str = "small",
    probe_size: int | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Generate (or reuse) the probe under `out/probe`, encode it once with `preset`'s frozen encoder, fit every
    arm; write `summary.json`."""
    from llama3med.experiments.probe.generate import generate_probe

    started = time.perf_counter()
    out = Path(out)
    probe_dir = out / "probe"
    summary = generate_probe(probe_dir, seed=probe_seed, n_train=probe_train, n_test=probe_test, size=probe_size,
                             version=probe_version)
    log(f"probe: {summary.n_train} train + {summary.n_test} test images at {summary.size} px in {probe_dir}")
    train, test = probe_labels(probe_dir, "train"), probe_labels(probe_dir, "test")
    tiles = {ARM.get("tile_size", min(ARM["scales"])) for ARM in arms.values()}
    if len(tiles) != 1:
        raise ValueError(f"arms must share one tile size to be read from one encoding; got {sorted(tiles)}")
    scales = sorted({s for arm in arms.values() for s in arm["scales"]})
    if min(scales) != next(iter(tiles)):
        raise ValueError(f"the smallest scale ({min(scales)}) must be the shared tile size ({next(iter(tiles))})")
    features, grid, width, fingerprint = encode_probe(
        probe_dir, train.files + test.files, scales, feature_cache, log, preset=preset
    )
    per_scale = {
        scale: pool_tokens(features[:, :, i * width:(i + 1) * width], grid) for i, scale in enumerate(scales)
    }  # scale -> pooled parts
    results: dict[str, Any] = {}
    for name, arm in arms.items():
        entry = {"scales": list(arm["scales"]), **probe_tasks([per_scale[s] for s in arm["scales"]], train, test, seed)}
        if len(arm["scales"]) > 1:
            entry["slices"] = {str(s): probe_tasks([per_scale[s]], train, test, seed) for s in arm["scales"]}
        results[name] = entry
        log(f"{name}: presence {entry['presence']['test_accuracy']:.3f} {fmt_ci(entry['presence']['ci95'])}")
    report = {
        "probe": {"dir": str(probe_dir), "seed": probe_seed, "n_train": summary.n_train, "n_test": summary.n_test,
                  "size": summary.size, "version": summary.version},
        "encoder": {"preset": preset, "scales": scales, "grid": grid, "width_per_scale": width,
                    "fingerprint": fingerprint},
        "classifier": {"model": "scikit-learn LogisticRegression (L2) on standardised pooled tokens",
                       "poolings": {name: list(parts) for name, parts in POOLINGS.items()},
                       "C_grid": list(C_GRID), "validation_fraction": VALIDATION_FRACTION, "seed": seed,
                       "interval": "95 % percentile bootstrap over test images (2000 resamples)"},
        "arms": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def fmt_ci(interval: Sequence[float]) -> str:
    """`[0.812, 0.934]`."""
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(arm, features, task, test accuracy with CI, chance) for the printed table."""
    rows = []
    for arm, entry in report["arms"].items():
        views = [("all scales" if len(entry["scales"]) > 1 else f"{entry['scales'][0]} px", entry)]
        views += [(f"{scale} px slice", tasks) for scale, tasks in entry.get("slices", {}).items()]
        for view, tasks in views:
            for task in TASKS:
                if task in tasks:
                    t = tasks[task]
                    rows.append((arm, view, task, f"{t['test_accuracy']:.3f} {fmt_ci(t['ci95'])}", f"{t['chance']:.2f}"))
    return rows

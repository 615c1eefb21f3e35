"""The linear probe: separable features reach ~1.0, shuffled labels stay ~0.5, pooling keeps one token's
signal and its quadrant, and arms read as channel slices equal a direct encoding of that arm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llama3med.experiments.linear_probe import fit_and_score, pool_tokens, pooled_views
from llama3med.experiments.probe.generate import FORMAT_VERSION


def _blobs(n: int, dims: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.standard_normal((n, dims))
    x[:, 0] += shift * (2 * y - 1)
    return x, y


def test_separable_case_reaches_one() -> None:
    train_x, train_y = _blobs(160, 50, 6.0, 0)
    test_x, test_y = _blobs(100, 50, 6.0, 1)
    scored = fit_and_score(train_x, train_y, test_x, test_y, seed=0)
    assert scored["test_accuracy"] >= 0.98
    low, high = scored["ci95"]
    assert low <= scored["test_accuracy"] <= high and low > 0.9
    assert scored["chance"] == 0.5 and scored["n_test"] == 100


def test_shuffled_labels_stay_at_chance() -> None:
    train_x, train_y = _blobs(160, 50, 6.0, 0)
    test_x, test_y = _blobs(200, 50, 6.0, 1)
    shuffled = np.random.default_rng(5).permutation(train_y)
    scored = fit_and_score(train_x, shuffled, test_x, test_y, seed=0)
    assert 0.35 <= scored["test_accuracy"] <= 0.65
    assert scored["ci95"][0] < 0.5 < scored["ci95"][1] or scored["ci95"][1] < 0.65


def test_single_class_train_split_is_refused() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="single class"):
        fit_and_score(x, np.zeros(10, int), x, np.zeros(10, int), seed=0)


def test_pooling_keeps_a_single_token_and_its_quadrant() -> None:
    tokens = np.zeros((2, 49, 3), np.float32)  # grid 7 x 7, 3 channels
    tokens[0, 0 * 7 + 6, 1] = 10.0  # top-right token of image 0
    tokens[1, 6 * 7 + 0, 1] = 10.0  # bottom-left token of image 1
    parts = pool_tokens(tokens, grid=7)
    assert parts["mean"][0, 1] == pytest.approx(10.0 / 49) and parts["max"][:, 1].tolist() == [10.0, 10.0]
    region_max = parts["region_max"].reshape(2, 3, 2, 2)  # [N, C, 2, 2]
    assert region_max[0, 1, 0, 1] == 10.0 and region_max[0, 1, 1, 0] == 0.0
    assert region_max[1, 1, 1, 0] == 10.0 and region_max[1, 1, 0, 1] == 0.0
    views = pooled_views([parts, parts], np.array([1]))  # two scales, the second image only
    assert {name: v.shape for name, v in views.items()} == {
        "mean": (1, 6), "max": (1, 6), "mean+max+2x2 max": (1, 36)
    }


def test_pooling_is_chosen_on_validation() -> None:
    """A signal only the max sees (one hot token among many): the validation split picks a max pooling."""
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((240, 49, 8)).astype(np.float32) * 0.3
    labels = np.arange(240) % 2
    where = rng.integers(0, 49, 240)
    tokens[np.flatnonzero(labels), where[labels == 1], 0] += 6.0
    tokens[labels == 0, :, 0] += 6.0 / 49  # negatives get the same mean, spread over every token
    views = pooled_views([pool_tokens(tokens, 7)])
    train = {k: v[:160] for k, v in views.items()}
    test = {k: v[160:] for k, v in views.items()}
    scored = fit_and_score(train, labels[:160], test, labels[160:], seed=0)
    assert scored["pooling"] in ("max", "mean+max+2x2 max") and scored["test_accuracy"] >= 0.95


def test_arm_slices_equal_a_direct_encoding() -> None:
    """S2 pools each scale on its own: the 32 px slice of a 32/64/128 encoding is the single-32 encoding and
    its 128 px slice the single-128 one (tiled at 32)."""
    from llama3med.model.presets import tiny

    torch.manual_seed(0)
    images = torch.randn(2, 3, 128, 128)
    hierarchical, _ = tiny(scales=[32, 64, 128])
    single_low, _ = tiny(scales=[32])
    single_high, _ = tiny(scales=[128], tile_size=32)
    for model in (single_low, single_high):
        model.vision_tower.load_state_dict(hierarchical.vision_tower.state_dict())
    features = hierarchical.encode_images(images)  # [2, 16, 3 * C]
    width = features.shape[-1] // 3
    torch.testing.assert_close(features[..., :width], single_low.encode_images(images))
    torch.testing.assert_close(features[..., 2 * width:], single_high.encode_images(images))


def test_run_writes_the_summary_per_arm_and_slice(tmp_path) -> None:
    """End to end on the tiny preset (random encoder: the numbers are not the point, the summary is)."""
    import json

    from llama3med.experiments.linear_probe import run_linear_probe

    arms = {"single-32": {"scales": [32]}, "hierarchical": {"scales": [32, 64, 128]}}
    report = run_linear_probe(tmp_path / "run", arms, probe_train=16, probe_test=8, probe_size=256, preset="tiny",
                              feature_cache=tmp_path / "cache", log=lambda line: None)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["arms"].keys() == arms.keys() and summary["probe"]["version"] == FORMAT_VERSION
    for arm in arms:
        presence = summary["arms"][arm]["presence"]
        assert 0.0 <= presence["test_accuracy"] <= 1.0 and presence["n_test"] == 8
        low, high = presence["ci95"]
        assert low <= presence["test_accuracy"] <= high
        assert set(presence["by_style"]) == {"radiograph", "microscopy"}
    assert "slices" not in summary["arms"]["single-32"]
    assert set(summary["arms"]["hierarchical"]["slices"]) == {"32", "64", "128"}
    # The 32 px slice of the hierarchical encoding is the single-32 arm: the same fits, the same numbers.
    assert summary["arms"]["hierarchical"]["slices"]["32"]["presence"] == summary["arms"]["single-32"]["presence"]
    assert report["arms"]["single-32"]["presence"]["test_accuracy"] == presence_of(summary, "single-32")
    cached = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(cached) == 24  # each image encoded once, for all arms


def presence_of(summary: dict, arm: str) -> float:
    return summary["arms"][arm]["presence"]["test_accuracy"]


def test_span_projection_finds_the_same_classifier_as_the_full_features() -> None:
    """More features than rows: fitting in the span of the training rows gives the same decision values."""
    from sklearn.linear_model import LogisticRegression

    from llama3med.experiments.linear_probe import SpanProjection

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 500))
    y = (x[:, :5].sum(axis=1) > 0).astype(int)
    test = rng.normal(size=(20, 500))
    full = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit(x, y)
    projection = SpanProjection().fit(x)
    assert projection.basis_.shape == (40, 500)
    reduced = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit(projection.transform(x), y)
    np.testing.assert_allclose(reduced.decision_function(projection.transform(test)), full.decision_function(test),
                               atol=1e-5)

"""Connector: layer layout per type, and the feature standardisation's fit, floor and round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llama3med.model.connector import STD_FLOOR, FeatureStandardizer, build_connector, connector_input_width
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.presets import build_preset


@pytest.mark.parametrize("kind", ["linear", "mlp2x_gelu", "mlp3x_gelu"])
def test_connector_types(kind: str) -> None:
    connector = build_connector(kind, 12, 8)
    n_linear = {"linear": 1, "mlp2x_gelu": 2, "mlp3x_gelu": 3}[kind]
    assert sum(isinstance(m, torch.nn.Linear) for m in connector) == n_linear
    assert connector(torch.randn(2, 5, 12)).shape == (2, 5, 8)


def test_standardizer_fits_the_mean_and_sample_std_of_every_token() -> None:
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.1, 1.0, 5.0, 0.3])  # the median spread is ~0.65: the floor stays below every channel
    features = torch.randn(6, 5, 4, generator=generator) * scale + torch.tensor([1.0, -2.0, 0.0, 3.0])  # [N, T, C]
    standardizer = FeatureStandardizer(4)
    seen = standardizer.fit([features[:4], features[4:]])  # two batches give the statistics of the whole
    rows = features.reshape(-1, 4).double()
    assert seen == 30 and bool(standardizer.fitted)
    torch.testing.assert_close(standardizer.mean.double(), rows.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(standardizer.std.double(), rows.std(0), rtol=1e-5, atol=1e-7)
    out = standardizer(features).reshape(-1, 4).double()
    torch.testing.assert_close(out.mean(0), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.std(0), torch.ones(4, dtype=torch.float64), rtol=1e-4, atol=1e-5)


def test_a_constant_channel_is_divided_by_the_floor_not_by_zero() -> None:
    features = torch.stack([torch.tensor([[1.0, 7.0], [3.0, 7.0]]), torch.tensor([[5.0, 7.0], [7.0, 7.0]])])
    standardizer = FeatureStandardizer(2)
    standardizer.fit([features])
    spread = torch.tensor([1.0, 3.0, 5.0, 7.0]).std()
    assert standardizer.std[1].item() == pytest.approx(STD_FLOOR * spread.item())
    moved = standardizer(torch.tensor([[[4.0, 7.5]]]))
    assert moved[0, 0, 1].item() == pytest.approx(0.5 / (STD_FLOOR * spread.item()), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 feature tokens"):
        FeatureStandardizer(2).fit([torch.zeros(1, 1, 2)])


def test_an_unfitted_standardizer_is_the_identity_and_sits_before_the_first_linear() -> None:
    connector = build_connector("mlp2x_gelu", 12, 8, "standardize")
    assert isinstance(connector[0], FeatureStandardizer) and not bool(connector[0].fitted)
    x = torch.randn(2, 3, 12)
    assert torch.equal(connector[0](x), x)
    assert connector_input_width(connector.state_dict()) == 12
    assert [type(m).__name__ for m in build_connector("linear", 12, 8)] == ["Linear"]
    with pytest.raises(ValueError, match="unknown connector input norm"):
        build_connector("mlp2x_gelu", 12, 8, "layernorm")


def test_fitted_statistics_are_saved_and_loaded_with_the_model(tmp_path: Path) -> None:
    model, processor = build_preset("tiny", connector_input_norm="standardize")
    assert model.feature_standardizer is not None and build_preset("tiny")[0].feature_standardizer is None
    width = model.config.connector_input_size
    model.feature_standardizer.fit([torch.randn(3, 16, width) * 4 + 2])
    features = torch.randn(1, model.config.num_image_tokens, width)
    expected = model.project_image_features(features)
    model.save_pretrained(tmp_path)
    loaded = Llama3MedForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.connector_input_norm == "standardize" and bool(loaded.feature_standardizer.fitted)
    torch.testing.assert_close(loaded.feature_standardizer.std, model.feature_standardizer.std)
    torch.testing.assert_close(loaded.project_image_features(features), expected)

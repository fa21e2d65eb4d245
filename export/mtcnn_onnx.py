"""Builds the bundled face detector: MTCNN's three networks as ONNX files the torch-free runtime runs.

The weights are facenet-pytorch's (MIT licence), ported there from Zhang et al.'s MTCNN (see
``engine/face_models/LICENSE.md``). They are read from the facenet-pytorch wheel or an unpacked copy; the package
itself is not imported (it pins an old torch), only its three state dicts. Run once by a maintainer::

    pip download --no-deps facenet-pytorch==2.6.0 -d /tmp/w
    python -m dfx.export.mtcnn_onnx /tmp/w/facenet_pytorch-2.6.0-py3-none-any.whl engine/face_models

The layer layout below matches those state dicts; the networks take RGB NCHW input scaled as
``(x - 127.5) / 128``. Both dense networks flatten in (W, H, C) order, as the original Caffe models did.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

__all__ = ["PNet", "RNet", "ONet", "PReLU", "build", "NETS"]


class PReLU(nn.PReLU):
    """PReLU written as ``relu(x) + a * min(x, 0)``: the same values, but onnxruntime's CPU ``PRelu`` kernel takes a
    slow per-element path for per-channel slopes (it was 60 % of R-Net's and O-Net's time; these ops are 2× faster
    end to end). The parameter keeps ``nn.PReLU``'s name, so facenet-pytorch's state dicts load unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return torch.relu(x) + a * torch.clamp(x, max=0)


class PNet(nn.Module):
    """Proposal network: fully convolutional, run on every pyramid scale (12×12 window, stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), 1)[:, 1], self.conv4_2(x)  # face probability map, box offsets


class RNet(nn.Module):
    """Refinement network on 24×24 candidate crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu4(self.dense4(x))
        return torch.softmax(self.dense5_1(x), 1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output network on 48×48 crops: final score, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        return torch.softmax(self.dense6_1(x), 1)[:, 1], self.dense6_2(x), self.dense6_3(x)


# name → (network, input height/width or None for any, output names)
NETS = {
    "pnet": (PNet, None, ["prob", "reg"]),
    "rnet": (RNet, 24, ["prob", "reg"]),
    "onet": (ONet, 48, ["prob", "reg", "landmarks"]),
}


def _state_dict(source: Path, name: str) -> dict:
    if source.is_dir():
        return torch.load(source / "facenet_pytorch" / "data" / f"{name}.pt", weights_only=True)
    with zipfile.ZipFile(source) as z:
        return torch.load(io.BytesIO(z.read(f"facenet_pytorch/data/{name}.pt")), weights_only=True)


def build(source: Path, out_dir: Path) -> list[Path]:
    """Writes ``mtcnn-{pnet,rnet,onet}.onnx`` into ``out_dir`` from a facenet-pytorch wheel or unpacked folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (cls, side, outputs) in NETS.items():
        net = cls().eval()
        net.load_state_dict(_state_dict(source, name))
        h = side or 64
        axes = {"image": {0: "n"} if side else {0: "n", 2: "h", 3: "w"}}
        axes.update({o: {0: "n"} if side else {0: "n", 1: "gh", 2: "gw"} for o in outputs})
        path = out_dir / f"mtcnn-{name}.onnx"
        torch.onnx.export(net, (torch.zeros(1, 3, h, h),), str(path), input_names=["image"], output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m dfx.export.mtcnn_onnx FACENET_PYTORCH_WHEEL_OR_DIR OUT_DIR")
    for p in build(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")

"""Import of the original MesoNet Keras ``.h5`` weights into :mod:`dfx.training.mesonet` models.

Conversions: conv kernels HWIO → OIHW; dense kernels (in, out) → (out, in); the first dense layer's inputs
reordered from Keras' NHWC flatten order to PyTorch's NCHW; and the last layer negated, because the Keras
models output P(real) while dfx's logit means P(fake) (sigmoid(-z) = 1 - sigmoid(z)).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from dfx.engine.errors import DfxError, MissingDependencyError

from .mesonet import Meso4, MesoInception4

__all__ = ["load_keras_mesonet"]


def _read_h5(path: Path) -> dict[str, dict[str, np.ndarray]]:
    try:
        import h5py
    except ImportError as e:
        raise MissingDependencyError("h5py", "train") from e
    layers: dict[str, dict[str, np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for lname in root:
                params: dict[str, np.ndarray] = {}
                root[lname].visititems(
                    lambda n, o, p=params: p.__setitem__(n.split("/")[-1].split(":")[0], o[()])
                    if hasattr(o, "shape") else None)
                if params:
                    layers[lname] = params
    except OSError as e:
        raise DfxError(f"{path}: not a readable Keras .h5 weights file ({e})") from e
    return layers


def _by_kind(layers: dict[str, dict[str, np.ndarray]], kind: str) -> list[dict[str, np.ndarray]]:
    # Keras numbers layers in creation order (conv2d_1, conv2d_2, …), which is the model's definition order.
    names = [n for n in layers if re.fullmatch(rf"{kind}_?\d*", n)]
    names.sort(key=lambda n: int(re.sub(r"\D", "", n) or 0))
    return [layers[n] for n in names]


def _conv(dst: torch.nn.Conv2d, src: dict[str, np.ndarray]) -> None:
    k = torch.from_numpy(np.ascontiguousarray(src["kernel"].transpose(3, 2, 0, 1)))
    if k.shape != dst.weight.shape:
        raise DfxError(f"Keras conv kernel {tuple(k.shape)} does not fit {tuple(dst.weight.shape)}")
    dst.weight.copy_(k)
    dst.bias.copy_(torch.from_numpy(src["bias"]))


def _bn(dst: torch.nn.BatchNorm2d, src: dict[str, np.ndarray]) -> None:
    dst.weight.copy_(torch.from_numpy(src["gamma"]))
    dst.bias.copy_(torch.from_numpy(src["beta"]))
    dst.running_mean.copy_(torch.from_numpy(src["moving_mean"]))
    dst.running_var.copy_(torch.from_numpy(src["moving_variance"]))


@torch.no_grad()
def load_keras_mesonet(model: torch.nn.Module, path: str | Path) -> None:
    """Copies the weights of an original MesoNet ``.h5`` file into ``model`` (Meso4 or MesoInception4).

    Raises:
        DfxError: when the file is not a MesoNet of the model's kind.
    """
    path = Path(path)
    layers = _read_h5(path)
    convs, bns, denses = _by_kind(layers, "conv2d"), _by_kind(layers, "batch_normalization"), _by_kind(layers, "dense")
    if isinstance(model, Meso4):
        targets = list(model.convs)
    elif isinstance(model, MesoInception4):
        # Creation order inside each inception layer: b1, b2 (1x1, 3x3), b3 (1x1, 3x3), b4 (1x1, 3x3).
        targets = []
        for inc in (model.inc1, model.inc2):
            targets += [inc.b1, *inc.b2, *inc.b3, *inc.b4]
        targets += [model.conv3, model.conv4]
    else:
        raise DfxError(f"Keras weights can only be loaded into meso4 or mesoinception4, not {type(model).__name__}")
    if (len(convs), len(bns), len(denses)) != (len(targets), 4, 2):
        raise DfxError(f"{path.name} holds {len(convs)} conv, {len(bns)} batch-norm and {len(denses)} dense layers; "
                       f"{type(model).__name__} needs {len(targets)}, 4 and 2 — wrong MesoNet variant?")
    for dst, src in zip(targets, convs):
        _conv(dst, src)
    for dst, src in zip(model.bns, bns):
        _bn(dst, src)
    fc1, fc2 = model.head.fc1, model.head.fc2
    k1 = denses[0]["kernel"]  # (h*w*c, 16) in NHWC flatten order
    c = model.bns[-1].num_features
    if k1.shape[0] != fc1.in_features:
        raise DfxError(f"{path.name} expects {k1.shape[0]} dense inputs (256x256 images); this model has "
                       f"{fc1.in_features} — build it with the default 256x256 input size")
    hw = k1.shape[0] // c
    h = w = int(round(hw ** 0.5))
    k1 = k1.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)  # → NCHW flatten order
    fc1.weight.copy_(torch.from_numpy(np.ascontiguousarray(k1.T)))
    fc1.bias.copy_(torch.from_numpy(denses[0]["bias"]))
    fc2.weight.copy_(-torch.from_numpy(np.ascontiguousarray(denses[1]["kernel"].T)))
    fc2.bias.copy_(-torch.from_numpy(denses[1]["bias"]))

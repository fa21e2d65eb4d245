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


def _put(dst: torch.Tensor, src: dict[str, np.ndarray], key: str, layer: str, transform=None) -> None:
    """Copies ``src[key]`` into ``dst`` only when it has exactly ``dst``'s shape and finite values (``copy_``
    would silently broadcast a wrong shape)."""
    if key not in src:
        raise DfxError(f"Keras layer {layer} has no '{key}' tensor (it has {', '.join(sorted(src)) or 'none'}); "
                       f"not an original MesoNet weights file")
    value = np.asarray(src[key])
    if not np.issubdtype(value.dtype, np.floating):
        raise DfxError(f"Keras {layer}/{key} holds {value.dtype} values, not floats")
    if transform is not None:
        value = transform(value)
    if tuple(value.shape) != tuple(dst.shape):
        raise DfxError(f"Keras {layer}/{key} has shape {tuple(value.shape)}; this model needs {tuple(dst.shape)} — "
                       f"wrong MesoNet variant or input size?")
    if not np.isfinite(value).all():
        raise DfxError(f"Keras {layer}/{key} contains NaN or infinite values")
    dst.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))


def _conv(dst: torch.nn.Conv2d, src: dict[str, np.ndarray], layer: str) -> None:
    _put(dst.weight, src, "kernel", layer, lambda k: k.transpose(3, 2, 0, 1) if k.ndim == 4 else k)
    _put(dst.bias, src, "bias", layer)


def _bn(dst: torch.nn.BatchNorm2d, src: dict[str, np.ndarray], layer: str) -> None:
    for tensor, key in ((dst.weight, "gamma"), (dst.bias, "beta"), (dst.running_mean, "moving_mean"),
                        (dst.running_var, "moving_variance")):
        _put(tensor, src, key, layer)


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
    for i, (dst, src) in enumerate(zip(targets, convs)):
        _conv(dst, src, f"conv #{i + 1}")
    for i, (dst, src) in enumerate(zip(model.bns, bns)):
        _bn(dst, src, f"batch-norm #{i + 1}")
    fc1, fc2 = model.head.fc1, model.head.fc2
    if "kernel" not in denses[0] or np.ndim(denses[0]["kernel"]) != 2:
        raise DfxError(f"{path.name}: the first dense layer has no 2-D 'kernel'; not an original MesoNet file")
    k1 = np.asarray(denses[0]["kernel"])  # (h*w*c, 16) in NHWC flatten order
    c = model.bns[-1].num_features
    if k1.shape[0] != fc1.in_features:
        raise DfxError(f"{path.name} expects {k1.shape[0]} dense inputs (256x256 images); this model has "
                       f"{fc1.in_features} — build it with the default 256x256 input size")
    hw = k1.shape[0] // c
    h = w = int(round(hw ** 0.5))
    if h * w * c != k1.shape[0]:
        raise DfxError(f"{path.name}: {k1.shape[0]} dense inputs are not a square map of {c} channels")

    def nchw(k: np.ndarray) -> np.ndarray:  # NHWC flatten order → NCHW, then (in, out) → (out, in)
        return k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1).T

    _put(fc1.weight, denses[0], "kernel", "dense #1", nchw)
    _put(fc1.bias, denses[0], "bias", "dense #1")
    _put(fc2.weight, denses[1], "kernel", "dense #2", lambda k: -k.T)
    _put(fc2.bias, denses[1], "bias", "dense #2", lambda b: -b)

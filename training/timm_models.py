"""Xception, EfficientNet-B0 and ViT-B/16 from timm, each with a one-logit head.

ImageNet weights: ``pretrained=True`` uses timm's cache or the hub; ``pretrained_file`` loads a local file.
When neither works the error says so; random weights are only used when asked for (``--no-pretrained``).
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

from dfx.engine.errors import DfxError, MissingDependencyError
from dfx.engine.spec import PreprocessSpec

from .registry import ModelEntry, register_model

__all__ = ["TIMM_NAMES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION = (0.5, 0.5, 0.5)

# dfx name → timm architecture. Face crops arrive already framed, so the default resize squashes instead of
# cropping away the face border (timm's ImageNet crop_pct is for object photos).
TIMM_NAMES = {
    "xception": "legacy_xception",
    "efficientnet_b0": "efficientnet_b0",
    "vit_b16": "vit_base_patch16_224",
}


def _timm():
    try:
        import timm
    except ImportError as e:
        raise MissingDependencyError("timm", "train") from e
    return timm


def _hub_host() -> str | None:
    """The Hugging Face hub's host when it can be reached from here within seconds, else None."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return None
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return None
    return host


def _cached_or_reachable(timm: Any, dfx_name: str, arch: str) -> dict[str, Any]:
    """timm arguments for ImageNet weights: the cached file when there is one; the hub when it answers.

    Without either, fails at once: offline, the hub client would retry for about a minute before giving up.
    """
    try:
        from huggingface_hub import try_to_load_from_cache

        hub_id = timm.models.get_pretrained_cfg(arch).hf_hub_id
        for name in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(hub_id, name)
            if isinstance(cached, str):
                return {"pretrained_cfg_overlay": {"file": cached}}
    except Exception:  # noqa: BLE001 - no cache information: let the hub decide below
        pass
    if _hub_host() is None:
        raise DfxError(f"ImageNet weights for {dfx_name} ({arch}) are not in the Hugging Face cache and the hub "
                       f"cannot be reached from here. Give a local weights file with --pretrained-file PATH, or "
                       f"train from random weights with --no-pretrained")
    return {}


def _build(dfx_name: str, size_kwarg: bool):
    def build(spec: PreprocessSpec, pretrained: bool = False, pretrained_file: str | None = None,
              drop_rate: float = 0.0, img_size: Any = None, **_: Any) -> tuple[Any, dict[str, Any]]:
        timm = _timm()
        arch = TIMM_NAMES[dfx_name]
        kwargs: dict[str, Any] = {"num_classes": 1, "drop_rate": drop_rate}
        model_kwargs: dict[str, Any] = {}
        if size_kwarg:  # ViT's position embedding depends on the input size
            size = list(img_size) if img_size is not None else list(spec.input_size)
            kwargs["img_size"] = tuple(size)
            model_kwargs["img_size"] = size
        if pretrained_file:
            if not os.path.isfile(pretrained_file):
                raise DfxError(f"--pretrained-file {pretrained_file}: no such file")
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": os.fspath(pretrained_file)})
        elif pretrained:
            kwargs.update(pretrained=True, **_cached_or_reachable(timm, dfx_name, arch))
        try:
            model = timm.create_model(arch, **kwargs)
        except Exception as e:  # noqa: BLE001 - hub/network/format errors all end the same way for the user
            if not (pretrained or pretrained_file):
                raise
            where = f"from {pretrained_file}" if pretrained_file else "from timm's cache or the Hugging Face hub"
            raise DfxError(
                f"could not load ImageNet weights for {dfx_name} ({arch}) {where}: {type(e).__name__}: {e}. "
                f"Give a local weights file with --pretrained-file PATH, or train from random weights with "
                f"--no-pretrained") from e
        return model, model_kwargs

    return build


register_model(ModelEntry(
    "xception", _build("xception", False),
    PreprocessSpec(input_size=(299, 299), interpolation="bicubic", mean=INCEPTION, std=INCEPTION),
    family="timm", description="Xception (timm legacy_xception, 20.8M parameters), 299x299",
    train_defaults={"lr": 2e-4, "batch_size": 32, "weight_decay": 0.05}))
register_model(ModelEntry(
    "efficientnet_b0", _build("efficientnet_b0", False),
    PreprocessSpec(input_size=(224, 224), interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    aliases=("effnet", "efficientnet"), family="timm", description="EfficientNet-B0 (4.0M parameters), 224x224",
    train_defaults={"lr": 3e-4, "batch_size": 32, "weight_decay": 0.05}))
register_model(ModelEntry(
    "vit_b16", _build("vit_b16", True),
    PreprocessSpec(input_size=(224, 224), interpolation="bicubic", mean=INCEPTION, std=INCEPTION),
    aliases=("vit", "vit_base_patch16_224"), family="timm", description="ViT-B/16 (85.8M parameters), 224x224",
    train_defaults={"lr": 5e-5, "batch_size": 32, "weight_decay": 0.05}))

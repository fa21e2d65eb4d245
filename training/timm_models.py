"""Xception, EfficientNet-B0 and ViT-B/16 from timm, each with a one-logit head.

ImageNet weights: ``pretrained=True`` uses timm's cache or the hub; ``pretrained_file`` loads a local file.
When neither works the error says so; random weights are only used when asked for (``--no-pretrained``).
"""

from __future__ import annotations

import os
from typing import Any

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
            kwargs["pretrained"] = True
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

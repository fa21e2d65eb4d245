"""Checkpoints: weights in safetensors with the dfx record in its header, plus a readable JSON copy.

The resumable state (optimizer, scheduler, epoch, early-stopping counters) lives separately in ``last.pt``,
loaded with ``weights_only=True`` so nothing arbitrary is ever unpickled. Every write is atomic.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from dfx.engine.artifact import META_KEY, ModelInfo, atomic_write_bytes, atomic_write_text
from dfx.engine.errors import DfxError, MissingDependencyError

from .registry import create_model

__all__ = ["save_checkpoint", "read_checkpoint_info", "load_checkpoint", "save_state", "load_state"]


def _safetensors():
    try:
        import safetensors
        import safetensors.torch
    except ImportError as e:
        raise MissingDependencyError("safetensors", "train") from e
    return safetensors


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, info: ModelInfo) -> Path:
    """Writes ``path`` (.safetensors) and ``path`` with suffix .json; returns the weights path."""
    st = _safetensors()
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, st.torch.save(tensors, metadata={META_KEY: info.to_json()}))
    atomic_write_text(path.with_suffix(".json"), json.dumps(info.to_dict(), indent=2, sort_keys=True))
    return path


def _open(path: Path, with_tensors: bool = True) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    st = _safetensors()
    if not path.is_file():
        raise DfxError(f"checkpoint {path} does not exist")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise DfxError(f"checkpoint {path} is damaged or not a safetensors file ({type(e).__name__}: {e})") from e
    if META_KEY not in meta:
        raise DfxError(f"checkpoint {path} has no dfx metadata; it was not written by dfx-train")
    return tensors, ModelInfo.from_json(meta[META_KEY])


def read_checkpoint_info(path: str | os.PathLike) -> ModelInfo:
    """The dfx record of a checkpoint (reads the header only, not the weights)."""
    return _open(Path(path), with_tensors=False)[1]


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> tuple[torch.nn.Module, ModelInfo]:
    """Rebuilds the model a checkpoint describes and loads its weights (eval mode).

    Raises:
        DfxError: when the file is missing, damaged, or its weights do not fit the recorded architecture.
    """
    path = Path(path)
    tensors, info = _open(path)
    model, _ = create_model(info.arch, spec=info.spec, **info.model_kwargs)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise DfxError(f"checkpoint {path} does not match architecture {info.arch}: "
                       f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors "
                       f"(first: {(missing + unexpected + wrong)[0]})")
    model.load_state_dict(tensors)
    return model.to(map_location).eval(), info


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically writes the resumable training state (tensors and plain Python values only)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Loads :func:`save_state` output without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DfxError(f"nothing to resume: {path} does not exist (start without --resume)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DfxError(f"resume state {path} is damaged ({type(e).__name__}: {first}); start without --resume, or "
                       f"--overwrite the run") from e

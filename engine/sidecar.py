"""The ``.plan.json`` sidecar of a TensorRT engine: what it was built from, for which GPU and TensorRT.

Written by ``dfx-export``, read by the runtime; an engine is only valid on the GPU model and TensorRT version
it was built with, so the runtime checks both before deserialising.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .artifact import ModelInfo, atomic_write_text
from .errors import DfxError

__all__ = ["EngineSidecar", "sidecar_path"]


def sidecar_path(plan: str | Path) -> Path:
    """``model.plan`` → ``model.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


@dataclass
class EngineSidecar:
    """Attributes: see docs/ARCHITECTURE.md "Artifacts"; ``onnx`` is the FP32 ONNX file name used for CPU fallback."""

    info: ModelInfo
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict[str, int]
    onnx: str
    source_onnx: str
    source_onnx_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, plan: str | Path) -> Path:
        """Writes the sidecar beside ``plan``."""
        d = asdict(self)
        d["info"] = self.info.to_dict()
        path = sidecar_path(plan)
        atomic_write_text(path, json.dumps(d, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, plan: str | Path) -> EngineSidecar:
        """Reads the sidecar of ``plan``; a missing or damaged one is a :class:`DfxError`."""
        path = sidecar_path(plan)
        if not path.is_file():
            raise DfxError(f"{path} is missing: an engine cannot be run without its sidecar (spec, labels, "
                           f"threshold); rebuild it with dfx-export")
        try:
            d = json.loads(path.read_text())
            d["info"] = ModelInfo.from_dict(d["info"])
            sidecar = cls(**d)
            p = sidecar.profile
            if not all(isinstance(p.get(k), int) and not isinstance(p.get(k), bool) for k in ("min", "opt", "max")) \
                    or not 1 <= p["min"] <= p["opt"] <= p["max"]:
                raise ValueError(f"profile must hold integers 1 <= min <= opt <= max, got {p!r}")
            if not isinstance(sidecar.onnx, str):
                raise TypeError(f"onnx must be a file name, got {sidecar.onnx!r}")
            return sidecar
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError, DfxError) \
                as e:
            raise DfxError(f"{path} is damaged ({type(e).__name__}: {e}); rebuild the engine with dfx-export") from e

    def fallback_onnx(self, plan: str | Path) -> Path:
        """Path of the FP32 ONNX the engine was built from (for the fallback); it must lie beside the engine.

        Raises:
            DfxError: when the sidecar names a file elsewhere (an absolute path or one with folders in it).
        """
        name = Path(self.onnx)
        if name.name != self.onnx or name.name in ("", ".", ".."):
            raise DfxError(f"{sidecar_path(plan)} names the fallback ONNX {self.onnx!r}; it must be a file name "
                           f"beside the engine. Rebuild the engine with dfx-export")
        return Path(plan).parent / self.onnx

    def rebuild_command(self, plan: str | Path) -> str:
        """The command that rebuilds this engine on the current machine."""
        b = self.profile
        return (f"dfx-export --onnx {self.fallback_onnx(plan)} --engine --out {Path(plan).parent} "
                f"--batch-sizes {b['min']},{b['opt']},{b['max']}")

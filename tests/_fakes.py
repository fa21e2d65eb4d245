"""Test doubles shared by several test modules."""

import shutil

from dfx.engine.artifact import read_onnx_info
from dfx.engine.sidecar import EngineSidecar


def fake_plan(folder, source, **over):
    """A ``meso4.plan`` (not a real engine) with a valid sidecar naming a copy of ``source`` for the fallback."""
    shutil.copy(source, folder / "meso4.onnx")
    plan = folder / "meso4.plan"
    plan.write_bytes(b"not really an engine")
    fields = dict(info=read_onnx_info(source), precision="fp16", tensorrt_version="11.4.0", gpu_name="NVIDIA H100",
                  compute_capability="9.0", profile={"min": 1, "opt": 32, "max": 128}, onnx="meso4.onnx",
                  source_onnx="meso4.fp16.onnx", source_onnx_sha256="0" * 64)
    EngineSidecar(**(fields | over)).save(plan)
    return plan

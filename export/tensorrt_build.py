"""FP16 ONNX → TensorRT engine (``.plan``) plus its sidecar.

TensorRT 10.12+ wants, and TensorRT 11 always uses, strongly typed networks: precision comes from the ONNX
(hence the FP16 ONNX), and there is neither an FP16 nor an EXPLICIT_BATCH builder flag. The timing cache is
kept per GPU model so rebuilding on the same card is fast.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from dfx.engine.artifact import ModelInfo, atomic_write_bytes, sha256_file
from dfx.engine.backends.tensorrt_backend import TensorRTUnavailable, gpu_identity
from dfx.engine.errors import DfxError
from dfx.engine.sidecar import EngineSidecar

__all__ = ["build_engine", "parse_batch_sizes", "engine_unavailable_reason"]

log = logging.getLogger("dfx.export")


def parse_batch_sizes(text: str) -> dict[str, int]:
    """``"1,32,128"`` → ``{"min": 1, "opt": 32, "max": 128}`` (a single number fixes all three)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError as e:
        raise DfxError(f"--batch-sizes takes MIN,OPT,MAX integers, got {text!r}") from e
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise DfxError(f"--batch-sizes takes MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return dict(zip(("min", "opt", "max"), values))


def engine_unavailable_reason() -> str | None:
    """Why no engine can be built here (no TensorRT, no GPU), or None when one can."""
    try:
        gpu_identity()
    except TensorRTUnavailable as e:
        return str(e)
    except DfxError as e:  # cuda-python missing
        return str(e)
    return None


def build_engine(fp16_onnx: Path, fp32_onnx: Path, plan: Path, info: ModelInfo, batch_sizes: dict[str, int],
                 workspace_gib: float = 4.0, opt_level: int = 3, cache_dir: Path | None = None) -> EngineSidecar:
    """Builds ``plan`` from ``fp16_onnx`` and writes its sidecar.

    Args:
        fp16_onnx: the strongly typed source graph.
        fp32_onnx: named in the sidecar for the CPU fallback.
        plan: output engine path.
        info: the dfx record (copied into the sidecar).
        batch_sizes: the optimisation profile ``{"min", "opt", "max"}``.
        workspace_gib: builder workspace limit.
        opt_level: builder optimisation level (0-5; 3 is TensorRT's default).
        cache_dir: where timing caches live (one file per GPU model); default beside the plan.
    """
    import tensorrt as trt

    gpu, cc = gpu_identity()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # required on 10.12+, ignored by 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(fp16_onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DfxError(f"TensorRT could not parse {fp16_onnx}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.builder_optimization_level = opt_level
    profile = builder.create_optimization_profile()
    h, w = info.spec.input_size
    profile.set_shape("input", *[(batch_sizes[k], 3, h, w) for k in ("min", "opt", "max")])
    config.add_optimization_profile(profile)
    cache_dir = Path(cache_dir) if cache_dir else plan.parent
    cache_file = cache_dir / f"timing-{re.sub(r'[^A-Za-z0-9]+', '_', gpu)}-sm{cc}-trt{trt.__version__}.cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    log.info("building TensorRT %s engine for %s (sm %s), batch %s…", trt.__version__, gpu, cc, batch_sizes)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DfxError(f"TensorRT failed to build an engine from {fp16_onnx} (see the TensorRT log above)")
    atomic_write_bytes(plan, bytes(serialized))
    atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    sidecar = EngineSidecar(info=info, precision="fp16", tensorrt_version=trt.__version__, gpu_name=gpu,
                            compute_capability=cc, profile=batch_sizes, onnx=Path(fp32_onnx).name,
                            source_onnx=Path(fp16_onnx).name, source_onnx_sha256=sha256_file(fp16_onnx),
                            extra={"workspace_gib": workspace_gib, "builder_optimization_level": opt_level})
    sidecar.save(plan)
    return sidecar

"""onnxruntime's CUDA path: one planned shape per run, IO binding from the shared decode buffers, the FP16
choice. Needs onnxruntime-gpu and a GPU; skipped elsewhere (the same logic runs on the CPU in
test_onnxruntime_backend.py)."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dfx.engine.cli import main
from dfx.engine.errors import DfxError
from dfx.engine.pipeline import score_files
from dfx.engine.select import open_backend

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_onnx(tiny_onnx):
    from dfx.engine.backends.onnxruntime_backend import cuda_provider_available

    if not cuda_provider_available():
        pytest.skip("onnxruntime-gpu is not installed")
    try:
        open_backend(tiny_onnx, "onnxruntime-cuda")
    except DfxError as e:
        pytest.skip(str(e))
    return tiny_onnx


@pytest.mark.parametrize("decode", ["threads", "processes"])
def test_cuda_runs_one_warmed_shape_and_scores_like_the_cpu(cuda_onnx, bad_corpus, decode):
    files = [bad_corpus[k] for k in ("rgb", "truncated", "cmyk", "grayscale", "rgba", "palette", "gray16")]
    with open_backend(cuda_onnx, "onnxruntime-cpu") as cpu:
        want = list(score_files(cpu, files, batch_size=4, decode="threads"))
    calls = []
    with open_backend(cuda_onnx, "onnxruntime-cuda", fp16=False) as be:
        real = be.infer
        be.infer = lambda batch: calls.append(len(batch)) or real(batch)
        rows = list(score_files(be, files, batch_size=4, decode=decode))
    assert calls == [4, 4, 4]  # the warm-up in prepare(), then both batches padded to that one shape
    assert [(r.path, r.status) for r in rows] == [(r.path, r.status) for r in want]
    np.testing.assert_allclose([r.score or -1 for r in rows], [r.score or -1 for r in want], atol=1e-4)


def test_gpu_runs_the_fp16_export_and_the_summary_names_it(cuda_onnx, bad_corpus, tmp_path):
    pytest.importorskip("onnxconverter_common")
    from dfx.export.fp16 import convert_fp16

    onnx = tmp_path / "meso4.onnx"
    shutil.copy(cuda_onnx, onnx)
    convert_fp16(onnx, tmp_path / "meso4.fp16.onnx")
    r = CliRunner().invoke(main, [str(bad_corpus["rgb"]), "--engine", str(onnx), "-o", str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    assert "meso4 from meso4.fp16.onnx on onnxruntime-cuda" in r.output
    r = CliRunner().invoke(main, [str(bad_corpus["rgb"]), "--engine", str(onnx), "--no-fp16"])
    assert "meso4 from meso4.onnx on onnxruntime-cuda" in r.output

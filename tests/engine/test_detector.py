"""The Python API: ``from dfx import Detector`` gives exactly dfx-infer's scores, for paths, PIL images and
arrays alike."""

import csv
import subprocess
import sys

import numpy as np
from click.testing import CliRunner
from PIL import Image

from dfx.engine.cli import main

CPU = "onnxruntime-cpu"


def _cli_rows(tmp_path, onnx, *paths):
    out = tmp_path / "s.csv"
    CliRunner().invoke(main, [*map(str, paths), "--engine", str(onnx), "--backend", CPU, "-o", str(out)])
    return {r["path"]: r for r in csv.DictReader(out.open())}


def test_score_paths_images_and_arrays_like_dfx_infer(tiny_onnx, bad_corpus, tmp_path):
    from dfx import Detector

    png, jpg, bad = bad_corpus["rgb_png"], bad_corpus["cmyk"], bad_corpus["truncated"]
    cli = _cli_rows(tmp_path, tiny_onnx, png, jpg, bad)
    with Detector(tiny_onnx, backend=CPU) as det:
        assert det.info.arch == "meso4"
        rgb = np.asarray(Image.open(png).convert("RGB"))
        results = det.score([png, str(jpg), bad, Image.open(png), rgb, rgb.astype(np.float32)])
        (one,) = det.score(png)
    assert [r.index for r in results] == list(range(6))
    for r, path in zip(results[:3], (png, jpg, bad)):
        row = cli[str(path)]
        assert (r.path, r.status, r.label or "") == (str(path), row["status"], row["label"])
        assert (round(r.score, 6) if r.score is not None else "") == (float(row["score"]) if row["score"] else "")
    assert results[2].status == "truncated" and results[2].error
    # a PNG decodes to the same pixels in memory as from its file: same score, bit for bit
    assert results[3].score == results[4].score == results[0].score == one.score
    assert results[3].path is None and results[4].path is None
    assert results[5].status == "not_an_image" and "uint8" in results[5].error


def test_threshold_and_scan_rows(tiny_onnx, bad_corpus, tmp_path):
    from dfx import Detector

    folder = bad_corpus["rgb"].parent
    cli = _cli_rows(tmp_path, tiny_onnx, folder)
    with Detector(tiny_onnx, backend=CPU) as det:
        rows = list(det.scan([folder]))
    assert [r["path"] for r in rows] == list(cli)
    for r in rows:
        assert r["status"] == cli[r["path"]]["status"]
        assert ("" if r["score"] is None else r["score"]) == (float(cli[r["path"]]["score"]) if cli[r["path"]]["score"]
                                                              else "")
    with Detector(tiny_onnx, backend=CPU, threshold=0.0) as det:
        assert {r.label for r in det.score([bad_corpus["rgb"], bad_corpus["cmyk"]])} == {"fake"}


def test_importing_dfx_loads_no_runtime_until_a_detector_is_asked_for():
    code = ("import sys, dfx; assert 'dfx.engine' not in sys.modules and 'numpy' not in sys.modules; "
            "from dfx import Detector; assert Detector.__module__ == 'dfx.engine.detector'")
    subprocess.run([sys.executable, "-c", code], check=True)

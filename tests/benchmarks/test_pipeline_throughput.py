import numpy as np
import pytest

from dfx.benchmarks.pipeline_throughput import _markdown, measure_pipeline
from dfx.engine.inputs import list_images

from ..conftest import write_split


def test_rounds_are_interleaved_and_ratios_taken_within_each(tiny_onnx, tmp_path):
    write_split(tmp_path, 6, np.random.default_rng(0))
    files = list_images(tmp_path)
    r = measure_pipeline(tiny_onnx, files, batch_size=4, threads=2, rounds=3, decode="threads", large=files[:4])
    assert len(r["rounds"]) == 3 and r["decode"] == "threads" and r["artifact"] == tiny_onnx.name
    for one in r["rounds"]:
        assert min(one["model_only"], one["decode_threads"], one["decode_processes"], one["end_to_end"]) > 0
        assert one["decode_threads_large"] > 0 and one["decode_processes_large"] > 0
        assert one["decode_only"] == max(one["decode_threads"], one["decode_processes"])
        assert one["e2e_vs_model"] == pytest.approx(one["end_to_end"] / one["model_only"])
        assert one["e2e_vs_slower_stage"] == pytest.approx(
            one["end_to_end"] / min(one["model_only"], one["decode_only"]))
        assert one["end_to_end_faces"] > 0  # the toy images have no faces: every one a no_face row, still timed
        assert one["faces_vs_off"] == pytest.approx(one["end_to_end_faces"] / one["end_to_end"])
    for k in ("e2e_vs_model", "e2e_vs_decode", "e2e_vs_slower_stage"):
        values = sorted(one[k] for one in r["rounds"])
        assert r[k] == pytest.approx(values[1])  # the median of three rounds
        assert r[f"{k}_range"] == [values[0], values[-1]]
    m, d = r["model_only"], r["decode_only"]
    assert r["shared_cpu_limit"] == pytest.approx(m * d / (m + d))
    assert 0 < r["first_batch_s"] < 60
    result = {"machine": {"cpu": "x", "cores": 2, "gpus": [], "versions": {}}, "data": "d", "files": len(files),
              "settings": {"batch_size": 4, "workers": 2, "backend": "auto", "decode": "threads", "rounds": 3,
                           "large": 1024}, "models": {"meso4": r}}
    table = _markdown(result).splitlines()
    assert table[2].count("|") == table[3].count("|") == table[4].count("|") == 11

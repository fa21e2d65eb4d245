import json

import numpy as np

from dfx.benchmarks.face_cost import measure_networks
from dfx.benchmarks.report import save_result

from ..conftest import make_image


def test_the_networks_share_adds_up_and_counts_every_call():
    rng = np.random.default_rng(0)
    images = [make_image(i % 2, rng, 160) for i in range(3)]
    r = measure_networks(images, min_face=48)
    # P-Net runs once per pyramid level of every image: 160 px from 48 px faces gives several levels.
    assert r["pnet"]["calls"] >= 3 and r["pnet"]["rows"] == r["pnet"]["calls"]
    nets = sum(r[k]["ms"] for k in ("pnet", "rnet", "onet") if k in r)
    assert r["other_ms"] >= 0 and abs(nets + r["other_ms"] - r["total_ms"]) < 0.01


def test_results_are_saved_as_json_and_markdown_side_by_side(tmp_path):
    save_result(tmp_path / "deep" / "run", {"a": 1}, "| a |\n")
    assert json.loads((tmp_path / "deep" / "run.json").read_text()) == {"a": 1}
    assert (tmp_path / "deep" / "run.md").read_text() == "| a |\n"

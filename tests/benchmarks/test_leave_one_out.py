import numpy as np
import pytest

pytest.importorskip("torch")

from dfx.benchmarks.leave_one_out import _markdown, leave_one_out  # noqa: E402

from ..conftest import write_split  # noqa: E402


def _sets(tmp_path):
    data = []
    for i, name in enumerate(("alpha", "beta", "gamma")):
        d = tmp_path / name
        write_split(d / "train", 6, np.random.default_rng(i))
        write_split(d / "validate", 4, np.random.default_rng(10 + i))
        data.append(d)
    return data


def test_each_source_is_held_out_once_and_scored_by_a_model_that_never_saw_it(tmp_path):
    data = _sets(tmp_path)
    result = leave_one_out(data, "meso4", 1, tmp_path / "runs", input_size=32, batch_size=8, workers=0)
    rows = result["held_out"]
    assert set(rows) == {"alpha", "beta", "gamma"}
    for name, r in rows.items():
        assert name not in r["trained_on"] and len(r["trained_on"]) == 2 and r["n"] == 8
        assert 0 <= r["auc"] <= 1
    table = _markdown(result, "test machine")
    assert "input_size=32" in table and table.count("| alpha |") == 1


def test_only_the_named_sets_are_held_out_and_a_wrong_name_lists_the_valid_ones(tmp_path):
    data = _sets(tmp_path)
    result = leave_one_out(data, "meso4", 1, tmp_path / "runs", ["beta"], input_size=32, batch_size=8, workers=0,
                           seed=3)
    assert list(result["held_out"]) == ["beta"] and result["recipe"]["seed"] == 3
    with pytest.raises(SystemExit, match="delta.*alpha, beta, gamma"):
        leave_one_out(data, "meso4", 1, tmp_path / "runs", ["delta"])

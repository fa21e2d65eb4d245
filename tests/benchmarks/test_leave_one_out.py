import json

import numpy as np
import pytest

pytest.importorskip("torch")

from dfx.benchmarks.leave_one_out import _markdown, combine_seeds, leave_one_out  # noqa: E402

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


def _result(seed, aucs, **recipe):
    rows = {name: {"trained_on": ["x", "y"], "n": 8, "auc": auc, "eer": 1 - auc, "acc_at_model_threshold": auc}
            for name, auc in aucs.items()}
    return {"recipe": {"model": "meso4", "epochs": 1, **recipe, "seed": seed}, "held_out": rows}


def test_seeds_combine_into_mean_and_range_per_held_out_set():
    combined = combine_seeds([_result(2, {"a": 0.9}), _result(0, {"a": 0.7, "b": 0.5}), _result(1, {"a": 0.8})])
    a, b = combined["held_out"]["a"], combined["held_out"]["b"]
    assert a["seeds"] == [0, 1, 2] and a["auc"] == [0.7, 0.8, 0.9]
    assert a["auc_mean"] == pytest.approx(0.8) and (a["auc_min"], a["auc_max"]) == (0.7, 0.9)
    assert a["eer_mean"] == pytest.approx(0.2) and b["seeds"] == [0] and "seed" not in combined["recipe"]
    table = _markdown(combined, "test machine")
    assert "| 0.800 (0.700–0.900) |" in table and "0.700, 0.800, 0.900" in table


def test_combining_refuses_other_recipes_repeated_seeds_and_other_training_sets():
    with pytest.raises(SystemExit, match="differ in sbi"):
        combine_seeds([_result(0, {"a": 0.7}), _result(1, {"a": 0.8}, sbi=0.5)])
    with pytest.raises(SystemExit, match="a is scored twice with seed 0"):
        combine_seeds([_result(0, {"a": 0.7}), _result(0, {"a": 0.8})])
    other = _result(1, {"a": 0.8})
    other["held_out"]["a"]["trained_on"] = ["x", "z"]
    with pytest.raises(SystemExit, match="trained on different sets"):
        combine_seeds([_result(0, {"a": 0.7}), other])
    old = _result(0, {"a": 0.7})
    del old["recipe"]["seed"]  # results written before the seed was recorded ran with dfx-train's default, 0
    with pytest.raises(SystemExit, match="seed 0"):
        combine_seeds([old, _result(0, {"a": 0.8})])


def test_the_command_runs_each_seed_in_its_own_folder_and_combines_earlier_files(tmp_path, monkeypatch):
    import dfx.benchmarks.leave_one_out as loso

    calls = []

    def fake(data, model, epochs, runs, held_out=None, **recipe):
        calls.append((runs, recipe["seed"]))
        return _result(recipe["seed"], {"a": 0.6 + 0.1 * recipe["seed"]}, workers=recipe["workers"])

    monkeypatch.setattr(loso, "leave_one_out", fake)
    out = tmp_path / "many"
    monkeypatch.setattr("sys.argv", ["loso", "--data", "d1", "d2", "--seed", "0", "1", "--runs", str(tmp_path / "r"),
                                     "--out", str(out)])
    loso.main()
    assert calls == [(tmp_path / "r" / "seed-0", 0), (tmp_path / "r" / "seed-1", 1)]
    many = json.loads(out.with_suffix(".json").read_text())
    assert many["held_out"]["a"]["auc"] == pytest.approx([0.6, 0.7]) and len(many["runs"]) == 2
    one = tmp_path / "one"
    monkeypatch.setattr("sys.argv", ["loso", "--data", "d1", "d2", "--seed", "2", "--out", str(one)])
    loso.main()
    assert "seeds" not in json.loads(one.with_suffix(".json").read_text())["held_out"]["a"]
    both = tmp_path / "both"
    monkeypatch.setattr("sys.argv", ["loso", "--combine", str(out.with_suffix(".json")), str(one.with_suffix(".json")),
                                     "--out", str(both)])
    loso.main()
    assert json.loads(both.with_suffix(".json").read_text())["held_out"]["a"]["seeds"] == [0, 1, 2]
    assert "0.700 (0.600–0.800)" in both.with_suffix(".md").read_text()
    calls.clear()
    monkeypatch.setattr("sys.argv", ["loso", "--data", "d1", "d2", "--seed", "1", "1", "--out", str(one)])
    with pytest.raises(SystemExit):  # refused before any training, not after it
        loso.main()
    assert calls == []


def test_the_command_passes_augmentations_and_batch_size_as_dfx_train_takes_them(tmp_path, monkeypatch):
    import dfx.benchmarks.leave_one_out as loso

    seen = {}

    def fake(data, model, epochs, runs, held_out=None, **recipe):
        seen.update(recipe)
        return _result(0, {"a": 0.6}, augment=recipe["augment"])

    monkeypatch.setattr(loso, "leave_one_out", fake)
    out = tmp_path / "aug"
    monkeypatch.setattr("sys.argv", ["loso", "--data", "d1", "d2", "--augment", "flip, rescale", "--batch-size", "256",
                                     "--out", str(out)])
    loso.main()
    assert seen["augment"] == ["flip", "rescale"] and seen["batch_size"] == 256
    assert "augment=flip+rescale" in out.with_suffix(".md").read_text()


def test_an_interrupted_run_over_seeds_keeps_the_seeds_it_finished(tmp_path, monkeypatch):
    import dfx.benchmarks.leave_one_out as loso

    def fake(data, model, epochs, runs, held_out=None, **recipe):
        if recipe["seed"] == 2:
            raise KeyboardInterrupt
        return _result(recipe["seed"], {"a": 0.6 + 0.1 * recipe["seed"]}, workers=recipe["workers"])

    monkeypatch.setattr(loso, "leave_one_out", fake)
    out = tmp_path / "cut"
    monkeypatch.setattr("sys.argv", ["loso", "--data", "d1", "d2", "--seed", "0", "1", "2", "--out", str(out)])
    with pytest.raises(KeyboardInterrupt):
        loso.main()
    kept = json.loads(out.with_suffix(".json").read_text())
    assert kept["held_out"]["a"]["seeds"] == [0, 1] and len(kept["runs"]) == 2
    assert "| 0, 1 |" in out.with_suffix(".md").read_text()

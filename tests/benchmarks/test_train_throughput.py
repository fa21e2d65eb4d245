import pytest

pytest.importorskip("torch")

from dfx.benchmarks.train_throughput import feed_rate, step_ceiling, train_rate  # noqa: E402


def test_ceiling_and_dfx_train_rate_are_measured(tiny_data):
    assert step_ceiling("meso4", batch_size=2, device="cpu", steps=2) > 0
    assert train_rate("meso4", tiny_data, batch_size=4, variant="ram/workers", steps=1, workers=0, device="cpu") > 0
    assert train_rate("meso4", tiny_data, batch_size=4, variant="ram/device", steps=1, workers=0, device="cpu") > 0
    assert feed_rate("meso4", tiny_data, batch_size=4, steps=2, workers=1, device="cpu") > 0


def test_repeat_lengthens_the_epoch_and_keeps_validation_apart(tiny_data, tmp_path):
    from dfx.benchmarks.train_throughput import repeated_data

    root = repeated_data(tiny_data, 3, tmp_path / "r")
    names = sorted(p.name for p in (tiny_data / "train" / "fake").iterdir())
    assert sorted(p.name for p in (root / "train" / "fake").iterdir()) == sorted(
        f"r{j}_{n}" for j in range(3) for n in names)
    assert (root / "train" / "fake" / f"r2_{names[0]}").read_bytes() == (
        tiny_data / "train" / "fake" / names[0]).read_bytes()
    assert sorted(p.name for p in (root / "validate" / "real").iterdir()) == sorted(
        p.name for p in (tiny_data / "validate" / "real").iterdir())
    with pytest.raises(SystemExit, match="needs .*train and .*validate"):
        repeated_data(tiny_data / "train", 2, tmp_path / "flat")


def test_the_script_writes_its_table_with_the_variants_asked(tiny_data, tmp_path, monkeypatch):
    import json
    import sys

    from dfx.benchmarks import train_throughput

    out = tmp_path / "res" / "train"
    monkeypatch.setattr(sys, "argv", ["x", "--data", str(tiny_data), "--batch-size", "4", "--steps", "1",
                                      "--workers", "0", "--repeat", "2", "--out", str(out),
                                      "--variants", "ram/device/det,ram/device/noaug", "--feed"])
    train_throughput.main()
    result = json.loads(out.with_suffix(".json").read_text())
    assert list(result["models"]["meso4"]["dfx_train"]) == ["ram/device/det", "ram/device/noaug"]
    assert result["models"]["meso4"]["feed"] > 0
    table = out.with_suffix(".md").read_text()
    assert "each training image listed 2 times" in table and "| feed alone img/s (÷ ceiling) |" in table
    assert table.splitlines()[-1].count("|") == table.splitlines()[-3].count("|")  # a cell for every column

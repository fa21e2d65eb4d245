"""dfx-train and dfx-export against damaged Keras files, run folders and checkpoints, generated here: one line
and exit 1, never a traceback or a silently wrong model."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from dfx.engine.errors import DfxError  # noqa: E402
from dfx.training import trainer as T  # noqa: E402
from dfx.training.cli import main as train_cli  # noqa: E402
from dfx.training.keras_weights import load_keras_mesonet  # noqa: E402
from dfx.training.mesonet import Meso4  # noqa: E402


def _keras_layers(model: Meso4) -> dict[str, dict[str, np.ndarray]]:
    """A Meso4's weights laid out the way the original Keras files hold them (HWIO kernels, NHWC dense)."""
    layers = {}
    for i, conv in enumerate(model.convs, 1):
        layers[f"conv2d_{i}"] = {"kernel": conv.weight.detach().numpy().transpose(2, 3, 1, 0),
                                 "bias": conv.bias.detach().numpy()}
    for i, bn in enumerate(model.bns, 1):
        layers[f"batch_normalization_{i}"] = {"gamma": bn.weight.detach().numpy(), "beta": bn.bias.detach().numpy(),
                                              "moving_mean": bn.running_mean.numpy(),
                                              "moving_variance": bn.running_var.numpy() + 1}
    fc1 = model.head.fc1
    layers["dense_1"] = {"kernel": np.random.default_rng(0).normal(size=(fc1.in_features, 16)).astype(np.float32),
                         "bias": np.zeros(16, np.float32)}
    layers["dense_2"] = {"kernel": np.ones((16, 1), np.float32), "bias": np.zeros(1, np.float32)}
    return layers


def _write_h5(path, layers):
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")
        for name, params in layers.items():
            group = root.create_group(name).create_group(name)
            for key, value in params.items():
                group.create_dataset(f"{key}:0", data=value)
    return path


def test_a_well_formed_keras_file_loads(tmp_path):
    src = Meso4()
    path = _write_h5(tmp_path / "ok.h5", _keras_layers(src))
    dst = Meso4()
    load_keras_mesonet(dst, path)
    torch.testing.assert_close(dst.convs[0].weight, src.convs[0].weight)
    torch.testing.assert_close(dst.head.fc2.weight, -torch.ones(1, 16))  # P(real) → P(fake): negated


@pytest.mark.parametrize("damage, message", [
    ("renamed_tensor", "has no 'kernel' tensor"),
    ("bias_broadcastable", r"has shape \(1,\); this model needs \(16,\)"),
    ("kernel_of_ints", "not floats"),
    ("nan_weights", "NaN or infinite"),
    ("extra_dense_layer", "dense layers"),
    ("not_mesonet", "conv, 0 batch-norm"),
    ("not_h5", "not a readable Keras .h5"),
])
def test_damaged_or_foreign_keras_files_are_refused(tmp_path, damage, message):
    layers = _keras_layers(Meso4())
    if damage == "renamed_tensor":
        layers["conv2d_2"]["weights"] = layers["conv2d_2"].pop("kernel")
    elif damage == "bias_broadcastable":  # copy_ would silently spread one value over 16 channels
        layers["conv2d_3"]["bias"] = np.zeros(1, np.float32)
    elif damage == "kernel_of_ints":
        layers["conv2d_1"]["kernel"] = layers["conv2d_1"]["kernel"].astype(np.int32)
    elif damage == "nan_weights":
        layers["batch_normalization_2"]["gamma"][0] = np.nan
    elif damage == "extra_dense_layer":
        layers["dense_3"] = layers["dense_2"]
    elif damage == "not_mesonet":
        layers = {"embedding_1": {"embeddings": np.zeros((10, 4), np.float32)}, "dense_1": layers["dense_1"]}
    path = tmp_path / "w.h5"
    if damage == "not_h5":
        path.write_text("this is not HDF5\n")
    else:
        _write_h5(path, layers)
    with pytest.raises(DfxError, match=message):
        load_keras_mesonet(Meso4(), path)


@pytest.fixture
def finished_run(tiny_data, tmp_path):
    out = tmp_path / "run"
    T.train(T.TrainConfig(model="meso4", data=[str(tiny_data)], out=str(out), epochs=1, batch_size=8, input_size=32,
                          workers=0))
    return out


@pytest.mark.parametrize("damage", ["config_missing", "config_torn", "config_wrong_types", "config_unknown_key",
                                    "split_torn", "split_edited", "state_garbage"])
def test_a_damaged_run_folder_is_a_one_line_error_on_resume(finished_run, damage):
    config, split, state = finished_run / "config.json", finished_run / "split.json", finished_run / "last.pt"
    if damage == "config_missing":
        config.unlink()
    elif damage == "config_torn":
        config.write_text(config.read_text()[:40])
    elif damage == "config_wrong_types":
        config.write_text(json.dumps(json.loads(config.read_text()) | {"epochs": "many", "data": "x"}))
    elif damage == "config_unknown_key":
        config.write_text(json.dumps(json.loads(config.read_text()) | {"evil": 1}))
    elif damage == "split_torn":
        split.write_text('{"x": {"val": [')
    elif damage == "split_edited":
        split.write_text(json.dumps({"x": {"val": "all", "seed": 0, "val_fraction": 2}}))
    else:
        state.write_bytes(b"\x80\x04 not a torch file")
    r = CliRunner().invoke(train_cli, ["meso4", "--out", str(finished_run), "--resume", "--epochs", "2"],
                           catch_exceptions=False)
    if damage.startswith("split") and not split.exists():
        pytest.skip("this data layout keeps no split.json")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1


def test_the_flat_layout_split_damage_is_caught_when_a_split_is_stored(tmp_path):
    from ..conftest import write_split

    data = tmp_path / "flat"
    write_split(data, 12, np.random.default_rng(0))
    out = tmp_path / "run"
    cfg = T.TrainConfig(model="meso4", data=[str(data)], out=str(out), epochs=1, batch_size=8, input_size=32,
                        workers=0)
    T.train(cfg)
    (out / "split.json").write_text(json.dumps({str(data.resolve()): {"val": "all", "seed": 0, "val_fraction": 2}}))
    with pytest.raises(DfxError, match="split.json is damaged"):
        T.train(cfg, overwrite=True)


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--lr", "nan"), ("--lr", "-1"),
                                           ("--input-size", "5"), ("--val-fraction", "2"), ("--workers", "-1"),
                                           ("--device", "bogus"), ("--weight-decay", "-1"), ("--warmup-epochs", "nan"),
                                           ("--patience", "0"), ("--grad-clip", "inf"), ("--ema-decay", "1"),
                                           ("--epochs", "-1")])
def test_option_values_a_run_cannot_use_are_one_line_errors(tiny_data, tmp_path, option, value):
    out = tmp_path / "run"
    r = CliRunner().invoke(train_cli, ["meso4", "--data", str(tiny_data), "--out", str(out), option, value],
                           catch_exceptions=False)
    assert r.exit_code == 1 and "Traceback" not in r.output and option in r.output, r.output
    assert not out.exists()

import pytest
import torch

from dfx.engine.artifact import ModelInfo
from dfx.engine.errors import DfxError
from dfx.training import create_model, get_entry
from dfx.training.checkpoint import load_checkpoint, load_state, read_checkpoint_info, save_checkpoint, save_state


def _saved(tmp_path, name="meso4"):
    spec = get_entry(name).default_spec.with_size(32)
    model, kwargs = create_model(name, spec)
    info = ModelInfo(arch=name, spec=spec, threshold=0.37, model_kwargs=kwargs, metrics={"auc": 0.9})
    return model, save_checkpoint(tmp_path / "best.safetensors", model.eval(), info)


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model, path = _saved(tmp_path)
    loaded, info = load_checkpoint(path)
    assert info.arch == "meso4" and info.threshold == 0.37 and info.spec.input_size == (32, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert (tmp_path / "best.json").is_file()
    assert read_checkpoint_info(path).metrics == {"auc": 0.9}


def test_damaged_checkpoint_gives_one_clear_error(tmp_path):
    _, path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DfxError, match="damaged or not a safetensors"):
        load_checkpoint(path)
    with pytest.raises(DfxError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_mismatched_architecture_is_named(tmp_path):
    _, path = _saved(tmp_path)
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    record = json.loads(meta["dfx"])
    record["arch"] = "mesoinception4"
    save_file(tensors, str(path), metadata={"dfx": json.dumps(record)})
    with pytest.raises(DfxError, match="does not match architecture mesoinception4"):
        load_checkpoint(path)


def test_state_loads_without_unpickling_objects(tmp_path):
    save_state(tmp_path / "last.pt", {"epoch": 3, "w": torch.ones(2)})
    assert load_state(tmp_path / "last.pt")["epoch"] == 3

    import datetime  # any class outside torch's weights-only allow-list stands in for a malicious object

    torch.save({"x": datetime.date(2020, 1, 1)}, tmp_path / "evil.pt")
    with pytest.raises(DfxError, match="damaged"):
        load_state(tmp_path / "evil.pt")

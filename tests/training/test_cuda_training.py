"""dfx-train on a CUDA GPU: bf16 steps, batches augmented on the device, and — with --deterministic — the same
weights whatever --workers and after --resume. Skipped without a GPU (the CPU runs the same tests elsewhere)."""

import numpy as np
import pytest
import torch

from dfx.training import trainer as T
from dfx.training.checkpoint import load_checkpoint, load_state

from ..conftest import write_split

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _cfg(data, out, **kw):
    return T.TrainConfig(**(dict(model="meso4", data=[str(data)], out=str(out), epochs=3, batch_size=8,
                                 input_size=32, lr=3e-3, cache="ram", augment_on="device", device="cuda",
                                 deterministic=True, calibrate=False) | kw))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda-data")
    write_split(root / "train", 12, np.random.default_rng(0))
    write_split(root / "validate", 6, np.random.default_rng(1))
    return root


def test_bf16_on_this_gpu():
    assert T._mixed_precision(torch.device("cuda")) == (True, torch.bfloat16 if torch.cuda.is_bf16_supported()
                                                        else torch.float16)


def test_a_deterministic_gpu_run_is_the_same_with_any_workers_and_after_resume(data, tmp_path, monkeypatch):
    T.train(_cfg(data, tmp_path / "w0", workers=0))
    T.train(_cfg(data, tmp_path / "w2", workers=2))
    a, b = (load_state(tmp_path / k / "last.pt")["model"] for k in ("w0", "w2"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    real_save, calls = T.save_state, []

    def crash_after_first_epoch(path, state):
        real_save(path, state)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "save_state", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        T.train(_cfg(data, tmp_path / "cut", workers=2))
    monkeypatch.setattr(T, "save_state", real_save)
    T.train(_cfg(data, tmp_path / "cut", workers=2), resume=True)
    c = load_state(tmp_path / "cut" / "last.pt")["model"]
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_a_fast_gpu_run_trains_and_keeps_a_cpu_loadable_checkpoint(data, tmp_path):
    fresh = T.create_model("meso4", T.get_entry("meso4").default_spec.with_size(32), pretrained=False)[0]
    result = T.train(_cfg(data, tmp_path / "fast", deterministic=False))
    model, info = load_checkpoint(tmp_path / "fast" / "best.safetensors")
    assert next(model.parameters()).device.type == "cpu" and info.metrics["auc"] == result["best"]["auc"]
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.rand(2, 3, 32, 32))).all()

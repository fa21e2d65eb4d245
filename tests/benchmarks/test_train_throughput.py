import pytest

pytest.importorskip("torch")

from dfx.benchmarks.train_throughput import step_ceiling, train_rate  # noqa: E402


def test_ceiling_and_dfx_train_rate_are_measured(tiny_data):
    assert step_ceiling("meso4", batch_size=2, device="cpu", steps=2) > 0
    assert train_rate("meso4", tiny_data, batch_size=4, variant="ram/workers", steps=1, workers=0, device="cpu") > 0
    assert train_rate("meso4", tiny_data, batch_size=4, variant="ram/device", steps=1, workers=0, device="cpu") > 0

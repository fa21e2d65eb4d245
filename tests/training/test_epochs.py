"""One loader per run: its batches are the per-epoch loader's, its workers start once, items carry their epoch."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from dfx.training import trainer as T
from dfx.training.epochs import RunBatches, epoch_seed


def _per_epoch_loader(n, batch, steps, seed, epoch, weights=None):
    """What the trainer drew before: a DataLoader made for each epoch, cut at ``steps`` batches."""
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    sampler = (WeightedRandomSampler(weights, min(steps * batch, n), generator=gen) if weights is not None
               else RandomSampler(range(n), generator=gen))
    loader = DataLoader(range(n), batch_size=batch, sampler=sampler, drop_last=n > batch)
    return [b.tolist() for b in loader][:steps]


@pytest.mark.parametrize("n,batch,steps,weighted", [(50, 8, 100, False), (50, 8, 3, False), (5, 8, 100, False),
                                                    (50, 8, 4, True), (50, 8, 100, True)])
def test_each_epoch_draws_what_a_per_epoch_loader_drew(n, batch, steps, weighted):
    weights = np.random.default_rng(0).uniform(0.1, 1.0, n) if weighted else None
    run = RunBatches(n, batch, steps, seed=3, epochs=range(2, 5), weights=weights)
    served = list(run)
    want = [_per_epoch_loader(n, batch, steps, 3, e, weights) for e in range(2, 5)]
    assert [run.batches(e) for e in range(2, 5)] == want
    assert served == [[(e, i) for i in b] for e, w in zip(range(2, 5), want) for b in w]
    assert want[0] != want[1]  # a fresh order every epoch


def test_a_run_makes_one_training_loader(tiny_data, tmp_path, monkeypatch):
    made = []
    real = T.DataLoader

    def spy(*a, **kw):
        made.append(kw.get("batch_sampler"))
        return real(*a, **kw)

    monkeypatch.setattr(T, "DataLoader", spy)
    T.train(T.TrainConfig(model="meso4", data=[str(tiny_data)], out=str(tmp_path / "r"), epochs=3, batch_size=8,
                          input_size=32, workers=2, cache="ram"))
    runs = [b for b in made if b is not None]
    assert len(runs) == 1 and list(runs[0].epochs) == [0, 1, 2]


def test_algorithm_choices_hold_for_the_run_and_are_restored(tiny_data, tmp_path, monkeypatch):
    seen = []
    real = T._train

    def spy(cfg, out, state):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark))
        return real(cfg, out, state)

    monkeypatch.setattr(T, "_train", spy)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    for det in (True, False):
        T.train(T.TrainConfig(model="meso4", data=[str(tiny_data)], out=str(tmp_path / str(det)), epochs=1,
                              batch_size=8, input_size=32, workers=0, deterministic=det, calibrate=False))
        assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    assert seen == [(True, False), (False, True)]


def test_items_seed_only_the_cpu_generator(tiny_data, monkeypatch):
    """torch.manual_seed would reseed the GPU's generator too: with --workers 0 on a GPU, dropout would then follow
    the last sample drawn instead of the epoch's seed (seen on an H200: runs with 0 and 2 workers differed)."""
    from dfx.engine.spec import PreprocessSpec
    from dfx.training.augment import Augment
    from dfx.training.data import FaceDataset, load_splits

    def refuse(seed):
        raise AssertionError("an item reseeded every device's generator")

    monkeypatch.setattr(torch, "manual_seed", refuse)
    spec = PreprocessSpec(input_size=(32, 32))
    ds = FaceDataset(load_splits([str(tiny_data)]).train, spec, Augment(["flip", "crop"]))
    state = torch.random.get_rng_state()
    a, b = ds[(3, 5)][0], ds[(3, 5)][0]
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), state)

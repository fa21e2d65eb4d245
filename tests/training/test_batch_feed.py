"""Batches as cache rows: the assembled images are each sample's cached pixels or its worker's new image, from a
RAM or a disk cache, on the CPU and (GPU-marked) on a GPU with the cache there or in pinned host memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfx.engine.spec import PreprocessSpec
from dfx.training import batch_feed
from dfx.training.augment_batch import BatchAugment, to_uint8_tensor
from dfx.training.batch_feed import BatchImages, collate_rows
from dfx.training.cache import ImageCache
from dfx.training.data import FaceDataset, Sample, sample_seed
from dfx.training.options import DEFAULT_AUGMENTATIONS
from dfx.training.sbi import self_blend

SPEC = PreprocessSpec(input_size=(32, 32))
SEED, EPOCH = 3, 2


def _dataset(cache: ImageCache) -> FaceDataset:
    n = cache.shape[0]
    samples = [Sample(f"img{i}.png", i % 2, "s") for i in range(n)]
    rows = list(range(n))[::-1]  # sample i is row n-1-i: rows and sample indices must not be confused
    return FaceDataset(samples, SPEC, seed=SEED, cache=cache, rows=rows, sbi=0.5,
                       batch_augment=BatchAugment(DEFAULT_AUGMENTATIONS, SPEC))


def _expected(ds: FaceDataset, i: int) -> torch.Tensor:
    """Item i's full image drawn afresh from its seed, as the workers sent every image before batch_feed."""
    blend = i >= len(ds.samples)
    j = ds.blended[i - len(ds.samples)] if blend else i
    torch.random.default_generator.manual_seed(sample_seed(SEED, EPOCH, i))
    img = ds.cache.image(ds.rows[j])
    img = self_blend(img) if blend else img
    new, _ = ds.batch_augment.draw(lambda: img)
    return to_uint8_tensor(img if new is None else new)


@pytest.fixture
def array():
    return np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)


def _check(ds: FaceDataset, device: str, resident: bool | None = None) -> None:
    items = [ds[(EPOCH, i)] for i in range(len(ds))]
    batch = collate_rows(items)
    rows, params, labels, changed, new = batch
    assert 0 < len(changed) < len(items)  # some samples were re-compressed or blended, most travel as rows
    assert new.shape == (len(changed), 32, 32, 3) and labels.tolist() == [float(s.label) for s in ds.item_samples()]
    got = BatchImages(ds.cache, torch.device(device), resident)(batch).cpu()
    for i in range(len(ds)):
        assert torch.equal(got[i], _expected(ds, i)), i
    assert torch.equal(params, torch.stack([it[1] for it in items]))


@pytest.mark.parametrize("resident", [None, True])
def test_assembled_batches_are_the_images_the_workers_would_have_sent(array, resident):
    # resident: the path a GPU takes when the cache fits there, here run on the CPU
    _check(_dataset(ImageCache(array)), "cpu", resident)


def _disk_dataset(array: np.ndarray, path) -> FaceDataset:
    mm = np.memmap(path, np.uint8, "w+", shape=array.shape)
    mm[:] = array
    mm.flush()
    return _dataset(ImageCache(np.memmap(path, np.uint8, "r", shape=array.shape), path))


@pytest.mark.parametrize("resident", [None, True])
def test_a_disk_cache_assembles_the_same(array, tmp_path, resident, monkeypatch):
    monkeypatch.setattr(batch_feed, "_CHUNK", 5)  # copied in several chunks, the last one short
    _check(_disk_dataset(array, tmp_path / "cache.u8"), "cpu", resident)


def test_a_batch_with_no_new_image():
    batch = collate_rows([(1, torch.zeros(9), torch.tensor(0.0), None), (0, torch.zeros(9), torch.tensor(1.0), None)])
    cache = ImageCache(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    got = BatchImages(cache, torch.device("cpu"))(batch)
    assert len(batch[3]) == 0 and torch.equal(got, torch.from_numpy(cache.array[[1, 0]]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("share", [batch_feed.DEVICE_SHARE, 0.0])
@pytest.mark.parametrize("disk", [False, True])
def test_on_a_gpu_the_cache_goes_there_when_it_fits(array, share, disk, tmp_path, monkeypatch):
    monkeypatch.setattr(batch_feed, "DEVICE_SHARE", share)
    monkeypatch.setattr(batch_feed, "_CHUNK", 5)  # several chunks, the last one short
    ds = _disk_dataset(array, tmp_path / "cache.u8") if disk else _dataset(ImageCache(array))
    feed = BatchImages(ds.cache, torch.device("cuda"))
    assert (feed.on_device is not None) == (share > 0)
    batch = collate_rows([ds[(EPOCH, i)] for i in range(len(ds))])
    got = feed(batch)
    assert got.device.type == "cuda"
    assert torch.equal(got.cpu(), BatchImages(ds.cache, torch.device("cpu"))(batch))


def test_only_the_training_rows_are_copied_to_the_device():
    cache = ImageCache(np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3))  # 4 training, 2 validation
    feed = BatchImages(cache, torch.device("cpu"), resident=True, n_rows=4)
    batch = collate_rows([(3, torch.zeros(9), torch.tensor(0.0), None), (0, torch.zeros(9), torch.tensor(1.0), None)])
    assert feed.on_device.shape[0] == 4 and torch.equal(feed(batch), torch.from_numpy(cache.array[[3, 0]]))

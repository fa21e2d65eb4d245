"""Decode once: the cache holds each training image once, in RAM or on disk, and a run reuses its disk cache."""

import os
import pickle

import numpy as np
import pytest
import torch

from dfx.engine.decode import load_image
from dfx.engine.spec import PreprocessSpec, preprocess
from dfx.training import cache as C
from dfx.training import trainer as T

SPEC = PreprocessSpec(input_size=(32, 32))


def _paths(bad_corpus):
    return [str(bad_corpus[k]) for k in ("rgb", "truncated", "cmyk", "rgb_png")]


def test_ram_and_disk_caches_hold_the_same_pixels_and_name_bad_files(bad_corpus, tmp_path):
    ram, ram_errors = C.decode_once(_paths(bad_corpus), SPEC, "ram", tmp_path)
    disk, disk_errors = C.decode_once(_paths(bad_corpus), SPEC, "disk", tmp_path)
    assert ram.shape == disk.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(np.asarray(ram.array), np.asarray(disk.array))
    # a sample left whole by the augmentation is exactly what deployment scores: one resize, the runtime's
    deployed = load_image(_paths(bad_corpus)[0], target_size=SPEC.input_size)
    np.testing.assert_array_equal(preprocess(ram.image(0), SPEC), preprocess(deployed, SPEC))
    assert list(ram_errors) == list(disk_errors) == [1] and ram_errors[1].status == "truncated"
    assert disk.path.parent == tmp_path and disk.image(0).size == (32, 32)
    clone = pickle.loads(pickle.dumps(disk))  # what a DataLoader worker receives: the file, not a copy
    np.testing.assert_array_equal(np.asarray(clone.array), np.asarray(disk.array))
    assert len(pickle.dumps(disk)) < 1000


def test_a_disk_cache_is_reused_until_its_files_change(bad_corpus, tmp_path, monkeypatch):
    paths = _paths(bad_corpus)
    first, _ = C.decode_once(paths, SPEC, "disk", tmp_path)

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(C, "load_training_image", no_decoding)
    again, errors = C.decode_once(paths, SPEC, "disk", tmp_path)
    assert again.path == first.path and list(errors) == [1]
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed: the key changes
    with pytest.raises(AssertionError, match="decoded again"):
        C.decode_once(paths, SPEC, "disk", tmp_path)


def test_no_cache_for_none_or_center_crop_specs(bad_corpus, tmp_path):
    assert C.decode_once(_paths(bad_corpus), SPEC, "none", tmp_path) == (None, {})
    crop = PreprocessSpec(input_size=(32, 32), resize="center_crop", crop_pct=0.9)
    assert C.decode_once(_paths(bad_corpus), crop, "auto", tmp_path) == (None, {})
    with pytest.raises(Exception, match="--cache must be one of"):
        C.decode_once(_paths(bad_corpus), SPEC, "gpu", tmp_path)


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_training_from_the_cache_is_deterministic_across_workers_and_resumable(tiny_data, tmp_path, mode):
    from dfx.training.checkpoint import load_checkpoint

    def run(out, workers, **kw):
        cfg = T.TrainConfig(model="meso4", data=[str(tiny_data)], out=str(out), epochs=2, batch_size=8, input_size=32,
                            workers=workers, lr=3e-3, cache=mode, deterministic=True)
        T.train(cfg, **kw)
        return load_checkpoint(out / "best.safetensors")[0].state_dict()

    a, b = run(tmp_path / "a", 0), run(tmp_path / "b", 2)
    for key in a:
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    assert bool(list((tmp_path / "a").glob("decoded-*.u8"))) == (mode == "disk")


def test_a_cache_without_room_is_refused_before_decoding_or_skipped_by_auto(bad_corpus, tmp_path, monkeypatch,
                                                                           caplog):
    paths = _paths(bad_corpus)
    nbytes = len(paths) * 32 * 32 * 3
    monkeypatch.setattr(C, "_available_memory", lambda: nbytes)  # half of it is less than the cache
    monkeypatch.setattr(C, "_free_disk", lambda folder: C.DISK_MARGIN + nbytes - 1)
    monkeypatch.setattr(C, "load_training_image", lambda *a: pytest.fail("decoded without room"))
    with pytest.raises(Exception, match=r"--cache ram needs .*half the free memory.*--cache disk or auto"):
        C.decode_once(paths, SPEC, "ram", tmp_path)
    with pytest.raises(Exception, match=r"--cache disk needs .*another --out"):
        C.decode_once(paths, SPEC, "disk", tmp_path)
    assert C.decode_once(paths, SPEC, "auto", tmp_path) == (None, {})
    assert "decoding every epoch instead" in caplog.text
    assert not list(tmp_path.glob("decoded-*"))


def test_auto_takes_the_disk_when_memory_is_short(bad_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(C, "_available_memory", lambda: 0)
    cache, _ = C.decode_once(_paths(bad_corpus), SPEC, "auto", tmp_path)
    assert cache.path is not None and cache.path.parent == tmp_path


def test_auto_augments_on_the_device_whenever_the_images_are_cached(bad_corpus, tmp_path):
    import torch

    cfg = T.TrainConfig(model="meso4", data=["x"], cache="ram")
    cache, _ = C.decode_once(_paths(bad_corpus), SPEC, "ram", tmp_path)
    assert cfg.augment_on == "auto"
    assert T._augment_on(cfg, torch.device("cpu"), cache) == "device"
    assert T._augment_on(cfg, torch.device("cpu"), None) == "workers"
    with pytest.raises(Exception, match="use --augment-on workers"):
        T._augment_on(T.TrainConfig(model="meso4", data=["x"], augment_on="device"), torch.device("cpu"), None)


def test_available_memory_counts_reclaimable_page_cache_on_linux():
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo")
    line = next(x for x in open("/proc/meminfo") if x.startswith("MemAvailable:"))
    assert abs(C._available_memory() - int(line.split()[1]) * 1024) < 256 * 2**20  # read moments apart


def test_validation_from_the_cache_scores_exactly_as_from_the_files(tiny_data, tmp_path):
    from dfx.training import create_model
    from dfx.training.data import load_splits

    val = load_splits([str(tiny_data)]).val
    cache, errors = C.decode_once([s.path for s in val], SPEC, "ram", tmp_path)
    assert not errors
    torch.manual_seed(0)
    model, _ = create_model("meso4", SPEC, pretrained=False)
    from_files = T.evaluate(model, val, SPEC, batch_size=4)
    from_cache = T.evaluate(model, val, SPEC, batch_size=4, cached=(cache, list(range(len(val)))))
    assert from_cache == from_files  # every metric, to the bit


def test_a_run_decodes_validation_once_with_the_training_images(tiny_data, tmp_path, monkeypatch):
    decoded = []
    real = C.load_training_image

    def count(path, spec):
        decoded.append(path)
        return real(path, spec)

    monkeypatch.setattr(C, "load_training_image", count)
    monkeypatch.setattr("dfx.training.data.load_training_image", count)
    T.train(T.TrainConfig(model="meso4", data=[str(tiny_data)], out=str(tmp_path / "r"), epochs=2, batch_size=8,
                          input_size=32, workers=0, cache="ram"))
    assert len(decoded) == len(set(decoded)) == 24 + 12  # each file once, for all epochs and the calibration

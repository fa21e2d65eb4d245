import json
import shutil

import numpy as np
import pytest
import torch

from dfx.engine.errors import DfxError
from dfx.training import trainer as T
from dfx.training.checkpoint import load_checkpoint, load_state
from dfx.training.data import load_splits

from ..conftest import shared_path, write_split


def _cfg(data, out, **kw):
    base = dict(model="meso4", data=[str(data)], out=str(out), epochs=2, batch_size=8, input_size=32, workers=0,
                patience=10, lr=3e-3, deterministic=True)  # bit-exact comparisons hold on a GPU too
    return T.TrainConfig(**(base | kw))


def test_training_writes_all_outputs_and_learns(tiny_data, tmp_path):
    # No augmentation and 8 epochs: JPEG and blur erase the toy fakes' checker pattern, and 4 epochs with them
    # learned it or not by the seed's luck (AUC 0.47-1.0 over six seeds on the CPU; 0.53 on an H200). This way:
    # 0.97-1.0 over six seeds on the CPU.
    result = T.train(_cfg(tiny_data, tmp_path / "run", epochs=8, augment=[]))
    out = tmp_path / "run"
    for name in ("best.safetensors", "best.json", "last.pt", "metrics.jsonl", "config.json", "MODEL_CARD.md",
                 "curves.png"):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(1, 9))
    model, info = load_checkpoint(out / "best.safetensors")
    assert info.metrics["auc"] == max(x["val"]["auc"] for x in lines)  # best chosen on validation
    cal = info.metrics["calibration"]  # fitted on the validation split at the end (--calibrate, the default)
    assert info.temperature == cal["temperature"] and info.threshold == cal["threshold"] and cal["policy"] == "eer"
    assert {"ece_before", "ece_after", "nll_before", "nll_after"} <= set(cal) and cal["nll_after"] <= cal["nll_before"]
    assert info.extra["data"]["train"]["data"] == {"real": 12, "fake": 12}
    assert result["best"]["auc"] > 0.8  # the toy classes are easy
    card = (out / "MODEL_CARD.md").read_text()
    assert f"Best epoch: {result['best_epoch']}" in card and f"threshold {info.threshold:.4f}" in card
    assert "| data | 12 | 12 | 6 | 6 |" in card and f"{cal['ece_before']:.4f} → {cal['ece_after']:.4f}" in card
    assert "What it was not trained on" in card
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    T.train(_cfg(tiny_data, tmp_path / "full", epochs=3))

    calls = {"n": 0}
    real_save = T.save_state

    def crash_after_first_epoch(path, state):
        real_save(path, state)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "save_state", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        T.train(_cfg(tiny_data, tmp_path / "cut", epochs=3))
    monkeypatch.setattr(T, "save_state", real_save)
    assert load_state(tmp_path / "cut" / "last.pt")["epoch"] == 1
    T.train(_cfg(tiny_data, tmp_path / "cut", epochs=3), resume=True)

    full, cut = load_state(tmp_path / "full" / "last.pt"), load_state(tmp_path / "cut" / "last.pt")
    assert cut["epoch"] == full["epoch"] == 3
    for part in ("model", "ema"):
        for k in full[part]:
            assert torch.equal(full[part][k], cut[part][k]), (part, k)


def test_resume_without_a_run_fails_clearly(tiny_data, tmp_path):
    with pytest.raises(DfxError, match="nothing to resume"):
        T.train(_cfg(tiny_data, tmp_path / "none"), resume=True)


def test_init_from_checkpoint_and_zero_epochs(tiny_data, tmp_path):
    T.train(_cfg(tiny_data, tmp_path / "a", epochs=1))
    T.train(_cfg(tiny_data, tmp_path / "b", epochs=0, init_from=str(tmp_path / "a" / "best.safetensors")))
    a, _ = load_checkpoint(tmp_path / "a" / "best.safetensors")
    b, info = load_checkpoint(tmp_path / "b" / "best.safetensors")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    with pytest.raises(DfxError, match="holds a meso4 model, not mesoinception4"):
        T.train(_cfg(tiny_data, tmp_path / "c", model="mesoinception4", epochs=0,
                     init_from=str(tmp_path / "a" / "best.safetensors")))


def test_keras_import_with_zero_epochs(tmp_path):
    h5 = shared_path("weights", "mesonet", "Meso4_DF.h5")
    rng = np.random.default_rng(0)
    data = tmp_path / "d"
    write_split(data / "train", 3, rng)
    write_split(data / "validate", 3, rng)
    T.train(T.TrainConfig(model="meso4", data=[str(data)], out=str(tmp_path / "k"), epochs=0, init_from=str(h5),
                          workers=0))
    _, info = load_checkpoint(tmp_path / "k" / "best.safetensors")
    assert info.spec.input_size == (256, 256) and info.extra["epoch"] == 0


def test_flat_layout_split_is_stored_and_reused(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "flat"
    write_split(data, 30, rng, real="Real", fake="FAKE")  # class folder names are case-insensitive
    first = load_splits([data], 0.3, seed=1)
    assert first.val and first.train
    # New files arrive; the stored split keeps every earlier file on its side.
    write_split(data / "more", 0, rng)
    (data / "Real" / "new_1.jpg").write_bytes((data / "Real" / "000.jpg").read_bytes())
    again = load_splits([data], 0.5, seed=99, stored=first.split_record)
    old_val = {s.path for s in first.val}
    assert old_val <= {s.path for s in again.val}
    assert {s.path for s in first.train} <= {s.path for s in again.train}
    # Video frames (`<video>_<frame>`) never straddle the split.
    d = tmp_path / "frames"
    for cls in ("real", "fake"):
        (d / cls).mkdir(parents=True)
        for v in range(12):
            for f in range(4):
                shutil.copy(data / "Real" / "000.jpg", d / cls / f"{v}_{f}.jpg")
    s = load_splits([d], 0.3)
    videos = lambda xs: {(x.label, x.path.rsplit("/", 1)[1].split("_")[0]) for x in xs}  # noqa: E731
    assert not videos(s.train) & videos(s.val)


def test_missing_or_empty_class_folder(tmp_path):
    rng = np.random.default_rng(0)
    write_split(tmp_path / "d", 3, rng)
    shutil.rmtree(tmp_path / "d" / "fake")
    with pytest.raises(DfxError, match="no 'fake/' folder"):
        load_splits([tmp_path / "d"])
    (tmp_path / "d" / "fake").mkdir()
    with pytest.raises(DfxError, match="no images found"):
        load_splits([tmp_path / "d"])
    with pytest.raises(DfxError, match="no such folder"):
        load_splits([tmp_path / "missing"])


def test_bad_files_are_counted_and_skipped_never_blanked(tiny_data, tmp_path, caplog):
    (tiny_data / "train" / "fake" / "empty.jpg").write_bytes(b"")
    (tiny_data / "train" / "real" / "notes.png").write_text("not an image")
    good = (tiny_data / "train" / "real" / "000.jpg").read_bytes()
    (tiny_data / "validate" / "fake" / "cut.jpg").write_bytes(good[: len(good) // 2])
    with caplog.at_level("WARNING", logger="dfx.training"):
        T.train(_cfg(tiny_data, tmp_path / "run", epochs=1))
    assert "skipped 3 file(s) it could not use: " in caplog.text
    assert all(f"1 {status}" in caplog.text for status in ("empty_file", "not_an_image", "truncated"))
    _, info = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert info.extra["data"]["skipped"] == {"empty_file": 1, "not_an_image": 1, "truncated": 1}
    assert info.extra["data"]["train"]["data"] == {"real": 12, "fake": 12}


def test_cli_user_error_is_one_line(tmp_path):
    from click.testing import CliRunner

    from dfx.training.cli import main

    r = CliRunner().invoke(main, ["resnet", "--data", str(tmp_path)])
    assert r.exit_code == 1
    assert r.output.strip().startswith("error: unknown model 'resnet'") and "Traceback" not in r.output


def test_cli_needs_data_unless_resuming(tmp_path):
    from click.testing import CliRunner

    from dfx.training.cli import main

    r = CliRunner().invoke(main, ["meso4", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "--data is required" in r.output
    r = CliRunner().invoke(main, ["meso4", "--out", str(tmp_path), "--resume"])
    assert r.exit_code == 1 and "nothing to resume" in r.output


def test_a_finished_run_is_never_replaced_silently(tiny_data, tmp_path):
    out = tmp_path / "run"
    T.train(_cfg(tiny_data, out, epochs=1))
    before = (out / "best.safetensors").read_bytes(), (out / "metrics.jsonl").read_text()
    with pytest.raises(DfxError, match="already holds a training run.*--resume.*--overwrite"):
        T.train(_cfg(tiny_data, out, epochs=1, seed=1))
    assert ((out / "best.safetensors").read_bytes(), (out / "metrics.jsonl").read_text()) == before
    T.train(_cfg(tiny_data, out, epochs=1, seed=1), overwrite=True)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # the old run's epochs are gone, not mixed


def test_resume_keeps_the_stored_epochs_unless_told(tiny_data, tmp_path):
    out = tmp_path / "run"
    T.train(_cfg(tiny_data, out, epochs=1))
    T.train(T.TrainConfig(model="meso4", data=[], out=str(out)), resume=True)  # what the CLI passes without --epochs
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    T.train(T.TrainConfig(model="meso4", data=[], out=str(out), epochs=2), resume=True)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_unreachable_imagenet_weights_fail_fast_and_leave_no_run_folder(tiny_data, tmp_path, monkeypatch):
    import time

    from dfx.training import timm_models

    monkeypatch.setattr(timm_models, "_hub_host", lambda: None)
    t0 = time.monotonic()
    with pytest.raises(DfxError, match="not in the Hugging Face cache.*--pretrained-file.*--no-pretrained"):
        T.train(_cfg(tiny_data, tmp_path / "vit", model="efficientnet_b0", pretrained=True))
    assert time.monotonic() - t0 < 30 and not (tmp_path / "vit").exists()


def test_decoding_the_training_set_shows_progress(tiny_data, monkeypatch):
    from dfx.engine.spec import PreprocessSpec
    from dfx.training import data as D

    seen = {}

    def recording_bar(iterable, **kw):
        seen.update(kw)
        return iterable

    monkeypatch.setattr(D, "progress_bar", recording_bar)
    samples = load_splits([tiny_data]).train
    good, bad = D.check_images(samples, PreprocessSpec(input_size=(32, 32)), desc="decoding training images")
    assert seen["total"] == len(samples) == len(good) and seen["desc"] == "decoding training images" and not bad


def test_the_trained_model_does_not_depend_on_the_number_of_workers(tiny_data, tmp_path):
    """Augmentation randomness comes from (seed, epoch, sample), not from whichever worker drew the sample."""
    weights = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        T.train(_cfg(tiny_data, out, epochs=2, workers=workers))
        model, _ = load_checkpoint(out / "best.safetensors")
        weights[workers] = model.state_dict()
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[2][key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("caps, want", [({"avx512_bf16": True}, (True, torch.bfloat16)),
                                        ({"amx_bf16": True, "avx512_bf16": False}, (True, torch.bfloat16)),
                                        ({"avx512_bf16": False, "amx_bf16": False}, (False, torch.float32))])
def test_cpu_training_uses_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, caps, want):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps, raising=False)
    assert T._mixed_precision(torch.device("cpu")) == want
    assert T._mixed_precision(torch.device("cpu"), enabled=False) == (False, torch.float32)


def test_no_amp_is_recorded_and_trains_in_full_precision(tiny_data, tmp_path, monkeypatch):
    seen = []
    real = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kw):
        seen.append((device_type, enabled))
        return real(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(T.torch, "autocast", spy)
    T.train(_cfg(tiny_data, tmp_path / "r", epochs=1, amp=False))
    assert seen and not any(enabled for _, enabled in seen)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["amp"] is False


def test_the_run_records_its_data_folders_as_absolute_paths(tiny_data, tmp_path, monkeypatch):
    # dfx-export verifies on the run's validation images; a path relative to where training ran is lost elsewhere.
    monkeypatch.chdir(tiny_data.parent)
    T.train(_cfg(tiny_data.name, tmp_path / "r", epochs=1))
    assert json.loads((tmp_path / "r" / "config.json").read_text())["data"] == [str(tiny_data)]

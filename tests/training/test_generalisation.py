"""Recipes for detectors that generalise: self-blended pseudo-fakes, balanced sources, worst-source selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dfx.engine.decode import load_image
from dfx.engine.errors import DfxError
from dfx.engine.spec import PreprocessSpec
from dfx.training import trainer as T
from dfx.training.checkpoint import load_checkpoint
from dfx.training.data import FaceDataset, Sample, source_class_weights
from dfx.training.sbi import _mask, face_marks, self_blend

from ..conftest import make_image, shared_path, write_split


def test_a_self_blended_image_changes_the_face_and_keeps_the_corners():
    img = make_image(0, np.random.default_rng(0), 128)
    torch.manual_seed(3)
    out = self_blend(img)
    a, b = np.asarray(img, np.int16), np.asarray(out, np.int16)
    assert out.size == img.size and out.mode == "RGB"
    centre, corner = np.abs(a - b)[48:80, 48:80].mean(), np.abs(a - b)[:12, :12].mean()
    assert centre > 1.0 and corner < 0.5  # blended inside the soft face mask, untouched outside it
    torch.manual_seed(3)
    assert np.array_equal(np.asarray(self_blend(img)), b)  # all randomness from torch's seeded RNG


def _centroid(mask: np.ndarray) -> np.ndarray:
    m = mask[..., 0]
    ys, xs = np.mgrid[:m.shape[0], :m.shape[1]]
    return np.array([(xs * m).sum(), (ys * m).sum()]) / m.sum()


def test_the_blending_mask_follows_the_face_landmarks():
    # A face in the upper left of a 200-px image, rolled by 30 degrees: eyes, nose, mouth corners.
    roll = np.deg2rad(30)
    across, down = np.array([np.cos(roll), np.sin(roll)]), np.array([-np.sin(roll), np.cos(roll)])
    eyes = np.array([60.0, 50.0])
    pts = [eyes - 10 * across, eyes + 10 * across, eyes + 18 * down, eyes + 32 * down - 8 * across,
           eyes + 32 * down + 8 * across]
    marks = np.array(pts, np.float32) / 200
    torch.manual_seed(0)
    placed = _mask(200, 200, marks)
    torch.manual_seed(0)
    stand_in = _mask(200, 200)
    assert np.linalg.norm(_centroid(placed) - (eyes + 13 * down)) < 6  # between the eyes and the mouth
    assert np.linalg.norm(_centroid(stand_in) - 100) < 15  # without landmarks: where faces lie in a crop
    assert placed[190:, 190:].max() == 0 and placed[55, 60] > 0  # off the face untouched, on it blended
    # Turned with the face: more of the mask lies along the (longer) chin-ward axis than across the eye line.
    m = placed[..., 0] > placed.max() / 2
    ys, xs = np.nonzero(m)
    offsets = np.stack([xs, ys], 1) - _centroid(placed)
    assert np.abs(offsets @ down).max() > np.abs(offsets @ across).max()


def test_face_marks_finds_eyes_above_the_mouth_on_real_faces():
    folder = shared_path("weights", "mesonet", "test_images", "real")
    images = [load_image(p) for p in sorted(folder.iterdir())]
    blank = Image.new("RGB", (128, 128), (90, 90, 90))
    marks = face_marks([*images, blank])
    assert marks[-1] is None  # no face: the stand-in ellipse
    for m in marks[:-1]:
        assert m.shape == (5, 2) and ((m > 0) & (m < 1)).all()
        assert m[0, 0] < m[1, 0] and m[:2, 1].max() < m[2, 1] < m[3:, 1].min()  # eyes, then nose, then mouth


def test_sbi_items_are_fakes_made_from_reals_and_reproducible(tmp_path):
    write_split(tmp_path, 4, np.random.default_rng(0))
    samples = [Sample(str(p), int(p.parent.name == "fake"), "toy") for p in sorted(tmp_path.rglob("*.jpg"))]
    ds = FaceDataset(samples, PreprocessSpec(input_size=(32, 32)), sbi=0.5, seed=1)
    assert len(ds) == 8 + 2 and len(ds.item_samples()) == 10
    assert ds.marks == [None, None]  # one per pseudo-fake's real; these toy images hold no face the detector finds
    x1, y1 = ds[9]
    assert float(y1) == 1.0 and ds.item_samples()[9].label == 1
    assert ds.item_samples()[9].path in {s.path for s in samples if s.label == 0}
    assert torch.equal(ds[9][0], x1)  # (seed, epoch, index) fixes it
    ds.epoch = 1
    assert not torch.equal(ds[9][0], x1)  # a fresh pseudo-fake every epoch
    plain = FaceDataset(samples, PreprocessSpec(input_size=(32, 32)))
    assert len(plain) == 8 and torch.equal(plain[0][0], ds[0][0])  # the real images are untouched


def test_source_weights_give_every_source_and_class_the_same_share():
    samples = [Sample("a", 0, "big")] * 90 + [Sample("b", 1, "big")] * 30 + [Sample("c", 0, "small")] * 5 + \
              [Sample("d", 1, "small")] * 15
    w = source_class_weights(samples)
    shares = {}
    for s, wi in zip(samples, w):
        shares[(s.source, s.label)] = shares.get((s.source, s.label), 0.0) + wi
    assert np.allclose(list(shares.values()), w.sum() / 4)


def test_worst_source_selection_scores_the_weakest_set():
    m = {"auc": 0.9, "per_source": {"a": {"auc": 0.99}, "b": {"auc": 0.6}}}
    assert T.selection_score(m, "auc") == 0.9 and T.selection_score(m, "worst-source") == 0.6
    assert T.selection_score({"auc": 0.7}, "worst-source") == 0.7  # one source: its AUC


def test_a_run_with_sbi_source_balance_and_worst_source_selection(tmp_path):
    for name, seed in (("one", 0), ("two", 1)):
        write_split(tmp_path / name / "train", 6, np.random.default_rng(seed))
        write_split(tmp_path / name / "validate", 4, np.random.default_rng(seed + 10))
    out = tmp_path / "run"
    T.train(T.TrainConfig(model="meso4", data=[str(tmp_path / "one"), str(tmp_path / "two")], out=str(out),
                          epochs=2, batch_size=8, input_size=32, workers=0, sbi=0.5, balance="source",
                          select="worst-source", threshold_policy="fpr=0.1"))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    _, info = load_checkpoint(out / "best.safetensors")
    scores = [min(r["val"]["per_source"][s]["auc"] for s in ("one", "two")) for r in rows]
    assert info.metrics["selected_on"] == {"select": "worst-source", "score": max(scores)}
    assert info.metrics["calibration"]["policy"] == "fpr=0.1"
    assert set(info.metrics["calibration"]["per_source"]) == {"one", "two"}
    assert "worst data set's validation AUC" in (out / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("bad", [{"sbi": 1.5}, {"sbi": -0.1}, {"select": "best"}, {"threshold_policy": "fpr=2"},
                                 {"threshold_policy": "youden"}, {"balance": "class"}])
def test_recipe_options_out_of_range_are_refused(bad, tmp_path):
    with pytest.raises(DfxError):
        T.TrainConfig(model="meso4", data=[str(tmp_path)], **bad).resolved()


def test_learning_rate_follows_the_batch_size_by_the_square_root_rule():
    from dfx.training import get_entry

    d = get_entry("meso4").train_defaults
    scaled = T.TrainConfig(model="meso4", data=["x"], batch_size=d["batch_size"] * 4).resolved()
    assert scaled.lr == pytest.approx(d["lr"] * 2)
    assert T.TrainConfig(model="meso4", data=["x"]).resolved().lr == d["lr"]
    assert T.TrainConfig(model="meso4", data=["x"], batch_size=128, lr=0.5).resolved().lr == 0.5  # asked: kept


def _compiled_run(tmp_path):
    write_split(tmp_path / "train", 4, np.random.default_rng(0))
    write_split(tmp_path / "validate", 2, np.random.default_rng(1))
    out = tmp_path / "run"
    T.train(T.TrainConfig(model="meso4", data=[str(tmp_path)], out=str(out), epochs=1, batch_size=4, input_size=32,
                          workers=0, compile=True, ema_decay=0))
    return out


def test_compile_runs_the_steps_through_the_compiled_module(tmp_path, monkeypatch):
    calls = []

    class Compiled(torch.nn.Module):  # stands in for torch.compile's wrapper, which shares the parameters
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            calls.append(x.shape[0])
            return self.model(x)

    monkeypatch.setattr(torch, "compile", Compiled)
    _compiled_run(tmp_path)
    assert calls and calls[0] == 4


@pytest.mark.slow  # compiling takes a minute on two cores
def test_compiled_training_steps_update_the_model_that_is_saved(tmp_path):
    out = _compiled_run(tmp_path)
    trained, _ = load_checkpoint(out / "best.safetensors")
    from dfx.training import create_model, get_entry

    torch.manual_seed(0)
    fresh, _ = create_model("meso4", get_entry("meso4").default_spec.with_size(32))
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()))

"""Batched augmentation on the device: identity is the runtime's preprocess; each operation; reproducible runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dfx.engine.errors import DfxError
from dfx.engine.spec import PreprocessSpec, preprocess
from dfx.training import trainer as T
from dfx.training.augment_batch import PARAMS, BatchAugment, to_uint8_tensor
from dfx.training.checkpoint import load_checkpoint
from dfx.training.options import AUGMENTATIONS

from ..conftest import make_image, write_split

SPEC = PreprocessSpec(input_size=(32, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def identity(n: int = 1, **kw) -> torch.Tensor:
    row = dict(flip=0.0, y0=0.0, x0=0.0, y1=1.0, x1=1.0, brightness=1.0, contrast=1.0, saturation=1.0,
               blur_sigma=0.0, context_zoom=1.0, context_x=0.5, context_y=0.5) | kw
    return torch.tensor([[row[k] for k in PARAMS]] * n)


def images(*imgs: Image.Image) -> torch.Tensor:
    return torch.stack([to_uint8_tensor(i) for i in imgs])


@pytest.fixture
def img():
    return make_image(1, np.random.default_rng(0), 32)


def test_identity_parameters_give_exactly_the_runtime_preprocess(img):
    out = BatchAugment([], SPEC).apply(images(img), identity())
    assert torch.allclose(out[0], torch.from_numpy(preprocess(img, SPEC)), atol=1e-5)


def test_flip_and_crop_match_the_pillow_operations(img):
    aug = BatchAugment([], SPEC)
    flipped = aug.apply(images(img), identity(flip=1.0))[0]
    want = preprocess(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), SPEC)
    assert torch.allclose(flipped, torch.from_numpy(want), atol=1e-5)
    big = make_image(0, np.random.default_rng(1), 64)
    crop = aug.apply(images(big), identity(x0=0.25, y0=0.25, x1=0.75, y1=0.75))[0]  # the centre 32 px, 1:1
    assert torch.allclose(crop, torch.from_numpy(preprocess(big.crop((16, 16, 48, 48)), SPEC)), atol=1e-4)


def test_colour_and_blur_apply_per_sample(img):
    aug = BatchAugment([], PreprocessSpec(input_size=(32, 32)))
    grey = Image.new("RGB", (32, 32), (100, 100, 100))
    out = aug.apply(images(grey, img, img), torch.cat([identity(brightness=1.2), identity(blur_sigma=1.2),
                                                        identity()]))
    assert torch.allclose(out[0], torch.full_like(out[0], 120 / 255), atol=1e-5)
    assert torch.allclose(out[2], torch.from_numpy(preprocess(img, aug.spec)), atol=1e-5)  # untouched neighbour
    assert float(out[1].diff(dim=2).abs().mean()) < 0.5 * float(out[2].diff(dim=2).abs().mean())  # softened


def test_parameters_come_from_the_seeded_rng(img):
    aug = BatchAugment(["flip", "crop", "color", "jpeg", "blur"], SPEC)
    torch.manual_seed(7)
    a = aug.draw(lambda: img)[1]
    torch.manual_seed(7)
    b = aug.draw(lambda: img)[1]
    assert torch.equal(a, b)
    draws, loads, sent = [], [], 0
    for s in range(400):
        torch.manual_seed(s)
        new, params = aug.draw(lambda: loads.append(1) or img)
        draws.append(params)
        sent += new is not None
    p = torch.stack(draws)
    # The image is read only for a JPEG re-compression (probability 0.3), and only then comes back to be sent.
    assert sent == len(loads) and 0.2 < len(loads) / 400 < 0.4
    assert 0.4 < float(p[:, 0].mean()) < 0.6  # flips: half the time
    cropped = p[:, 3] - p[:, 1] < 1
    assert 0.4 < float(cropped.float().mean()) < 0.6 and bool((p[cropped, 3] - p[cropped, 1] > 0.85).all())


def _run(data, out, **kw):
    T.train(T.TrainConfig(model="meso4", data=[str(data)], out=str(out), epochs=2, batch_size=4, input_size=32,
                          cache="ram", augment_on="device", ema_decay=0, deterministic=True, **kw))
    return load_checkpoint(out / "best.safetensors")[0].state_dict()


def test_a_device_augmented_run_is_the_same_with_any_number_of_workers(tmp_path):
    write_split(tmp_path / "d" / "train", 6, np.random.default_rng(0))
    write_split(tmp_path / "d" / "validate", 3, np.random.default_rng(1))
    a = _run(tmp_path / "d", tmp_path / "a", workers=0)
    b = _run(tmp_path / "d", tmp_path / "b", workers=2, sbi=0.0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    every = list(AUGMENTATIONS)  # rescaling too: it runs in the workers, from each sample's own seeded draws
    c = _run(tmp_path / "d", tmp_path / "c0", workers=0, augment=every)
    d = _run(tmp_path / "d", tmp_path / "c2", workers=2, augment=every)
    assert all(torch.equal(c[k], d[k]) for k in c) and not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(DfxError, match="--cache none.*--augment-on workers"):
        T.train(T.TrainConfig(model="meso4", data=[str(tmp_path / "d")], out=str(tmp_path / "x"), epochs=1,
                              input_size=32, augment_on="device", cache="none"))


def _whole_batch_reference(aug: BatchAugment, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The operations as first written: every operation on every sample, step by step (affine_grid, then
    brightness, contrast and saturation one after another)."""
    import torch.nn.functional as F

    n = images.shape[0]
    h, w = aug.spec.input_size
    x = images.permute(0, 3, 1, 2).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = (p[:, 4] - p[:, 2]) * (1 - 2 * p[:, 0])
    theta[:, 0, 2] = p[:, 2] + p[:, 4] - 1
    theta[:, 1, 1] = p[:, 3] - p[:, 1]
    theta[:, 1, 2] = p[:, 1] + p[:, 3] - 1
    x = F.grid_sample(x, F.affine_grid(theta, [n, 3, h, w], align_corners=False), mode="bilinear",
                      padding_mode="border", align_corners=False)
    b, c, s = (p[:, i].view(-1, 1, 1, 1) for i in (5, 6, 7))
    x = x * b
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - grey.mean(dim=(2, 3), keepdim=True)) * c + grey.mean(dim=(2, 3), keepdim=True)
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - grey) * s + grey
    x = aug._blur(x, p[:, 8]).clamp(0, 255)
    gain, offset = aug._normalisation(x.device)
    return x * gain - offset


def test_operations_on_the_samples_that_drew_them_equal_the_whole_batch_formulation():
    aug = BatchAugment(["flip", "crop", "color", "jpeg", "blur"], SPEC)
    rng = np.random.default_rng(5)
    imgs = [make_image(k % 2, rng, 32) for k in range(24)]
    params = []
    for s in range(24):
        torch.manual_seed(s)
        params.append(aug.draw(lambda: imgs[0])[1])
    p = torch.stack(params)
    drew = [(p[:, 1:5] != torch.tensor([0.0, 0.0, 1.0, 1.0])).any(1), (p[:, 5:8] != 1).any(1), p[:, 8] > 0]
    assert all(0 < int(d.sum()) < 24 for d in drew)  # each operation: some samples drew it, some did not
    got = aug.apply(images(*imgs), p)
    want = _whole_batch_reference(aug, images(*imgs), p)
    assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_batch_is_augmented_as_on_the_cpu():
    aug = BatchAugment(["flip", "crop", "color", "blur"], SPEC)
    rng = np.random.default_rng(6)
    imgs = images(*[make_image(k % 2, rng, 32) for k in range(16)])
    params = []
    for s in range(16):
        torch.manual_seed(s)
        params.append(aug.draw(lambda: None)[1])  # no JPEG or rescaling: the image is never read
    p = torch.stack(params)
    got = aug.apply(imgs.cuda(), p.pin_memory())  # parameters stay on the host, pinned, as the loader gives them
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), aug.apply(imgs, p), atol=1e-4)


def test_context_shrinks_the_image_into_the_next_samples_image():
    aug = BatchAugment(["context"], PreprocessSpec(input_size=(32, 32)))
    white, black = Image.new("RGB", (32, 32), (255, 255, 255)), Image.new("RGB", (32, 32), (0, 0, 0))
    # zoom 2 at the top-left corner: the white image fills the top-left 16×16, the black frame the rest
    out = aug.apply(images(white, black), torch.cat([identity(context_zoom=2.0, context_x=0.0, context_y=0.0),
                                                     identity()]))[0, 0]
    assert torch.allclose(out[:15, :15], torch.ones(15, 15)) and float(out[17:, :].abs().max()) == 0.0
    assert float(out[:, 17:].abs().max()) == 0.0
    # at the bottom-right corner instead, and the framing sample itself left alone
    out = aug.apply(images(white, black), torch.cat([identity(context_zoom=2.0, context_x=1.0, context_y=1.0),
                                                     identity()]))
    assert torch.allclose(out[0, :, 17:, 17:], torch.ones(3, 15, 15)) and float(out[0, :, :15, :].max()) == 0.0
    assert float(out[1].abs().max()) == 0.0
    # zoom 1 is the identity
    same = aug.apply(images(white, black), torch.cat([identity(context_zoom=1.0), identity()]))
    assert torch.allclose(same[0], torch.ones_like(same[0]))


def test_context_keeps_the_image_whole_when_shrunk(img):
    from dfx.training.augment_batch import in_context

    x = torch.from_numpy(np.asarray(img, np.float32).copy()).permute(2, 0, 1)[None]
    out = in_context(x, torch.zeros_like(x), torch.tensor([[1.25, 0.5, 0.5]]))
    # the image's mean brightness survives the shrink (bilinear resampling only), centred with a 3.2-px frame
    inner = out[0, :, 4:28, 4:28]
    assert abs(float(out.sum()) - float(x.sum()) / 1.25 ** 2) < 0.02 * float(x.sum())
    assert float(out[0, :, :3, :].abs().max()) == 0.0 and float(inner.abs().mean()) > 0


def test_context_is_drawn_with_its_probability_and_only_on_the_device_path():
    from dfx.training.augment import Augment

    torch.manual_seed(0)
    aug = BatchAugment(["context"], SPEC)
    rows = torch.stack([aug.draw(lambda: None)[1] for _ in range(400)])
    zoom = rows[:, PARAMS.index("context_zoom")]
    framed = zoom > 1
    assert abs(float(framed.float().mean()) - AUGMENTATIONS["context"]) < 0.07
    assert float(zoom[framed].max()) <= 1.4 and float(zoom[~framed].max()) == 1.0
    with pytest.raises(DfxError, match="device only"):
        Augment(["flip", "context"])
    with pytest.raises(DfxError, match="device only"):
        T.TrainConfig(model="meso4", data=["x"], augment=["context"], augment_on="workers").resolved()
    with pytest.raises(DfxError, match="--cache none"):
        T.TrainConfig(model="meso4", data=["x"], augment=["context"], cache="none").resolved()

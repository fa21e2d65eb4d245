import numpy as np
import pytest
from PIL import Image

from dfx.engine.spec import PreprocessSpec, preprocess


def _img(w=50, h=30):
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_round_trip_through_dict():
    spec = PreprocessSpec(input_size=(64, 48), interpolation="bicubic", mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec


def test_values_follow_scale_mean_std():
    spec = PreprocessSpec(input_size=(30, 50), mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    img = _img()
    x = preprocess(img, spec)
    ref = (np.asarray(img, np.float64) / 255.0 - 0.5) / np.array([0.25, 0.5, 1.0])
    assert x.shape == (3, 30, 50) and x.dtype == np.float32
    np.testing.assert_allclose(x, ref.transpose(2, 0, 1), atol=1e-5)


def test_bgr_reverses_channels_and_out_buffer_is_filled():
    rgb, bgr = PreprocessSpec(input_size=(16, 16)), PreprocessSpec(input_size=(16, 16), channel_order="BGR")
    img = _img()
    buf = np.zeros((3, 16, 16), np.float32)
    assert preprocess(img, bgr, out=buf) is buf
    np.testing.assert_array_equal(buf, preprocess(img, rgb)[::-1])


@pytest.mark.parametrize("resize", ["squash", "center_crop"])
def test_resize_modes_give_input_size(resize):
    spec = PreprocessSpec(input_size=(24, 24), resize=resize, crop_pct=0.875)
    assert preprocess(_img(), spec).shape == (3, 24, 24)


@pytest.mark.parametrize("bad", [{"resize": "stretch"}, {"interpolation": "cubic"}, {"channel_order": "RGBA"},
                                 {"input_size": (4, 4)}])
def test_invalid_spec_names_valid_choices(bad):
    with pytest.raises(ValueError, match="must"):
        PreprocessSpec(**bad)


def test_non_rgb_input_is_refused():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(_img().convert("L"), PreprocessSpec(input_size=(16, 16)))


def test_unknown_field_in_artifact_is_refused():
    d = PreprocessSpec().to_dict() | {"gamma": 2.2}
    with pytest.raises(ValueError, match="unknown"):
        PreprocessSpec.from_dict(d)

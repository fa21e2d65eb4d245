import numpy as np
import pytest

from dfx.engine.decode import DecodeError, load_image

from ..conftest import EXPECTED_STATUS


def test_every_hard_case_decodes_to_rgb_or_a_clear_status(bad_corpus):
    for case, path in bad_corpus.items():
        if case in EXPECTED_STATUS:
            with pytest.raises(DecodeError) as e:
                load_image(path)
            assert e.value.status == EXPECTED_STATUS[case], case
        else:
            img = load_image(path)
            assert img.mode == "RGB", case


def test_exif_orientation_is_applied(bad_corpus):
    assert load_image(bad_corpus["exif_rotated"]).size == (32, 64)


def test_sixteen_bit_is_scaled_not_clipped(bad_corpus):
    gray8 = np.asarray(load_image(bad_corpus["grayscale"]))
    gray16 = np.asarray(load_image(bad_corpus["gray16"]))
    assert np.abs(gray8.astype(int) - gray16.astype(int)).max() <= 1


def test_animation_gives_first_frame(bad_corpus):
    first = np.asarray(load_image(bad_corpus["animated"]), np.int16)
    png = np.asarray(load_image(bad_corpus["rgb_png"]), np.int16)
    assert np.abs(first - png).mean() < 8  # GIF palette quantisation, but the first frame, not the second


def test_draft_mode_decodes_large_jpeg_at_reduced_scale(tmp_path):
    from PIL import Image

    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), np.uint8))
    big.save(tmp_path / "big.jpg", quality=90)
    small = load_image(tmp_path / "big.jpg", target_size=(64, 64))
    assert 64 <= small.width < 800  # decoded at 1/8 scale (100 px), still above the target
    assert load_image(tmp_path / "big.jpg").size == (800, 800)


def test_pixel_limit_and_missing_file(tmp_path, bad_corpus):
    with pytest.raises(DecodeError, match="too_large"):
        load_image(bad_corpus["rgb"], max_pixels=100)
    with pytest.raises(DecodeError) as e:
        load_image(tmp_path / "missing.jpg")
    assert e.value.status == "unreadable"


def _photo():
    from ..conftest import make_image

    return make_image(0, np.random.default_rng(3), 64).convert("RGB")


def test_avif_and_heic_photos_decode_and_are_found_in_folders(tmp_path):
    from PIL import features

    from dfx.engine.inputs import iter_inputs

    pillow_heif = pytest.importorskip("pillow_heif", reason="the heif extra (pillow-heif) is not installed")
    img = _photo()
    pillow_heif.from_pillow(img).save(tmp_path / "phone.HEIC", quality=95)
    (tmp_path / "misnamed.jpg").write_bytes((tmp_path / "phone.HEIC").read_bytes())  # named .jpg, still HEIC
    names = ["phone.HEIC", "misnamed.jpg"]
    if features.check("avif"):
        img.save(tmp_path / "web.avif", quality=95)
        names.append("web.avif")
    assert sorted(p.name for p in iter_inputs([tmp_path])) == sorted(names)
    for name in names:
        out = load_image(tmp_path / name)
        assert out.mode == "RGB" and out.size == img.size
        assert np.abs(np.asarray(out, np.float32) - np.asarray(img, np.float32)).mean() < 8  # lossy, same picture
    (tmp_path / "broken.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    with pytest.raises(DecodeError) as e:
        load_image(tmp_path / "broken.heic")
    assert e.value.status == "decode_error" and "pillow-heif cannot read" in e.value.message


def test_without_pillow_heif_a_heic_photo_gets_a_row_naming_the_extra(tmp_path):
    import subprocess
    import sys

    pillow_heif = pytest.importorskip("pillow_heif", reason="the heif extra (pillow-heif) is needed to write one")
    img = _photo()
    pillow_heif.from_pillow(img).save(tmp_path / "phone.heic")
    code = ("import sys; sys.modules['pillow_heif'] = None\n"  # as if the extra were not installed
            "from dfx.engine.decode import DecodeError, load_image\n"
            f"try:\n    load_image({str(tmp_path / 'phone.heic')!r})\n"
            "except DecodeError as e:\n    print(e.status, '|', e.message)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.startswith("decode_error | a HEIC/HEIF photo") and "dfx[heif]" in out.stdout

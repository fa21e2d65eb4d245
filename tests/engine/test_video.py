"""Videos: sampled frames through the face front-end, one row per video, error rows for bad videos."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfx.engine import video
from dfx.engine.scan import scan
from dfx.engine.spec import FaceCrop
from tests.conftest import make_image
from tests.engine.test_faces import with_faces

av = pytest.importorskip("av", reason="the video extra (PyAV) is not installed")


pytestmark = pytest.mark.usefixtures("marker_detector")


@pytest.fixture
def face_model(tiny_onnx, tmp_path):
    return with_faces(tiny_onnx, FaceCrop(detector="marker", scale=1.0, min_face=12), tmp_path / "faces.onnx")


def write_video(path: Path, frames: int, rate: int = 10, face: bool = True) -> Path:
    """A clip of ``frames`` frames at ``rate`` fps; when ``face``, a red-framed toy face moves across it."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=rate)
        st.width, st.height, st.pix_fmt = 160, 128, "yuv420p"
        for i in range(frames):
            img = make_image(0, rng, 160).crop((0, 0, 160, 128))
            if face:
                x = 10 + 4 * i
                img.paste((255, 0, 0), (x, 30, x + 48, 78))
                img.paste(make_image(1, rng, 32), (x + 8, 38))  # a thick frame stays one red ring once coded
            for packet in st.encode(av.VideoFrame.from_image(img)):
                c.mux(packet)
        for packet in st.encode():
            c.mux(packet)
    return path


def test_aggregate_is_the_mean_of_the_top_quartile():
    assert video.aggregate([0.1]) == 0.1
    assert video.aggregate([0.9, 0.1, 0.2, 0.3]) == 0.9  # ⌈4/4⌉ = 1 score
    assert video.aggregate([0.1] * 6 + [0.8, 0.6]) == pytest.approx(0.7)  # ⌈8/4⌉ = 2 scores


def test_a_video_gets_one_row_with_its_frames_and_faces(face_model, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=30, rate=10)  # 3 s
    out = tmp_path / "v.csv"
    s = scan([clip], engine=face_model, backend="onnxruntime-cpu", output=str(out), progress=False, fps=2,
             per_frame=True)
    rows = list(csv.DictReader(out.open()))
    frame_rows, own = rows[:-1], rows[-1]
    assert own["face"] == "" and own["frame"] == "" and own["status"] == "ok" and s.scored == 1
    assert s.videos == 1 and s.line().startswith("scored 0 images and 1 video: ") and " files/s, " in s.line()
    assert int(own["frames"]) == 6 and int(own["faces"]) == 6  # 2 per second over 3 s, one face each
    assert [int(r["frame"]) for r in frame_rows] == [0, 5, 10, 15, 20, 25]
    scores = [float(r["score"]) for r in frame_rows]
    assert float(own["score"]) == pytest.approx(video.aggregate(scores), abs=1e-6)
    assert math.ceil(len(scores) / 4) == 2


def test_videos_without_faces_unreadable_ones_and_faces_off_each_get_a_row(face_model, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "empty.mp4", frames=10, face=False)
    (folder / "garbage.mov").write_bytes(b"\x00not a video" * 50)
    Image.new("RGB", (40, 40)).save(folder / "photo.png")
    out = tmp_path / "v.jsonl"
    s = scan([folder], engine=face_model, backend="onnxruntime-cpu", output=str(out), progress=False)
    import json

    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["empty.mp4"]["status"] == "no_face" and rows["empty.mp4"]["frames"] == 1  # 1 s at 1 fps
    assert rows["garbage.mov"]["status"] == "decode_error"
    assert rows["photo.png"]["status"] == "no_face"
    assert s.failed == 3
    # Faces off: a video named explicitly is not silently dropped.
    r = scan([folder / "empty.mp4"], engine=face_model, backend="onnxruntime-cpu", progress=False, faces="off",
             stdout=__import__("io").StringIO())
    assert r.errors["not_an_image"] == 1


def test_without_pyav_each_video_says_how_to_get_it(face_model, tmp_path, monkeypatch):
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    monkeypatch.setattr(video, "video_reader_available", lambda: False)
    import io

    buf = io.StringIO()
    s = scan([clip], engine=face_model, backend="onnxruntime-cpu", fmt="csv", stdout=buf, progress=False)
    assert s.errors["decode_error"] == 1 and "pip install 'dfx[video]'" in buf.getvalue()


def test_fps_out_of_range_is_refused(face_model, tmp_path):
    from dfx.engine.errors import DfxError

    clip = write_video(tmp_path / "clip.mp4", frames=3)
    with pytest.raises(DfxError, match="--fps"):
        scan([clip], engine=face_model, fps=0)


def test_frames_with_a_display_rotation_are_turned_upright():
    class Frame:
        def __init__(self, rotation):
            self.rotation = rotation

        def to_image(self):
            img = Image.new("RGB", (40, 20))
            img.putpixel((39, 0), (255, 255, 255))  # the top-right corner of the stored frame
            return img

    assert video.upright(Frame(0)).size == (40, 20)
    turned = video.upright(Frame(-90))  # FFmpeg's display matrix: 90° clockwise (a portrait phone video)
    assert turned.size == (20, 40) and turned.getpixel((19, 39)) == (255, 255, 255)
    assert video.upright(Frame(90)).getpixel((0, 0)) == (255, 255, 255)


def test_a_long_video_is_sampled_across_its_whole_length(face_model, tmp_path):
    from dfx.engine.select import open_backend

    clip = write_video(tmp_path / "long.mp4", frames=40, rate=10)  # 4 s; at most 4 samples at 2 fps → every 1 s
    with open_backend(face_model, "onnxruntime-cpu") as be:
        rows = list(video.score_videos(be, be.info.spec, [clip], 0.5, fps=2, per_frame=True, max_frames=4))
    assert [r.frame for r in rows[:-1]] == [0, 10, 20, 30] and rows[-1].frames == 4

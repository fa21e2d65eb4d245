"""The face front-end: the crop, the spec, rows per face, no_face, --faces off, resume, and MTCNN on real faces."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from dfx.engine import face_detect
from dfx.engine.artifact import META_KEY, ModelInfo
from dfx.engine.face_crop import crop_box, measure_framing
from dfx.engine.face_detect import Face
from dfx.engine.pipeline import score_files
from dfx.engine.scan import scan
from dfx.engine.select import open_backend
from dfx.engine.spec import FaceCrop, PreprocessSpec
from dfx.engine.writers import FACE_FIELDS, FIELDS
from tests.conftest import make_image, shared_path

MARKER = FaceCrop(detector="marker", scale=1.0, min_face=12, max_faces=2)


pytestmark = pytest.mark.usefixtures("marker_detector")


def with_faces(onnx_path: Path, crop: FaceCrop | None, dst: Path) -> Path:
    """A copy of a dfx ONNX whose record crops faces with ``crop``."""
    import onnx

    model = onnx.load(str(onnx_path))
    prop = next(p for p in model.metadata_props if p.key == META_KEY)
    info = ModelInfo.from_dict(json.loads(prop.value))
    info.spec = info.spec.with_faces(crop)
    prop.value = info.to_json()
    onnx.save(model, str(dst))
    return dst


def scene(path: Path, squares: list[tuple[int, int, int]], size=(200, 160), seed=0) -> Path:
    """A toy photo with a red square "face" (x, y, side) for each entry, each square textured like a toy face."""
    rng = np.random.default_rng(seed)
    img = make_image(0, rng, max(size)).crop((0, 0, *size))
    for i, (x, y, s) in enumerate(squares):
        face = make_image(i % 2, rng, s)
        img.paste(face, (x, y))
        img.paste((255, 0, 0), (x, y, x + s, y + s))  # the marker detector's "face"...
        img.paste(face.crop((2, 2, s - 2, s - 2)), (x + 2, y + 2))  # ...is its frame; the toy face stays inside
    img.save(path)
    return path


@pytest.fixture
def face_model(tiny_onnx, tmp_path):
    return with_faces(tiny_onnx, MARKER, tmp_path / "faces.onnx")


# --- the crop ------------------------------------------------------------------------------------------------
def test_crop_is_a_square_of_scale_times_the_box_moved_by_shift():
    face = Face((100, 100, 140, 150), 1.0)  # 40 wide, 50 tall: side 50, centre (120, 125)
    assert crop_box(face, (1000, 1000), FaceCrop(scale=1.0)) == (95, 100, 145, 150)
    assert crop_box(face, (1000, 1000), FaceCrop(scale=2.0)) == (70, 75, 170, 175)
    assert crop_box(face, (1000, 1000), FaceCrop(scale=1.0, shift=0.2)) == (95, 110, 145, 160)


def test_crop_slides_inside_the_image_and_is_clipped_when_larger():
    face = Face((0, 0, 40, 40), 1.0)
    assert crop_box(face, (200, 200), FaceCrop(scale=2.0)) == (0, 0, 80, 80)  # slid, not padded
    assert crop_box(Face((170, 170, 200, 200), 1.0), (200, 200), FaceCrop(scale=2.0)) == (140, 140, 200, 200)
    assert crop_box(Face((10, 10, 50, 50), 1.0), (60, 100), FaceCrop(scale=3.0)) == (0, 0, 60, 100)


def test_framing_is_the_median_over_crops_with_exactly_one_face():
    crops = [(100, 100, [Face((25, 20, 75, 70), 1.0)]),  # side 50: scale 2, centre 45 → shift +0.1
             (120, 120, [Face((30, 30, 90, 90), 1.0)]),  # side 60: scale 2, shift 0
             (100, 100, [Face((0, 0, 10, 10), 1.0)] * 2),  # two faces: not evidence
             (100, 100, [])]
    f = measure_framing(crops)
    assert (f.scale, round(f.shift, 3), f.measured, f.seen) == (2.0, 0.05, 2, 4)
    assert measure_framing([(10, 10, [])]) is None


# --- the spec ------------------------------------------------------------------------------------------------
def test_face_crop_travels_in_the_record_and_a_record_without_one_is_unchanged():
    spec = PreprocessSpec(input_size=(32, 32))
    assert "faces" not in spec.to_dict()  # older dfx still reads records without faces
    assert ModelInfo("meso4", spec).to_dict()["format_version"] == 1
    with_crop = spec.with_faces(FaceCrop(scale=1.4, shift=-0.05, source="precropped"))
    d = ModelInfo("meso4", with_crop).to_dict()
    assert d["format_version"] == 3  # an older dfx refuses it rather than scoring whole images
    assert ModelInfo.from_dict(json.loads(json.dumps(d))).spec == with_crop


@pytest.mark.parametrize("bad", [{"scale": 0}, {"scale": 9}, {"shift": 2}, {"min_face": 3}, {"max_faces": 0},
                                 {"source": "guessed"}, {"max_faces": 2.5}])
def test_face_crop_values_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        FaceCrop(**bad)
    with pytest.raises(ValueError, match="unknown face crop fields"):
        FaceCrop.from_dict({"margin": 0.2})


def test_an_unknown_detector_names_the_valid_ones():
    from dfx.engine.errors import DfxError

    with pytest.raises(DfxError, match="valid: mtcnn"):
        face_detect.get_detector("yolo")


# --- rows ----------------------------------------------------------------------------------------------------
def test_a_row_per_face_then_the_image_row_with_its_most_suspicious_face(face_model, tmp_path):
    two = scene(tmp_path / "two.png", [(10, 10, 60), (100, 60, 40)])
    three = scene(tmp_path / "three.png", [(5, 5, 50), (60, 5, 40), (110, 5, 30)], seed=1)
    none = scene(tmp_path / "none.png", [])
    be = open_backend(face_model, "onnxruntime-cpu")
    with be:
        rows = list(score_files(be, [two, none, three], batch_size=4, decode="threads"))
    assert [(Path(r.path).name, r.face, r.status) for r in rows] == [
        ("two.png", 0, "ok"), ("two.png", 1, "ok"), ("two.png", None, "ok"),
        ("none.png", None, "no_face"),
        ("three.png", 0, "ok"), ("three.png", 1, "ok"), ("three.png", None, "ok")]
    two_faces, two_row = rows[:2], rows[2]
    assert two_faces[0].box == (10, 10, 70, 70) and two_faces[1].box == (100, 60, 140, 100)
    assert two_row.score == max(r.score for r in two_faces) and two_row.faces == 2
    assert rows[-1].faces == 3  # three found, max_faces=2 scored: counted, not lost silently
    assert "no face of at least 12 px" in rows[3].error


def test_each_face_scores_as_its_own_crop_would(face_model, tmp_path):
    path = scene(tmp_path / "s.png", [(30, 40, 64)])
    img = Image.open(path).convert("RGB")
    crop = tmp_path / "crop.png"
    img.crop((30, 40, 94, 104)).save(crop)
    be = open_backend(face_model, "onnxruntime-cpu")
    with be:
        in_scene = list(score_files(be, [path], decode="threads"))[0]
        alone = list(score_files(be, [crop], decode="threads", faces="off"))[0]
    assert in_scene.score == pytest.approx(alone.score, abs=1e-6)


def test_faces_off_and_a_model_without_faces_score_exactly_as_before(face_model, tiny_onnx, bad_corpus):
    files = [bad_corpus["rgb"], bad_corpus["rgb_png"], bad_corpus["grayscale"]]
    with open_backend(tiny_onnx, "onnxruntime-cpu") as plain, open_backend(face_model, "onnxruntime-cpu") as faces:
        before = [(r.score, r.status) for r in score_files(plain, files, decode="threads")]
        auto = [(r.score, r.status) for r in score_files(plain, files, decode="threads", faces="auto")]
        off = [(r.score, r.status) for r in score_files(faces, files, decode="threads", faces="off")]
    assert before == auto == off and all(s == "ok" for _, s in before)


def test_faces_on_uses_the_default_crop_for_a_model_without_one(tiny_onnx, tmp_path):
    path = scene(tmp_path / "s.png", [(30, 40, 64)])
    with open_backend(tiny_onnx, "onnxruntime-cpu") as be:
        rows = list(score_files(be, [path], decode="threads", faces="on"))
    assert rows[-1].status in ("ok", "no_face")  # MTCNN on a toy image: a row either way, never an exception


def test_scan_writes_the_grown_schema_and_resume_counts_files_by_their_own_rows(face_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        scene(folder / f"{i}.png", [(10, 10, 50)] * (i % 3 > 0) + [(100, 50, 40)] * (i % 3 > 1), seed=i)
    out = tmp_path / "s.csv"
    s = scan([folder], engine=face_model, backend="onnxruntime-cpu", output=str(out), progress=False,
             decode="threads")
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == FACE_FIELDS and tuple(FACE_FIELDS[:5]) == FIELDS  # the schema only grows
    file_rows = [r for r in rows if r["face"] == ""]
    assert len(file_rows) == 5 and s.scored == 3 and s.errors["no_face"] == 2
    first_face = next(r for r in rows if r["face"] == "0")
    assert first_face["path"].endswith("1.png") and first_face["box"] == "10 10 60 60"
    assert first_face["face_confidence"] and first_face["score"]
    # A crash after a file's face rows but before its own row: resume drops the orphans and scores it again.
    text = out.read_text().splitlines(keepends=True)
    cut = max(i for i, line in enumerate(text) if "4.png" in line and ",0,," in line)
    out.write_text("".join(text[:cut + 1]))
    s2 = scan([folder], engine=face_model, backend="onnxruntime-cpu", output=str(out), progress=False,
              decode="threads", resume=True)
    again = list(csv.DictReader(out.open()))
    assert again == rows and s2.skipped_resume == 4


def test_resume_refuses_a_different_face_setting(face_model, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    scene(folder / "a.png", [(10, 10, 50)])
    out = tmp_path / "s.jsonl"
    scan([folder], engine=face_model, backend="onnxruntime-cpu", output=str(out), progress=False, decode="threads")
    from dfx.engine.errors import DfxError

    with pytest.raises(DfxError, match="written with faces"):
        scan([folder], engine=face_model, backend="onnxruntime-cpu", output=str(out), progress=False,
             decode="threads", resume=True, faces="off")


def test_dfx_infer_faces_option_and_table(face_model, tmp_path):
    from dfx.engine.cli import main

    path = scene(tmp_path / "a.png", [(10, 10, 50)])
    r = CliRunner().invoke(main, [str(path), "--engine", str(face_model), "--backend", "onnxruntime-cpu",
                                  "--decode", "threads"])
    assert r.exit_code == 0, r.output
    assert "1 found" in r.output and "#0" in r.output and "faces by marker" in r.output
    r = CliRunner().invoke(main, [str(path), "--engine", str(face_model), "--faces", "sometimes"])
    assert r.exit_code == 1 and "auto" in r.output and "off" in r.output


def test_detector_api_returns_the_image_rows_and_the_faces(face_model, tmp_path):
    from dfx.engine.detector import Detector

    path = scene(tmp_path / "a.png", [(10, 10, 50), (100, 60, 40)])
    arr = np.asarray(Image.open(path).convert("RGB"))
    with Detector(face_model, backend="onnxruntime-cpu") as det:
        from_file, from_array = det.score([path, arr])
        rows = list(det.scan([path], decode="threads"))
    assert from_file.score == pytest.approx(from_array.score) and len(from_file.faces) == 2
    assert from_file.faces[0].box == (10, 10, 60, 60) and from_file.status == "ok"
    assert [r["face"] for r in rows] == [0, 1, None] and rows[-1]["score"] == round(from_file.score, 6)


# --- MTCNN on real faces -------------------------------------------------------------------------------------
def _real_scenes(n: int, seed: int) -> list[tuple[Image.Image, tuple[int, int, int, int] | None]]:
    from dfx.engine.inputs import list_images

    files = list_images(shared_path("data", "stylegan2-ffhq", "validate", "real"))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = int(rng.integers(400, 900)), int(rng.integers(300, 700))
        bg = Image.fromarray(rng.integers(40, 220, (h // 16, w // 16, 3), dtype=np.uint8)).resize((w, h))
        bg = bg.filter(ImageFilter.GaussianBlur(2))
        if i % 2:
            out.append((bg, None))
            continue
        s = int(rng.integers(80, 220))
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        bg.paste(Image.open(files[int(rng.integers(len(files)))]).convert("RGB").resize((s, s)), (x, y))
        out.append((bg, (x, y, x + s, y + s)))
    return out


def test_mtcnn_finds_pasted_real_faces_and_nothing_in_empty_scenes():
    det = face_detect.get_detector("mtcnn", min_face=48)
    found = false = 0
    for img, box in _real_scenes(16, seed=3):
        faces = det.detect(np.asarray(img))
        if box is None:
            false += bool(faces)
            continue
        cx = [(f.box[0] + f.box[2]) / 2 for f in faces]
        cy = [(f.box[1] + f.box[3]) / 2 for f in faces]
        found += any(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in zip(cx, cy))
        assert all(f.landmarks and len(f.landmarks) == 5 and 0 < f.confidence <= 1 for f in faces)
    assert found == 8 and false == 0


def test_mtcnn_rows_are_identical_with_thread_and_process_workers(tmp_path):
    from dfx.engine.default_model import default_model_path

    paths = []
    for i, (img, _) in enumerate(_real_scenes(6, seed=5)):
        paths.append(tmp_path / f"{i}.jpg")
        img.save(paths[-1], quality=92)
    be = open_backend(default_model_path(), "onnxruntime-cpu")
    with be:
        threads = list(score_files(be, paths, batch_size=8, decode="threads", workers=2))
        procs = list(score_files(be, paths, batch_size=8, decode="processes", workers=2))
    assert threads == procs
    assert sum(r.status == "no_face" for r in threads) == 3 and len(threads) == 3 * 2 + 3


def test_the_bundled_model_crops_faces_by_default():
    from dfx.engine.artifact import read_onnx_info
    from dfx.engine.default_model import default_model_path

    faces = read_onnx_info(default_model_path()).spec.faces
    assert faces is not None and faces.source == "precropped" and 1.0 < faces.scale < 1.6


def test_rows_serialise_in_every_format(face_model, tmp_path):
    path = scene(tmp_path / "a.png", [(10, 10, 50)])
    for fmt in ("table", "csv", "jsonl", "json"):
        buf = io.StringIO()
        scan([path], engine=face_model, backend="onnxruntime-cpu", fmt=fmt, stdout=buf, progress=False,
             decode="threads")
        text = buf.getvalue()
        assert "a.png" in text
        if fmt == "json":
            rows = json.loads(text)
            assert rows[0]["box"] == [10, 10, 60, 60] and rows[1]["faces"] == 1


def test_every_bad_file_gets_the_same_row_with_faces_on_and_off(face_model, bad_corpus):
    """Hostile inputs: the same error status whatever the face mode; decodable files without a face: no_face."""
    from tests.conftest import EXPECTED_STATUS

    files = sorted(bad_corpus.values())
    case = {str(p): name for name, p in bad_corpus.items()}
    with open_backend(face_model, "onnxruntime-cpu") as be:
        off = {case[r.path]: r.status for r in score_files(be, files, decode="threads", faces="off")}
        on = {case[r.path]: r.status for r in score_files(be, files, decode="threads", faces="on") if r.face is None}
    assert set(on) == set(off) == set(bad_corpus)
    for name, status in off.items():
        assert on[name] == (status if status != "ok" else "no_face"), name  # toy images hold no marker face
    for name, status in EXPECTED_STATUS.items():
        assert on[name] == status


def test_faces_are_found_the_right_way_up_in_exif_rotated_photos(face_model, tmp_path):
    img = Image.new("RGB", (120, 80), (40, 90, 140))
    img.paste((255, 0, 0), (10, 20, 50, 60))  # stored: a face at x 10–50, y 20–60
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: 80 wide, 120 tall
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    with open_backend(face_model, "onnxruntime-cpu") as be:
        face = list(score_files(be, [tmp_path / "r.jpg"], decode="threads"))[0]
    x0, y0, x1, y1 = face.box
    assert face.face == 0 and 16 <= x0 <= 24 and 6 <= y0 <= 14 and 56 <= x1 <= 64 and 46 <= y1 <= 54

import csv
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from dfx.engine.backends.base import Backend
from dfx.engine.cli import main
from dfx.engine.pipeline import score_files
from dfx.engine.select import open_backend

from ..conftest import EXPECTED_STATUS

CPU = "onnxruntime-cpu"  # tests that compare against CPU scores pin it; a GPU machine would pick CUDA


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_every_input_gets_a_row_and_failures_exit_2(bad_corpus, tiny_onnx, tmp_path):
    out = tmp_path / "scores.csv"
    r = _run(bad_corpus["rgb"].parent, "--engine", tiny_onnx, "-o", out)
    assert r.exit_code == 2, r.output
    rows = {row["path"]: row for row in csv.DictReader(out.open())}
    assert set(rows) == {str(p) for p in bad_corpus.values()}
    for case, path in bad_corpus.items():
        row = rows[str(path)]
        if case in EXPECTED_STATUS:
            assert (row["status"], row["score"], row["label"]) == (EXPECTED_STATUS[case], "", ""), case
            assert row["error"]
        else:
            assert row["status"] == "ok" and 0.0 <= float(row["score"]) <= 1.0, case
            assert row["label"] == ("fake" if float(row["score"]) >= 0.5 else "real")
    assert "4 errors" in r.output


def test_all_good_exits_0_and_formats_share_one_schema(bad_corpus, tiny_onnx, tmp_path):
    good = [bad_corpus[k] for k in ("rgb", "cmyk", "gray16")]
    results = {}
    for fmt in ("csv", "jsonl", "json"):
        out = tmp_path / f"s.{fmt}"
        assert _run(*good, "--engine", tiny_onnx, "-o", out).exit_code == 0
        text = out.read_text()
        if fmt == "csv":
            rows = list(csv.DictReader(text.splitlines()))
            rows = [r | {"score": float(r["score"]), "error": r["error"]} for r in rows]
        elif fmt == "jsonl":
            rows = [json.loads(x) for x in text.splitlines()]
        else:
            rows = json.loads(text)
        assert [list(r) for r in rows] == [["path", "score", "label", "status", "error"]] * 3
        results[fmt] = [(r["path"], r["score"], r["label"]) for r in rows]
    assert results["csv"] == results["jsonl"] == results["json"]


def test_table_on_stdout_and_threshold_override(bad_corpus, tiny_onnx):
    r = _run(bad_corpus["rgb"], bad_corpus["rgba"], "--engine", tiny_onnx, "--threshold", "0")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["score", "label", "status", "path"]
    assert all(" fake " in line for line in lines[1:3])


def test_resume_skips_scored_paths_and_repairs_a_torn_line(bad_corpus, tiny_onnx, tmp_path):
    out = tmp_path / "s.jsonl"
    _run(bad_corpus["rgb"], bad_corpus["cmyk"], "--engine", tiny_onnx, "-o", out)
    first = out.read_text().splitlines()
    with out.open("a") as f:
        f.write('{"path": "torn')  # a crash in the middle of a row
    r = _run(bad_corpus["rgb"].parent, "--engine", tiny_onnx, "-o", out, "--resume")
    assert r.exit_code == 2
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    paths = [x["path"] for x in rows]
    assert out.read_text().splitlines()[:2] == first
    assert len(paths) == len(set(paths)) == len(bad_corpus)
    assert "2 already in the output" in r.output


def test_resume_refuses_to_mix_models_or_thresholds(bad_corpus, tiny_onnx, tmp_path):
    out, record = tmp_path / "s.csv", tmp_path / "s.csv.dfx.json"
    assert _run(bad_corpus["rgb"], "--engine", tiny_onnx, "-o", out).exit_code == 0
    written = json.loads(record.read_text())
    assert written["model"] == "meso4" and written["artifact"] == str(tiny_onnx)
    before = out.read_text()
    r = _run(bad_corpus["cmyk"], "-o", out, "--resume")  # the bundled model is another meso4
    assert r.exit_code == 1 and "another model" in r.output and str(tiny_onnx) in r.output
    r = _run(bad_corpus["cmyk"], "--engine", tiny_onnx, "-o", out, "--resume", "--threshold", "0.99")
    assert r.exit_code == 1 and f"--threshold {written['threshold']}" in r.output
    assert out.read_text() == before  # refused before a row was written
    # the same model from another file (its FP16 ONNX or engine carry the same record) may resume
    copy = tmp_path / "elsewhere.onnx"
    copy.write_bytes(tiny_onnx.read_bytes())
    assert _run(bad_corpus["cmyk"], "--engine", copy, "-o", out, "--resume").exit_code == 0
    # an output without a record (written by hand, or by an older dfx) resumes with a warning
    record.unlink()
    r = _run(bad_corpus["gray16"], "--engine", tiny_onnx, "-o", out, "--resume")
    assert r.exit_code == 0 and "no record of the model" in r.output
    assert len(list(csv.DictReader(out.open()))) == 3 and record.is_file()


@pytest.mark.parametrize("decode", ["threads", "processes"])
def test_interrupted_scan_keeps_its_rows_and_resumes_to_the_same_result(bad_corpus, tiny_onnx, tmp_path,
                                                                          monkeypatch, decode):
    from dfx.engine.backends.onnxruntime_backend import OnnxRuntimeCPUBackend

    good = [bad_corpus[k] for k in ("rgb", "rgb_png", "rgb_webp", "rgb_bmp", "cmyk", "grayscale", "palette")]
    whole, cut = tmp_path / "whole.csv", tmp_path / "cut.csv"
    assert _run(*good, "--engine", tiny_onnx, "--backend", CPU, "-o", whole, "-b", 2).exit_code == 0
    real_infer, calls = OnnxRuntimeCPUBackend.infer, []

    def ctrl_c_on_third_batch(self, batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_infer(self, batch)

    monkeypatch.setattr(OnnxRuntimeCPUBackend, "infer", ctrl_c_on_third_batch)
    r = _run(*good, "--engine", tiny_onnx, "--backend", CPU, "--decode", decode, "-o", cut, "-b", 2)
    assert r.exit_code == 130 and "interrupted" in r.output
    kept = list(csv.DictReader(cut.open()))
    assert len(kept) == 4 and cut.read_text().endswith("\n")  # two whole batches, no torn row
    monkeypatch.setattr(OnnxRuntimeCPUBackend, "infer", real_infer)
    r = _run(*good, "--engine", tiny_onnx, "--backend", CPU, "--decode", decode, "-o", cut, "-b", 2, "--resume")
    assert r.exit_code == 0 and "4 already in the output" in r.output
    assert cut.read_text() == whole.read_text()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"dfx-decode-{os.getpid()}-")]


def test_resume_refuses_json(tiny_onnx, bad_corpus, tmp_path):
    out = tmp_path / "s.json"
    out.write_text("[]")
    r = _run(bad_corpus["rgb"], "--engine", tiny_onnx, "-o", out, "--resume")
    assert r.exit_code == 1 and "csv or .jsonl" in r.output


def test_user_errors_exit_1_with_one_line(tiny_onnx, tmp_path):
    r = _run(tmp_path / "missing", "--engine", tiny_onnx)
    assert r.exit_code == 1 and r.output.strip() == f"error: {tmp_path / 'missing'}: no such file or folder"
    r = _run(tmp_path, "--engine", tiny_onnx, "-o", tmp_path / "x.txt")
    assert r.exit_code == 1 and "cannot tell the format" in r.output


def test_recursive_and_symlink_loops(tiny_onnx, bad_corpus, tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(bad_corpus["rgb"].read_bytes())
    (root / "sub" / "b.png").write_bytes(bad_corpus["rgb_png"].read_bytes())
    os.symlink(root, root / "sub" / "loop")
    out = tmp_path / "s.csv"
    assert _run(root, "--engine", tiny_onnx, "-o", out).exit_code == 0
    assert [r["path"] for r in csv.DictReader(out.open())] == [str(root / "a.jpg")]
    r = _run(root, "--engine", tiny_onnx, "-o", out, "-r")
    assert r.exit_code == 1 and "--resume" in r.output and "--overwrite" in r.output  # never replaced silently
    assert _run(root, "--engine", tiny_onnx, "-o", out, "-r", "--overwrite").exit_code == 0
    assert [r["path"] for r in csv.DictReader(out.open())] == [str(root / "a.jpg"), str(root / "sub" / "b.png")]


class FixedProfile(Backend):
    """An onnxruntime backend pretending to be an engine with a fixed batch profile of exactly 4."""

    def __init__(self, inner):
        super().__init__(inner.path)
        self.inner, self.info, self.min_batch, self.max_batch, self.calls = inner, inner.info, 4, 4, []

    def activate(self):
        pass

    def infer(self, batch):
        self.calls.append(len(batch))
        return self.inner.infer(batch)


def test_partial_last_batch_on_fixed_profile(tiny_onnx, bad_corpus):
    files = [bad_corpus[k] for k in ("rgb", "cmyk", "grayscale", "rgba", "palette", "exif_rotated")]
    with open_backend(tiny_onnx, CPU) as be:
        free = [r.score for r in score_files(be, files, batch_size=8)]
        fixed = FixedProfile(be)
        rows = list(score_files(fixed, files, batch_size=32))
    assert fixed.calls == [4, 4]  # 6 files → 4 + (2 padded to 4); batch_size clamped to the profile
    np.testing.assert_allclose([r.score for r in rows], free, rtol=1e-6)


@pytest.mark.parametrize("batch_size,threads", [(5, 1), (7, 2), (32, 3)])
def test_each_file_keeps_its_own_row_whatever_the_batching(tiny_onnx, bad_corpus, batch_size, threads):
    """Decode tasks cover runs of slots: good and bad files interleaved must still land in their own rows."""
    files = sorted(bad_corpus.values()) * 2
    with open_backend(tiny_onnx, CPU) as be:
        one_by_one = [(r.path, r.status, r.score) for f in files for r in score_files(be, [f], 1, 1)]
        rows = [(r.path, r.status, r.score) for r in score_files(be, files, batch_size, threads)]
    assert [r[:2] for r in rows] == [r[:2] for r in one_by_one]
    np.testing.assert_allclose([r[2] or -1 for r in rows], [r[2] or -1 for r in one_by_one], rtol=1e-5)


@pytest.mark.parametrize("decode", ["threads", "processes"])
def test_reads_ahead_a_bounded_number_of_files(tiny_onnx, bad_corpus, decode):
    """Memory stays flat: the pipeline pulls at most depth + 1 batches from the input before yielding rows."""
    pulled = 0

    def many():  # finite, so a pipeline that lists its input first fails the assertion instead of hanging
        nonlocal pulled
        for _ in range(10_000):
            pulled += 1
            yield bad_corpus["rgb"]

    with open_backend(tiny_onnx, CPU) as be:
        rows = score_files(be, many(), batch_size=4, workers=2, depth=2, decode=decode)
        for _ in range(20):
            next(rows)
            assert pulled <= 20 + (2 + 1) * 4
        rows.close()


def test_runtime_scores_equal_training_evaluation(tiny_checkpoint, tiny_onnx, bad_corpus):
    """The spec really is shared: PyTorch on training's eval path == dfx-infer on the exported ONNX."""
    pytest.importorskip("torch")
    from dfx.training.checkpoint import load_checkpoint
    from dfx.training.trainer import predict

    files = [bad_corpus[k] for k in ("rgb", "cmyk", "gray16", "exif_rotated", "animated", "palette_transparent")]
    model, info = load_checkpoint(tiny_checkpoint)
    train_side = predict(model, files, info.spec)
    with open_backend(tiny_onnx, CPU) as be:
        runtime = [r.score for r in score_files(be, files, batch_size=4)]
    np.testing.assert_allclose(runtime, train_side, atol=1e-5)


def test_overlapping_inputs_give_one_row_per_file(bad_corpus, tiny_onnx, tmp_path):
    out = tmp_path / "s.jsonl"
    folder = bad_corpus["rgb"].parent
    _run(folder, bad_corpus["rgb"], folder / "." / "rgb.jpg", "--engine", tiny_onnx, "-o", out)
    paths = [json.loads(x)["path"] for x in out.read_text().splitlines()]
    assert len(paths) == len(set(paths)) == len(bad_corpus)


def test_files_passed_over_in_folders_are_counted_and_named_files_are_read_whatever_their_name(
        tmp_path, bad_corpus, tiny_onnx):
    folder = tmp_path / "crawl"
    (folder / "sub").mkdir(parents=True)
    jpeg = bad_corpus["rgb"].read_bytes()
    (folder / "a.jpg").write_bytes(jpeg)
    (folder / "b.jfif").write_bytes(jpeg)  # Windows' name for a downloaded JPEG: an image extension
    (folder / "3f9a7c").write_bytes(jpeg)  # a crawl's file without an extension
    (folder / "notes.txt").write_text("x")
    (folder / "sub" / "c.JPG").write_bytes(jpeg)
    (folder / "sub" / "readme.txt").write_text("y")
    r = _run(folder, "-r", "--engine", tiny_onnx, "-o", tmp_path / "s.csv")
    assert r.exit_code == 0 and "scored 3 images" in r.output
    assert "3 other files in the folders not looked at (.txt 2, no extension 1)" in r.output
    r = _run(folder / "3f9a7c", "--engine", tiny_onnx)
    assert r.exit_code == 0 and "scored 1 image:" in r.output and "not looked at" not in r.output


def test_no_images_exits_1_and_says_why(tmp_path, bad_corpus):
    nested = tmp_path / "nested"
    (nested / "df").mkdir(parents=True)
    (nested / "df" / "a.jpg").write_bytes(bad_corpus["rgb"].read_bytes())
    r = _run(nested)
    assert r.exit_code == 1 and "add --recursive" in r.output
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"\x00" * 64)
    r = _run(videos, "-o", tmp_path / "out.csv", "--faces", "off")
    assert r.exit_code == 1 and "videos are scored by their faces" in r.output and "--faces on" in r.output
    assert not (tmp_path / "out.csv").exists()  # stopped before writing anything
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _run(empty, "-r")
    assert r.exit_code == 1 and "no images to score" in r.output


def test_missing_engine_says_where_exports_go_and_that_the_bundled_model_needs_none(tmp_path, bad_corpus):
    r = _run(bad_corpus["rgb"], "--engine", tmp_path / "xception.plan")
    assert r.exit_code == 1
    assert "dfx-export" in r.output and "weights/<model>/" in r.output and "Leave out --engine" in r.output


def test_progress_bar_has_a_total_when_counting_is_cheap(bad_corpus, tiny_onnx, tmp_path, capsys):
    from dfx.engine.scan import scan

    scan([bad_corpus["rgb"].parent], engine=tiny_onnx, backend=CPU, output=str(tmp_path / "s.csv"), progress=True)
    n = len(bad_corpus)
    assert f"{n}/{n}" in capsys.readouterr().err

"""dfx-infer against hostile inputs, outputs and artifacts, generated here: every case either scores every file
once or stops with one line and exit 1 — never a traceback, a hang, a silent wrong result or a damaged file.

Tests run the CLI in-process with ``catch_exceptions=False``, so any traceback fails the test outright.
"""

import csv
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from dfx.engine.cli import main
from dfx.engine.output_record import output_lock

CPU = "onnxruntime-cpu"


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(r, code=1):
    assert r.exit_code == code, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    return lines[0]


@pytest.fixture
def folder(bad_corpus, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for name in ("a.jpg", "b.png"):
        shutil.copy(bad_corpus["rgb" if name.endswith("jpg") else "rgb_png"], d / name)
    return d


# --- file names and folders -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "table"])
def test_file_names_that_are_not_utf8_get_rows_in_every_format_and_resume(folder, tiny_onnx, tmp_path, fmt):
    odd = os.fsdecode(b"caf\xe9-\xff.jpg")  # Latin-1 and an invalid byte: not UTF-8
    shutil.copy(folder / "a.jpg", folder / odd)
    if fmt == "table":
        r = _run(folder, "--engine", tiny_onnx, "--backend", CPU)
        assert r.exit_code == 0 and "caf\\xe9-\\xff.jpg" in r.output
        return
    out = tmp_path / f"s.{fmt}"
    r = _run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out)
    assert r.exit_code == 0, r.output
    if fmt == "json":
        assert len(json.loads(out.read_text())) == 3
        return
    before = out.read_bytes()
    assert before.count(b"\n") == 3 + (fmt == "csv")
    r = _run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "--resume")
    assert r.exit_code == 0 and "3 already in the output" in r.output
    assert out.read_bytes() == before


def test_the_same_files_spelled_differently_never_get_two_rows(folder, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.chdir(folder.parent)
    out = tmp_path / "s.csv"
    assert _run("photos", "--engine", tiny_onnx, "--backend", CPU, "-o", out).exit_code == 0
    for spelling in (folder, "./photos/../photos", f"{folder}/"):
        r = _run(spelling, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "--resume")
        assert r.exit_code == 0 and "2 already in the output" in r.output, spelling
    r = _run("photos", folder, "photos/a.jpg", "--engine", tiny_onnx, "--backend", CPU, "-o", tmp_path / "t.csv")
    assert r.exit_code == 0 and len(list(csv.DictReader((tmp_path / "t.csv").open()))) == 2
    assert len(list(csv.DictReader(out.open()))) == 2


def test_a_folder_that_cannot_be_listed_gets_an_unreadable_row(folder, tiny_onnx, tmp_path, monkeypatch):
    from dfx.engine import inputs

    locked = folder / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)  # root ignores chmod 000, so the refusal is simulated
    out = tmp_path / "s.csv"
    r = _run(folder, "-r", "--engine", tiny_onnx, "--backend", CPU, "-o", out)
    assert r.exit_code == 2 and "1 error (1 unreadable)" in r.output
    rows = {x["path"]: x for x in csv.DictReader(out.open())}
    assert rows[str(locked)]["status"] == "unreadable" and "could not be listed" in rows[str(locked)]["error"]


def test_a_folder_deeper_than_path_max_gets_a_row(folder, tiny_onnx, tmp_path):
    deep, fd = folder / "deep", None
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    try:
        for _ in range(24):  # 24 × 200 characters: past PATH_MAX (4096), built relative to a folder descriptor
            os.mkdir("d" * 200, dir_fd=fd)
            nxt = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    out = tmp_path / "s.jsonl"
    r = _run(folder, "-r", "--engine", tiny_onnx, "--backend", CPU, "-o", out)
    assert r.exit_code == 2, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 3 and [x["status"] for x in rows if x["status"] != "ok"] == ["unreadable"]


def test_special_files_are_refused_without_being_opened(folder, tiny_onnx, tmp_path):
    os.mkfifo(folder / "pipe.jpg")  # opening a FIFO for reading blocks until a writer comes: never
    os.symlink("/dev/zero", folder / "zero.png")
    out = tmp_path / "s.csv"
    r = _run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "--decode", "threads")
    assert r.exit_code == 2
    rows = {os.path.basename(x["path"]): x for x in csv.DictReader(out.open())}
    assert rows["pipe.jpg"]["status"] == rows["zero.png"]["status"] == "not_an_image"
    assert "not a regular file" in rows["pipe.jpg"]["error"] and rows["a.jpg"]["status"] == "ok"


# --- outputs ----------------------------------------------------------------------------------------------------
def test_an_output_that_would_destroy_an_input_or_hang_is_refused(folder, tiny_onnx, tmp_path):
    image = folder / "a.jpg"
    before = image.read_bytes()
    for out, fmt in ((image, "csv"), (tmp_path / "new.png", "jsonl")):
        line = _one_line_error(_run(image, "--engine", tiny_onnx, "-o", out, "--format", fmt))
        assert "named like an image" in line
    assert image.read_bytes() == before and not (tmp_path / "new.png").exists()
    os.mkfifo(tmp_path / "fifo.csv")
    assert "not a regular file" in _one_line_error(_run(image, "--engine", tiny_onnx, "-o", tmp_path / "fifo.csv"))
    r = _run(image, "--engine", tiny_onnx, "-o", tmp_path, "--format", "csv")  # click's own check: usage error
    assert r.exit_code == 1 and "is a directory" in r.output
    assert "cannot write" in _one_line_error(_run(image, "--engine", tiny_onnx, "-o", "/proc/dfx-scores.csv"))


def test_two_runs_on_one_output_cannot_interleave(folder, tiny_onnx, tmp_path):
    out = tmp_path / "s.csv"
    assert _run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out).exit_code == 0
    before = out.read_text()
    with output_lock(out):  # another dfx-infer in the middle of writing it
        line = _one_line_error(_run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "--resume"))
    assert "another dfx-infer is writing" in line and out.read_text() == before


@pytest.mark.parametrize("damage", ["foreign_header", "garbage_line", "torn_multiline_record"])
def test_a_damaged_output_is_not_resumed_into(folder, tiny_onnx, tmp_path, damage):
    out = tmp_path / "s.csv"
    assert _run(folder / "a.jpg", "--engine", tiny_onnx, "--backend", CPU, "-o", out).exit_code == 0
    text = out.read_text()
    text = {"foreign_header": "name,value\nx,1\n",
            "garbage_line": text + "\x00\x01 not,a row\n",
            "torn_multiline_record": text + '"/x/y.jpg,0.5\nreal,ok,\n'}[damage]
    out.write_text(text)
    line = _one_line_error(_run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "--resume"))
    assert str(out) in line and out.read_text() == text


def test_a_full_disk_mid_scan_is_one_line_and_keeps_the_flushed_rows(folder, tiny_onnx, tmp_path, monkeypatch):
    from dfx.engine import writers

    for i in range(6):
        shutil.copy(folder / "a.jpg", folder / f"c{i}.jpg")
    real_write, written = writers._Csv.write, []

    def write(self, row):
        if len(written) == 5:
            raise OSError(28, "No space left on device")
        written.append(row)
        real_write(self, row)

    monkeypatch.setattr(writers._Csv, "write", write)
    out = tmp_path / "s.csv"
    line = _one_line_error(_run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "-b", "2"))
    assert "No space left on device" in line and "--resume" in line
    kept = list(csv.DictReader(out.open()))
    assert len(kept) >= 4 and out.read_text().endswith("\n")  # whole rows of the flushed batches
    monkeypatch.setattr(writers._Csv, "write", real_write)
    r = _run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "-b", "2", "--resume")
    assert r.exit_code == 0 and len(list(csv.DictReader(out.open()))) == 8


# --- thresholds, models and their records -----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5", "abc"])
def test_thresholds_that_are_not_probabilities_are_refused(folder, tiny_onnx, value):
    r = _run(folder, "--engine", tiny_onnx, "--threshold", value)
    assert r.exit_code == 1 and "Traceback" not in r.output and "threshold" in r.output.lower()


def _onnx_with_record(src, dst, edit=None, raw=None, nan_output=False):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == "dfx":
            if raw is not None:
                prop.value = raw
            elif edit is not None:
                record = json.loads(prop.value)
                edit(record)
                prop.value = json.dumps(record)
    if nan_output:  # logit × NaN: a model whose output is not a number
        graph = model.graph
        out = graph.output[0].name
        graph.node[-1].output[0] = "pre_nan"
        graph.initializer.append(helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]))
        graph.node.append(helper.make_node("Mul", ["pre_nan", "nan"], [out]))
    onnx.save(model, str(dst))
    return dst


def test_a_model_that_outputs_nan_gives_error_rows_never_real(folder, tiny_onnx, tmp_path):
    model = _onnx_with_record(tiny_onnx, tmp_path / "nan.onnx", nan_output=True)
    out = tmp_path / "s.csv"
    r = _run(folder, "--engine", model, "--backend", CPU, "-o", out)
    assert r.exit_code == 2 and "2 model_error" in r.output
    assert {(x["status"], x["score"], x["label"]) for x in csv.DictReader(out.open())} == {("model_error", "", "")}


@pytest.mark.parametrize("case", ["threshold_nan", "threshold_text", "threshold_2", "record_is_a_list",
                                  "spec_size_huge", "spec_size_text", "std_zero", "labels_swapped", "not_json"])
def test_damaged_model_records_are_one_line_errors(folder, tiny_onnx, tmp_path, case):
    edits = {
        "threshold_nan": lambda r: r.update(threshold=float("nan")),
        "threshold_text": lambda r: r.update(threshold="high"),
        "threshold_2": lambda r: r.update(threshold=2),
        "spec_size_huge": lambda r: r["spec"].update(input_size=[100000, 100000]),
        "spec_size_text": lambda r: r["spec"].update(input_size="big"),
        "std_zero": lambda r: r["spec"].update(std=[0, 1, 1]),
        "labels_swapped": lambda r: r.update(labels={"0": "fake", "1": "real"}),
    }
    raw = {"record_is_a_list": "[1, 2]", "not_json": "{"}.get(case)
    model = _onnx_with_record(tiny_onnx, tmp_path / "m.onnx", edit=edits.get(case), raw=raw)
    line = _one_line_error(_run(folder, "--engine", model, "--backend", CPU, "-o", tmp_path / "s.csv"))
    assert "metadata" in line or "labels" in line
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("case", ["info_is_text", "profile_missing_min", "profile_reversed", "not_json",
                                  "fallback_elsewhere"])
def test_damaged_engine_sidecars_are_one_line_errors(tiny_onnx, tmp_path, folder, case):
    from .._fakes import fake_plan

    plan = fake_plan(tmp_path, tiny_onnx)
    side = plan.with_name(plan.name + ".json")
    d = json.loads(side.read_text())
    if case == "info_is_text":
        d["info"] = "meso4"
    elif case == "profile_missing_min":
        del d["profile"]["min"]
    elif case == "profile_reversed":
        d["profile"] = {"min": 64, "opt": 8, "max": 1}
    elif case == "fallback_elsewhere":
        d["onnx"] = str(tiny_onnx)
    side.write_text("{" if case == "not_json" else json.dumps(d))
    line = _one_line_error(_run(folder, "--engine", plan))
    assert str(side) in line or "beside the engine" in line


def test_click_usage_errors_exit_1_not_2(folder):
    r = _run(folder, "--no-such-option")
    assert r.exit_code == 1 and "No such option" in r.output
    r = _run(folder, "--batch-size", "0")
    assert r.exit_code == 1


@pytest.mark.parametrize("case", ["fixed_batch_1", "output_n_by_2", "input_size_mismatch"])
def test_onnx_files_of_another_shape_score_or_are_refused_in_one_line(folder, tiny_onnx, tmp_path, case):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    meta = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    batch, hw, out_dims = {"fixed_batch_1": (1, 32, 1), "output_n_by_2": ("N", 32, 2),
                           "input_size_mismatch": ("N", 128, 1)}[case]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])
    y = helper.make_tensor_value_info("logit", TensorProto.FLOAT, [batch, out_dims])
    nodes = [helper.make_node("ReduceMean", ["input"], ["hw"], axes=[2, 3], keepdims=0)]  # (N, 3)
    nodes.append(helper.make_node("ReduceMean", ["hw"], ["logit"], axes=[1], keepdims=1) if out_dims == 1 else
                 helper.make_node("Slice", ["hw", "s", "e", "a"], ["logit"]))
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 2), ("a", 1))]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 13)],
                              ir_version=8)  # what onnxruntime ≤ 1.31 reads too (newer onnx writes 14)
    helper.set_model_props(model, meta)
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "s.csv"
    r = _run(folder, "--engine", path, "--backend", CPU, "-o", out)
    if case == "fixed_batch_1":  # runs one image per call instead of failing on a batch of 32
        assert r.exit_code == 0 and len(list(csv.DictReader(out.open()))) == 2
    else:
        assert ("one logit per image" if case == "output_n_by_2" else "input is 128x128") in _one_line_error(r)


def test_a_batch_size_that_cannot_fit_in_memory_is_one_line_before_any_output(folder, tiny_onnx, tmp_path):
    out = tmp_path / "s.csv"
    line = _one_line_error(_run(folder, "--engine", tiny_onnx, "--backend", CPU, "-b", "10000000000", "-o", out))
    assert "use a smaller --batch-size" in line and not out.exists()
    r = _run(folder, "--engine", tiny_onnx, "--threads", "100000")
    assert r.exit_code == 1 and "--threads" in r.output


def test_control_characters_in_names_cannot_split_rows(folder, tiny_onnx, tmp_path):
    shutil.copy(folder / "a.jpg", folder / "evil\nname\r.jpg")
    r = _run(folder, "--engine", tiny_onnx, "--backend", CPU)
    assert r.exit_code == 0 and "evil\\nname\\r.jpg" in r.output
    out = tmp_path / "s.csv"
    assert _run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out).exit_code == 0
    assert {x["path"] for x in csv.DictReader(out.open(newline=""))} >= {str(folder / "evil\nname\r.jpg")}
    r = _run(folder, "--engine", tiny_onnx, "--backend", CPU, "-o", out, "--resume")
    assert r.exit_code == 0 and "3 already in the output" in r.output

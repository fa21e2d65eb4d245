"""Decode workers: threads and processes give the same rows; a crashing or hanging file costs only its own row;
nothing is left in /dev/shm."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dfx.engine.cli import main
from dfx.engine.decode import Status
from dfx.engine.decode_pool import ThreadDecodePool, decode_into, open_decode_pool, resolve_decode_mode
from dfx.engine.decode_processes import SHM_PREFIX, ProcessDecodePool
from dfx.engine.errors import DfxError
from dfx.engine.pipeline import score_files
from dfx.engine.select import open_backend
from dfx.engine.spec import PreprocessSpec

from ._decode_faults import faulty_load

CPU = "onnxruntime-cpu"


def _our_shm() -> list[str]:
    prefix = f"{SHM_PREFIX}{os.getpid()}-"
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)] if os.path.isdir("/dev/shm") else []


@pytest.fixture
def faulty_folder(bad_corpus, tmp_path):
    """Good and bad images around one file that crashes its decoder and one that hangs it."""
    folder = tmp_path / "faulty"
    folder.mkdir()
    for name in ("a_rgb.jpg", "b_crash.jpg", "c_cmyk.jpg", "d_hang.jpg", "e_gray.png"):
        shutil.copy(bad_corpus["rgb"], folder / name)
    return folder


def test_scores_are_byte_identical_across_decode_modes_and_worker_counts(bad_corpus, tiny_onnx, tmp_path):
    """Every good and every bad input gets the same row (score, label, status, message) in every mode."""
    outputs = {}
    for decode, workers in (("threads", 1), ("threads", 3), ("processes", 1), ("processes", 2)):
        out = tmp_path / f"{decode}{workers}.csv"
        r = CliRunner().invoke(main, [str(bad_corpus["rgb"].parent), "--engine", str(tiny_onnx), "--backend", CPU,
                                      "-o", str(out), "-b", "5", "--decode", decode, "--threads", str(workers)])
        assert r.exit_code == 2, r.output  # the corpus has undecodable files
        assert f"{decode} decoding" in r.output
        outputs[(decode, workers)] = out.read_bytes()
    assert len(set(outputs.values())) == 1
    rows = list(csv.DictReader(outputs[("threads", 1)].decode().splitlines()))
    assert len(rows) == len(bad_corpus) and {r["status"] for r in rows} > {"ok", "truncated"}
    assert _our_shm() == []


def test_a_crashing_or_hanging_file_costs_only_its_own_row(faulty_folder, tiny_onnx):
    spec = PreprocessSpec(input_size=(32, 32))
    files = sorted(faulty_folder.iterdir())
    with ProcessDecodePool(spec, 2, 8, workers=2, load=faulty_load, file_timeout=1.0) as pool:
        errors = pool.submit(files[:3], 0, 0).result(timeout=60) + pool.submit(files[3:], 1, 0).result(timeout=60)
        by_name = {f.name: e for f, e in zip(files, errors)}
        assert by_name["b_crash.jpg"].status == Status.DECODE_ERROR
        assert "SIGSEGV" in by_name["b_crash.jpg"].message
        hang = by_name["d_hang.jpg"]
        assert hang.status == Status.DECODE_ERROR and "longer than 1 s" in hang.message
        good = [f for f, e in zip(files, errors) if e is None]
        assert [f.name for f in good] == ["a_rgb.jpg", "c_cmyk.jpg", "e_gray.png"]
        # the files after the crash were decoded by a replacement worker into the right slots
        want = np.empty((3, 32, 32), np.float32)
        assert decode_into(files[0], spec, want, 10**8) is None
        np.testing.assert_array_equal(pool.buffers[0, 0], want)
        np.testing.assert_array_equal(pool.buffers[0, 2], pool.buffers[0, 0])
        np.testing.assert_array_equal(pool.buffers[1, 1], pool.buffers[0, 0])
        assert pool.submit(files[:1], 0, 5).result(timeout=30) == [None]  # the pool still works
        assert len(pool._workers) == 2 and all(w.proc.is_alive() for w in pool._workers)
    assert _our_shm() == []


def test_crash_row_in_a_scan(faulty_folder, tiny_onnx):
    files = [f for f in sorted(faulty_folder.iterdir()) if "hang" not in f.name]
    with open_backend(tiny_onnx, CPU) as be:
        rows = list(score_files(be, files, batch_size=2, workers=2, decode="processes", load=faulty_load))
        want = list(score_files(be, [f for f in files if "crash" not in f.name], batch_size=2, decode="threads"))
    assert [r.path for r in rows] == [str(f) for f in files]
    crash = next(r for r in rows if r.path.endswith("b_crash.jpg"))
    assert (crash.status, crash.score) == (Status.DECODE_ERROR, None)
    assert [r for r in rows if r is not crash] == want


def test_closing_early_leaves_nothing_in_dev_shm(tiny_onnx, bad_corpus):
    with open_backend(tiny_onnx, CPU) as be:
        rows = score_files(be, [bad_corpus["rgb"]] * 50, batch_size=4, workers=2, decode="processes")
        next(rows)
        assert len(_our_shm()) == 1
        rows.close()  # what Ctrl-C or an error in the consumer does to the generator
    assert _our_shm() == []


def test_shared_memory_too_small_is_a_clear_error_and_auto_falls_back(monkeypatch):
    import dfx.engine.decode_processes as dp

    spec = PreprocessSpec(input_size=(32, 32))
    monkeypatch.setattr(dp.os, "statvfs", lambda _: type("S", (), {"f_bavail": 1, "f_frsize": 4096})())
    with pytest.raises(DfxError, match="shared memory.*--decode threads"):
        ProcessDecodePool(spec, 2, 8, workers=1)
    monkeypatch.setattr("dfx.engine.decode_pool.resolve_decode_mode", lambda mode="auto", faces=False: "processes")
    with open_decode_pool("auto", spec, 2, 8, workers=1) as pool:
        assert isinstance(pool, ThreadDecodePool)
    assert _our_shm() == []


def test_auto_rule_and_unknown_mode(monkeypatch):
    monkeypatch.setattr("dfx.engine.decode_pool.usable_cpus", lambda: 2)
    assert resolve_decode_mode("auto") == "threads"
    assert resolve_decode_mode("auto", faces=True) == "processes"
    assert resolve_decode_mode("threads", faces=True) == "threads"
    monkeypatch.setattr("dfx.engine.decode_pool.usable_cpus", lambda: 16)
    assert resolve_decode_mode("auto") == "processes"
    assert resolve_decode_mode("threads") == "threads"
    with pytest.raises(DfxError, match="valid: auto, threads, processes"):
        resolve_decode_mode("gpu")


def test_paths_that_are_not_utf8_survive_the_trip_to_a_worker(tmp_path, bad_corpus):
    name = os.fsdecode(b"caf\xe9.jpg")  # latin-1 bytes: a surrogate-escaped str in Python
    path = tmp_path / name
    shutil.copy(bad_corpus["rgb"], path)
    spec = PreprocessSpec(input_size=(32, 32))
    with ProcessDecodePool(spec, 1, 2, workers=1) as pool:
        assert pool.submit([Path(path)], 0, 0).result(timeout=30) == [None]


def test_workers_that_cannot_start_are_an_error_not_an_endless_respawn(tmp_path, monkeypatch):
    (tmp_path / "gone_soon.py").write_text("def load(path, spec, out, max_pixels):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_soon

    (tmp_path / "gone_soon.py").unlink()  # workers cannot import the function they are given
    with pytest.raises(DfxError, match="keep dying .* exited with status 1"):
        ProcessDecodePool(PreprocessSpec(input_size=(32, 32)), 1, 2, workers=2, load=gone_soon.load)
    assert _our_shm() == []


def test_a_scan_on_auto_falls_back_to_threads_when_worker_processes_cannot_start(tiny_onnx, bad_corpus, tmp_path,
                                                                                 monkeypatch, caplog):
    from dfx.engine.scan import scan

    def cannot_start(*args, **kwargs):
        raise DfxError("decode worker processes keep dying (the last one exited with status 1)")

    monkeypatch.setattr("dfx.engine.decode_pool.usable_cpus", lambda: 16)  # auto picks processes
    monkeypatch.setattr(ProcessDecodePool, "__init__", cannot_start)
    out = tmp_path / "s.csv"
    s = scan([bad_corpus["rgb"]], engine=tiny_onnx, backend=CPU, output=str(out), progress=False)
    assert s.scored == 1
    assert "decoding on threads instead" in caplog.text
    with pytest.raises(DfxError, match="keep dying"):  # asked for by name: no silent substitute
        scan([bad_corpus["rgb"]], engine=tiny_onnx, backend=CPU, output=str(tmp_path / "p.csv"), progress=False,
             decode="processes")


@pytest.mark.parametrize("signame, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_or_sigterm_on_a_process_scan_keeps_whole_batches_and_cleans_up(tiny_onnx, tmp_path, signame, code,
                                                                               word):
    """The signal to the whole process group, as a terminal (or a job scheduler) sends it: the parent stops
    cleanly, the workers with it."""
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image

    yy, xx = np.mgrid[0:1500, 0:1500]
    big = tmp_path / "big.png"  # PNG has no draft mode: each file costs a full decode
    Image.fromarray(np.stack([yy % 256, xx % 256, (yy + xx) % 256], -1).astype(np.uint8)).save(big)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(400):
        os.link(big, folder / f"{i:03d}.png")
    out = tmp_path / "s.csv"
    cmd = [sys.executable, "-c", "from dfx.engine.cli import main; main()", str(folder), "--engine", str(tiny_onnx),
           "--backend", CPU, "--decode", "processes", "--threads", "2", "-b", "4", "-o", str(out)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and word in err and "Traceback" not in err, err
    assert "leaked" not in err  # the resource tracker had nothing to clean up after us
    lines = out.read_text().splitlines()
    assert 1 < len(lines) < 401 and (len(lines) - 1) % 4 == 0  # header + whole batches only
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"{SHM_PREFIX}{proc.pid}-")]

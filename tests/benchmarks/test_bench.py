import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from dfx.benchmarks.bench import SCHEMA_VERSION, run_bench
from dfx.benchmarks.cli import main
from dfx.benchmarks.report import markdown, table
from dfx.engine import metrics as M

from ..conftest import write_split

ROW_KEYS = {"model", "artifact", "kind", "backend", "device", "status", "reason", "size_mb", "batch_size",
            "speedup_vs_eager", "int8_vs_fp32"}
OK_KEYS = ROW_KEYS | {"params", "latency_ms", "runs", "device_ms", "ms_per_image_p50", "images_per_s",
                      "e2e_images_per_s", "e2e_vs_compute", "accuracy"}


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("val")
    write_split(d, 6, np.random.default_rng(3))
    return d


@pytest.fixture(scope="module")
def result(tiny_checkpoint, tiny_onnx, val_dir):
    return run_bench([tiny_checkpoint, tiny_onnx], data=val_dir, batch_sizes=(1, 4), warmup_s=0.01, min_runs=3,
                     min_s=0.01)


def test_schema(result):
    assert result["schema_version"] == SCHEMA_VERSION
    assert set(result) == {"schema_version", "created", "environment", "settings", "rows", "roc"}
    assert {"cpu", "cores", "physical_cores", "gpus", "platform", "versions"} <= set(result["environment"])
    for row in result["rows"]:
        assert ROW_KEYS <= set(row)
        if row["status"] == "ok":
            assert OK_KEYS <= set(row)
            assert set(row["latency_ms"]) == {"mean", "p50", "p90", "p99"}
    json.dumps(result)  # JSON-ready throughout


def test_rows_ratios_and_skips(result):
    ok = {(r["backend"], r["batch_size"]): r for r in result["rows"] if r["status"] == "ok"}
    cpu = {k for k in ok if k[0] in ("pytorch-eager", "onnxruntime-cpu")}
    assert cpu == {("pytorch-eager", 1), ("pytorch-eager", 4), ("onnxruntime-cpu", 1), ("onnxruntime-cpu", 4)}
    for b in (1, 4):
        assert ok[("pytorch-eager", b)]["speedup_vs_eager"] == 1.0
        ratio = ok[("onnxruntime-cpu", b)]["images_per_s"] / ok[("pytorch-eager", b)]["images_per_s"]
        assert ok[("onnxruntime-cpu", b)]["speedup_vs_eager"] == pytest.approx(ratio)
    e2e = ok[("onnxruntime-cpu", 4)]
    assert e2e["e2e_images_per_s"] > 0 and e2e["e2e_vs_compute"] == pytest.approx(
        e2e["e2e_images_per_s"] / e2e["images_per_s"])
    # GPU rows: measured where a GPU is, otherwise a skipped row that says what is missing
    skipped = {r["backend"]: r["reason"] for r in result["rows"] if r["status"] == "skipped"}
    ran = {backend for backend, _ in ok}
    assert "pytorch-eager-cuda" in ran or "CUDA" in skipped["pytorch-eager-cuda"]
    assert "onnxruntime-cuda" in ran or "onnxruntime-gpu" in skipped["onnxruntime-cuda"] \
        or "CUDA" in skipped["onnxruntime-cuda"]


def test_accuracy_equals_metrics_of_dfx_infer_outputs(result, tiny_onnx, val_dir, tmp_path):
    from dfx.engine.cli import main as infer

    out = tmp_path / "scores.csv"
    r = CliRunner().invoke(infer, [str(val_dir), "--engine", str(tiny_onnx), "-r", "-o", str(out),
                                   "--backend", "onnxruntime-cpu"])
    assert r.exit_code == 0
    rows = list(csv.DictReader(out.open()))
    labels = np.array([1 if "/fake/" in x["path"] else 0 for x in rows])
    scores = np.array([float(x["score"]) for x in rows])
    bench = next(x for x in result["rows"] if x["backend"] == "onnxruntime-cpu")["accuracy"]
    expected = M.summarize(labels, scores, 0.5)
    for key in ("auc", "ap", "eer", "acc", "tpr_at_fpr_1pct"):
        assert bench[key] == pytest.approx(expected[key], abs=1e-6), key
    assert bench["n"] == len(rows)


def test_engine_without_tensorrt_is_a_skipped_row(tiny_onnx, tmp_path):
    from .._fakes import fake_plan

    plan = fake_plan(tmp_path, tiny_onnx)
    res = run_bench([plan], batch_sizes=(1,), warmup_s=0.0, min_runs=1, min_s=0.0)
    (row,) = res["rows"]
    assert row["status"] == "skipped" and row["backend"] == "tensorrt"
    assert "TensorRT" in row["reason"] or "GPU" in row["reason"]


def test_cli_writes_json_markdown_and_plot(tiny_onnx, tmp_path):
    args = ["--artifacts", str(tiny_onnx), "--batch-sizes", "1,2", "--min-runs", "2", "--min-seconds", "0",
            "--warmup-seconds", "0", "--output", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md"),
            "--plot", str(tmp_path / "b.png")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "b.json").read_text())
    assert "onnxruntime-cpu" in table(res) and markdown(res).count("(meso4) |") == len(res["rows"])
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(main, ["--batch-sizes", "0", "--artifacts", str(tiny_onnx)])
    assert r.exit_code == 1 and "positive integers" in r.output


def test_row_names_tell_artifacts_apart(tmp_path):
    from dfx.benchmarks.bench import _model_label

    assert _model_label(tmp_path / "meso4" / "meso4.fp16.onnx", "meso4") == "meso4"
    assert _model_label(tmp_path / "meso4" / "best.safetensors", "meso4") == "meso4"
    assert _model_label(tmp_path / "keras-df" / "meso4.onnx", "meso4") == "keras-df (meso4)"
    # two exports side by side in one folder (an A/B) must not share a row name
    a, b = (_model_label(tmp_path / "ab" / f"meso4-{v}.onnx", "meso4") for v in ("old", "new"))
    assert (a, b) == ("meso4-old (meso4)", "meso4-new (meso4)")


def test_unknown_backend_is_a_usage_error(tiny_onnx):
    r = CliRunner().invoke(main, ["--artifacts", str(tiny_onnx), "--backends", "trt"])
    assert r.exit_code == 1 and "unknown backend(s) trt; valid: pytorch-eager" in r.output


def test_table_names_the_artifact_kind(result):
    lines = table(result).splitlines()
    assert lines[1].split()[:4] == ["model", "backend", "kind", "batch"]
    import re

    row = re.compile(r" (?:onnxruntime-cpu|pytorch-eager) +(\S+ ?\S*)  ")
    kinds = {m.group(1).strip() for line in lines[2:] if (m := row.search(line))}
    assert kinds == {"fp32", "torch fp32"}  # ONNX and checkpoint rows


def test_plot_is_readable_log_axes_real_batch_sizes_auc_in_legend(result, tmp_path):
    import matplotlib.pyplot as plt

    from dfx.benchmarks.report import figure

    fig = figure(result)
    panels = [ax for ax in fig.axes if ax.get_title() and ax.get_title() != "ROC"]
    assert panels
    for ax in panels:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4"]
        assert ax.get_legend() is None  # the throughput legend is the figure's, under the panels
    (roc,) = [ax for ax in fig.axes if ax.get_title() == "ROC"]
    labels = [t.get_text() for t in roc.get_legend().get_texts()]
    assert labels and all("AUC" in x for x in labels)
    # pytorch-eager and onnxruntime score alike here: their identical curves share one entry instead of hiding
    assert any(" = " in x for x in labels)
    legend = fig.legends[0]
    assert {t.get_text() for t in legend.get_texts()} >= {"onnxruntime-cpu (fp32)", "pytorch-eager (torch fp32)"}
    w, h = fig.get_size_inches() * 100
    assert w <= 1300
    plt.close(fig)


def test_from_json_renders_without_measuring(result, tmp_path):
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(result))
    r = CliRunner().invoke(main, ["--from-json", str(saved), "--markdown", str(tmp_path / "r.md"),
                                  "--plot", str(tmp_path / "r.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.md").read_text() == markdown(result)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"

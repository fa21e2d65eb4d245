"""The wheel installs only under ``dfx/`` and carries the bundled model (docs/ARCHITECTURE.md, "Packaging")."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("dfx-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"dfx", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for module in ("dfx/engine/cli.py", "dfx/engine/backends/tensorrt_backend.py", "dfx/training/trainer.py",
                   "dfx/export/cli.py", "dfx/benchmarks/cli.py", "dfx/engine/default_model/dfx-default.onnx",
                   "dfx/engine/default_model/MODEL_CARD.md"):
        assert module in names, module
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for cmd in ("dfx-train", "dfx-export", "dfx-infer", "dfx-bench"):
        assert cmd in entry_points

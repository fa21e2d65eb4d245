"""benchmarks/gpu_session.sh: its dry run (DRY=1: the same plumbing on this CPU, tiny workloads) installs dfx the
way the GPU machine does, runs a phase within its budget and returns one tar of results."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"


def _run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    full = os.environ | {"PATH": f"{bindir}:{os.environ['PATH']}", "PYTHON": sys.executable, "DRY": "1"} | env
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=600)


def test_an_unknown_phase_names_the_valid_ones(tmp_path):
    r = _run(tmp_path, "four")
    assert r.returncode == 2 and "valid: prepare, one, two, three" in r.stderr


@pytest.mark.slow
def test_phase_one_installs_dfx_trains_and_returns_its_results(tmp_path, tiny_data):
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, checkout / name)
    (checkout / ".device" / "meso").mkdir(parents=True)
    with tarfile.open(checkout / ".device" / "meso" / "data.tar", "w") as tar:
        tar.add(tiny_data, arcname="mesonet-deepfake")
    out = tmp_path / "out"
    r = _run(checkout, "one", GPU_SESSION_TMP=str(tmp_path / "machine"), OUT=str(out), BUDGET_S="240")
    assert r.returncode == 0, r.stdout + r.stderr
    with tarfile.open(out / "gpu-one.tar") as tar:
        names = set(tar.getnames())
        steps = tar.extractfile("./steps.txt").read().decode()
    assert {"./train-gpu-meso4.json", "./train-gpu-meso4-options.json", "./versions.txt"} <= names
    assert all(f"{step}: rc 0" in steps for step in ("tests-gpu", "train-gpu-meso4", "train-gpu-meso4-options"))

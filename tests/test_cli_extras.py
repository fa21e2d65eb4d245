"""On a lean install (no torch, onnx, matplotlib) the heavy commands fail with one line naming the extra."""

import subprocess
import sys
import textwrap

import pytest

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'timm', 'onnx', 'safetensors', 'matplotlib'):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("entry, argv, module, extra", [
    ("train_main", ["dfx-train", "meso4", "--data", "x"], "torch", "train"),
    ("export_main", ["dfx-export", "--checkpoint", "x.safetensors"], "onnx", "export"),
])
def test_heavy_commands_name_their_extra(entry, argv, module, extra, tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"")
    code = BLOCK + textwrap.dedent(f"""
        sys.argv = {argv!r}
        from dfx.cli_common import {entry}
        {entry}()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == f"error: {module} is not installed; install it with: pip install 'dfx[{extra}]'"


@pytest.mark.parametrize("entry, prog", [("train_main", "dfx-train"), ("export_main", "dfx-export"),
                                         ("bench_main", "dfx-bench"), ("infer_main", "dfx-infer")])
def test_every_command_has_fast_help_version_and_verbosity(entry, prog):
    """--help and --version need none of the heavy modules (they are blocked here), so they answer at once."""
    for flag, expect in (("--help", ["-v, --verbose", "-q, --quiet", "--version", "Examples:"]),
                         ("--version", [f"{prog} (dfx) "])):
        code = BLOCK + textwrap.dedent(f"""
            sys.argv = [{prog!r}, {flag!r}]
            from dfx.cli_common import {entry}
            {entry}()
        """)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for text in expect:
            assert text in r.stdout, (flag, text)

"""The runtime must import and run without torch, timm or onnx (docs/ARCHITECTURE.md, "Packaging")."""

import subprocess
import sys
import textwrap


def test_engine_imports_with_heavy_packages_blocked():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('torch', 'timm', 'onnx', 'torchvision', 'safetensors'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        import dfx.engine, dfx.engine.cli, dfx.engine.pipeline, dfx.engine.backends.onnxruntime_backend
        import dfx.engine.backends.tensorrt_backend, dfx.engine.select, dfx.engine.scan, dfx.engine.writers
        bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'onnx', 'dfx.training', 'dfx.export')
               or m.startswith(('dfx.training', 'dfx.export'))]
        assert not bad, bad
        print('ok')
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"

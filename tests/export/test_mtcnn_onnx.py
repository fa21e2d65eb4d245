"""The shipped MTCNN files are exactly the networks dfx.export.mtcnn_onnx defines (weights read back from them)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import numpy_helper  # noqa: E402

from dfx.engine.face_mtcnn import MODEL_DIR  # noqa: E402
from dfx.export.mtcnn_onnx import NETS  # noqa: E402


@pytest.mark.parametrize("name", list(NETS))
def test_shipped_network_matches_its_definition(name):
    import onnxruntime as ort

    cls, side, outputs = NETS[name]
    path = MODEL_DIR / f"mtcnn-{name}.onnx"
    inits = onnx.load(str(path)).graph.initializer
    named = {i.name: numpy_helper.to_array(i) for i in inits if not i.name.startswith("onnx::")}
    prelus = [numpy_helper.to_array(i) for i in inits if i.name.startswith("onnx::Mul")]
    net = cls().eval()
    state = {k: torch.from_numpy(v.copy()) for k, v in named.items()}
    # The exporter stores the PReLU slopes, reshaped for broadcasting, as onnx::Mul_N (in order).
    prelu_keys = [k for k in net.state_dict() if k.startswith("prelu") and k not in named]
    assert len(prelu_keys) == len(prelus)
    state |= {k: torch.from_numpy(v.reshape(-1).copy()) for k, v in zip(prelu_keys, prelus)}
    net.load_state_dict(state, strict=True)  # every parameter of the definition, with the shipped shapes
    h = side or 37
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, h, h + (0 if side else 5))).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in net(torch.from_numpy(x))]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    assert len(got) == len(outputs)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)

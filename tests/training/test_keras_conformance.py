"""The PyTorch MesoNet port with converted Keras weights reproduces the original Keras outputs."""

import json

import numpy as np
import pytest
import torch

from dfx.engine.errors import DfxError
from dfx.training import create_model
from dfx.training.keras_weights import load_keras_mesonet

from ..conftest import shared_path

FILES = {"Meso4_DF": "meso4", "Meso4_F2F": "meso4", "MesoInception_DF": "mesoinception4",
         "MesoInception_F2F": "mesoinception4"}


@pytest.mark.parametrize("weights", FILES)
def test_reproduces_keras_outputs(weights):
    root = shared_path("weights", "mesonet")
    x = np.load(root / "reference" / "inputs_uint8_nhwc.npy")
    ref = np.array(json.loads((root / "reference" / "keras_reference.json").read_text())["scores"][weights])
    model, _ = create_model(FILES[weights])
    load_keras_mesonet(model, root / f"{weights}.h5")
    with torch.no_grad():
        p_fake = torch.sigmoid(model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)).squeeze(1)
    np.testing.assert_allclose(1.0 - p_fake.numpy(), ref, atol=1e-4)


def test_wrong_variant_is_refused():
    root = shared_path("weights", "mesonet")
    model, _ = create_model("mesoinception4")
    with pytest.raises(DfxError, match="wrong MesoNet variant"):
        load_keras_mesonet(model, root / "Meso4_DF.h5")


def test_not_an_h5_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DfxError, match="not a readable Keras"):
        load_keras_mesonet(create_model("meso4")[0], bad)

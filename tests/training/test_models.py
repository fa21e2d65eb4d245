import pytest
import torch

from dfx.engine.errors import DfxError
from dfx.training import create_model, get_entry, list_models
from dfx.training.registry import ModelEntry, register_model

ALL = list_models()


def test_registry_has_the_five_detectors():
    assert ALL == ["efficientnet_b0", "meso4", "mesoinception4", "vit_b16", "xception"]
    assert get_entry("vit").name == "vit_b16" and get_entry("EffNet").name == "efficientnet_b0"


def test_unknown_name_lists_valid_ones():
    with pytest.raises(DfxError, match="valid models: .*meso4.*xception"):
        get_entry("resnet50")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelEntry("meso4", lambda spec: None, get_entry("meso4").default_spec))


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_and_one_training_step(name):
    torch.manual_seed(0)
    spec = get_entry(name).default_spec.with_size(32)
    model, kwargs = create_model(name, spec, pretrained=False)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0.0, 1.0])
    model.train()
    out = model(x)
    assert out.shape == (2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    rebuilt, _ = create_model(name, spec, **kwargs)
    assert rebuilt.load_state_dict(model.state_dict())  # model_kwargs rebuild the same architecture


@pytest.mark.parametrize("name", ["xception", "efficientnet_b0", "vit_b16"])
def test_pretrained_without_network_fails_clearly(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DfxError, match="--pretrained-file PATH.*--no-pretrained"):
        create_model(name, get_entry(name).default_spec.with_size(32), pretrained=True)


def test_pretrained_file_loads_local_weights(tmp_path):
    import safetensors.torch as st
    import timm

    src = timm.create_model("efficientnet_b0", pretrained=False)  # an "ImageNet" model with 1000 classes
    f = tmp_path / "effnet.safetensors"
    st.save_file(src.state_dict(), str(f))
    model, _ = create_model("efficientnet_b0", pretrained_file=str(f))
    assert torch.equal(model.conv_stem.weight, src.conv_stem.weight)
    assert model.get_classifier().out_features == 1
    with pytest.raises(DfxError, match="no such file"):
        create_model("efficientnet_b0", pretrained_file=str(tmp_path / "missing.pth"))


def test_mesonet_rejects_imagenet_weights():
    with pytest.raises(DfxError, match="--init-from"):
        create_model("meso4", pretrained=True)


def _keras_order(net, x):
    """Meso-4 as published: conv → ReLU → BN → pool in every block (the reference for the eval shortcut)."""
    for conv, bn, pool in zip(net.convs, net.bns, net.pools):
        x = pool(bn(torch.relu(conv(x))))
    return net.head(x)


@pytest.mark.parametrize("negative", [False, True])
def test_meso4_eval_pools_before_batchnorm_only_when_exact(negative):
    torch.manual_seed(0)
    net, _ = create_model("meso4", input_size=(32, 32))
    net.eval()
    order = []
    for i, (bn, pool) in enumerate(zip(net.bns, net.pools)):
        bn.weight.data.uniform_(0.5, 2.0)
        bn.running_mean.data.normal_()
        bn.bias.data.normal_()
        bn.register_forward_hook(lambda *_, i=i: order.append(f"bn{i}"))
        pool.register_forward_hook(lambda *_, i=i: order.append(f"pool{i}"))
    if negative:  # a negative scale turns max into min: the shortcut would be wrong, so the Keras order stays
        net.bns[1].weight.data[0] = -1.0
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        got, want = net(x), _keras_order(net, x)
    assert torch.equal(got, want)  # bit for bit, not just close
    assert (order.index("bn1") < order.index("pool1")) == negative
    assert order.index("pool0") < order.index("bn0")

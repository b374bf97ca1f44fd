"""invfast.core.models: the registry, every architecture, torchvision-compatible names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invfast.core import models

SMALLEST = {"alexnet-p1": 64, "resnet18": 32, "googlenet": 32, "mlp5": 1, "convnet-small": 16}
# (arch, in_channels): alexnet-p1 (58M parameters) is exercised once, with 3 channels
BUILDS = [(a, c) for a in sorted(SMALLEST) for c in (1, 3) if (a, c) != ("alexnet-p1", 1)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return models.build("alexnet-p1", 10, 3, 64)


def test_registry_lists_every_model_of_the_issue():
    assert set(SMALLEST) <= set(models.names())
    for entry in models.describe():
        assert entry.description and entry.min_image_size >= 1


@pytest.mark.parametrize(("arch", "in_channels"), BUILDS)
def test_builds_and_trains_at_smallest_size(arch, in_channels):
    torch.manual_seed(0)
    size = models.spec(arch).min_image_size
    assert size == SMALLEST[arch]
    model = models.build(arch, 5, in_channels, size)
    model.train()
    x = torch.randn(2, in_channels, size, size)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", sorted(SMALLEST))
def test_analysis_layers_fire_once_in_order_and_are_nonnegative(arch, request):
    torch.manual_seed(1)
    size = max(SMALLEST[arch], 8)
    if arch == "alexnet-p1":
        model = request.getfixturevalue("alexnet").eval()
    else:
        model = models.build(arch, 7, 3, size).eval()
    names = model.analysis_layers()
    assert len(names) >= 2 and len(set(names)) == len(names)
    fired: list[str] = []
    outputs: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, _inputs, output):
            fired.append(name)
            outputs[name] = output.detach()

        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    with torch.no_grad():
        model(torch.randn(3, 3, size, size))
    for handle in handles:
        handle.remove()
    assert fired == names  # each exactly once, in forward order
    for name in names:
        assert outputs[name].min() >= 0, name
        assert outputs[name].shape[0] == 3
    # the penultimate layer (last) feeds the classifier: its feature count is the
    # in_features of the last Linear layer
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert outputs[names[-1]][0].numel() == last_linear.in_features


@pytest.mark.parametrize("arch", sorted(SMALLEST))
def test_relus_are_distinct_modules_not_inplace(arch, request):
    if arch == "alexnet-p1":
        model = request.getfixturevalue("alexnet")
    else:
        model = models.build(arch, 4, 3, max(SMALLEST[arch], 8))
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(not r.inplace for r in relus)
    assert len({id(r) for r in relus}) == len(relus)


def test_alexnet_p1_any_input_size_from_64(alexnet):
    alexnet.eval()
    with torch.no_grad():
        for size in (64, 80, 97, 131):
            assert alexnet(torch.randn(1, 3, size, size)).shape == (1, 10)


def test_alexnet_p1_layout(alexnet):
    model = alexnet
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    pools = [name for name, m in model.features.named_children() if isinstance(m, nn.MaxPool2d)]
    assert pools == ["pool5"]  # no max-pooling after conv1 and conv2 (P1 Appendix B)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [f.out_features for f in fcs] == [4096, 4096, 10]
    # AlexNet's initialization: biases 1 in conv2, conv4, conv5, fc6, fc7
    assert torch.all(model.features.conv2.bias == 1) and torch.all(model.features.conv1.bias == 0)
    assert torch.all(model.classifier.fc7.bias == 1) and torch.all(model.classifier.fc8.bias == 0)


def test_mlp5_matches_p3_size():
    model = models.build("mlp5", 10, 1, 36)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5
    expected = 1296 * 128 + 128 + 3 * (128 * 128 + 128) + 128 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == expected  # ≈ 217k


# ---- torchvision layouts, written from torchvision's definitions (not from invfast) ----


def _bn(prefix: str, c: int) -> list[tuple[str, tuple]]:
    return [
        (f"{prefix}.weight", (c,)),
        (f"{prefix}.bias", (c,)),
        (f"{prefix}.running_mean", (c,)),
        (f"{prefix}.running_var", (c,)),
        (f"{prefix}.num_batches_tracked", ()),
    ]


def torchvision_resnet18(num_classes: int) -> list[tuple[str, tuple]]:
    rows = [("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64)]
    inplanes = 64
    for i, planes in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p, cin = f"layer{i}.{block}", inplanes if block == 0 else planes
            rows += [(f"{p}.conv1.weight", (planes, cin, 3, 3)), *_bn(f"{p}.bn1", planes)]
            rows += [(f"{p}.conv2.weight", (planes, planes, 3, 3)), *_bn(f"{p}.bn2", planes)]
            if block == 0 and i > 1:
                rows += [(f"{p}.downsample.0.weight", (planes, cin, 1, 1))]
                rows += _bn(f"{p}.downsample.1", planes)
        inplanes = planes
    return [*rows, ("fc.weight", (num_classes, 512)), ("fc.bias", (num_classes,))]


def _basic_conv(prefix: str, cin: int, cout: int, k: int) -> list[tuple[str, tuple]]:
    return [(f"{prefix}.conv.weight", (cout, cin, k, k)), *_bn(f"{prefix}.bn", cout)]


INCEPTION = {  # name: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, "5x5" (3x3 in torchvision), pool)
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def torchvision_googlenet(num_classes: int, aux: bool) -> list[tuple[str, tuple]]:
    rows = _basic_conv("conv1", 3, 64, 7) + _basic_conv("conv2", 64, 64, 1)
    rows += _basic_conv("conv3", 64, 192, 3)
    for name, (cin, c1, c3r, c3, c5r, c5, pool) in INCEPTION.items():
        p = f"inception{name}"
        rows += _basic_conv(f"{p}.branch1", cin, c1, 1)
        rows += _basic_conv(f"{p}.branch2.0", cin, c3r, 1) + _basic_conv(
            f"{p}.branch2.1", c3r, c3, 3
        )
        rows += _basic_conv(f"{p}.branch3.0", cin, c5r, 1) + _basic_conv(
            f"{p}.branch3.1", c5r, c5, 3
        )
        rows += _basic_conv(f"{p}.branch4.1", cin, pool, 1)
    if aux:
        for name, cin in (("aux1", 512), ("aux2", 528)):
            rows += _basic_conv(f"{name}.conv", cin, 128, 1)
            rows += [(f"{name}.fc1.weight", (1024, 2048)), (f"{name}.fc1.bias", (1024,))]
            rows += [
                (f"{name}.fc2.weight", (num_classes, 1024)),
                (f"{name}.fc2.bias", (num_classes,)),
            ]
    return [*rows, ("fc.weight", (num_classes, 1024)), ("fc.bias", (num_classes,))]


def _layout(model: nn.Module) -> list[tuple[str, tuple]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def test_resnet18_state_dict_is_torchvisions():
    model = models.build("resnet18", 1000, 3, 224)
    assert _layout(model) == torchvision_resnet18(1000)
    assert len(model.state_dict()) == 122
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's count


@pytest.mark.parametrize("aux", [False, True])
def test_googlenet_state_dict_is_torchvisions(aux):
    model = models.build("googlenet", 1000, 3, 224, aux_logits=aux)
    assert _layout(model) == torchvision_googlenet(1000, aux)
    params = sum(p.numel() for p in model.parameters())
    assert params == (13_004_888 if aux else 6_624_904)  # torchvision's counts


def test_torchvision_state_dict_loads_strict():
    # a state dict with torchvision's names and shapes (random values) loads with strict=True
    g = torch.Generator().manual_seed(0)
    for arch, layout in (("resnet18", torchvision_resnet18(10)),
                         ("googlenet", torchvision_googlenet(10, aux=False))):  # fmt: skip
        state = {
            k: torch.randint(0, 5, s, generator=g) if k.endswith("num_batches_tracked")
            else torch.randn(s, generator=g)
            for k, s in layout
        }  # fmt: skip
        model = models.build(arch, 10, 3, 32)
        model.load_state_dict(state, strict=True)
        assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


def test_googlenet_aux_heads_only_in_training():
    model = models.build("googlenet", 4, 3, 64, aux_logits=True)
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 4) and len(model.last_aux_logits) == 2
    assert all(a.shape == (2, 4) for a in model.last_aux_logits)
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert model.last_aux_logits == ()


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown architecture 'vgg'.*convnet-small"):
        models.build("vgg", 10, 3, 32)
    with pytest.raises(ValueError, match="alexnet-p1 needs image_size >= 64"):
        models.build("alexnet-p1", 10, 3, 32)
    with pytest.raises(ValueError, match=r"unknown argument.*'depth'.*valid: width, hidden"):
        models.build("convnet-small", 10, 3, 32, depth=3)
    with pytest.raises(ValueError, match="num_classes"):
        models.build("mlp5", 1, 1, 8)
    with pytest.raises(ValueError, match="in_channels"):
        models.build("mlp5", 10, 0, 8)
    with pytest.raises(ValueError, match="width"):
        models.build("convnet-small", 10, 3, 32, width=0)


def test_register_extends_the_registry(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))

    class Tiny(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.fc = nn.Linear(4, num_classes)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.fc(self.relu(x.flatten(1)[:, :4]))

        def analysis_layers(self):
            return ["relu"]

    models.register("tiny", lambda nc, ic, sz: Tiny(nc), description="test model")
    assert "tiny" in models.names()
    assert models.build("tiny", 3, 1, 2)(torch.ones(1, 1, 2, 2)).shape == (1, 3)
    with pytest.raises(ValueError, match="already registered"):
        models.register("tiny", lambda nc, ic, sz: Tiny(nc), description="again")

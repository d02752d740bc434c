"""Plain torchvision networks through the prunable-unit contract: listing, real removal, exactness."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from sglp.core.errors import UnsupportedModelError
from sglp.core.metrics import count_parameters
from sglp.core.surgery import remove_layers
from sglp.core.units import bypass_of, prunable_units


def small_vit() -> torchvision.models.VisionTransformer:
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )


MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 64, 5),  # 8 blocks, 3 with a downsample
    "resnet34": (lambda: torchvision.models.resnet34(num_classes=10), 64, 13),
    "resnet50": (
        lambda: torchvision.models.resnet50(num_classes=10),
        64,
        12,
    ),  # every stage's first block has a downsample
    "resnet101": (lambda: torchvision.models.resnet101(num_classes=10), 64, 29),
    "vit_small": (small_vit, 32, 4),
}


def make_identity(unit: nn.Module) -> None:
    """Zero the last layer of every residual branch, so the unit computes its input unchanged."""
    if isinstance(unit, torchvision.models.resnet.BasicBlock):
        nn.init.zeros_(unit.bn2.weight)
    elif isinstance(unit, torchvision.models.resnet.Bottleneck):
        nn.init.zeros_(unit.bn3.weight)
    else:  # ViT EncoderBlock: attention output projection and the MLP's last linear
        for m in (unit.self_attention.out_proj, unit.mlp[3]):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)


@pytest.mark.parametrize("name", MODELS)
def test_units_listed_and_every_single_removal_works(name):
    build, size, expected_units = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    units = prunable_units(model)
    assert len(units) == expected_units
    x = torch.randn(2, 3, size, size)
    for i, (_, unit) in enumerate(units):
        pruned = remove_layers(model, [i]).eval()
        assert type(pruned) is type(model)
        assert count_parameters(pruned) == count_parameters(model) - count_parameters(unit)
        assert pruned(x).shape == (2, 10)
        if name in ("resnet101",) and i > 2:
            break  # enough for the large one


@pytest.mark.parametrize("name", MODELS)
def test_removing_identity_unit_leaves_output_unchanged(name):
    build, size, _ = MODELS[name]
    torch.manual_seed(1)
    model = build()
    index = len(prunable_units(model)) // 2
    make_identity(prunable_units(model)[index][1])
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(x), remove_layers(model, [index]).eval()(x), atol=1e-5)


def test_names_survive_surgery_and_reload():
    torch.manual_seed(2)
    model = torchvision.models.resnet18(num_classes=10)
    pruned = remove_layers(model, [1])  # layer1.1
    assert [n for n, _ in prunable_units(pruned)][:2] == ["layer1.0", "layer2.1"]
    assert "layer1.0.conv1.weight" in pruned.state_dict() and "layer1.1.conv1.weight" not in pruned.state_dict()
    again = remove_layers(torchvision.models.resnet18(num_classes=10), [1])
    again.load_state_dict(copy.deepcopy(pruned.state_dict()))


def test_downsampling_block_is_not_removable():
    model = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(UnsupportedModelError, match="downsample"):
        bypass_of(model.layer2[0])


def test_unknown_model_names_what_to_register():
    with pytest.raises(UnsupportedModelError, match="register_units"):
        prunable_units(torchvision.models.alexnet(num_classes=10))


@pytest.mark.slow
def test_full_vit_b_16():
    model = torchvision.models.vit_b_16().eval()
    assert len(prunable_units(model)) == 12
    pruned = remove_layers(model, [3, 7]).eval()
    with torch.no_grad():
        assert pruned(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_torchvision_vgg_bn_layers_group_remove_and_keep_loading_torchvision_weights():
    torch.manual_seed(3)
    src = torchvision.models.vgg11_bn(num_classes=10).eval()
    src.classifier = nn.Linear(512 * 7 * 7, 10)  # a small head keeps the test fast; the units are in `features`
    for m in src.modules():  # non-trivial BN statistics, so a wrong mapping would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    torchvision_layout = copy.deepcopy(src.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = src(x)
    model = torchvision.models.vgg11_bn(num_classes=10)
    model.classifier = nn.Linear(512 * 7 * 7, 10)
    units = prunable_units(model)  # groups in place
    assert [n for n, _ in units] == [f"features.{i}" for i in (4, 8, 11, 15, 18, 22, 25)]  # 8 convs, first stays
    model.load_state_dict(torchvision_layout)  # torchvision's keys still load
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    assert prunable_units(model) == units  # grouping is idempotent
    for i in (0, 2):  # a widening layer (64 -> 128, zero-padded) and a width-keeping one
        pruned = remove_layers(model, [i]).eval()
        assert type(pruned) is type(model)
        assert count_parameters(pruned) == count_parameters(model) - count_parameters(units[i][1])
        assert pruned(x).shape == (2, 10)
    # a width-keeping layer made the identity on its (non-negative) input: removal changes nothing
    layer = units[2][1]
    with torch.no_grad():
        layer.conv.weight.zero_()
        for c in range(layer.conv.out_channels):
            layer.conv.weight[c, c, 1, 1] = 1.0
        layer.bn.running_mean.zero_()
        layer.bn.running_var.fill_(1.0 - layer.bn.eps)
        layer.bn.weight.fill_(1.0)
        layer.bn.bias.zero_()
        assert torch.allclose(model(x), remove_layers(model, [2]).eval()(x), atol=1e-5)

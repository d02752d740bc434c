"""Every model yaml: each single prunable unit removes for real (a new yaml is tested automatically)."""

import pytest
import torch
from helpers import CONFIGS, compose_with, randomise_bn_statistics, with_examples
from hydra.utils import instantiate
from torch import nn

from sglp.core.metrics import count_parameters
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units
from sglp.experiment.kind_configs import published_weights_off
from sglp.kinds.classification.models.vgg_cifar import ChannelPad, ConvBNReLU, vgg16_bn

# vision models (their yaml builds a `net`; decoder LLMs are tested in test_llm_layers and test_hf_causal_lm)
MODELS = sorted(
    p.stem for p in (CONFIGS / "model").glob("*.yaml") if "net" in compose_with(*with_examples(f"model={p.stem}")).model
)


def check_single_removals(option: str, every: bool) -> None:
    cfg = compose_with(*with_examples(f"model={option}"))
    torch.manual_seed(0)
    offline = published_weights_off(cfg.model.net)  # the structure only: no hub weights
    model = instantiate(cfg.model.net, **offline).eval()
    x = torch.randn(2, cfg.dataset.channels, *cfg.model.get("input_size", [28, 28]))
    units = prunable_units(model)
    assert len(units) >= 2
    n = len(units)
    chosen = range(n) if every else sorted({round(j * (n - 1) / 5) for j in range(6)})  # first, last, between
    for i in chosen:
        pruned = remove_layers(model, [i]).eval()
        assert type(pruned) is type(model)
        # surgery removes the unit, and may tidy more (VGG slices the next conv), never less
        assert count_parameters(pruned) <= count_parameters(model) - count_parameters(units[i][1])
        with torch.no_grad():
            assert pruned(x).shape == (2, cfg.dataset.num_classes)


@pytest.mark.parametrize("option", MODELS)
def test_single_unit_removals_give_a_smaller_working_model(option):
    check_single_removals(option, every=False)


@pytest.mark.slow
@pytest.mark.parametrize("option", MODELS)
def test_every_single_unit_removal(option):
    check_single_removals(option, every=True)


def identity_layer(unit: ConvBNReLU) -> None:
    """conv = identity on the first c_in channels (zero elsewhere), BN = identity: the unit maps x
    (non-negative, after a ReLU) to its zero-padded self."""
    c_out, c_in = unit.conv.out_channels, unit.conv.in_channels
    with torch.no_grad():
        unit.conv.weight.zero_()
        for c in range(min(c_in, c_out)):
            unit.conv.weight[c, c, 1, 1] = 1.0
        unit.bn.weight.fill_(1.0)
        unit.bn.bias.zero_()
        unit.bn.running_mean.zero_()
        unit.bn.running_var.fill_(1.0 - unit.bn.eps)


@pytest.mark.parametrize(
    "index", [0, 1, 3]
)  # features.1 (64->64); features.3 (64->128) and features.6 (128->256), padded
def test_vgg_identity_layer_removal_is_exact(index):
    torch.manual_seed(1)
    model = vgg16_bn(10, 3, channel_fix="pad")  # keep the padding bypass as the surgery result
    unit = prunable_units(model)[index][1]
    identity_layer(unit)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    pruned = remove_layers(model, [index]).eval()
    if unit.conv.in_channels != unit.conv.out_channels:
        assert any(isinstance(m, ChannelPad) for m in pruned.features)
    with torch.no_grad():
        assert torch.allclose(model(x), pruned(x), atol=1e-5)


def test_vgg_units_exclude_the_first_layer():
    model = vgg16_bn(10, 3)
    names = [n for n, _ in prunable_units(model)]
    assert len(names) == 12 and names[0] == "features.1"
    assert not isinstance(model.features[0], nn.Identity)


@pytest.mark.parametrize("removed", [[1], [1, 2], [1, 2, 3], [0, 4, 7, 11]])
def test_vgg_slice_is_exactly_the_padded_network_with_fewer_parameters(removed, tmp_path):
    from sglp.core.checkpoint import load_pruned, save_checkpoint

    torch.manual_seed(2)
    model = vgg16_bn(10, 3)
    randomise_bn_statistics(model, 0.1)
    model_pad = vgg16_bn(10, 3, channel_fix="pad")
    model_pad.load_state_dict(model.state_dict())
    padded, sliced = remove_layers(model_pad, removed).eval(), remove_layers(model, removed).eval()
    assert not any(isinstance(m, ChannelPad) for m in sliced.features)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(padded(x), sliced(x), atol=1e-4)
    if 1 in removed or 3 in removed or 6 in removed:  # a widening layer went: the slice saved weights
        assert count_parameters(sliced) < count_parameters(padded)
    save_checkpoint(tmp_path / "p.pt", sliced, removed=removed)
    with torch.no_grad():
        assert torch.equal(load_pruned(vgg16_bn(10, 3), tmp_path / "p.pt").eval()(x), sliced(x))


def test_vgg_reinit_recreates_the_next_conv():
    torch.manual_seed(3)
    model = vgg16_bn(10, 3, channel_fix="reinit")
    pruned = remove_layers(model, [1]).eval()  # features.3 (64 -> 128) removed; features.4 now takes 64
    assert pruned.features[3].conv.in_channels == 64
    assert not torch.equal(pruned.features[3].conv.weight, model.features[4].conv.weight[:, :64])
    assert pruned(torch.randn(1, 3, 32, 32)).shape == (1, 10)

"""timm networks through the prunable-unit contract (random weights): the units are the shape-keeping residual
blocks, and removal equals the original with those blocks bypassed. Parametrised over timm model names per family
(sglp.kinds.classification.adapters.timm_models.FAMILIES): a name added to TIMM_MODELS is tested without a new test."""

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

from sglp.core.errors import UnsupportedModelError  # noqa: E402
from sglp.core.metrics import count_parameters  # noqa: E402
from sglp.core.surgery import remove_layers  # noqa: E402
from sglp.core.units import prunable_units  # noqa: E402

# timm name -> (family, create_model kwargs that make it small, input side)
TIMM_MODELS = {
    "resnet18": ("resnet", {}, 64),
    "resnet26d": ("resnet", {}, 64),  # deep stem, average-pool downsample
    "seresnet18": ("resnet", {}, 64),  # squeeze-excitation inside the block
    "resnext50_32x4d": ("resnet", {}, 64),
    "regnetx_002": ("regnet", {}, 64),
    "regnety_002": ("regnet", {}, 64),
    "convnext_atto": ("convnext", {}, 64),
    "convnextv2_atto": ("convnext", {}, 64),
    "efficientnet_b0": ("efficientnet", {}, 64),
    "mobilenetv2_050": ("efficientnet", {}, 64),
    "mobilenetv3_small_050": ("mobilenetv3", {}, 64),
    "vit_tiny_patch16_224": ("vit", {"img_size": 32, "patch_size": 8}, 32),
    "deit_tiny_patch16_224": ("vit", {"img_size": 32, "patch_size": 8}, 32),
    "deit_tiny_distilled_patch16_224": ("vit", {"img_size": 32, "patch_size": 8}, 32),
    "swin_tiny_patch4_window7_224": ("swin", {}, 224),
    "resnext26ts": ("byobnet", {}, 64),
    "gernet_s": ("byobnet", {}, 64),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    _, kwargs, side = TIMM_MODELS[name]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
    # timm starts residual branches near zero (last BN gamma 0, layer scale 1e-6): give every norm / scale a
    # weight of order one, so that a block is far from the identity and a wrong removal shows
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 1 and pname.rsplit(".", 1)[-1] in ("weight", "gamma"):
                p.uniform_(0.5, 1.5)
    return model, torch.randn(2, 3, side, side)


def spread(n: int) -> list[int]:
    """Three unit indices across the depth (first, middle, last)."""
    return sorted({0, n // 2, n - 1})


class Zero(nn.Module):
    def forward(self, x):
        return x * 0


def zero_residual_branch(block: nn.Module) -> None:
    """Make the residual branch contribute nothing (timm applies `drop_path*` to it just before the addition)."""
    names = [n for n in ("drop_path", "drop_path1", "drop_path2") if hasattr(block, n)]
    assert names, f"{type(block).__name__} has no drop_path to zero"
    for n in names:
        setattr(block, n, Zero())


def test_every_family_is_covered_by_a_model():
    from sglp.kinds.classification.adapters.timm_models import FAMILIES

    assert set(FAMILIES) == {family for family, _, _ in TIMM_MODELS.values()}


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_units_keep_their_shape_and_removal_equals_the_original_with_them_bypassed(name):
    """The units are blocks that run once and keep their input's shape; removing three of them equals the untouched
    model with forward hooks that return each chosen block's input (the reference)."""
    model, x = build(name)
    units = prunable_units(model)
    assert len(units) >= 3
    shapes = {}
    hooks = [
        u.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, (i[0].shape, o.shape))) for n, u in units
    ]
    with torch.no_grad():
        original = model(x)
    for h in hooks:
        h.remove()
    assert sorted(shapes) == sorted(n for n, _ in units) and all(a == b for a, b in shapes.values())

    chosen = spread(len(units))
    pruned = remove_layers(model, chosen).eval()
    assert type(pruned) is type(model)
    assert count_parameters(pruned) == count_parameters(model) - sum(count_parameters(units[i][1]) for i in chosen)
    hooks = [units[i][1].register_forward_hook(lambda m, inp, out: inp[0]) for i in chosen]
    with torch.no_grad():
        expected = model(x)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        got = pruned(x)
    assert not torch.allclose(got, original, atol=1e-4)  # the removal changed the network
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


# SiLU after the residual addition: a block with a zero branch computes SiLU(x), not x, so this reference does not
# apply (the hook reference above does)
NONLINEAR_AFTER_ADDITION = {"resnext26ts"}


@pytest.mark.parametrize("name", sorted(set(TIMM_MODELS) - NONLINEAR_AFTER_ADDITION))
def test_a_block_whose_residual_branch_is_zero_is_removed_exactly(name):
    """Independent of the hooks: a block that computes its input (zero branch, non-negative input where an
    activation follows the addition) can be removed without changing the output."""
    model, x = build(name, seed=1)
    units = prunable_units(model)
    i = len(units) // 2
    zero_residual_branch(units[i][1])
    with torch.no_grad():
        torch.testing.assert_close(remove_layers(model, [i]).eval()(x), model(x), atol=1e-5, rtol=1e-4)


def test_a_timm_model_of_another_family_gets_one_clear_error():
    model = timm.create_model("densenet121", pretrained=False, num_classes=10)
    with pytest.raises(
        UnsupportedModelError, match="DenseNet has no prunable-unit adapter \\(supported timm families: resnet, regnet"
    ):
        prunable_units(model)

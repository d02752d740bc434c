"""Real removal of prunable units: smaller model, working forward, exact where it must be."""

import pytest
import torch
from helpers import randomise_bn_statistics
from torch import nn

from sglp.core.errors import InvalidArgument, UnsupportedModelError
from sglp.core.metrics import count_parameters
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units, units_bypassed
from sglp.kinds.classification.models.resnet_cifar import BasicBlock, resnet20, resnet56


def test_resnet56_has_27_units_named_in_forward_order():
    units = prunable_units(resnet56(10, 1))
    assert len(units) == 27
    assert [n for n, _ in units] == [f"blocks.{i}" for i in range(27)]


@pytest.mark.parametrize("indices", [[0], [3], [9], [4, 5, 6], [0, 3, 9, 18, 26], list(range(1, 27))])
def test_removal_shrinks_params_and_forward_works(indices):
    torch.manual_seed(0)
    model = resnet56(10, 1).eval()
    pruned = remove_layers(model, indices).eval()
    units = prunable_units(model)
    removed_params = sum(sum(p.numel() for p in units[i][1].parameters()) for i in indices)
    assert count_parameters(pruned) == count_parameters(model) - removed_params
    assert len(prunable_units(pruned)) == 27 - len(indices)
    out = pruned(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert len(prunable_units(model)) == 27  # the input model is untouched


@pytest.mark.parametrize("family", ["resnet56", "qwen2"])
def test_in_place_removal_is_the_copys_network_without_a_copy(family):
    """Reference: the same removal on a copy (the default)."""
    if family == "qwen2":
        transformers = pytest.importorskip("transformers")
        sizes = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1}
        config = transformers.AutoConfig.for_model("qwen2", vocab_size=64, num_hidden_layers=6, **sizes)
        torch.manual_seed(0)
        model, x = transformers.AutoModelForCausalLM.from_config(config).eval(), torch.randint(0, 64, (2, 8))
        run = lambda m: m(x, use_cache=False).logits
    else:
        torch.manual_seed(0)
        model, x = resnet56(10, 1).eval(), torch.randn(2, 1, 28, 28)
        run = lambda m: m(x)
    copied = remove_layers(model, [1, 3]).eval()
    pruned = remove_layers(model, [1, 3], inplace=True)
    assert pruned is model and len(prunable_units(model)) == len(prunable_units(copied))
    assert count_parameters(model) == count_parameters(copied)
    with torch.no_grad():
        torch.testing.assert_close(run(pruned.eval()), run(copied))


def make_block_identity(block: BasicBlock) -> None:
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)


@pytest.mark.parametrize("index", [2, 9, 18])  # 9 and 18 change shape (stride 2, channels x2)
def test_removing_identity_initialised_block_leaves_output_unchanged(index):
    torch.manual_seed(1)
    model = resnet56(10, 1)
    randomise_bn_statistics(model, 0.2)
    make_block_identity(model.blocks[index])
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), remove_layers(model, [index]).eval()(x), atol=1e-5)


def test_bypass_view_equals_real_surgery_and_restores():
    torch.manual_seed(2)
    model = resnet20(10, 1).eval()
    x = torch.randn(5, 1, 20, 20)
    with torch.no_grad():
        before = model(x)
        with units_bypassed(model, [1, 3, 6]) as view:
            n_view = count_parameters(view)
            out_view = view(x)
        after = model(x)
        pruned = remove_layers(model, [1, 3, 6]).eval()
        assert torch.allclose(out_view, pruned(x), atol=1e-6)
    assert n_view == count_parameters(pruned)
    assert torch.equal(before, after)
    assert len(prunable_units(model)) == 9


def test_bypass_restores_on_error():
    model = resnet20(10, 1)
    with pytest.raises(RuntimeError):
        with units_bypassed(model, [0, 1]):
            raise RuntimeError("boom")
    assert len(prunable_units(model)) == 9


def test_pruned_model_trains():
    pruned = remove_layers(resnet20(10, 1), [0, 4])
    loss = nn.functional.cross_entropy(pruned(torch.randn(4, 1, 16, 16)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in pruned.parameters())


def test_bad_indices_are_clear_errors():
    model = resnet20(10, 1)
    with pytest.raises(InvalidArgument, match="out of range"):
        remove_layers(model, [9])
    with pytest.raises(InvalidArgument, match="keep at least one"):
        remove_layers(model, list(range(9)))


def test_model_without_adapter_is_named():
    with pytest.raises(UnsupportedModelError, match="Sequential"):
        remove_layers(nn.Sequential(nn.Linear(2, 2)), [0])

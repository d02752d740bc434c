"""sglp.prune: the one call. Its named methods are the yamls' components with the yamls' defaults; it returns a real
smaller model equal to the original with those units removed, and leaves the original as it was."""

import copy

import pytest
import torch
from helpers import compose_with
from hydra.utils import instantiate

import sglp
from sglp.api import METHODS, Calibration
from sglp.errors import InvalidArgument
from sglp.metrics import count_flops
from sglp.models.resnet_cifar import resnet20
from sglp.surgery import remove_layers
from sglp.units import prunable_units


def settings(obj) -> dict:
    """A component's plain settings (its type and scalar attributes), for comparing two instances."""
    if obj is None:
        return {}
    plain = {k: v for k, v in vars(obj).items() if isinstance(v, int | float | str | bool | tuple | type(None))}
    return {"type": type(obj).__name__, **plain}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_named_method_is_its_yamls_components_with_its_defaults(name):
    cfg = compose_with(f"method={name}", "search.keep=6")
    from_yaml = instantiate(cfg.strategy)
    built, cka_batches = METHODS[name](keep=6, ratio=None, k=None, seed=0)
    for part in ("similarity", "segmenter", "search", "scorer"):
        assert settings(getattr(built, part)) == settings(getattr(from_yaml, part)), part
    assert (built.name, built.label_groups) == (from_yaml.name, from_yaml.label_groups)
    assert cka_batches == (cfg.calibration.batch_size, cfg.calibration.num_batches)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(160, 1, 28, 28, generator=g), torch.randint(0, 10, (160,), generator=g)


@pytest.mark.parametrize("name", ["sglp", "random", "shortgpt"])
def test_prune_returns_the_model_without_the_removed_units_and_leaves_the_original(name, data):
    torch.manual_seed(0)
    model = resnet20(10, 1).eval()
    before = copy.deepcopy(model.state_dict())
    pruned, report = sglp.prune(model, data, keep=5, method=name)
    assert type(pruned) is type(model) and len(prunable_units(pruned)) == 5 == len(report.kept)
    assert sorted(report.kept + report.removed) == list(range(9)) and sum(map(len, report.segments)) == 9
    x = data[0][:4]
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x), remove_layers(model, report.removed).eval()(x), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and len(prunable_units(model)) == 9
    assert report.flops == (count_flops(model, (1, 28, 28)), count_flops(pruned, (1, 28, 28)))
    assert 0 < report.flops_reduction_pct < 100


def test_a_dataloader_and_a_pair_of_tensors_give_the_same_choice(data):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=32)
    model = resnet20(10, 1)
    assert sglp.prune(model, loader, keep=6)[1].kept == sglp.prune(model, data, keep=6)[1].kept
    source = Calibration(loader, max_examples=64)
    (x, y), _ = source(48, 2)
    assert torch.equal(x, torch.cat([data[0][:48]])) and torch.equal(source(48, 2)[1][0][:16], data[0][48:64])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "sglp_typo"}, "method='sglp_typo': choose one of"),
        ({"keep": 40}, "search.keep=40 is impossible"),
        ({"keep": 5, "ratio": 0.5}, "set exactly one of search.keep"),
    ],
)
def test_bad_arguments_say_what_to_change(kwargs, message, data):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace("[", r"\[")):
        sglp.prune(resnet20(10, 1), data, **{"keep": 5, **kwargs})


def test_calibration_without_labels_is_refused():
    with pytest.raises(InvalidArgument, match=r"\(inputs, labels\) batches"):
        sglp.prune(resnet20(10, 1), [torch.randn(8, 1, 28, 28)], keep=5)


def test_importing_sglp_stays_light():
    import subprocess
    import sys

    code = "import sys, sglp; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_prune_a_torchvision_network():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    units = len(prunable_units(model))
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    pruned, report = sglp.prune(model, (x, y), keep=units - 2, method="shortgpt")
    assert type(pruned) is type(model) and len(prunable_units(pruned)) == units - 2 and len(report.removed) == 2
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x[:2]), remove_layers(model, report.removed).eval()(x[:2]), atol=1e-5)
    assert report.params[1] < report.params[0]
